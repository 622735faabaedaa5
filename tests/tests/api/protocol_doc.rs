//! The JSON examples in `sync-protocol/PROTOCOL.md` are checked against the real server: each
//! request example is sent (placeholders filled in) and each answer must have exactly the shape
//! and values the document shows. Placeholders `<...>` match any value; those naming an id must
//! stand for the same value everywhere.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_sync_protocol::{Clock, PushResponse};
use veldwerk_tests::{db_test, spec_check::assert_fits};

use crate::sync::{phone, tablet};

/// The ```json example=NAME blocks of PROTOCOL.md.
fn examples() -> HashMap<String, Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../sync-protocol/PROTOCOL.md");
    let text = std::fs::read_to_string(path).expect("PROTOCOL.md exists");
    let mut examples = HashMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("```json example=") else {
            continue;
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        let value = serde_json::from_str(&body.join("\n"))
            .unwrap_or_else(|err| panic!("example {name} is not JSON: {err}"));
        examples.insert(name.to_owned(), value);
    }
    examples
}

fn placeholder(value: &Value) -> Option<&str> {
    value
        .as_str()
        .filter(|s| s.starts_with('<') && s.ends_with('>'))
}

/// Replaces placeholders using `fill`.
fn fill(value: &Value, fill_one: &mut dyn FnMut(&str) -> Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), fill(value, fill_one)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, fill_one)).collect()),
        _ => match placeholder(value) {
            Some(name) => fill_one(name),
            None => value.clone(),
        },
    }
}

/// Checks `actual` against the documented `doc`, binding id placeholders.
fn assert_matches(doc: &Value, actual: &Value, bound: &mut BTreeMap<String, Value>, path: &str) {
    if let Some(name) = placeholder(doc).map(|p| p.trim_matches(['<', '>'])) {
        if name.contains("id") {
            let previous = bound
                .entry(name.to_owned())
                .or_insert_with(|| actual.clone());
            assert_eq!(previous, actual, "{path}: {name} stands for one value");
        }
        return;
    }
    match (doc, actual) {
        (Value::Object(doc), Value::Object(actual)) => {
            let doc_keys: Vec<&String> = doc.keys().collect();
            let actual_keys: Vec<&String> = actual.keys().collect();
            assert_eq!(doc_keys, actual_keys, "{path}: the documented fields");
            for (key, value) in doc {
                assert_matches(value, &actual[key], bound, &format!("{path}.{key}"));
            }
        }
        (Value::Array(doc), Value::Array(actual)) => {
            assert_eq!(
                doc.len(),
                actual.len(),
                "{path}: the documented number of items"
            );
            for (index, (doc, actual)) in doc.iter().zip(actual).enumerate() {
                assert_matches(doc, actual, bound, &format!("{path}[{index}]"));
            }
        }
        _ => assert_eq!(doc, actual, "{path}"),
    }
}

db_test!(async fn the_protocol_documents_examples_are_what_the_server_does(app) {
    let examples = examples();
    // Each documented exchange must also fit the OpenAPI document's schemas.
    let spec = crate::openapi::served_spec(&app).await;
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    phone.pull().await.unwrap();
    let cursor = phone.cursor.clone().unwrap();

    // Push: the documented request, with real ids and clocks.
    let mut clock = Clock::new(phone.device_id.simple().to_string());
    let mut ids: BTreeMap<String, Value> = BTreeMap::new();
    ids.insert("<cohort id>".into(), json!(cohort));
    let now = chrono::Utc::now().timestamp_millis() as u64;
    let request = fill(&examples["push-request"], &mut |name| {
        if name.contains("clock") {
            json!(clock.tick(now).to_string())
        } else {
            ids.entry(name.to_owned())
                .or_insert_with(|| json!(Uuid::now_v7()))
                .clone()
        }
    });
    let reply = app
        .client
        .post(format!("{}/v1/sync/push", app.address))
        .bearer_auth(phone.debug_token())
        .header("veldwerk-protocol", "1")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let answer: Value = reply.json().await.unwrap();
    let mut bound: BTreeMap<String, Value> = ids
        .iter()
        .map(|(name, value)| (name.trim_matches(['<', '>']).to_owned(), value.clone()))
        .collect();
    assert_matches(&examples["push-response"], &answer, &mut bound, "push-response");
    assert_fits(&spec, "SyncPushRequest", &request);
    assert_fits(&spec, "SyncPushResponse", &answer);

    // Pull from before the push: the documented page.
    let reply = app
        .client
        .get(format!("{}/v1/sync/pull?cursor={cursor}", app.address))
        .bearer_auth(phone.debug_token())
        .header("veldwerk-protocol", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let page: Value = reply.json().await.unwrap();
    bound.insert("user id".into(), json!(phone.user_id));
    assert_matches(&examples["pull-response"], &page, &mut bound, "pull-response");
    assert_fits(&spec, "SyncPullResponse", &page);

    // A conflict: the phone edits offline first, the tablet later but pushes first.
    let interview: Uuid = serde_json::from_value(bound["interview id"].clone()).unwrap();
    let token = phone.debug_token().to_owned();
    let mut tablet = tablet(&app, &phone, &token).await;
    phone.pull().await.unwrap();
    tablet.pull().await.unwrap();
    phone.write("interviews", interview, None, json!({ "notes": "Versie van de telefoon" }));
    std::thread::sleep(std::time::Duration::from_millis(5));
    tablet.write("interviews", interview, None, json!({ "notes": "Versie van de tablet" }));
    tablet.push().await.unwrap();
    let answer: PushResponse = phone.send_batch(&phone.outbox.clone()).await.unwrap();
    let result = serde_json::to_value(&answer.results[0]).unwrap();
    assert_matches(&examples["conflict-result"], &result, &mut BTreeMap::new(), "conflict-result");
    assert_fits(&spec, "SyncMutationResult", &result);
    phone.outbox.clear();

    // The owner pulls the record with its conflict...
    let page = pull_since(&app, &phone, &cursor_of(&phone)).await;
    assert_matches(&examples["conflicted-record"], &page["changes"][0], &mut bound, "conflicted-record");
    assert_fits(&spec, "SyncChange", &page["changes"][0]);
    let kept_clock = page["changes"][0]["conflicts"][0]["kept_clock"].clone();
    phone.apply_page(serde_json::from_value(page).unwrap()).unwrap();
    // ...and settles it by writing the field over the value the record holds.
    phone.write("interviews", interview, None, json!({ "notes": "Versie van de telefoon" }));
    let dismissal = serde_json::to_value(&phone.outbox[0]).unwrap();
    assert_matches(&examples["dismiss-conflict"], &dismissal, &mut bound, "dismiss-conflict");
    assert_fits(&spec, "SyncMutation", &dismissal);
    assert_eq!(dismissal["base"]["notes"], kept_clock);
    let before = cursor_of(&phone);
    phone.push().await.unwrap();
    let page = pull_since(&app, &phone, &before).await;
    assert!(page["changes"][0].get("conflicts").is_none(), "{page}");
    phone.apply_page(serde_json::from_value(page).unwrap()).unwrap();

    // A deletion reaches the other device as a tombstone without content.
    let before = cursor_of(&tablet);
    phone.delete("interviews", interview);
    phone.push().await.unwrap();
    let page = pull_since(&app, &tablet, &before).await;
    assert_matches(&examples["tombstone"], &page["changes"][0], &mut bound, "tombstone");
    assert_fits(&spec, "SyncPullResponse", &page);
});

fn cursor_of(device: &veldwerk_tests::client::Device) -> String {
    device.cursor.clone().unwrap()
}

async fn pull_since(
    app: &veldwerk_tests::TestApp,
    device: &veldwerk_tests::client::Device,
    cursor: &str,
) -> Value {
    let reply = app
        .client
        .get(format!("{}/v1/sync/pull?cursor={cursor}", app.address))
        .bearer_auth(device.debug_token())
        .header("veldwerk-protocol", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    reply.json().await.unwrap()
}
