//! RxDB's replication contract (`/v1/rxdb`): real RxDB databases from npm converging through it,
//! and its edges by hand: a row sent twice, rows the server refuses, pages filled past other
//! collections' changes, the live stream.

use std::str::FromStr;

use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_tests::{LiveStream, Reply, TestApp, client::Device, db_test};

use crate::{
    fixtures::invite_code,
    sync::{phone, tablet},
};

async fn rxdb_push(app: &TestApp, token: &str, collection: &str, rows: Value) -> Reply {
    let answer = app
        .client
        .post(format!("{}/v1/rxdb/{collection}/push", app.address))
        .bearer_auth(token)
        .header("veldwerk-protocol", "1")
        .json(&rows)
        .send()
        .await
        .unwrap();
    Reply::from(answer).await
}

async fn rxdb_pull(
    app: &TestApp,
    token: &str,
    collection: &str,
    cursor: &str,
    batch_size: usize,
) -> Value {
    let answer = app
        .client
        .get(format!(
            "{}/v1/rxdb/{collection}/pull?cursor={cursor}&batchSize={batch_size}",
            app.address
        ))
        .bearer_auth(token)
        .header("veldwerk-protocol", "1")
        .send()
        .await
        .unwrap();
    Reply::from(answer).await.expect(200)
}

/// A new interview as an RxDB document.
fn new_interview(cohort: Uuid, notes: &str) -> Value {
    json!({"id": Uuid::now_v7().to_string(), "cohort_id": cohort.to_string(), "status": "draft",
           "name_consent": false, "notes": notes, "_deleted": false})
}

fn create_row(doc: &Value) -> Value {
    json!({ "newDocumentState": doc })
}

fn edit_row(master: &Value, change: impl FnOnce(&mut Value)) -> Value {
    let mut edited = master.clone();
    change(&mut edited);
    json!({ "newDocumentState": edited, "assumedMasterState": master })
}

/// Runs a real offline database's convergence check (`converge.mjs` in `dir`: RxDB's,
/// WatermelonDB's) with two devices of one participant, a fresh third and another participant,
/// and checks its report and that a native device of hers holds the same records.
pub(crate) async fn converge_with_real_library(app: &TestApp, dir: &std::path::Path) {
    let (mut phone, cohort, trainer) = phone(app, "Sanne").await;
    let tablet = tablet(app, &phone, phone.debug_token()).await;
    let fresh = crate::sync::tablet(app, &phone, phone.debug_token()).await;
    let code = invite_code(app, &trainer, &cohort.to_string()).await;
    let other = Device::new(&app.address, &app.enrol(&code, "Ahmed").await);

    let output = tokio::process::Command::new("node")
        .arg(dir.join("converge.mjs"))
        .env("VELDWERK_URL", &app.address)
        .env("VELDWERK_COHORT", cohort.to_string())
        .env("PHONE_TOKEN", phone.debug_token())
        .env("TABLET_TOKEN", tablet.debug_token())
        .env("FRESH_TOKEN", fresh.debug_token())
        .env("OTHER_TOKEN", other.debug_token())
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    // One edited interview and 200 written offline; the deleted one is gone.
    assert_eq!(
        report,
        json!({"phone": 201, "tablet": 201, "fresh": 201, "other": 1})
    );

    // A native device of hers holds the same: one store behind both protocols.
    phone.sync().await.unwrap();
    assert_eq!(phone.ids("interviews").len(), 201);
}

db_test!(async fn rxdb_databases_converge_through_the_rxdb_endpoints(app) {
    let Some(dir) = crate::fixtures::npm_check_dir("rxdb", "rxdb") else { return };
    converge_with_real_library(&app, &dir).await;
});

db_test!(async fn a_row_sent_again_after_its_answer_was_lost_is_applied_once(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let doc = new_interview(cohort, "eerste versie");
    let first = rxdb_push(&app, &token, "interviews", json!([create_row(&doc)])).await.expect(200);
    let master = first[0].clone();
    assert_eq!(master["notes"], "eerste versie");
    assert_eq!(master["owner_id"], phone.user_id.to_string());
    assert_eq!(master["_deleted"], false);

    // An edit over that state; then the same edit again, as RxDB sends it when the answer was
    // lost, after another device (native) wrote the notes meanwhile.
    let edit = edit_row(&master, |doc| doc["notes"] = json!("van RxDB"));
    let applied = rxdb_push(&app, &token, "interviews", json!([edit.clone()])).await.expect(200);
    assert_eq!(applied[0]["notes"], "van RxDB");
    phone.sync().await.unwrap();
    let id = Uuid::from_str(doc["id"].as_str().unwrap()).unwrap();
    phone.write("interviews", id, None, json!({"notes": "later, native"}));
    phone.sync().await.unwrap();
    let again = rxdb_push(&app, &token, "interviews", json!([edit])).await.expect(200);
    assert_eq!(again[0]["notes"], "later, native", "the replay wrote nothing");
    assert!(again[0]["version"].as_i64() > applied[0]["version"].as_i64());
    let pulled = rxdb_pull(&app, &token, "interviews", "", 100).await;
    assert_eq!(pulled["documents"][0]["notes"], "later, native");
    assert_eq!(pulled["documents"][0]["version"], again[0]["version"]);
});

db_test!(async fn rows_the_server_refuses_answer_what_the_server_holds(app) {
    let (phone, cohort, trainer) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let code = invite_code(&app, &trainer, &cohort.to_string()).await;
    let mut other = Device::new(&app.address, &app.enrol(&code, "Ahmed").await);
    let theirs = Uuid::now_v7();
    other.write("interviews", theirs, Some(cohort), json!({
        "name_consent": false, "status": "draft", "notes": "van Ahmed"}));
    other.sync().await.unwrap();

    let mine = rxdb_push(&app, &token, "interviews", json!([create_row(&new_interview(cohort, "mijn"))]))
        .await
        .expect(200)[0]
        .clone();
    let doomed = rxdb_push(&app, &token, "interviews", json!([create_row(&new_interview(cohort, "weg"))]))
        .await
        .expect(200)[0]
        .clone();
    let deleted = rxdb_push(&app, &token, "interviews", json!([edit_row(&doomed, |doc| doc["_deleted"] = json!(true))]))
        .await
        .expect(200);
    assert_eq!(deleted[0]["_deleted"], true);

    // Another participant's id, a NUL in a field, an edit of a deleted interview, a field that
    // does not exist: each is refused alone, and answered with what the server holds.
    let foreign = json!({"id": theirs.to_string(), "cohort_id": cohort.to_string(),
                         "status": "draft", "name_consent": false, "notes": "overgenomen", "_deleted": false});
    let answer = rxdb_push(&app, &token, "interviews", json!([
        create_row(&foreign),
        edit_row(&mine, |doc| doc["notes"] = json!("nul\u{0}teken")),
        edit_row(&doomed, |doc| doc["notes"] = json!("toch niet weg")),
        edit_row(&mine, |doc| doc["favourite_colour"] = json!("blauw")),
    ])).await.expect(200);
    assert_eq!(answer[0], json!({"id": theirs.to_string(), "_deleted": true}));
    assert_eq!(answer[1]["notes"], "mijn");
    assert_eq!(answer[1]["version"], mine["version"]);
    assert_eq!(answer[2]["_deleted"], true);
    assert_eq!(answer[3], answer[1]);
    other.sync().await.unwrap();
    assert_eq!(other.view("interviews", theirs).unwrap()["notes"], "van Ahmed");

    // Whole pushes that are not pushes.
    let url = format!("{}/v1/rxdb/interviews/push", app.address);
    let raw = |body: &'static str| {
        app.client.post(&url).bearer_auth(&token).header("veldwerk-protocol", "1")
            .header("content-type", "application/json").body(body).send()
    };
    Reply::from(raw("{\"mutations\": []}").await.unwrap()).await.expect_error(400, "invalid_body");
    Reply::from(raw("[{\"newDocumentState\": {\"notes\": \"no id\"}}]").await.unwrap()).await
        .expect_error(400, "invalid_body");
    let too_many: Vec<Value> = (0..501).map(|_| create_row(&new_interview(cohort, "x"))).collect();
    rxdb_push(&app, &token, "interviews", json!(too_many)).await.expect_error(422, "batch_too_large");
    rxdb_push(&app, &token, "cohorts", json!([])).await.expect_error(422, "read_only_collection");
    rxdb_push(&app, &token, "secrets", json!([])).await.expect_error(404, "not_found");
    let unauthenticated = app.client.get(format!("{}/v1/rxdb/interviews/pull", app.address))
        .header("veldwerk-protocol", "1").send().await.unwrap();
    Reply::from(unauthenticated).await.expect_error(401, "unauthenticated");
});

db_test!(async fn a_collections_pages_are_filled_past_other_collections_changes(app) {
    let (mut phone, cohort, trainer) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    // Interviews interleaved with many profile edits (other versions) and one interview edited
    // twice: a page of interviews reaches past the profile's versions, and holds each once.
    let profile = veldwerk_sync_protocol::schema::user_record_id("profiles", phone.user_id);
    let mut written = Vec::new();
    for i in 0..23 {
        let id = Uuid::now_v7();
        phone.write("interviews", id, Some(cohort), json!({"name_consent": false, "status": "draft", "notes": format!("{i}")}));
        phone.sync().await.unwrap();
        for about in 0..3 {
            phone.write("profiles", profile, Some(cohort), json!({"about": format!("{i}.{about}")}));
            phone.sync().await.unwrap();
        }
        written.push(id);
    }
    phone.write("interviews", written[0], None, json!({"notes": "bewerkt"}));
    phone.sync().await.unwrap();

    for reader in [token.clone(), trainer.token.clone()] {
        let (mut cursor, mut seen) = (String::new(), Vec::new());
        loop {
            let page = rxdb_pull(&app, &reader, "interviews", &cursor, 7).await;
            let documents = page["documents"].as_array().unwrap().clone();
            for doc in &documents {
                seen.push(Uuid::from_str(doc["id"].as_str().unwrap()).unwrap());
            }
            // RxDB stops at a short page: one may only come at the end.
            if documents.len() < 7 {
                break;
            }
            cursor = page["checkpoint"]["cursor"].as_str().unwrap().to_owned();
        }
        let mut expected = written.clone();
        expected.sort();
        seen.sort();
        assert_eq!(seen, expected, "every interview once, nothing else");
    }
    let last = rxdb_pull(&app, &token, "profiles", "", 100).await;
    assert_eq!(last["documents"].as_array().unwrap().len(), 1);
    assert_eq!(last["documents"][0]["about"], "22.2");
});

db_test!(async fn the_rxdb_stream_says_resync_when_the_callers_records_change(app) {
    let (phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let tablet = tablet(&app, &phone, phone.debug_token()).await;
    let mut stream =
        LiveStream::open_at(&app.client, &format!("{}/v1/rxdb/events", app.address), tablet.debug_token()).await;
    let hello = stream.next_containing("data: \"RESYNC\"").await;
    assert!(!hello.contains("event: "), "unnamed messages, as EventSource.onmessage takes: {hello}");
    rxdb_push(&app, &token, "interviews", json!([create_row(&new_interview(cohort, "live"))])).await.expect(200);
    stream.next_containing("data: \"RESYNC\"").await;
});
