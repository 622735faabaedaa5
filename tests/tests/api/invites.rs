//! Invites: creation, redemption by a participant's phone, single use, revocation, expiry.

use futures_util::future::join_all;
use serde_json::json;
use veldwerk_tests::db_test;

use crate::fixtures::{demo_cohort, demo_trainer, invite_code};

db_test!(async fn a_participant_enrols_with_an_invite_and_reads_their_schedule(app) {
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let code = invite_code(&app, &trainer, &cohort).await;
    // Typed on a phone: lower case with a dash and spaces.
    let typed = format!(" {}-{} ", &code[..4].to_lowercase(), &code[4..]);
    let session = app
        .post("/v1/auth/enrol", None, json!({ "invite_code": typed, "display_name": "  Sanne  ", "device_name": "Pixel 8" }))
        .await
        .expect(201);
    assert_eq!(session["user"]["role"], "participant");
    assert_eq!(session["user"]["display_name"], "Sanne");
    let token = session["access_token"].as_str().unwrap();

    let cohorts = app.get("/v1/cohorts", token).await.expect(200);
    assert_eq!(cohorts.as_array().unwrap().len(), 1);
    let detail = app.get(&format!("/v1/cohorts/{cohort}"), token).await.expect(200);
    let days = detail["days"].as_array().unwrap();
    assert_eq!(days.len(), 6);
    assert_eq!(days[0]["title"], "Samen op pad | Ik in relatie tot de ander");
    assert_eq!(days[5]["title"], "Oogsten in het nieuwe werken");
    let assignments = detail["assignments"].as_array().unwrap();
    let harvest = assignments
        .iter()
        .find(|a| a["kind"] == "harvest_presentation")
        .expect("the Day 6 harvest presentation is an assignment");
    assert_eq!(harvest["due_day"], 6);
    assert_eq!(harvest["due_at"], days[5]["starts_at_utc"], "due at the start of day 6");
    let first = &assignments[0];
    assert_eq!(first["title"], "Opdracht uitvoeren");
    assert_eq!(first["due_at"], days[1]["starts_at_utc"]);

    let members = app
        .get(&format!("/v1/cohorts/{cohort}/members"), token)
        .await
        .expect(200);
    let sanne = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["display_name"] == "Sanne")
        .expect("the participant is a member");
    assert_eq!(sanne["role"], "participant");
    assert!(
        members.as_array().unwrap().iter().all(|m| m["email"].is_null()),
        "participants do not see email addresses"
    );

    let invites = app
        .get(&format!("/v1/cohorts/{cohort}/invites"), &trainer.token)
        .await
        .expect(200);
    let redeemed = invites
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["code"] == code.as_str())
        .unwrap();
    assert_eq!(redeemed["status"], "redeemed");
    assert_eq!(redeemed["redeemed_by"], session["user"]["id"]);
});

db_test!(async fn an_invite_works_once(app) {
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let code = invite_code(&app, &trainer, &cohort).await;
    app.enrol(&code, "Eerste").await;
    app.post("/v1/auth/enrol", None, json!({ "invite_code": code, "display_name": "Tweede" }))
        .await
        .expect_error(409, "invite_already_used");
    app.post("/v1/auth/enrol", None, json!({ "invite_code": "ZZZZZZZZ", "display_name": "Derde" }))
        .await
        .expect_error(404, "not_found");
});

db_test!(async fn concurrent_redemptions_of_one_invite_enrol_exactly_one_participant(app) {
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let code = invite_code(&app, &trainer, &cohort).await;
    let attempts = (0..6).map(|n| {
        app.post("/v1/auth/enrol", None, json!({ "invite_code": code, "display_name": format!("P{n}") }))
    });
    let replies = join_all(attempts).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 1, "statuses: {:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(replies.iter().all(|r| r.status == 201 || r.status == 409));
    let members = app
        .get(&format!("/v1/cohorts/{cohort}/members"), &trainer.token)
        .await
        .expect(200);
    let participants = members.as_array().unwrap().iter().filter(|m| m["role"] == "participant").count();
    assert_eq!(participants, 1);
});

db_test!(async fn a_revoked_invite_cannot_be_redeemed_and_a_redeemed_one_cannot_be_revoked(app) {
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let created = app
        .post(&format!("/v1/cohorts/{cohort}/invites"), Some(&trainer.token), json!({ "count": 2, "label": "groep 1" }))
        .await
        .expect(201);
    let (first, second) = (&created[0], &created[1]);
    assert_eq!(first["label"], "groep 1");
    assert_eq!(first["status"], "pending");
    app.delete(&format!("/v1/cohorts/{cohort}/invites/{}", first["id"].as_str().unwrap()), &trainer.token)
        .await
        .expect(204);
    app.post("/v1/auth/enrol", None, json!({ "invite_code": first["code"], "display_name": "X" }))
        .await
        .expect_error(410, "invite_revoked");
    app.enrol(second["code"].as_str().unwrap(), "Y").await;
    app.delete(&format!("/v1/cohorts/{cohort}/invites/{}", second["id"].as_str().unwrap()), &trainer.token)
        .await
        .expect_error(409, "invite_already_used");
});

db_test!(async fn an_expired_invite_is_refused(app) with |config| {
    config.invite_ttl_days = 0;
}; {
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let code = invite_code(&app, &trainer, &cohort).await;
    app.post("/v1/auth/enrol", None, json!({ "invite_code": code, "display_name": "Laat" }))
        .await
        .expect_error(410, "invite_expired");
});

db_test!(async fn invite_counts_are_bounded(app) {
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    for count in [0, 201] {
        app.post(&format!("/v1/cohorts/{cohort}/invites"), Some(&trainer.token), json!({ "count": count }))
            .await
            .expect_error(422, "invalid_count");
    }
});
