//! Nobody reads or changes data outside their scope, through any endpoint: not another
//! organisation's, not another provider's, not a cohort they do not belong to.

use reqwest::Method;
use serde_json::{Value, json};
use veldwerk_tests::{TestApp, db_test};

use crate::fixtures::{
    User, demo_admin, demo_cohort, demo_trainer, new_trainer, organisation_with_cohort,
    other_provider, participant, programme_id,
};

/// Every endpoint that names a cohort, an organisation or a programme, with a body that would
/// succeed for someone in scope.
fn scoped_requests(
    cohort: &str,
    invite: &str,
    organisation: &str,
    programme: &str,
    trainer_id: &str,
) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (
            Method::GET,
            format!("/v1/organisations/{organisation}"),
            None,
        ),
        (Method::GET, format!("/v1/programmes/{programme}"), None),
        (Method::GET, format!("/v1/cohorts/{cohort}"), None),
        (
            Method::PATCH,
            format!("/v1/cohorts/{cohort}/schedule"),
            Some(json!({ "days": [{ "day_number": 1, "location": "Elders" }] })),
        ),
        (Method::GET, format!("/v1/cohorts/{cohort}/members"), None),
        (
            Method::DELETE,
            format!("/v1/cohorts/{cohort}/members/{trainer_id}"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/cohorts/{cohort}/trainers"),
            Some(json!({ "user_id": trainer_id })),
        ),
        (
            Method::POST,
            format!("/v1/cohorts/{cohort}/invites"),
            Some(json!({ "count": 1 })),
        ),
        (Method::GET, format!("/v1/cohorts/{cohort}/invites"), None),
        (
            Method::POST,
            format!("/v1/cohorts/{cohort}/announcements"),
            Some(json!({ "title": "Indringer", "body": "Niet voor jou" })),
        ),
        (
            Method::GET,
            format!("/v1/cohorts/{cohort}/announcements"),
            None,
        ),
        (
            Method::DELETE,
            format!("/v1/cohorts/{cohort}/invites/{invite}"),
            None,
        ),
        (
            Method::POST,
            "/v1/cohorts".to_owned(),
            Some(json!({
                "organisation_id": organisation,
                "programme_id": programme,
                "name": "Indringer",
                "days": crate::fixtures::six_days(crate::fixtures::date("2027-03-02")),
            })),
        ),
    ]
}

/// Asserts every scoped request by `outsider` is answered as if the target did not exist.
async fn assert_all_hidden(
    app: &TestApp,
    who: &str,
    outsider: &User,
    requests: &[(Method, String, Option<Value>)],
) {
    for (method, path, body) in requests {
        let reply = app
            .call(method.clone(), path, Some(&outsider.token), body.clone())
            .await;
        let allowed = if who.starts_with("participant") {
            // Participants are stopped by their role before scope is even looked at.
            [403, 404].contains(&reply.status)
        } else {
            reply.status == 404
        };
        assert!(
            allowed,
            "{who}: {method} {path} answered {} {}",
            reply.status, reply.body
        );
    }
}

db_test!(async fn no_one_reaches_another_organisations_or_providers_data(app) {
    // Provider A (the demo): organisation 1 with the demo cohort, organisation 2 with its own
    // cohort and trainer.
    let admin_a = demo_admin(&app).await;
    let trainer_a1 = demo_trainer(&app).await;
    let cohort_a1 = demo_cohort(&app, &trainer_a1).await;
    let participant_a1 = participant(&app, &trainer_a1, &cohort_a1, "Deelnemer A1").await;
    let trainer_a2 = new_trainer(&app, &admin_a, "trainer2@veldwerk.test").await;
    let (organisation_a2, cohort_a2) =
        organisation_with_cohort(&app, &admin_a, &trainer_a2, "Gemeente Tweede").await;
    let participant_a2 = participant(&app, &trainer_a2, &cohort_a2, "Deelnemer A2").await;
    let invite_a2 = app
        .post(&format!("/v1/cohorts/{cohort_a2}/invites"), Some(&trainer_a2.token), json!({}))
        .await
        .expect(201)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Provider B: its own admin, trainer, organisation, cohort and participant.
    let admin_b = other_provider(&app).await;
    let trainer_b = new_trainer(&app, &admin_b, "trainer@andere.test").await;
    let (organisation_b, cohort_b) =
        organisation_with_cohort(&app, &admin_b, &trainer_b, "Gemeente Elders").await;
    let participant_b = participant(&app, &trainer_b, &cohort_b, "Deelnemer B").await;
    let programme_b = programme_id(&app, &admin_b).await;
    let programme_a = programme_id(&app, &admin_a).await;
    let invite_b = app
        .post(&format!("/v1/cohorts/{cohort_b}/invites"), Some(&trainer_b.token), json!({}))
        .await
        .expect(201)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before_b = app.get(&format!("/v1/cohorts/{cohort_b}"), &admin_b.token).await.expect(200);

    let provider_b_data = scoped_requests(&cohort_b, &invite_b, &organisation_b, &programme_b, &trainer_b.user_id);
    for (who, outsider) in [
        ("admin A", &admin_a),
        ("trainer A1", &trainer_a1),
        ("trainer A2", &trainer_a2),
        ("participant A1", &participant_a1),
    ] {
        assert_all_hidden(&app, who, outsider, &provider_b_data).await;
    }

    // Inside provider A: organisation 2's cohort is hidden from organisation 1's trainer and
    // participant, and from provider B entirely.
    let cohort_a2_data: Vec<_> = scoped_requests(&cohort_a2, &invite_a2, &organisation_a2, &programme_a, &trainer_a1.user_id)
        .into_iter()
        .filter(|(_, path, _)| path.contains(&cohort_a2))
        .collect();
    for (who, outsider) in [
        ("trainer A1", &trainer_a1),
        ("participant A1", &participant_a1),
        ("admin B", &admin_b),
        ("trainer B", &trainer_b),
        ("participant B", &participant_b),
    ] {
        assert_all_hidden(&app, who, outsider, &cohort_a2_data).await;
    }
    let provider_a_data = scoped_requests(&cohort_a1, &invite_a2, &organisation_a2, &programme_a, &trainer_b.user_id);
    for (who, outsider) in [("admin B", &admin_b), ("participant B", &participant_b)] {
        assert_all_hidden(&app, who, outsider, &provider_a_data).await;
    }
    // A participant of organisation 2 cannot read organisation 1's cohort either.
    app.get(&format!("/v1/cohorts/{cohort_a1}"), &participant_a2.token)
        .await
        .expect_error(404, "not_found");

    // Lists never leak: each caller's lists hold only what is in their scope.
    let ids = |value: Value| -> Vec<String> {
        value.as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(app.get("/v1/cohorts", &admin_b.token).await.expect(200)), [cohort_b.as_str()]);
    assert_eq!(ids(app.get("/v1/cohorts", &trainer_a1.token).await.expect(200)), [cohort_a1.as_str()]);
    assert_eq!(ids(app.get("/v1/cohorts", &participant_a2.token).await.expect(200)), [cohort_a2.as_str()]);
    let admin_a_cohorts = ids(app.get("/v1/cohorts", &admin_a.token).await.expect(200));
    assert!(admin_a_cohorts.contains(&cohort_a1) && admin_a_cohorts.contains(&cohort_a2));
    assert!(!admin_a_cohorts.contains(&cohort_b));
    let filtered = app
        .get(&format!("/v1/cohorts?organisation_id={organisation_b}"), &admin_a.token)
        .await
        .expect(200);
    assert!(filtered.as_array().unwrap().is_empty());
    assert_eq!(
        ids(app.get("/v1/organisations", &admin_b.token).await.expect(200)),
        [organisation_b.as_str()]
    );
    assert!(!ids(app.get("/v1/organisations", &admin_a.token).await.expect(200)).contains(&organisation_b));
    assert_eq!(
        ids(app.get("/v1/organisations", &participant_a2.token).await.expect(200)),
        [organisation_a2.as_str()]
    );
    assert_eq!(ids(app.get("/v1/programmes", &admin_b.token).await.expect(200)), [programme_b.as_str()]);

    // Another provider's trainer cannot be put on one's own cohort.
    app.post(&format!("/v1/cohorts/{cohort_a1}/trainers"), Some(&admin_a.token), json!({ "user_id": trainer_b.user_id }))
        .await
        .expect_error(404, "not_found");

    // And all those attempts changed nothing.
    let after_b = app.get(&format!("/v1/cohorts/{cohort_b}"), &admin_b.token).await.expect(200);
    assert_eq!(before_b, after_b);
    let invites_b = app.get(&format!("/v1/cohorts/{cohort_b}/invites"), &admin_b.token).await.expect(200);
    assert!(invites_b.as_array().unwrap().iter().all(|i| i["status"] != "revoked"));
    assert_eq!(invites_b.as_array().unwrap().len(), 2, "no invites were added by outsiders");
    let members_b = app.get(&format!("/v1/cohorts/{cohort_b}/members"), &admin_b.token).await.expect(200);
    assert_eq!(members_b.as_array().unwrap().len(), 2, "trainer B and participant B only");
});
