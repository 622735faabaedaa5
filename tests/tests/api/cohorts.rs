//! Cohorts: creation from the programme, validation, schedule changes across DST, members, roles.

use serde_json::json;
use veldwerk_tests::db_test;

use crate::fixtures::{
    date, demo_admin, demo_cohort, demo_trainer, new_trainer, participant, programme_id, six_days,
};

db_test!(async fn a_trainer_creates_a_cohort_from_the_programme_and_trains_it(app) {
    let admin = demo_admin(&app).await;
    let trainer = demo_trainer(&app).await;
    let organisations = app.get("/v1/organisations", &trainer.token).await.expect(200);
    let organisation_id = organisations[0]["id"].as_str().unwrap();
    let created = app
        .post(
            "/v1/cohorts",
            Some(&trainer.token),
            json!({
                "organisation_id": organisation_id,
                "programme_id": programme_id(&app, &trainer).await,
                "name": "Groep 2",
                "days": six_days(date("2027-01-12")),
            }),
        )
        .await
        .expect(201);
    assert_eq!(created["time_zone"], "Europe/Amsterdam", "the default zone");
    assert_eq!(created["days"].as_array().unwrap().len(), 6);
    assert_eq!(created["assignments"].as_array().unwrap().len(), 10);
    // 12 January 2027, 09:30 in Amsterdam is 08:30 UTC (winter time).
    assert_eq!(created["days"][0]["starts_at_utc"], "2027-01-12T08:30:00+00:00");
    let id = created["id"].as_str().unwrap();

    let members = app.get(&format!("/v1/cohorts/{id}/members"), &admin.token).await.expect(200);
    assert_eq!(members[0]["user_id"], trainer.user_id.as_str());
    assert_eq!(members[0]["role"], "trainer");
    assert_eq!(members[0]["email"], "trainer@veldwerk.test", "staff see e-mail addresses");
    let listed = app.get("/v1/cohorts", &trainer.token).await.expect(200);
    assert!(listed.as_array().unwrap().iter().any(|c| c["id"] == id));
});

db_test!(async fn cohort_schedules_are_validated(app) {
    let admin = demo_admin(&app).await;
    let organisations = app.get("/v1/organisations", &admin.token).await.expect(200);
    let base = json!({
        "organisation_id": organisations[0]["id"],
        "programme_id": programme_id(&app, &admin).await,
        "name": "Groep 3",
        "days": six_days(date("2027-01-12")),
    });
    let with = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut body = base.clone();
        change(&mut body);
        body
    };
    let cases = [
        ("invalid_schedule", with(&|b| { b["days"].as_array_mut().unwrap().pop(); })),
        ("invalid_schedule", with(&|b| b["days"][2]["date"] = json!("2027-01-01"))),
        ("invalid_schedule", with(&|b| b["days"][0]["ends_at"] = json!("08:00:00"))),
        ("invalid_schedule", with(&|b| b["days"][1]["day_number"] = json!(1))),
        ("invalid_time_zone", with(&|b| b["time_zone"] = json!("Europe/Atlantis"))),
    ];
    for (code, body) in cases {
        app.post("/v1/cohorts", Some(&admin.token), body).await.expect_error(422, code);
    }
    app.post("/v1/cohorts", Some(&admin.token), with(&|b| b["days"][0]["date"] = json!("2027-02-30")))
        .await
        .expect_error(400, "invalid_body");
    app.post("/v1/cohorts", Some(&admin.token), with(&|b| b["organisation_id"] = json!("not-a-uuid")))
        .await
        .expect_error(400, "invalid_body");
    app.post("/v1/cohorts", Some(&admin.token), with(&|b| b["programme_id"] = json!(uuid::Uuid::now_v7())))
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        app.get("/v1/cohorts", &admin.token).await.expect(200).as_array().unwrap().len(),
        1,
        "no invalid cohort was stored"
    );
});

db_test!(async fn a_schedule_change_keeps_local_times_across_summer_time(app) {
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let detail = app.get(&format!("/v1/cohorts/{cohort}"), &trainer.token).await.expect(200);
    let day5_date = detail["days"][4]["date"].as_str().unwrap().to_owned();
    // Day 6 moves to a date in summer time; its local start stays 09:30.
    let changed = app
        .patch(
            &format!("/v1/cohorts/{cohort}/schedule"),
            &trainer.token,
            json!({ "days": [{ "day_number": 6, "date": "2028-06-13", "starts_at": "10:00:00", "location": "Raadszaal" }] }),
        )
        .await
        .expect(200);
    let day6 = &changed["days"][5];
    assert_eq!(day6["date"], "2028-06-13");
    assert_eq!(day6["location"], "Raadszaal");
    assert_eq!(day6["starts_at_utc"], "2028-06-13T08:00:00+00:00", "10:00 in Amsterdam summer time");
    assert_eq!(changed["days"][4]["date"], day5_date.as_str(), "other days are unchanged");
    let harvest = changed["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "harvest_presentation")
        .unwrap();
    assert_eq!(harvest["due_at"], "2028-06-13T08:00:00+00:00", "deadlines follow the schedule");
    // Stored, not just echoed.
    let reread = app.get(&format!("/v1/cohorts/{cohort}"), &trainer.token).await.expect(200);
    assert_eq!(reread["days"][5]["starts_at_utc"], "2028-06-13T08:00:00+00:00");

    app.patch(
        &format!("/v1/cohorts/{cohort}/schedule"),
        &trainer.token,
        json!({ "days": [{ "day_number": 2, "date": "2020-01-01" }] }),
    )
    .await
    .expect_error(422, "invalid_schedule");
    app.patch(
        &format!("/v1/cohorts/{cohort}/schedule"),
        &trainer.token,
        json!({ "time_zone": "America/Curacao" }),
    )
    .await
    .expect(200);
    let moved = app.get(&format!("/v1/cohorts/{cohort}"), &trainer.token).await.expect(200);
    assert_eq!(moved["time_zone"], "America/Curacao");
    assert_eq!(moved["days"][5]["starts_at_utc"], "2028-06-13T14:00:00+00:00", "10:00 at UTC-4");
});

db_test!(async fn participants_read_but_do_not_manage_their_cohort(app) {
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let sanne = participant(&app, &trainer, &cohort, "Sanne").await;
    app.get(&format!("/v1/cohorts/{cohort}"), &sanne.token).await.expect(200);
    let denied = [
        app.patch(&format!("/v1/cohorts/{cohort}/schedule"), &sanne.token, json!({ "days": [] })).await,
        app.post(&format!("/v1/cohorts/{cohort}/invites"), Some(&sanne.token), json!({})).await,
        app.get(&format!("/v1/cohorts/{cohort}/invites"), &sanne.token).await,
        app.post(&format!("/v1/cohorts/{cohort}/trainers"), Some(&sanne.token), json!({ "user_id": trainer.user_id })).await,
        app.get("/v1/programmes", &sanne.token).await,
        app.post("/v1/organisations", Some(&sanne.token), json!({ "name": "X" })).await,
        app.post("/v1/cohorts", Some(&sanne.token), json!({
            "organisation_id": uuid::Uuid::now_v7(), "programme_id": uuid::Uuid::now_v7(), "name": "X", "days": []
        })).await,
    ];
    for reply in denied {
        reply.expect_error(403, "forbidden");
    }
    let organisations = app.get("/v1/organisations", &sanne.token).await.expect(200);
    assert_eq!(organisations.as_array().unwrap().len(), 1, "a participant sees their own municipality");
});

db_test!(async fn a_trainer_is_added_to_a_cohort_and_then_sees_it(app) {
    let admin = demo_admin(&app).await;
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let second = new_trainer(&app, &admin, "tweede@veldwerk.test").await;
    app.get(&format!("/v1/cohorts/{cohort}"), &second.token).await.expect_error(404, "not_found");
    app.post(&format!("/v1/cohorts/{cohort}/trainers"), Some(&trainer.token), json!({ "user_id": second.user_id }))
        .await
        .expect(204);
    app.post(&format!("/v1/cohorts/{cohort}/trainers"), Some(&admin.token), json!({ "user_id": second.user_id }))
        .await
        .expect(204);
    app.get(&format!("/v1/cohorts/{cohort}"), &second.token).await.expect(200);
    let sanne = participant(&app, &second, &cohort, "Sanne").await;
    app.post(&format!("/v1/cohorts/{cohort}/trainers"), Some(&admin.token), json!({ "user_id": sanne.user_id }))
        .await
        .expect_error(422, "not_a_trainer");
});

db_test!(async fn only_admins_create_organisations(app) {
    let admin = demo_admin(&app).await;
    let trainer = demo_trainer(&app).await;
    let created = app
        .post("/v1/organisations", Some(&admin.token), json!({ "name": "Gemeente Nieuwdorp" }))
        .await
        .expect(201);
    let read = app
        .get(&format!("/v1/organisations/{}", created["id"].as_str().unwrap()), &trainer.token)
        .await
        .expect(200);
    assert_eq!(read["name"], "Gemeente Nieuwdorp");
    app.post("/v1/organisations", Some(&trainer.token), json!({ "name": "X" }))
        .await
        .expect_error(403, "forbidden");
    app.post("/v1/organisations", Some(&admin.token), json!({ "name": "   " }))
        .await
        .expect_error(422, "required");
});

db_test!(async fn the_programme_is_the_customers_six_days(app) {
    let trainer = demo_trainer(&app).await;
    let id = programme_id(&app, &trainer).await;
    let programme = app.get(&format!("/v1/programmes/{id}"), &trainer.token).await.expect(200);
    assert_eq!(programme["name"], "Leertraject Urban Professional");
    assert_eq!(programme["learning_goals"].as_array().unwrap().len(), 3);
    let titles: Vec<&str> = programme["days"].as_array().unwrap().iter().map(|d| d["title"].as_str().unwrap()).collect();
    assert_eq!(titles, [
        "Samen op pad | Ik in relatie tot de ander",
        "Werken in een netwerk",
        "Kracht van het gesprek",
        "Communiceren met aandacht",
        "Samenwerken",
        "Oogsten in het nieuwe werken",
    ]);
    let interviews = programme["assignments"].as_array().unwrap().iter().filter(|a| a["kind"] == "interview").count();
    assert_eq!(interviews, 4, "an interview after days 2 to 5");
});
