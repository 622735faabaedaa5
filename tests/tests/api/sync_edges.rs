//! The sync protocol at its edges: versions with more rows than a page (a cascade of deletions,
//! a trainer removed from a big cohort), scope that grows to show older data of every kind. Each
//! device must end equal to a device that pulled from scratch.

use serde_json::json;
use uuid::Uuid;
use veldwerk_tests::{TestApp, client::Device, db_test};

use crate::{
    fixtures::{demo_admin, demo_cohort, demo_trainer, invite_code, new_trainer},
    sync::{phone, tablet},
};

/// `interviews` interviews with `per_interview` attachments each, pushed by the device.
async fn fill(
    device: &mut Device,
    cohort: Uuid,
    interviews: usize,
    per_interview: usize,
) -> Vec<Uuid> {
    let sha = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"; // SHA-256 of "x"
    let mut parents = Vec::new();
    for n in 0..interviews {
        let parent = Uuid::now_v7();
        device.write(
            "interviews",
            parent,
            Some(cohort),
            json!({
                "name_consent": false, "status": "draft", "notes": format!("gesprek {n}"),
            }),
        );
        for _ in 0..per_interview {
            device.write(
                "attachments",
                Uuid::now_v7(),
                Some(cohort),
                json!({
                    "parent_collection": "interviews", "parent_id": parent, "file_name": "foto.jpg",
                    "content_type": "image/jpeg", "size": 1, "sha256": sha,
                }),
            );
        }
        parents.push(parent);
    }
    device.sync().await.unwrap();
    assert!(device.rejected.is_empty(), "{:?}", device.rejected.first());
    parents
}

/// Pulls page by page with this limit until the server says there is no more.
async fn pull_with_limit(device: &mut Device, limit: Option<usize>) {
    let mut pages = 0;
    while device.pull_page(limit).await.unwrap() {
        pages += 1;
        assert!(pages < 10_000, "the pull ends");
    }
}

async fn trainer_login(app: &TestApp, email: &str, password: &str) -> Device {
    Device::new(&app.address, &app.login(email, password).await)
}

db_test!(async fn a_cascade_larger_than_a_page_reaches_every_device_whole(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    // 200 interviews with 3 attachments each: deleting them all is one push whose version
    // touches 800 rows, 600 of them in one collection.
    let parents = fill(&mut phone, cohort, 200, 3).await;
    let mut devices = Vec::new();
    for _ in 0..3 {
        let mut device = tablet(&app, &phone, &token).await;
        device.pull().await.unwrap();
        assert_eq!(device.ids("attachments").len(), 600);
        devices.push(device);
    }
    let mut trainer = trainer_login(&app, "trainer@veldwerk.test", "demo-trainer-wachtwoord").await;
    trainer.pull().await.unwrap();

    for parent in &parents {
        phone.delete("interviews", *parent);
    }
    phone.batch_size = 500; // all 200 deletions in one push
    phone.sync().await.unwrap();
    assert!(phone.ids("attachments").is_empty());

    for (device, limit) in devices.iter_mut().zip([None, Some(100), Some(7)]) {
        pull_with_limit(device, limit).await;
        assert!(device.ids("attachments").is_empty(), "limit {limit:?}: every attachment tombstone arrived");
        assert!(device.ids("interviews").is_empty(), "limit {limit:?}");
        assert_eq!(device.replica(), phone.replica(), "limit {limit:?}");
    }
    pull_with_limit(&mut trainer, Some(50)).await;
    assert!(trainer.ids("attachments").is_empty());
    let mut fresh = trainer_login(&app, "trainer@veldwerk.test", "demo-trainer-wachtwoord").await;
    fresh.pull().await.unwrap();
    assert_eq!(trainer.replica(), fresh.replica(), "the trainer equals a pull from scratch");
});

db_test!(async fn a_trainer_removed_from_a_big_cohort_loses_all_of_it(app) {
    let (mut phone, cohort, trainer) = phone(&app, "Sanne").await;
    fill(&mut phone, cohort, 150, 4).await;
    let admin = demo_admin(&app).await;
    let second = new_trainer(&app, &admin, "tweede@veldwerk.test").await;
    app.post(&format!("/v1/cohorts/{cohort}/trainers"), Some(&trainer.token), json!({ "user_id": second.user_id }))
        .await
        .expect(204);
    let mut devices = Vec::new();
    for limit in [None, Some(100)] {
        let mut device = trainer_login(&app, "tweede@veldwerk.test", "a-long-trainer-password").await;
        pull_with_limit(&mut device, limit).await;
        assert_eq!(device.ids("attachments").len(), 600);
        devices.push((device, limit));
    }

    // Removed: 750 records and the cohort's own data leave in one version.
    app.delete(&format!("/v1/cohorts/{cohort}/members/{}", second.user_id), &admin.token).await.expect(204);
    for (device, limit) in &mut devices {
        pull_with_limit(device, *limit).await;
        for collection in ["interviews", "attachments", "cohorts", "cohort_days", "assignments"] {
            assert!(device.ids(collection).is_empty(), "limit {limit:?}: {collection} evicted");
        }
    }
});

db_test!(async fn a_trainer_added_later_receives_every_kind_of_older_data(app) {
    let (mut phone, cohort, trainer) = phone(&app, "Sanne").await;
    fill(&mut phone, cohort, 3, 1).await;
    app.post(
        &format!("/v1/cohorts/{cohort}/announcements"),
        Some(&trainer.token),
        json!({ "title": "Dag 2 verplaatst", "body": "We beginnen om 10:00 in De Boog." }),
    )
    .await
    .expect(201);
    let admin = demo_admin(&app).await;
    let late = new_trainer(&app, &admin, "laat@veldwerk.test").await;
    let mut late_device = trainer_login(&app, "laat@veldwerk.test", "a-long-trainer-password").await;
    late_device.pull().await.unwrap();
    assert!(late_device.ids("announcements").is_empty());

    app.post(&format!("/v1/cohorts/{cohort}/trainers"), Some(&trainer.token), json!({ "user_id": late.user_id }))
        .await
        .expect(204);
    late_device.pull().await.unwrap();
    assert_eq!(late_device.ids("announcements").len(), 1, "the older announcement arrives");
    let mut fresh = trainer_login(&app, "laat@veldwerk.test", "a-long-trainer-password").await;
    fresh.pull().await.unwrap();
    assert_eq!(late_device.replica(), fresh.replica(), "equal to a pull from scratch");
});

/// The interview's `notes` column as stored, whatever devices are told.
async fn stored_notes(app: &TestApp, id: Uuid) -> Option<String> {
    use sea_orm::{
        ConnectionTrait,
        sea_query::{Expr, ExprTrait, Query},
    };
    let statement = Query::select()
        .column("notes")
        .from("interviews")
        .and_where(Expr::col("id").eq(id))
        .to_owned();
    let row = app
        .services
        .db()
        .query_one(&statement)
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "notes").unwrap()
}

db_test!(async fn a_tombstone_carries_nothing_personal(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let mut tablet = tablet(&app, &phone, &token).await;
    let id = Uuid::now_v7();
    phone.write("interviews", id, Some(cohort), json!({
        "name_consent": true, "interviewee_name": "Mevrouw Jansen", "status": "draft",
        "notes": "vertelde over haar buurman",
    }));
    phone.sync().await.unwrap();
    tablet.pull().await.unwrap();
    // Two devices cross on the notes, so the record holds a conflict with both texts...
    tablet.write("interviews", id, None, json!({ "notes": "tweede versie" }));
    phone.write("interviews", id, None, json!({ "notes": "derde versie" }));
    tablet.sync().await.unwrap();
    phone.sync().await.unwrap();
    // ...and then it is deleted.
    phone.delete("interviews", id);
    phone.sync().await.unwrap();

    let mut trainer = trainer_login(&app, "trainer@veldwerk.test", "demo-trainer-wachtwoord").await;
    trainer.pull().await.unwrap();
    tablet.pull().await.unwrap();
    for device in [&phone, &tablet, &trainer] {
        let tombstone = &device.server[&("interviews".to_owned(), id)];
        assert!(tombstone.deleted);
        assert!(tombstone.fields.is_empty(), "{:?}", tombstone.fields);
        assert_eq!(tombstone.clocks.keys().collect::<Vec<_>>(), ["deleted"]);
        assert!(tombstone.conflicts.is_empty());
    }
    assert_eq!(stored_notes(&app, id).await, None, "not kept on the server either");
});

db_test!(async fn an_edit_that_loses_to_a_delete_is_handed_back_to_its_owner(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let mut tablet = tablet(&app, &phone, &token).await;
    let id = Uuid::now_v7();
    phone.write("interviews", id, Some(cohort), json!({ "name_consent": false, "status": "draft", "notes": "eerst" }));
    phone.sync().await.unwrap();
    tablet.pull().await.unwrap();

    // The phone deletes it; the tablet, offline, edits it (later by its clock) and then syncs.
    phone.delete("interviews", id);
    phone.sync().await.unwrap();
    tablet.write("interviews", id, None, json!({ "notes": "aangevuld in de trein" }));
    tablet.sync().await.unwrap();
    let (edit, result) = tablet.rejected.pop().expect("the edit comes back to its owner");
    assert_eq!(result.code.as_deref(), Some("record_deleted"));
    assert_eq!(edit.fields["notes"], "aangevuld in de trein");
    assert!(tablet.view("interviews", id).is_none(), "the delete wins");
    // Writing the deleted id again is refused the same way; a new id works.
    tablet.write("interviews", id, Some(cohort), json!({ "name_consent": false, "status": "draft", "notes": "opnieuw" }));
    tablet.sync().await.unwrap();
    assert_eq!(tablet.rejected.pop().unwrap().1.code.as_deref(), Some("record_deleted"));
    assert_eq!(stored_notes(&app, id).await, None);

    // One record per participant and thing (assignment work): an edit after its delete revives
    // it, with the new values only.
    let assignment = phone.ids("assignments")[0];
    let work = veldwerk_sync_protocol::schema::assignment_record_id(phone.user_id, assignment);
    phone.write("assignment_work", work, Some(cohort), json!({ "assignment_id": assignment, "done": true, "reflection": "eerste" }));
    phone.sync().await.unwrap();
    phone.delete("assignment_work", work);
    phone.sync().await.unwrap();
    phone.write("assignment_work", work, Some(cohort), json!({ "assignment_id": assignment, "done": false }));
    phone.sync().await.unwrap();
    assert!(phone.rejected.is_empty(), "{:?}", phone.rejected);
    let revived = phone.view("assignment_work", work).unwrap();
    assert_eq!(revived["done"], false);
    assert!(!revived.contains_key("reflection"), "{revived:?}");
    tablet.pull().await.unwrap();
    assert_eq!(tablet.replica(), phone.replica());
});

/// Changes a mutation's JSON one way.
type Spoil = dyn Fn(&mut serde_json::Value);

/// Sends a push body as it is, the way an app built from PROTOCOL.md alone would.
pub(crate) async fn raw_push(
    app: &TestApp,
    token: &str,
    body: &serde_json::Value,
) -> veldwerk_tests::Reply {
    use veldwerk_sync_protocol::{APP_VERSION_HEADER, PROTOCOL_HEADER, PROTOCOL_VERSION};
    let response = app
        .client
        .post(format!("{}/v1/sync/push", app.address))
        .bearer_auth(token)
        .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
        .header(APP_VERSION_HEADER, "1.0.0")
        .json(body)
        .send()
        .await
        .unwrap();
    veldwerk_tests::Reply::from(response).await
}

/// A GET to a sync endpoint as the app sends it (protocol and app version headers).
pub(crate) async fn sync_get(app: &TestApp, token: &str, path: &str) -> veldwerk_tests::Reply {
    use veldwerk_sync_protocol::{APP_VERSION_HEADER, PROTOCOL_HEADER, PROTOCOL_VERSION};
    let response = app
        .client
        .get(format!("{}{path}", app.address))
        .bearer_auth(token)
        .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
        .header(APP_VERSION_HEADER, "1.0.0")
        .send()
        .await
        .unwrap();
    veldwerk_tests::Reply::from(response).await
}

db_test!(async fn one_bad_value_is_rejected_alone_and_the_rest_of_the_batch_applies(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    // Mutations as the device makes them, then spoiled one way each.
    let mut mutations = Vec::new();
    let mut ids = Vec::new();
    for n in 0..10 {
        let id = Uuid::now_v7();
        phone.write("interviews", id, Some(cohort), json!({
            "name_consent": false, "status": "draft", "notes": format!("gesprek {n}"),
        }));
        ids.push(id);
    }
    for mutation in phone.outbox.drain(..) {
        mutations.push(serde_json::to_value(mutation).unwrap());
    }
    let spoil: [(&str, &Spoil); 10] = [
        ("applies", &|_| {}),
        ("invalid_field", &|m| m["fields"]["notes"] = json!("a\u{0}b")),
        ("invalid_field", &|m| m["fields"]["questions"] = json!([{ "vraag\u{0}": "x" }])),
        ("invalid_field", &|m| m["fields"]["interviewed_on"] = json!("-5000-01-01")),
        ("invalid_field", &|m| m["fields"]["interviewed_on"] = json!("+262142-01-01")),
        // Swift's uuidString spells the device's id in upper case: the same device.
        ("applies", &|m| {
            let clock = m["clock"].as_str().unwrap().to_uppercase();
            m["clock"] = json!(clock);
        }),
        ("invalid_mutation", &|m| m["colour"] = json!("blauw")),
        ("invalid_mutation", &|m| m["record_id"] = json!("not-a-uuid")),
        ("field_too_large", &|m| m["fields"]["notes"] = json!("x".repeat(20_001))),
        ("applies", &|_| {}),
    ];
    for (mutation, (_, spoil)) in mutations.iter_mut().zip(spoil.iter()) {
        spoil(mutation);
    }
    let body = json!({ "mutations": mutations });
    for attempt in 0..2 {
        // The same answer the second time: nothing blocks the outbox, nothing applies twice.
        let answer = raw_push(&app, &token, &body).await.expect(200);
        let results = answer["results"].as_array().unwrap();
        assert_eq!(results.len(), 10, "attempt {attempt}");
        for ((result, (expected, _)), id) in results.iter().zip(spoil.iter()).zip(&mutations) {
            assert_eq!(result["id"], id["id"]);
            if *expected == "applies" {
                assert_eq!(result["status"], "applied", "{result}");
            } else {
                assert_eq!((result["status"].as_str(), result["code"].as_str()), (Some("rejected"), Some(*expected)), "{result}");
            }
        }
    }
    phone.pull().await.unwrap();
    let mut stored = phone.ids("interviews");
    stored.sort();
    let mut expected = vec![ids[0], ids[5], ids[9]];
    expected.sort();
    assert_eq!(stored, expected);
    // A body that is not a push at all is still refused whole.
    raw_push(&app, &token, &json!({ "mutations": "nee" })).await.expect_error(400, "invalid_body");
    raw_push(&app, &token, &json!({ "mutations": [{ "collection": "interviews" }] })).await.expect_error(400, "invalid_body");
});

db_test!(async fn a_revoked_or_logged_out_device_loses_its_live_stream(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let tablet = tablet(&app, &phone, &token).await;
    let mut phone_stream = veldwerk_tests::LiveStream::open(&app.client, &app.address, &token).await;
    let mut tablet_stream = veldwerk_tests::LiveStream::open(&app.client, &app.address, tablet.debug_token()).await;
    phone_stream.next_event("ready").await;
    tablet_stream.next_event("ready").await;

    // The phone revokes the tablet: the tablet's stream is told and closed, the phone's goes on.
    app.delete(&format!("/v1/me/devices/{}", tablet.device_id), &token).await.expect(204);
    let last = tablet_stream.until_closed().await;
    assert!(last.contains("event: revoked"), "{last:?}");
    phone.write("interviews", Uuid::now_v7(), Some(cohort), json!({ "name_consent": false, "status": "draft" }));
    phone.sync().await.unwrap();
    phone_stream.next_event("poke").await;

    // Logging out closes the phone's own stream the same way.
    app.post("/v1/auth/logout", Some(&token), json!({})).await.expect(204);
    let last = phone_stream.until_closed().await;
    assert!(last.contains("event: revoked"), "{last:?}");
});

// Remote wipe (PROTOCOL.md): a phone reported lost from another device answers `device_wiped` on
// its next contact with any endpoint, its open stream says so, and nothing else changes: the
// reporting device works on, a plain revocation still says `session_revoked`, and nobody can
// wipe another person's device.
db_test!(async fn a_phone_reported_lost_is_told_to_wipe_on_every_endpoint(app) {
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let session = app.enrol(&invite_code(&app, &trainer, &cohort).await, "Sanne").await;
    let refresh_token = session["refresh_token"].as_str().unwrap().to_owned();
    let mut phone = Device::new(&app.address, &session);
    let token = phone.debug_token().to_owned();
    phone.write("interviews", Uuid::now_v7(), Some(Uuid::parse_str(&cohort).unwrap()), json!({ "name_consent": false, "status": "draft" }));
    phone.sync().await.unwrap();
    let old_tablet = tablet(&app, &phone, &token).await;
    let tablet = tablet(&app, &phone, &token).await;
    let mut stream = veldwerk_tests::LiveStream::open(&app.client, &app.address, &token).await;
    stream.next_event("ready").await;

    // A plain revocation is not a wipe.
    app.delete(&format!("/v1/me/devices/{}", old_tablet.device_id), tablet.debug_token()).await.expect(204);
    app.get("/v1/me", old_tablet.debug_token()).await.expect_error(401, "session_revoked");
    // Nobody wipes another person's device.
    app.delete(&format!("/v1/me/devices/{}?wipe=true", tablet.device_id), &trainer.token).await.expect(404);
    app.get("/v1/me", tablet.debug_token()).await.expect(200);

    // The tablet reports the phone lost.
    app.delete(&format!("/v1/me/devices/{}?wipe=true", phone.device_id), tablet.debug_token()).await.expect(204);
    let last = stream.until_closed().await;
    assert!(last.contains("event: device_wiped"), "{last:?}");
    for path in ["/v1/sync/pull", "/v1/sync/events"] {
        sync_get(&app, &token, path).await.expect_error(401, "device_wiped");
    }
    raw_push(&app, &token, &json!({ "mutations": [] })).await.expect_error(401, "device_wiped");
    app.get("/v1/me", &token).await.expect_error(401, "device_wiped");
    app.post("/v1/auth/refresh", None, json!({ "refresh_token": refresh_token })).await.expect_error(401, "device_wiped");
    // The tablet works on and still holds the interview.
    let mut tablet = tablet;
    tablet.pull().await.unwrap();
    assert_eq!(tablet.ids("interviews").len(), 1);
    // A device revoked before can still be told to wipe.
    app.delete(&format!("/v1/me/devices/{}?wipe=true", old_tablet.device_id), tablet.debug_token()).await.expect(204);
    app.get("/v1/me", old_tablet.debug_token()).await.expect_error(401, "device_wiped");
});

db_test!(async fn a_participant_removed_from_a_cohort_stops_receiving_shared_feedback(app) {
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    let code = crate::fixtures::invite_code(&app, &trainer, &cohort.to_string()).await;
    let mut pieter = Device::new(&app.address, &app.enrol(&code, "Pieter").await);
    let feedback = Uuid::now_v7();
    sanne.write("feedback_exercises", feedback, Some(cohort), json!({
        "direction": "given", "counterpart_user_id": pieter.user_id, "shared": true,
        "observation": "je liet mij uitpraten",
    }));
    sanne.sync().await.unwrap();
    pieter.pull().await.unwrap();
    assert_eq!(pieter.ids("feedback_exercises"), [feedback]);

    app.delete(&format!("/v1/cohorts/{cohort}/members/{}", pieter.user_id), &trainer.token).await.expect(204);
    pieter.pull().await.unwrap();
    assert!(pieter.ids("feedback_exercises").is_empty(), "the shared feedback leaves with the cohort");
    // Later edits of it do not reach him either.
    sanne.write("feedback_exercises", feedback, None, json!({ "observation": "na zijn vertrek" }));
    sanne.sync().await.unwrap();
    pieter.pull().await.unwrap();
    assert!(pieter.ids("feedback_exercises").is_empty());
    assert!(!pieter.server.contains_key(&("feedback_exercises".to_owned(), feedback)));
});

db_test!(async fn hostile_values_in_every_field_are_rejected_alone_never_a_5xx(app) {
    use veldwerk_sync_protocol::schema::COLLECTIONS;
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let hostile = [
        json!("\u{0}"),
        json!("voor\u{0}na"),
        json!("x".repeat(20_001)),
        json!("é".repeat(20_000)),
        json!("-5000-01-01"),
        json!("+262142-12-31"),
        json!("2027-02-30"),
        json!("9999-12-31T23:59:59Z"),
        json!(-1e308),
        json!(1e308),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(-0.5),
        json!(true),
        json!([]),
        json!({ "k\u{0}": "v" }),
        json!([{ "vraag": "\u{0}" }]),
        json!(null),
    ];
    let mut checked = 0;
    for spec in COLLECTIONS {
        for field in spec.fields {
            for value in &hostile {
                // Interviews are created with the value, so it reaches the database; other
                // collections show that checking comes first.
                let id = Uuid::now_v7();
                let mut fields = json!({ field.name: value });
                if spec.name == "interviews" {
                    fields["status"] = json!("draft");
                    if field.name != "name_consent" {
                        fields["name_consent"] = json!(false);
                    }
                }
                phone.write(spec.name, id, Some(cohort), fields);
                phone.write("interviews", Uuid::now_v7(), Some(cohort), json!({ "name_consent": false, "status": "draft" }));
                let batch: Vec<serde_json::Value> = phone.outbox.drain(..).map(|m| serde_json::to_value(m).unwrap()).collect();
                let reply = raw_push(&app, &token, &json!({ "mutations": batch })).await;
                assert_eq!(reply.status, 200, "{}.{} = {value}: {}", spec.name, field.name, reply.body);
                let results = reply.body["results"].as_array().unwrap();
                assert_eq!(results.len(), 2);
                if results[0]["status"] == "rejected" {
                    assert!(results[0]["code"].is_string(), "{}", results[0]);
                }
                assert_eq!(results[1]["status"], "applied", "{}.{} = {value}: the next mutation applies", spec.name, field.name);
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "{checked} hostile mutations");
    // A JavaScript string cut in the middle of an emoji: a lone surrogate escape, which no
    // Unicode text holds. It arrives as the replacement character, and blocks nothing.
    let id = Uuid::now_v7();
    phone.write("interviews", id, Some(cohort), json!({ "name_consent": false, "status": "draft", "notes": "LONE" }));
    let batch: Vec<serde_json::Value> = phone.outbox.drain(..).map(|m| serde_json::to_value(m).unwrap()).collect();
    let body = json!({ "mutations": batch }).to_string().replace("LONE", "ik was blij \\ud83d");
    let reply = app
        .client
        .post(format!("{}/v1/sync/push", app.address))
        .bearer_auth(&token)
        .header("veldwerk-protocol", "1")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let reply = veldwerk_tests::Reply::from(reply).await;
    assert_eq!(reply.expect(200)["results"][0]["status"], "applied");
    phone.pull().await.unwrap();
    assert_eq!(phone.view("interviews", id).unwrap()["notes"], "ik was blij \u{fffd}");
    // Everything accepted can be pulled back.
    phone.pull().await.unwrap();
});
