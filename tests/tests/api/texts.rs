//! A programme's words: admins change a cohort's own texts (its participants' apps get them at
//! the next sync) and the template's (which only cohorts created afterwards copy). All or
//! nothing, admins only; and admins list their staff.

use serde_json::json;
use veldwerk_tests::db_test;

use crate::{
    fixtures::{date, demo_admin, new_trainer, organisation_with_cohort_from, programme_id},
    sync::phone,
};

db_test!(async fn an_admin_changes_a_cohorts_texts_and_the_app_gets_them(app) {
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    let admin = demo_admin(&app).await;
    let path = format!("/v1/cohorts/{cohort}/texts");
    let before = app.get(&format!("/v1/cohorts/{cohort}"), &admin.token).await.expect(200);
    let first = before["assignments"].as_array().unwrap().iter().find(|a| a["after_day"] == 1).unwrap().clone();
    let change = json!({
        "days": [{ "day_number": 1, "description": "Start in het buurthuis van Voorbeeldstad." }],
        "assignments": [{ "assignment_id": first["id"], "title": "Loop een dag mee met de wijkagent" }],
    });

    // A trainer may not, and neither may a participant; nothing changes.
    app.call(reqwest::Method::PATCH, &path, Some(&trainer.token), Some(change.clone())).await.expect_error(403, "forbidden");
    app.call(reqwest::Method::PATCH, &path, Some(sanne.debug_token()), Some(change.clone())).await.expect_error(403, "forbidden");
    // One unknown day or assignment refuses the whole change.
    for (bad, code) in [
        (json!({ "days": [{ "day_number": 1, "title": "Nieuw" }, { "day_number": 7, "title": "Zeven" }] }), "invalid_body"),
        (json!({ "days": [{ "day_number": 1, "title": "Nieuw" }], "assignments": [{ "assignment_id": uuid::Uuid::now_v7(), "title": "x" }] }), "unknown_assignment"),
        (json!({ "days": [{ "day_number": 1, "title": "   " }] }), "required"),
        (json!({ "days": [{ "day_number": 1, "title": "a\u{0}b" }] }), "invalid_text"),
    ] {
        let reply = app.call(reqwest::Method::PATCH, &path, Some(&admin.token), Some(bad.clone())).await;
        assert!(reply.status == 422 || reply.status == 400, "{bad}: {}", reply.body);
        assert_eq!(reply.body["code"], code, "{bad}: {}", reply.body);
    }
    let unchanged = app.get(&format!("/v1/cohorts/{cohort}"), &admin.token).await.expect(200);
    assert_eq!(unchanged["days"], before["days"]);

    sanne.pull().await.unwrap();
    let changed = app.call(reqwest::Method::PATCH, &path, Some(&admin.token), Some(change)).await.expect(200);
    let day1 = &changed["days"][0];
    assert_eq!(day1["description"], "Start in het buurthuis van Voorbeeldstad.");
    assert_eq!(day1["title"], before["days"][0]["title"], "a text left out stays");
    // Sanne's app gets both at its next pull.
    sanne.pull().await.unwrap();
    let first_id = first["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(sanne.view("assignments", first_id).unwrap()["title"], "Loop een dag mee met de wijkagent");
    let day_ids = sanne.ids("cohort_days");
    assert!(day_ids.iter().any(|id| sanne.view("cohort_days", *id).unwrap()["description"] == "Start in het buurthuis van Voorbeeldstad."));
});

db_test!(async fn a_template_change_reaches_new_cohorts_only(app) {
    let (_, cohort, _) = phone(&app, "Sanne").await;
    let admin = demo_admin(&app).await;
    let programme = programme_id(&app, &admin).await;
    let template = app.get(&format!("/v1/programmes/{programme}"), &admin.token).await.expect(200);
    let path = format!("/v1/programmes/{programme}/texts");
    let change = json!({ "days": [{ "day_number": 2, "title": "Werken in een netwerk (Voorbeeldstad)" }] });
    let trainer = new_trainer(&app, &admin, "noor@veldwerk.test").await;
    app.call(reqwest::Method::PATCH, &path, Some(&trainer.token), Some(change.clone())).await.expect_error(403, "forbidden");
    let changed = app.call(reqwest::Method::PATCH, &path, Some(&admin.token), Some(change)).await.expect(200);
    assert_eq!(changed["days"][1]["title"], "Werken in een netwerk (Voorbeeldstad)");
    assert_eq!(changed["days"][0], template["days"][0]);
    let existing = app.get(&format!("/v1/cohorts/{cohort}"), &admin.token).await.expect(200);
    assert_ne!(existing["days"][1]["title"], "Werken in een netwerk (Voorbeeldstad)", "an existing cohort keeps its own");
    let (_, new_cohort) = organisation_with_cohort_from(&app, &admin, &trainer, "Testdorp", date("2027-09-06")).await;
    let created = app.get(&format!("/v1/cohorts/{new_cohort}"), &admin.token).await.expect(200);
    assert_eq!(created["days"][1]["title"], "Werken in een netwerk (Voorbeeldstad)");
});

db_test!(async fn admins_list_their_staff_and_no_one_else_does(app) {
    let admin = demo_admin(&app).await;
    let trainer = new_trainer(&app, &admin, "noor@veldwerk.test").await;
    let staff = app.get("/v1/users", &admin.token).await.expect(200);
    let emails: Vec<&str> = staff.as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert!(emails.contains(&"noor@veldwerk.test") && emails.contains(&"admin@veldwerk.test"), "{emails:?}");
    assert!(staff.as_array().unwrap().iter().all(|u| u["role"] != "participant"));
    app.get("/v1/users", &trainer.token).await.expect_error(403, "forbidden");
});
