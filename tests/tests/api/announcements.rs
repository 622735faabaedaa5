//! Announcements: from the trainer to the synced inbox, and read receipts back.

use serde_json::json;
use uuid::Uuid;
use veldwerk_sync_protocol::schema::linked_record_id;
use veldwerk_tests::{client::Device, db_test};

use crate::{fixtures::invite_code, sync::phone};

db_test!(async fn an_announcement_reaches_the_inbox_and_the_trainer_sees_who_read_it(app) {
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    let code = invite_code(&app, &trainer, &cohort.to_string()).await;
    let mut pieter = Device::new(&app.address, &app.enrol(&code, "Pieter").await);

    let everyone = app
        .post(
            &format!("/v1/cohorts/{cohort}/announcements"),
            Some(&trainer.token),
            json!({ "title": "Dag 2 verplaatst", "body": "We beginnen om 10:00 in het Stadskantoor." }),
        )
        .await
        .expect(201);
    assert_eq!(everyone["to_whole_cohort"], true);
    assert_eq!(everyone["recipient_ids"].as_array().unwrap().len(), 2);
    let only_pieter = app
        .post(
            &format!("/v1/cohorts/{cohort}/announcements"),
            Some(&trainer.token),
            json!({ "title": "Jouw interview", "body": "Stuur je vragen vooraf.", "recipient_ids": [pieter.user_id] }),
        )
        .await
        .expect(201);
    let (everyone_id, pieter_id): (Uuid, Uuid) = (
        everyone["id"].as_str().unwrap().parse().unwrap(),
        only_pieter["id"].as_str().unwrap().parse().unwrap(),
    );

    sanne.pull().await.unwrap();
    pieter.pull().await.unwrap();
    assert_eq!(sanne.ids("announcements"), [everyone_id]);
    let mut inbox = pieter.ids("announcements");
    inbox.sort();
    let mut expected = vec![everyone_id, pieter_id];
    expected.sort();
    assert_eq!(inbox, expected);
    assert_eq!(sanne.view("announcements", everyone_id).unwrap()["title"], "Dag 2 verplaatst");

    // Sanne reads it; she cannot mark one that is not in her inbox.
    let read = linked_record_id("announcement_reads", sanne.user_id, everyone_id);
    sanne.write("announcement_reads", read, Some(cohort), json!({ "announcement_id": everyone_id, "read_at": "2027-01-12T08:00:00Z" }));
    let not_mine = linked_record_id("announcement_reads", sanne.user_id, pieter_id);
    sanne.write("announcement_reads", not_mine, Some(cohort), json!({ "announcement_id": pieter_id, "read_at": "2027-01-12T08:00:00Z" }));
    sanne.sync().await.unwrap();
    assert_eq!(sanne.rejected.len(), 1);
    assert_eq!(sanne.rejected[0].1.code.as_deref(), Some("unknown_announcement"));
    assert_eq!(
        sanne.view("announcement_reads", read).unwrap()["read_at"],
        "2027-01-12T08:00:00Z"
    );

    let listed = app
        .get(&format!("/v1/cohorts/{cohort}/announcements"), &trainer.token)
        .await
        .expect(200);
    let listed_everyone = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == everyone_id.to_string())
        .unwrap();
    assert_eq!(listed_everyone["read_by"], json!([sanne.user_id]));

    // Participants do not publish; recipients must be in the cohort.
    app.post(
        &format!("/v1/cohorts/{cohort}/announcements"),
        Some(sanne.debug_token()),
        json!({ "title": "x", "body": "y" }),
    )
    .await
    .expect_error(403, "forbidden");
    app.post(
        &format!("/v1/cohorts/{cohort}/announcements"),
        Some(&trainer.token),
        json!({ "title": "x", "body": "y", "recipient_ids": [trainer.user_id] }),
    )
    .await
    .expect_error(422, "unknown_recipient");
});
