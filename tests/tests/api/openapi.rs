//! The OpenAPI document against the real server: every change a pull sends, of every collection
//! (read-only ones included), a push's answer with applied, conflicting and rejected mutations,
//! an attachment's state and the errors, each checked against the document's schemas
//! (`veldwerk_tests::spec_check`). `protocol_doc` does the same for PROTOCOL.md's examples.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_sync_protocol::schema::{
    COLLECTIONS, READ_ONLY_SPECS, assignment_record_id, cohort_record_id, user_record_id,
};
use veldwerk_tests::{
    TestApp,
    client::Device,
    db_test,
    spec_check::{assert_fits, violations_of},
};

use crate::{
    attachments::declare,
    fixtures::invite_code,
    sync::{phone, tablet},
};

pub(crate) async fn served_spec(app: &TestApp) -> Value {
    app.client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every page from the start, as the raw JSON the server sends.
async fn raw_pages(app: &TestApp, token: &str) -> Vec<Value> {
    let (mut cursor, mut pages) = (String::new(), Vec::new());
    loop {
        let page: Value = app
            .client
            .get(format!(
                "{}/v1/sync/pull?cursor={cursor}&limit=7",
                app.address
            ))
            .bearer_auth(token)
            .header("veldwerk-protocol", "1")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        cursor = page["cursor"].as_str().unwrap().to_owned();
        let more = page["has_more"] == true;
        pages.push(page);
        if !more {
            return pages;
        }
    }
}

db_test!(async fn the_spec_describes_everything_sync_really_sends(app) {
    let spec = served_spec(&app).await;
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    let code = invite_code(&app, &trainer, &cohort.to_string()).await;
    let mut pieter = Device::new(&app.address, &app.enrol(&code, "Pieter").await);
    let announcement = app
        .post(&format!("/v1/cohorts/{cohort}/announcements"), Some(&trainer.token),
              json!({"title": "Dag 2 verplaatst", "body": "We beginnen om 10:00."}))
        .await
        .expect(201);
    sanne.sync().await.unwrap();
    let assignment = sanne.ids("assignments")[0];

    // A record of every writable collection, a conflict, a tombstone, an eviction.
    let interview = Uuid::now_v7();
    sanne.write("interviews", interview, Some(cohort), json!({
        "name_consent": false, "status": "draft", "notes": "begin", "interviewed_on": "2027-01-12",
        "questions": [{"vraag": "Wat valt op?"}]}));
    let doomed = Uuid::now_v7();
    sanne.write("interviews", doomed, Some(cohort), json!({"name_consent": false, "status": "draft"}));
    let feedback = Uuid::now_v7();
    sanne.write("feedback_exercises", feedback, Some(cohort), json!({
        "direction": "given", "shared": true, "counterpart_user_id": pieter.user_id,
        "observation": "Je luisterde goed", "happened_on": "2027-01-12"}));
    sanne.write("assignment_work", assignment_record_id(sanne.user_id, assignment), Some(cohort),
        json!({"assignment_id": assignment, "done": true, "reflection": "Gedaan"}));
    sanne.write("harvests", cohort_record_id("harvests", sanne.user_id, cohort), Some(cohort),
        json!({"status": "draft", "outline": "Drie lessen", "material": {"slides": 3}}));
    sanne.write("profiles", user_record_id("profiles", sanne.user_id), Some(cohort),
        json!({"insights_primary": "blue", "insights_scores": {"blue": 60}}));
    let announcement_id: Uuid = announcement["id"].as_str().unwrap().parse().unwrap();
    sanne.write("announcement_reads",
        veldwerk_sync_protocol::schema::linked_record_id("announcement_reads", sanne.user_id, announcement_id),
        Some(cohort), json!({"announcement_id": announcement_id, "read_at": "2027-01-12T09:30:00Z"}));
    sanne.sync().await.unwrap();
    assert!(sanne.rejected.is_empty(), "{:?}", sanne.rejected);
    let attachment = declare(&mut sanne, cohort, ("interviews", interview), b"whiteboard", "image/jpeg").await;
    pieter.sync().await.unwrap();
    sanne.write("feedback_exercises", feedback, None, json!({"shared": false}));
    sanne.delete("interviews", doomed);
    let token = sanne.debug_token().to_owned();
    let mut tablet = tablet(&app, &sanne, &token).await;
    tablet.pull().await.unwrap();
    tablet.write("interviews", interview, None, json!({"notes": "tablet"}));
    std::thread::sleep(std::time::Duration::from_millis(5));
    sanne.write("interviews", interview, None, json!({"notes": "telefoon"}));
    tablet.push().await.unwrap();

    // The push's answer: applied, with a conflict, and a rejection.
    let mut outbox = sanne.outbox.clone();
    let mut foreign = outbox[0].clone();
    foreign.id = Uuid::now_v7();
    foreign.collection = "secrets".into();
    outbox.push(foreign);
    let answer = app.client.post(format!("{}/v1/sync/push", app.address))
        .bearer_auth(&token).header("veldwerk-protocol", "1")
        .json(&json!({"mutations": outbox})).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_fits(&spec, "SyncPushResponse", &answer);
    let statuses: BTreeSet<&str> = answer["results"].as_array().unwrap().iter()
        .map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, BTreeSet::from(["applied", "rejected"]));
    assert!(answer["results"].as_array().unwrap().iter().any(|r| r.get("conflicts").is_some()));
    for mutation in &sanne.outbox {
        assert_fits(&spec, "SyncMutation", &serde_json::to_value(mutation).unwrap());
    }

    // Every page each of them pulls, with every collection among them.
    let mut seen = BTreeSet::new();
    let mut ops = BTreeSet::new();
    for reader in [token.as_str(), pieter.debug_token(), trainer.token.as_str()] {
        for page in raw_pages(&app, reader).await {
            assert_fits(&spec, "SyncPullResponse", &page);
            for change in page["changes"].as_array().unwrap() {
                seen.insert(change["collection"].as_str().unwrap().to_owned());
                ops.insert(change["op"].as_str().unwrap().to_owned());
            }
        }
    }
    let every: BTreeSet<String> = COLLECTIONS.iter().chain(READ_ONLY_SPECS)
        .map(|spec| spec.name.to_owned()).collect();
    assert_eq!(seen, every, "each collection's schema was checked against a real record");
    assert_eq!(ops, BTreeSet::from(["evict".to_owned(), "put".to_owned()]));

    let view: Value = app.get(&format!("/v1/attachments/{attachment}"), &token).await.expect(200);
    assert_fits(&spec, "SyncAttachmentView", &view);
    let error: Value = app.client.get(format!("{}/v1/sync/pull?cursor=nonsense", app.address))
        .bearer_auth(&token).header("veldwerk-protocol", "1").send().await.unwrap()
        .json().await.unwrap();
    assert_fits(&spec, "ErrorBody", &error);
});

db_test!(async fn every_collection_has_its_own_schemas_and_unions_name_them_all(app) {
    let spec = served_spec(&app).await;
    let schemas = &spec["components"]["schemas"];
    for collection in COLLECTIONS {
        let mapping = &schemas["SyncMutation"]["discriminator"]["mapping"][collection.name];
        let target = mapping.as_str().unwrap_or_else(|| panic!("{} has a mutation schema", collection.name));
        let fields = &schemas[format!("Sync{}Fields", target.rsplit('/').next().unwrap()
            .trim_start_matches("Sync").trim_end_matches("Mutation"))]["properties"];
        let names: BTreeSet<&str> = fields.as_object().unwrap().keys().map(String::as_str).collect();
        let expected: BTreeSet<&str> = collection.fields.iter().map(|f| f.name).collect();
        assert_eq!(names, expected, "{}: the spec's fields are the protocol's", collection.name);
        for field in collection.fields.iter().filter(|f| f.server_written) {
            assert_eq!(fields[field.name]["readOnly"], true, "{}.{}", collection.name, field.name);
        }
    }
    for collection in COLLECTIONS.iter().chain(READ_ONLY_SPECS) {
        assert!(schemas["SyncPut"]["discriminator"]["mapping"][collection.name].is_string(),
                "{} records are in the pull's union", collection.name);
    }
    for (path, method) in [("/sync/push", "post"), ("/sync/pull", "get"), ("/sync/events", "get"),
                           ("/attachments/{id}", "get"), ("/attachments/{id}/content", "patch"),
                           ("/attachments/{id}/content", "head"), ("/attachments/{id}/finish", "post")] {
        let operation = &spec["paths"][path][method];
        assert!(operation["operationId"].is_string(), "{method} {path} is in the spec");
        assert!(operation["responses"]["401"].is_object(), "{method} {path} lists its errors");
    }
    // The interactive docs show the same document.
    let docs = app.client.get(format!("{}/docs", app.address)).send().await.unwrap().text().await.unwrap();
    assert!(docs.contains("syncPush") && docs.contains("SyncInterviewsMutation"));
});

/// The JSON media type of a request or answer (poem-openapi names it with its charset).
fn json_media(content: &Value) -> Option<&Value> {
    content
        .as_object()?
        .iter()
        .find(|(name, _)| name.starts_with("application/json"))
        .map(|(_, media)| media)
}

/// The example a JSON request or answer shows: on its media type, or on its schema (an array's
/// on its items' schema), with the schema it must fit.
fn example_of<'a>(spec: &'a Value, media: &'a Value) -> Option<(&'a Value, &'a Value)> {
    let schema = &media["schema"];
    if let Some(example) = media.get("example") {
        return Some((example, schema));
    }
    let resolve = |schema: &'a Value| match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => spec.pointer(reference.trim_start_matches('#')).unwrap(),
        None => schema,
    };
    let own = resolve(schema);
    if let Some(example) = own.get("example") {
        return Some((example, own));
    }
    let items = resolve(own.get("items")?);
    Some((items.get("example")?, items))
}

db_test!(async fn every_operation_shows_an_example_request_and_answer_that_fit(app) {
    let spec = served_spec(&app).await;
    let mut checked = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let name = format!("{} {path}", method.to_uppercase());
            let mut media = Vec::new();
            if let Some(body) = json_media(&operation["requestBody"]["content"]) {
                media.push(("request", body));
            }
            for (status, answer) in operation["responses"].as_object().unwrap() {
                if let Some(body) = json_media(&answer["content"])
                    && status.starts_with('2')
                {
                    media.push(("answer", body));
                }
            }
            for (what, body) in media {
                let (example, schema) = example_of(&spec, body)
                    .unwrap_or_else(|| panic!("{name}: its {what} has no example"));
                let found = violations_of(&spec, schema, example);
                assert!(found.is_empty(), "{name}: its {what} example does not fit:\n{}", found.join("\n"));
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "{checked} examples");
});

db_test!(async fn operations_list_the_errors_they_can_give_and_not_others(app) {
    let spec = served_spec(&app).await;
    let statuses = |path: &str, method: &str| -> BTreeSet<String> {
        spec["paths"][path][method]["responses"].as_object().unwrap().keys().cloned().collect()
    };
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let listed = statuses(path, method);
            assert!(!listed.contains("405"), "{method} {path}: a declared operation never answers 405");
            if operation.get("requestBody").is_none() {
                assert!(!listed.contains("415"), "{method} {path} has no body to refuse");
            }
            if method != "options" {
                assert!(listed.contains("401"), "{method} {path}: {listed:?}");
            }
        }
    }
    let list = statuses("/cohorts", "get");
    for status in ["404", "409", "410", "413", "429"] {
        assert!(!list.contains(status), "GET /cohorts cannot answer {status}");
    }
    let enrol = statuses("/auth/enrol", "post");
    for status in ["404", "409", "410", "429"] {
        assert!(enrol.contains(status), "enrolling can answer {status}");
    }
    assert!(!enrol.contains("403"));
    assert!(statuses("/sync/pull", "get").contains("410"), "reset_required");
});
