//! Pull pages are built from each record's stored JSON (its "wire tail", written with every
//! version). What they send must be byte for byte what decoding the rows sends: values in the
//! form their columns give back, the owner's losing values for the owner only, tombstones bare.

use sea_orm::ConnectionTrait;
use serde_json::json;
use uuid::Uuid;
use veldwerk_server::store;
use veldwerk_sync_protocol::schema::{COLLECTIONS, linked_record_id};
use veldwerk_tests::{TestApp, client::Device, db_test};

use crate::sync::{phone, tablet};

/// The changes of a first pull, as text (the cursor and the server's clock after them vary).
async fn changes_text(device: &Device) -> String {
    let body = device.raw_first_page(1000).await.unwrap();
    let end = body.rfind(r#"],"cursor":"#).expect("a pull page");
    body[..end].to_owned()
}

async fn tails(app: &TestApp, filter: &str) -> i64 {
    let db = store::connect(app.database_url()).await.unwrap();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM interviews WHERE {filter}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

db_test!(async fn pages_from_stored_json_are_the_decoded_rows_byte_for_byte(app) {
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    let token = sanne.debug_token().to_owned();
    let mut tablet = tablet(&app, &sanne, &token).await;
    sanne.pull().await.unwrap();
    let assignment = sanne.ids("assignments")[0];
    let announcement = app
        .post(
            &format!("/v1/cohorts/{cohort}/announcements"),
            Some(&trainer.token),
            json!({ "title": "Dag 2", "body": "Om 10:00." }),
        )
        .await
        .expect(201);
    let announcement: Uuid = announcement["id"].as_str().unwrap().parse().unwrap();

    // Values the server keeps in another form than they came in: a date without leading zeros,
    // an id in capitals and braces, a timestamp with an offset and nanoseconds (PostgreSQL keeps
    // microseconds), JSON with fractions and a negative zero, text that JSON escapes.
    let odd = Uuid::now_v7();
    sanne.write("interviews", odd, Some(cohort), json!({
        "name_consent": true, "status": "draft", "interviewed_on": "2026-3-7",
        "assignment_id": format!("{{{}}}", assignment.to_string().to_uppercase()),
        "questions": [{ "q": "Wat?", "weight": 0.1, "neg": -0.0, "big": 1e300, "n": 12,
                        "nested": { "b": [1, 2.5], "a": "é\u{1F600}\u{7f}" } }],
        "notes": "regel 1\nregel \"2\"\t\\ \u{2028} é",
    }));
    let plain = Uuid::now_v7();
    sanne.write("interviews", plain, Some(cohort), json!({
        "name_consent": false, "status": "done", "questions": { "z": [3, -4], "a": { "n": 0 } },
        "insights": "",
    }));
    let read = linked_record_id("announcement_reads", sanne.user_id, announcement);
    sanne.write("announcement_reads", read, Some(cohort), json!({
        "announcement_id": announcement, "read_at": "2027-01-12T09:00:00.123456789+01:00",
    }));
    let gone = Uuid::now_v7();
    sanne.write("interviews", gone, Some(cohort), json!({ "name_consent": false, "status": "draft", "notes": "weg" }));
    sanne.sync().await.unwrap();
    sanne.delete("interviews", gone);
    sanne.sync().await.unwrap();
    // Crossing edits: the owner sees the losing value, the trainer does not.
    tablet.pull().await.unwrap();
    sanne.write("interviews", plain, None, json!({ "notes": "telefoon" }));
    std::thread::sleep(std::time::Duration::from_millis(5));
    tablet.write("interviews", plain, None, json!({ "notes": "tablet" }));
    sanne.sync().await.unwrap();
    tablet.sync().await.unwrap();
    assert!(sanne.rejected.is_empty() && tablet.rejected.is_empty(), "{:?}", sanne.rejected);

    let session = app.login("trainer@veldwerk.test", "demo-trainer-wachtwoord").await;
    let staff = Device::new(&app.address, &session);
    let viewers = [&sanne, &tablet, &staff];
    let mut stored = Vec::new();
    for viewer in viewers {
        stored.push(changes_text(viewer).await);
    }
    assert!(stored[0].contains(r#""conflicts":[{"#), "the owner sees the losing value: {}", stored[0]);
    assert!(!stored[2].contains(r#""conflicts""#), "the trainer does not");
    assert!(tails(&app, "wire_tail IS NOT NULL").await >= 2, "the pages above used stored JSON");

    // The same pages decoded from the columns: every row without its stored JSON.
    let db = store::connect(app.database_url()).await.unwrap();
    // Each collection's records are in the table named after it.
    for spec in COLLECTIONS {
        db.execute_unprepared(&format!("UPDATE {} SET wire_tail = NULL", spec.name))
            .await
            .unwrap();
    }
    assert_eq!(tails(&app, "wire_tail IS NOT NULL").await, 0);
    for (viewer, stored) in viewers.into_iter().zip(stored) {
        assert_eq!(changes_text(viewer).await, stored);
    }
    // A row without stored JSON gets it again with its next version.
    sanne.write("interviews", plain, None, json!({ "place": "Buurthuis" }));
    sanne.sync().await.unwrap();
    assert_eq!(tails(&app, "wire_tail IS NOT NULL").await, 1);
});
