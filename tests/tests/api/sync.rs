//! The sync protocol against the real server: devices offline and online, conflicts, faults,
//! scope, and convergence.

use std::str::FromStr;

use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_sync_protocol::{
    Hlc, Mutation, MutationStatus,
    schema::{assignment_record_id, cohort_record_id},
};
use veldwerk_tests::{TestApp, client::Device, db_test};

use crate::fixtures::{User, demo_admin, demo_cohort, demo_trainer, invite_code, new_trainer};

/// A participant's phone, enrolled in the demo cohort; with the cohort id and the trainer.
pub async fn phone(app: &TestApp, name: &str) -> (Device, Uuid, User) {
    let trainer = demo_trainer(app).await;
    let cohort = demo_cohort(app, &trainer).await;
    let code = invite_code(app, &trainer, &cohort).await;
    let session = app.enrol(&code, name).await;
    (
        Device::new(&app.address, &session),
        Uuid::from_str(&cohort).unwrap(),
        trainer,
    )
}

/// A second device of the same participant, linked with a link code.
pub async fn tablet(app: &TestApp, phone: &Device, phone_session_token: &str) -> Device {
    let link = app
        .post(
            "/v1/me/device-link-codes",
            Some(phone_session_token),
            json!({}),
        )
        .await
        .expect(201);
    let session = app
        .post(
            "/v1/auth/link-device",
            None,
            json!({ "link_code": link["code"], "device_name": "tablet" }),
        )
        .await
        .expect(201);
    let tablet = Device::new(&app.address, &session);
    assert_eq!(tablet.user_id, phone.user_id);
    tablet
}

fn interview(notes: &str) -> Value {
    json!({ "name_consent": false, "status": "draft", "notes": notes, "place": "Wijkcentrum De Boog" })
}

/// Everything the trainer's device sees of a collection, as the server holds it.
async fn trainer_device(app: &TestApp) -> Device {
    let session = app
        .login("trainer@veldwerk.test", "demo-trainer-wachtwoord")
        .await;
    Device::new(&app.address, &session)
}

db_test!(async fn a_first_pull_brings_the_cohort_schedule_and_assignments(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    phone.pull().await.unwrap();
    assert_eq!(phone.ids("cohorts"), [cohort]);
    assert_eq!(phone.ids("cohort_days").len(), 6);
    assert_eq!(phone.ids("assignments").len(), 10);
    let harvest = phone
        .ids("assignments")
        .into_iter()
        .map(|id| phone.view("assignments", id).unwrap())
        .find(|a| a["kind"] == "harvest_presentation")
        .unwrap();
    assert_eq!(harvest["due_day"], 6);
    // A second pull from the cursor brings nothing new.
    let before = phone.replica();
    assert!(!phone.pull_page(None).await.unwrap());
    assert_eq!(phone.replica(), before);
});

db_test!(async fn an_interview_recorded_offline_arrives_once_and_the_trainer_sees_it(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let id = Uuid::now_v7();
    phone.write("interviews", id, Some(cohort), interview("eerste gesprek"));
    phone.write("interviews", id, None, json!({ "insights": "luisteren werkt" }));
    phone.sync().await.unwrap();
    assert!(phone.outbox.is_empty() && phone.rejected.is_empty(), "{:?}", phone.rejected);
    let stored = phone.view("interviews", id).unwrap();
    assert_eq!(stored["notes"], "eerste gesprek");
    assert_eq!(stored["insights"], "luisteren werkt");

    let mut trainer = trainer_device(&app).await;
    trainer.pull().await.unwrap();
    assert_eq!(trainer.ids("interviews"), [id]);
    assert_eq!(trainer.view("interviews", id), phone.view("interviews", id));
});

db_test!(async fn two_devices_edit_one_interview_offline_and_converge_with_the_conflict_visible(app) {
    for tablet_first in [false, true] {
        let (mut phone, cohort, _) = phone(&app, "Sanne").await;
        let token = phone.debug_token().to_owned();
        let mut tablet = tablet(&app, &phone, &token).await;
        let id = Uuid::now_v7();
        phone.write("interviews", id, Some(cohort), interview("basis"));
        phone.sync().await.unwrap();
        tablet.pull().await.unwrap();

        // Both offline: the phone edits notes and place, the tablet (later) edits notes and insights.
        phone.write("interviews", id, None, json!({ "notes": "telefoon", "place": "Buurthuis" }));
        std::thread::sleep(std::time::Duration::from_millis(5));
        tablet.write("interviews", id, None, json!({ "notes": "tablet", "insights": "inzicht" }));

        if tablet_first {
            tablet.sync().await.unwrap();
            phone.sync().await.unwrap();
        } else {
            phone.sync().await.unwrap();
            tablet.sync().await.unwrap();
        }
        phone.pull().await.unwrap();
        tablet.pull().await.unwrap();

        let on_phone = phone.view("interviews", id).unwrap();
        assert_eq!(on_phone, tablet.view("interviews", id).unwrap(), "both devices converge");
        assert_eq!(on_phone["notes"], "tablet", "the later edit of a field wins");
        assert_eq!(on_phone["place"], "Buurthuis", "edits of different fields both survive");
        assert_eq!(on_phone["insights"], "inzicht");
        let record = &phone.server[&("interviews".to_owned(), id)];
        let conflict = record
            .conflicts
            .iter()
            .find(|c| c.field == "notes")
            .expect("the overruled value is kept for the owner");
        assert_eq!(conflict.lost_value, "telefoon");
        assert_eq!(conflict.kept_value, "tablet");
        assert_eq!(phone.replica(), tablet.replica());
    }
});

db_test!(async fn a_lost_answer_and_replayed_or_reordered_batches_change_nothing(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let ids: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
    for (n, id) in ids.iter().enumerate() {
        phone.write("interviews", *id, Some(cohort), interview(&format!("gesprek {n}")));
    }
    let batch = phone.outbox.clone();
    // The server commits, but the answer is lost: the device still has everything in its outbox.
    let first = phone.send_batch(&batch).await.unwrap();
    assert!(first.results.iter().all(|r| r.status == MutationStatus::Applied));
    // Retried, replayed twice more, and sent in two halves out of order: the same results.
    let again = phone.send_batch(&batch).await.unwrap();
    assert_eq!(again.results, first.results);
    phone.send_batch(&batch[3..]).await.unwrap();
    phone.send_batch(&batch[..3]).await.unwrap();
    phone.sync().await.unwrap();

    let mut trainer = trainer_device(&app).await;
    trainer.pull().await.unwrap();
    let mut seen = trainer.ids("interviews");
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected, "each interview exactly once");
    // The replays did not bump versions: every interview still has the first push's version.
    let versions: std::collections::BTreeSet<i64> = ids
        .iter()
        .map(|id| trainer.server[&("interviews".to_owned(), *id)].version)
        .collect();
    assert_eq!(versions.len(), 1, "{versions:?}");
});

db_test!(async fn a_mutation_id_another_user_used_is_applied_as_this_users_own(app) {
    // Sanne's phone and tablet cross on her notes, so her stored result carries both texts.
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    let token = sanne.debug_token().to_owned();
    let mut tablet = tablet(&app, &sanne, &token).await;
    let hers = Uuid::now_v7();
    sanne.write("interviews", hers, Some(cohort), interview("basis"));
    sanne.sync().await.unwrap();
    tablet.pull().await.unwrap();
    tablet.write("interviews", hers, None, json!({ "notes": "wethouder wil niet" }));
    tablet.sync().await.unwrap();
    sanne.write("interviews", hers, None, json!({ "notes": "Sannes geheime notitie" }));
    let crossing = sanne.outbox.clone();
    let answer = sanne.send_batch(&crossing).await.unwrap();
    assert!(!answer.results[0].conflicts.is_empty(), "{answer:?}");

    // Pieter, in the same cohort, pushes his own interview under the same mutation id.
    let code = invite_code(&app, &trainer, &cohort.to_string()).await;
    let mut pieter = Device::new(&app.address, &app.enrol(&code, "Pieter").await);
    let his = Uuid::now_v7();
    pieter.write("interviews", his, Some(cohort), interview("Pieters gesprek"));
    pieter.outbox[0].id = crossing[0].id;
    let batch = pieter.outbox.clone();
    let result = pieter.send_batch(&batch).await.unwrap();
    let text = serde_json::to_string(&result).unwrap();
    assert!(!text.contains("Sannes") && !text.contains("wethouder"), "{text}");
    assert_eq!(result.results[0].status, MutationStatus::Applied);
    assert!(result.results[0].conflicts.is_empty());
    // His interview was written; a replay of his answers his result, hers still answers hers.
    pieter.outbox.clear();
    pieter.pull().await.unwrap();
    assert_eq!(pieter.view("interviews", his).unwrap()["notes"], "Pieters gesprek");
    assert!(pieter.view("interviews", hers).is_none());
    assert_eq!(pieter.send_batch(&batch).await.unwrap().results, result.results);
    assert_eq!(sanne.send_batch(&crossing).await.unwrap().results, answer.results);
});

db_test!(async fn a_rejected_mutation_does_not_block_the_ones_after_it(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let good = Uuid::now_v7();
    phone.write("interviews", Uuid::now_v7(), Some(cohort), json!({ "status": "draft" }));
    phone.write("interviews", Uuid::now_v7(), Some(cohort), json!({ "name_consent": false, "status": "weird" }));
    phone.write("interviews", Uuid::now_v7(), Some(cohort), json!({ "name_consent": false, "status": "draft", "interviewee_name": "Jan" }));
    phone.write("interviews", Uuid::now_v7(), Some(cohort), json!({ "name_consent": false, "status": "draft", "colour": "red" }));
    phone.write("interviews", Uuid::now_v7(), None, interview("zonder cohort"));
    phone.write("bananas", Uuid::now_v7(), Some(cohort), json!({}));
    phone.write("interviews", Uuid::now_v7(), Some(Uuid::now_v7()), interview("ander cohort"));
    let unknown_assignment = Uuid::now_v7();
    let user = phone.user_id;
    phone.write("assignment_work", assignment_record_id(user, unknown_assignment), Some(cohort), json!({ "assignment_id": unknown_assignment, "done": true }));
    phone.write("interviews", good, Some(cohort), interview("goed"));
    phone.sync().await.unwrap();
    let codes: Vec<&str> = phone
        .rejected
        .iter()
        .map(|(_, result)| result.code.as_deref().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "missing_field",
            "invalid_field",
            "consent_required",
            "unknown_field",
            "cohort_required",
            "unknown_collection",
            "forbidden",
            "unknown_assignment",
        ]
    );
    assert!(phone.rejected.iter().all(|(_, r)| r.message.as_ref().is_some_and(|m| !m.is_empty())));
    assert!(phone.outbox.is_empty(), "the device is never stuck");
    assert_eq!(phone.ids("interviews"), [good]);
});

db_test!(async fn assignment_work_from_two_devices_lands_in_one_record(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let mut tablet = tablet(&app, &phone, &token).await;
    phone.pull().await.unwrap();
    let assignment = phone.ids("assignments")[0];
    let id = assignment_record_id(phone.user_id, assignment);
    phone.write("assignment_work", id, Some(cohort), json!({ "assignment_id": assignment, "done": false, "applied": "op kantoor" }));
    tablet.write("assignment_work", id, Some(cohort), json!({ "assignment_id": assignment, "done": true, "reflection": "ging goed" }));
    phone.sync().await.unwrap();
    tablet.sync().await.unwrap();
    phone.pull().await.unwrap();
    assert!(phone.rejected.is_empty() && tablet.rejected.is_empty());
    let work = phone.view("assignment_work", id).unwrap();
    assert_eq!(work["done"], true);
    assert_eq!(work["applied"], "op kantoor");
    assert_eq!(work["reflection"], "ging goed");
    assert_eq!(phone.ids("assignment_work").len(), 1);
    // Another id for the same assignment is refused: there is one record per assignment.
    phone.write("assignment_work", Uuid::now_v7(), Some(cohort), json!({ "assignment_id": assignment, "done": true }));
    phone.sync().await.unwrap();
    assert_eq!(phone.rejected[0].1.code.as_deref(), Some("invalid_record_id"));
    // The harvest and profile singletons work the same way.
    let harvest = cohort_record_id("harvests", phone.user_id, cohort);
    phone.write("harvests", harvest, Some(cohort), json!({ "status": "draft", "outline": "1. wat ik leerde" }));
    phone.sync().await.unwrap();
    assert_eq!(phone.view("harvests", harvest).unwrap()["outline"], "1. wat ik leerde");
});

db_test!(async fn deletions_sync_as_tombstones(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let mut tablet = tablet(&app, &phone, &token).await;
    let id = Uuid::now_v7();
    phone.write("interviews", id, Some(cohort), interview("weg ermee"));
    phone.sync().await.unwrap();
    tablet.pull().await.unwrap();
    assert!(tablet.view("interviews", id).is_some());
    tablet.delete("interviews", id);
    tablet.sync().await.unwrap();
    phone.pull().await.unwrap();
    assert!(phone.view("interviews", id).is_none());
    assert!(phone.server[&("interviews".to_owned(), id)].deleted);
});

db_test!(async fn clocks_a_day_off_either_way_still_merge_predictably(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let mut tablet = tablet(&app, &phone, &token).await;
    const DAY: i64 = 86_400_000;
    phone.clock_offset_ms = DAY; // set a day ahead
    tablet.clock_offset_ms = -DAY; // a day behind
    let id = Uuid::now_v7();
    phone.write("interviews", id, Some(cohort), interview("van de toekomst"));
    phone.sync().await.unwrap();
    let stored = &phone.server[&("interviews".to_owned(), id)];
    let now_ms = chrono::Utc::now().timestamp_millis() as u64;
    assert!(
        stored.clocks["notes"].wall_ms <= now_ms + 60_000,
        "the server bounds a clock from the future"
    );
    // The tablet is a day behind, but after pulling it has seen the phone's write, so its next
    // edit of the same field is ordered after it and wins.
    tablet.pull().await.unwrap();
    tablet.write("interviews", id, None, json!({ "notes": "later bewerkt" }));
    tablet.sync().await.unwrap();
    phone.pull().await.unwrap();
    assert_eq!(phone.view("interviews", id).unwrap()["notes"], "later bewerkt");
    assert!(phone.server[&("interviews".to_owned(), id)].conflicts.is_empty(), "a sequential edit is no conflict");
});

db_test!(async fn a_participant_cannot_read_or_write_another_participants_records(app) {
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    let code = invite_code(&app, &trainer, &cohort.to_string()).await;
    let mut pieter = Device::new(&app.address, &app.enrol(&code, "Pieter").await);
    let private = Uuid::now_v7();
    sanne.write("interviews", private, Some(cohort), interview("privé"));
    sanne.sync().await.unwrap();

    pieter.pull().await.unwrap();
    assert!(pieter.ids("interviews").is_empty(), "pulls never leak another participant's records");
    pieter.write("interviews", private, Some(cohort), json!({ "notes": "overschreven" }));
    pieter.delete("interviews", private);
    pieter.sync().await.unwrap();
    assert_eq!(pieter.rejected.len(), 2);
    assert!(pieter.rejected.iter().all(|(_, r)| r.code.as_deref() == Some("forbidden")));
    sanne.pull().await.unwrap();
    assert_eq!(sanne.view("interviews", private).unwrap()["notes"], "privé");

    // A participant of another organisation's cohort sees nothing of this cohort either.
    let admin = demo_admin(&app).await;
    let other_trainer = new_trainer(&app, &admin, "t2@veldwerk.test").await;
    let (_, other_cohort) = crate::fixtures::organisation_with_cohort(&app, &admin, &other_trainer, "Gemeente Anders").await;
    let code = invite_code(&app, &other_trainer, &other_cohort).await;
    let mut outsider = Device::new(&app.address, &app.enrol(&code, "Buiten").await);
    outsider.pull().await.unwrap();
    assert!(outsider.ids("interviews").is_empty());
    assert_eq!(outsider.ids("cohorts"), [Uuid::from_str(&other_cohort).unwrap()]);
    outsider.write("interviews", Uuid::now_v7(), Some(cohort), interview("inbraak"));
    outsider.sync().await.unwrap();
    assert_eq!(outsider.rejected[0].1.code.as_deref(), Some("forbidden"));
    let mut other_trainer_device = Device::new(&app.address, &app.login("t2@veldwerk.test", "a-long-trainer-password").await);
    other_trainer_device.pull().await.unwrap();
    assert!(other_trainer_device.ids("interviews").is_empty(), "a trainer sees only cohorts they train");
});

db_test!(async fn shared_feedback_reaches_the_counterpart_and_leaves_when_unshared(app) {
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    let code = invite_code(&app, &trainer, &cohort.to_string()).await;
    let mut pieter = Device::new(&app.address, &app.enrol(&code, "Pieter").await);
    let feedback = Uuid::now_v7();
    sanne.write(
        "feedback_exercises",
        feedback,
        Some(cohort),
        json!({
            "direction": "given", "counterpart_user_id": pieter.user_id, "shared": true,
            "observation": "je liet mij uitpraten", "effect": "ik voelde me gehoord", "wish": "blijf dat doen"
        }),
    );
    sanne.sync().await.unwrap();
    pieter.pull().await.unwrap();
    assert_eq!(pieter.ids("feedback_exercises"), [feedback]);
    // The receiver adds their reaction, but may not change the rest.
    pieter.write("feedback_exercises", feedback, None, json!({ "reaction": "dank je" }));
    pieter.write("feedback_exercises", feedback, None, json!({ "wish": "iets anders" }));
    pieter.sync().await.unwrap();
    assert_eq!(pieter.rejected.len(), 1);
    sanne.pull().await.unwrap();
    let seen = sanne.view("feedback_exercises", feedback).unwrap();
    assert_eq!(seen["reaction"], "dank je");
    assert_eq!(seen["wish"], "blijf dat doen");

    sanne.write("feedback_exercises", feedback, None, json!({ "shared": false }));
    sanne.sync().await.unwrap();
    pieter.pull().await.unwrap();
    assert!(pieter.ids("feedback_exercises").is_empty(), "unsharing evicts it from the counterpart");
    assert!(pieter.server.keys().all(|(c, _)| c != "feedback_exercises"));
    sanne.write("feedback_exercises", feedback, None, json!({ "shared": true }));
    sanne.sync().await.unwrap();
    pieter.pull().await.unwrap();
    assert_eq!(pieter.ids("feedback_exercises"), [feedback], "sharing again brings it back");
});

db_test!(async fn a_trainer_added_later_receives_the_cohorts_older_records(app) {
    let (mut phone, cohort, trainer) = phone(&app, "Sanne").await;
    let early = Uuid::now_v7();
    phone.write("interviews", early, Some(cohort), interview("vroeg"));
    phone.sync().await.unwrap();
    let admin = demo_admin(&app).await;
    let late = new_trainer(&app, &admin, "laat@veldwerk.test").await;
    let mut late_device = Device::new(&app.address, &app.login("laat@veldwerk.test", "a-long-trainer-password").await);
    late_device.pull().await.unwrap();
    assert!(late_device.ids("interviews").is_empty());
    let cursor_before = late_device.cursor.clone();
    app.post(&format!("/v1/cohorts/{cohort}/trainers"), Some(&trainer.token), json!({ "user_id": late.user_id }))
        .await
        .expect(204);
    late_device.pull().await.unwrap();
    assert_ne!(late_device.cursor, cursor_before);
    assert_eq!(late_device.ids("interviews"), [early], "the older record arrives after the grant");
    assert_eq!(late_device.ids("cohort_days").len(), 6);
});

db_test!(async fn small_pages_deliver_everything_exactly_once(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    for n in 0..30 {
        phone.batch_size = 7; // several versions
        phone.write("interviews", Uuid::now_v7(), Some(cohort), interview(&format!("{n}")));
    }
    phone.sync().await.unwrap();
    let mut paged = trainer_device(&app).await;
    let mut pages = 0;
    while paged.pull_page(Some(1)).await.unwrap() {
        pages += 1;
    }
    assert!(pages >= 1, "a small limit pages");
    let mut whole = trainer_device(&app).await;
    whole.pull().await.unwrap();
    assert_eq!(paged.replica(), whole.replica());
    assert_eq!(whole.ids("interviews").len(), 30);
});

db_test!(async fn unsupported_protocol_versions_get_426(app) {
    let (phone, _, _) = phone(&app, "Sanne").await;
    for version in [None, Some("0"), Some("2")] {
        let mut request = app
            .client
            .get(format!("{}/v1/sync/pull", app.address))
            .bearer_auth(phone.debug_token());
        if let Some(version) = version {
            request = request.header("veldwerk-protocol", version);
        }
        let reply = request.send().await.unwrap();
        assert_eq!(reply.status(), 426);
        let body: Value = reply.json().await.unwrap();
        assert_eq!(body["code"], "unsupported_protocol");
    }
});

db_test!(async fn apps_older_than_the_minimum_version_are_asked_to_update(app) with |config| {
    config.min_app_version = Some("2.1".into());
}; {
    let (mut phone, _, _) = phone(&app, "Sanne").await;
    phone.app_version = "2.0.9".into();
    let err = phone.pull().await.unwrap_err();
    assert!(err.to_string().contains("426"), "{err}");
    assert!(err.to_string().contains("app_update_required"), "{err}");
    phone.app_version = "2.1.0".into();
    phone.pull().await.unwrap();
});

db_test!(async fn malformed_pushes_and_cursors_get_clear_errors(app) {
    let (phone, _, _) = phone(&app, "Sanne").await;
    let send = |body: String| {
        app.client
            .post(format!("{}/v1/sync/push", app.address))
            .bearer_auth(phone.debug_token())
            .header("veldwerk-protocol", "1")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let reply = send("{\"mutations\": [{\"id\": 5}]}".into()).await.unwrap();
    assert_eq!(reply.status(), 400);
    assert_eq!(reply.json::<Value>().await.unwrap()["code"], "invalid_body");
    let clock = Hlc::new(1, 0, phone.device_id.simple().to_string());
    let mutations: Vec<Mutation> = (0..501)
        .map(|_| Mutation {
            id: Uuid::now_v7(),
            collection: "interviews".into(),
            record_id: Uuid::now_v7(),
            cohort_id: None,
            fields: Default::default(),
            delete: false,
            clock: clock.clone(),
            base: Default::default(),
        })
        .collect();
    let reply = send(serde_json::to_string(&json!({ "mutations": mutations })).unwrap()).await.unwrap();
    assert_eq!(reply.status(), 422);
    assert_eq!(reply.json::<Value>().await.unwrap()["code"], "batch_too_large");
    let reply = app
        .client
        .get(format!("{}/v1/sync/pull?cursor=garbage", app.address))
        .bearer_auth(phone.debug_token())
        .header("veldwerk-protocol", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 422);
    assert_eq!(reply.json::<Value>().await.unwrap()["code"], "invalid_cursor");
});

db_test!(async fn members_removed_from_a_cohort_lose_its_data_at_their_next_pull(app) {
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    let mine = Uuid::now_v7();
    sanne.write("interviews", mine, Some(cohort), interview("van mij"));
    sanne.sync().await.unwrap();
    assert_eq!(sanne.ids("cohort_days").len(), 6);
    let admin = demo_admin(&app).await;
    let second = new_trainer(&app, &admin, "tweede@veldwerk.test").await;
    app.post(&format!("/v1/cohorts/{cohort}/trainers"), Some(&trainer.token), json!({ "user_id": second.user_id }))
        .await
        .expect(204);
    let mut second_device = Device::new(&app.address, &app.login("tweede@veldwerk.test", "a-long-trainer-password").await);
    second_device.pull().await.unwrap();
    assert_eq!(second_device.ids("interviews"), [mine]);

    let members = format!("/v1/cohorts/{cohort}/members");
    app.delete(&format!("{members}/{}", sanne.user_id), &trainer.token).await.expect(204);
    sanne.pull().await.unwrap();
    for collection in ["cohorts", "cohort_days", "assignments"] {
        assert!(sanne.ids(collection).is_empty(), "{collection} evicted");
    }
    assert_eq!(sanne.ids("interviews"), [mine], "a participant keeps their own records");
    app.get(&format!("/v1/cohorts/{cohort}"), sanne.debug_token()).await.expect_error(404, "not_found");

    app.delete(&format!("{members}/{}", second.user_id), &admin.token).await.expect(204);
    second_device.pull().await.unwrap();
    assert!(second_device.ids("interviews").is_empty(), "a removed trainer loses the cohort's records");
    assert!(second_device.ids("cohorts").is_empty());
    app.delete(&format!("{members}/{}", second.user_id), &admin.token).await.expect_error(404, "not_found");
});

db_test!(async fn an_up_to_date_device_passes_others_writes_and_still_receives_each_change_for_it(app) {
    // Pulls with nothing for the caller since the cursor are answered by one existence check
    // (`store::sync::anything_changed`); each kind of change must still get through it.
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    let code = invite_code(&app, &trainer, &cohort.to_string()).await;
    let mut pieter = Device::new(&app.address, &app.enrol(&code, "Pieter").await);
    sanne.pull().await.unwrap();
    let mut staff = trainer_device(&app).await;
    staff.pull().await.unwrap();
    let compare = async |sanne: &mut Device, what: &str| {
        sanne.pull().await.unwrap();
        let mut fresh = Device::new(&app.address, &json!({ "access_token": sanne.debug_token() }));
        fresh.pull().await.unwrap();
        assert_eq!(sanne.replica(), fresh.replica(), "after {what}: as a fresh device sees it");
    };

    // Pieter's own interview is not Sanne's to see: her pull moves to the head, with nothing.
    let before = sanne.cursor.clone();
    pieter.write("interviews", Uuid::now_v7(), Some(cohort), interview("van Pieter"));
    pieter.sync().await.unwrap();
    sanne.pull().await.unwrap();
    assert_ne!(sanne.cursor, before, "the cursor moves past others' writes");
    assert_eq!(sanne.cursor, pieter.cursor, "to the head");
    assert!(sanne.ids("interviews").is_empty());
    // The cohort's trainer, up to date too, sees it (the check's staff scope is the cohort).
    compare(&mut staff, "a participant's interview, for the trainer").await;
    assert_eq!(staff.ids("interviews").len(), 1);

    // Feedback shared with her (a record of someone else), then unshared (an eviction).
    let feedback = Uuid::now_v7();
    pieter.write(
        "feedback_exercises",
        feedback,
        Some(cohort),
        json!({ "direction": "given", "counterpart_user_id": sanne.user_id, "shared": true, "observation": "helder" }),
    );
    pieter.sync().await.unwrap();
    compare(&mut sanne, "shared feedback").await;
    assert_eq!(sanne.ids("feedback_exercises"), [feedback]);
    pieter.write("feedback_exercises", feedback, None, json!({ "shared": false }));
    pieter.sync().await.unwrap();
    compare(&mut sanne, "unsharing").await;
    assert!(sanne.ids("feedback_exercises").is_empty());

    // The schedule (cohort days) and an announcement to the whole cohort.
    app.patch(
        &format!("/v1/cohorts/{cohort}/schedule"),
        &trainer.token,
        json!({ "days": [{ "day_number": 1, "location": "Elders" }] }),
    )
    .await
    .expect(200);
    compare(&mut sanne, "a schedule change").await;
    assert!(sanne.ids("cohort_days").iter().any(|day| sanne.view("cohort_days", *day).unwrap()["location"] == "Elders"));
    app.post(
        &format!("/v1/cohorts/{cohort}/announcements"),
        Some(&trainer.token),
        json!({ "title": "Dag 2 verplaatst", "body": "Naar de bibliotheek." }),
    )
    .await
    .expect(201);
    compare(&mut sanne, "an announcement").await;
    assert!(
        sanne
            .ids("announcements")
            .iter()
            .any(|id| sanne.view("announcements", *id).unwrap()["title"] == "Dag 2 verplaatst")
    );
});
