//! WatermelonDB's sync contract (`/v1/watermelon/sync`): real WatermelonDB databases from npm
//! converging through it, and its edges by hand: a push over a record changed since the pull, a
//! push sent again, records the server cannot apply, pushes larger than a native batch, pulls
//! after deletes and migrations, requests that are not requests.

use std::str::FromStr;

use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_tests::{Reply, TestApp, client::Device, db_test};

use crate::{fixtures::invite_code, sync::phone};

fn sync_url(app: &TestApp, last_pulled_at: Option<i64>) -> String {
    let since = last_pulled_at.map_or("null".to_owned(), |t| t.to_string());
    format!("{}/v1/watermelon/sync?last_pulled_at={since}", app.address)
}

async fn pull(app: &TestApp, token: &str, last_pulled_at: Option<i64>) -> Value {
    let answer = app
        .client
        .get(format!(
            "{}&schema_version=1&migration=null",
            sync_url(app, last_pulled_at)
        ))
        .bearer_auth(token)
        .header("veldwerk-protocol", "1")
        .send()
        .await
        .unwrap();
    Reply::from(answer).await.expect(200)
}

async fn push(app: &TestApp, token: &str, last_pulled_at: i64, changes: Value) -> Reply {
    let answer = app
        .client
        .post(sync_url(app, Some(last_pulled_at)))
        .bearer_auth(token)
        .header("veldwerk-protocol", "1")
        .json(&changes)
        .send()
        .await
        .unwrap();
    Reply::from(answer).await
}

/// A new interview as a WatermelonDB raw record, as the library sends it.
fn raw_interview(cohort: Uuid, notes: &str) -> Value {
    json!({"id": Uuid::now_v7().to_string(), "cohort_id": cohort.to_string(), "status": "draft",
           "name_consent": false, "notes": notes, "place": null, "interviewed_on": "",
           "_status": "created", "_changed": ""})
}

fn ids(records: &Value) -> Vec<String> {
    let mut ids: Vec<String> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|record| {
            record
                .as_str()
                .unwrap_or_else(|| record["id"].as_str().unwrap())
                .to_owned()
        })
        .collect();
    ids.sort();
    ids
}

db_test!(async fn watermelon_databases_converge_through_the_watermelon_endpoints(app) {
    let Some(dir) = crate::fixtures::npm_check_dir("watermelon", "@nozbe/watermelondb") else { return };
    crate::rxdb::converge_with_real_library(&app, &dir).await;
});

db_test!(async fn a_push_over_a_record_changed_since_the_pull_is_refused_whole(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let edited = Uuid::now_v7();
    phone.write("interviews", edited, Some(cohort), json!({
        "name_consent": false, "status": "draft", "notes": "native"}));
    phone.sync().await.unwrap();
    let first = pull(&app, &token, None).await;
    let pulled_at = first["timestamp"].as_i64().unwrap();
    assert!(pulled_at > 0);
    let mut record = first["changes"]["interviews"]["created"][0].clone();
    assert_eq!(record["id"], edited.to_string());

    // Another device edits the interview after that pull.
    phone.write("interviews", edited, None, json!({"place": "Stadhuis"}));
    phone.sync().await.unwrap();

    // A push that edits it and creates another: refused, and neither applied.
    record["notes"] = json!("watermelon");
    let created = raw_interview(cohort, "nieuw");
    let changes = json!({"interviews": {"created": [created], "updated": [record], "deleted": []}});
    let refused = push(&app, &token, pulled_at, changes.clone()).await.expect_error(409, "changed_since_pull");
    assert!(refused["message"].as_str().unwrap().contains(&edited.to_string()), "{refused}");
    let now = pull(&app, &token, None).await;
    assert_eq!(ids(&now["changes"]["interviews"]["created"]), vec![edited.to_string()]);
    assert_eq!(now["changes"]["interviews"]["created"][0]["notes"], "native");

    // What `synchronize()` does next: pull (its own edit of the notes wins locally), push again.
    let since = pull(&app, &token, Some(pulled_at)).await;
    let pulled_again = since["timestamp"].as_i64().unwrap();
    assert!(pulled_again > pulled_at);
    let mut merged = since["changes"]["interviews"]["updated"][0].clone();
    assert_eq!(merged["place"], "Stadhuis");
    merged["notes"] = json!("watermelon");
    let changes = json!({"interviews": {"created": [changes["interviews"]["created"][0]], "updated": [merged]}});
    let answer = push(&app, &token, pulled_again, changes).await.expect(200);
    assert_eq!(answer["experimentalRejectedIds"], json!({}));
    phone.sync().await.unwrap();
    let view = phone.view("interviews", edited).unwrap();
    assert_eq!((view["notes"].as_str(), view["place"].as_str()), (Some("watermelon"), Some("Stadhuis")));
    assert_eq!(phone.ids("interviews").len(), 2);
});

db_test!(async fn a_push_sent_again_after_its_answer_was_lost_is_applied_once(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let pulled_at = pull(&app, &token, None).await["timestamp"].as_i64().unwrap();
    let created = raw_interview(cohort, "een keer");
    let changes = json!({"interviews": {"created": [created.clone()], "updated": [], "deleted": []}});
    push(&app, &token, pulled_at, changes.clone()).await.expect(200);
    let after_first = pull(&app, &token, Some(pulled_at)).await;
    // The same push again, with the same `last_pulled_at`: no conflict with itself, no new
    // version, nothing twice.
    let again = push(&app, &token, pulled_at, changes.clone()).await.expect(200);
    assert_eq!(again["experimentalRejectedIds"], json!({}));
    let after_again = pull(&app, &token, Some(pulled_at)).await;
    assert_eq!(after_again["timestamp"], after_first["timestamp"], "the replay wrote nothing");
    assert_eq!(ids(&after_again["changes"]["interviews"]["updated"]), vec![created["id"].as_str().unwrap().to_owned()]);
    phone.sync().await.unwrap();
    assert_eq!(phone.ids("interviews").len(), 1);

    // Another device edits the notes after the first push; then the same push arrives once more
    // (a proxy retried it, or the app did before learning it had gone through). It is answered
    // as the first time: no conflict, and the newer notes stay, not the pushed ones.
    let id = Uuid::from_str(created["id"].as_str().unwrap()).unwrap();
    phone.write("interviews", id, None, json!({"notes": "later, on the phone"}));
    phone.sync().await.unwrap();
    let replayed = push(&app, &token, pulled_at, changes).await.expect(200);
    assert_eq!(replayed["experimentalRejectedIds"], json!({}));
    phone.sync().await.unwrap();
    assert_eq!(phone.view("interviews", id).unwrap()["notes"], "later, on the phone");
});

db_test!(async fn records_the_server_cannot_apply_come_back_as_rejected_ids(app) {
    let (mut phone, cohort, trainer) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let code = invite_code(&app, &trainer, &cohort.to_string()).await;
    let mut other = Device::new(&app.address, &app.enrol(&code, "Ahmed").await);
    let theirs = Uuid::now_v7();
    other.write("interviews", theirs, Some(cohort), json!({
        "name_consent": false, "status": "draft", "notes": "van Ahmed"}));
    other.sync().await.unwrap();
    let pulled = pull(&app, &token, None).await;
    let pulled_at = pulled["timestamp"].as_i64().unwrap();
    let cohort_record = pulled["changes"]["cohorts"]["created"][0].clone();
    assert_eq!(cohort_record["id"], cohort.to_string());

    // WatermelonDB's own id format, another participant's id, a NUL, a value outside the
    // choices, a server-only table: each refused alone; the good one applies.
    let mut watermelon_id = raw_interview(cohort, "x");
    watermelon_id["id"] = json!("abcdefgh12345678");
    let mut foreign = raw_interview(cohort, "overgenomen");
    foreign["id"] = json!(theirs.to_string());
    let nul = raw_interview(cohort, "nul\u{0}teken");
    let mut wrong_status = raw_interview(cohort, "status");
    wrong_status["status"] = json!("half");
    let good = raw_interview(cohort, "goed");
    let changes = json!({
        "interviews": {"created": [watermelon_id, foreign, nul, wrong_status, good], "updated": [], "deleted": []},
        "cohorts": {"created": [], "updated": [cohort_record], "deleted": []},
    });
    let answer = push(&app, &token, pulled_at, changes).await.expect(200);
    let mut rejected_interviews = vec![
        "abcdefgh12345678".to_owned(),
        theirs.to_string(),
        nul["id"].as_str().unwrap().to_owned(),
        wrong_status["id"].as_str().unwrap().to_owned(),
    ];
    rejected_interviews.sort();
    assert_eq!(ids(&answer["experimentalRejectedIds"]["interviews"]), rejected_interviews, "{answer}");
    assert_eq!(answer["experimentalRejectedIds"]["cohorts"], json!([cohort.to_string()]));
    let codes: Vec<&str> = answer["rejections"].as_array().unwrap().iter()
        .map(|r| r["code"].as_str().unwrap()).collect();
    assert!(codes.contains(&"invalid_id") && codes.contains(&"read_only_collection"), "{codes:?}");

    phone.sync().await.unwrap();
    assert_eq!(phone.ids("interviews"), vec![Uuid::from_str(good["id"].as_str().unwrap()).unwrap()]);
    other.sync().await.unwrap();
    assert_eq!(other.view("interviews", theirs).unwrap()["notes"], "van Ahmed");
});

db_test!(async fn a_push_larger_than_a_native_batch_applies_whole(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let pulled_at = pull(&app, &token, None).await["timestamp"].as_i64().unwrap();
    let created: Vec<Value> = (0..veldwerk_sync_protocol::MAX_BATCH + 20)
        .map(|i| raw_interview(cohort, &format!("{i}")))
        .collect();
    let answer = push(&app, &token, pulled_at, json!({"interviews": {"created": created}})).await.expect(200);
    assert_eq!(answer["experimentalRejectedIds"], json!({}));
    let all = pull(&app, &token, None).await;
    assert_eq!(ids(&all["changes"]["interviews"]["created"]), ids(&json!(created)));
    phone.sync().await.unwrap();
    assert_eq!(phone.ids("interviews").len(), veldwerk_sync_protocol::MAX_BATCH + 20);
});

db_test!(async fn pulls_send_created_then_updated_and_deleted_and_a_migration_starts_over(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let (kept, doomed) = (Uuid::now_v7(), Uuid::now_v7());
    for id in [kept, doomed] {
        phone.write("interviews", id, Some(cohort), json!({
            "name_consent": false, "status": "draft", "questions": [{"vraag": "Wie?"}]}));
    }
    phone.sync().await.unwrap();
    let first = pull(&app, &token, None).await;
    let interviews = &first["changes"]["interviews"];
    assert_eq!(ids(&interviews["created"]), ids(&json!([kept.to_string(), doomed.to_string()])));
    assert_eq!(interviews["updated"], json!([]));
    assert_eq!(interviews["created"][0]["questions"], "[{\"vraag\":\"Wie?\"}]", "documents as JSON text");
    for table in ["interviews", "feedback_exercises", "assignment_work", "harvests", "profiles",
                  "announcement_reads", "attachments", "cohorts", "cohort_days", "assignments", "announcements"] {
        assert!(first["changes"][table]["created"].is_array(), "{table} is always there");
    }
    let t1 = first["timestamp"].as_i64().unwrap();

    phone.write("interviews", kept, None, json!({"notes": "later"}));
    phone.delete("interviews", doomed);
    phone.sync().await.unwrap();
    let since = pull(&app, &token, Some(t1)).await;
    let interviews = &since["changes"]["interviews"];
    assert_eq!(interviews["created"], json!([]));
    assert_eq!(ids(&interviews["updated"]), vec![kept.to_string()]);
    assert_eq!(interviews["updated"][0]["notes"], "later");
    assert_eq!(interviews["deleted"], json!([doomed.to_string()]));
    let t2 = since["timestamp"].as_i64().unwrap();
    assert!(t2 > t1);

    let nothing = pull(&app, &token, Some(t2)).await;
    assert_eq!(nothing["timestamp"], t2);
    assert_eq!(nothing["changes"]["interviews"], json!({"created": [], "updated": [], "deleted": []}));

    // After a local migration WatermelonDB asks for what its new tables and columns need: all.
    let migration = app.client
        .get(format!("{}&schema_version=2&migration=%7B%22from%22%3A1%2C%22tables%22%3A%5B%5D%2C%22columns%22%3A%5B%5D%7D", sync_url(&app, Some(t2))))
        .bearer_auth(&token).header("veldwerk-protocol", "1").send().await.unwrap();
    let migrated = Reply::from(migration).await.expect(200);
    assert_eq!(ids(&migrated["changes"]["interviews"]["updated"]), vec![kept.to_string()]);
    assert_eq!(migrated["changes"]["interviews"]["deleted"], json!([doomed.to_string()]));
    assert_eq!(migrated["timestamp"], t2);
});

db_test!(async fn requests_that_are_not_watermelon_requests_get_a_clear_4xx(app) {
    let (phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    push(&app, &token, 0, json!({"secrets": {"created": []}})).await.expect_error(422, "unknown_collection");
    push(&app, &token, 0, json!([raw_interview(cohort, "x")])).await.expect_error(400, "invalid_body");
    push(&app, &token, 0, json!({"interviews": {"created": [], "removed": []}})).await.expect_error(400, "invalid_body");
    for query in ["last_pulled_at=abc", "last_pulled_at=-1", "since=3"] {
        let answer = app.client.get(format!("{}/v1/watermelon/sync?{query}", app.address))
            .bearer_auth(&token).header("veldwerk-protocol", "1").send().await.unwrap();
        Reply::from(answer).await.expect_error(400, "invalid_parameter");
    }
    let unauthenticated = app.client.get(sync_url(&app, None))
        .header("veldwerk-protocol", "1").send().await.unwrap();
    Reply::from(unauthenticated).await.expect_error(401, "unauthenticated");
});

db_test!(async fn pulls_cut_at_the_limit_are_consistent_prefixes_that_continue(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let mut written = Vec::new();
    for i in 0..7 {
        let id = Uuid::now_v7();
        phone.write("interviews", id, Some(cohort), json!({
            "name_consent": false, "status": "draft", "notes": format!("{i}")}));
        phone.sync().await.unwrap();
        written.push(id.to_string());
    }
    // Edited after its first version: it must arrive once, in its latest state.
    phone.write("interviews", Uuid::from_str(&written[0]).unwrap(), None, json!({"notes": "later"}));
    phone.sync().await.unwrap();

    let pull_limited = |since: Option<i64>| {
        let url = format!("{}&limit=3", sync_url(&app, since));
        let request = app.client.get(url).bearer_auth(&token).header("veldwerk-protocol", "1");
        async move { Reply::from(request.send().await.unwrap()).await.expect(200) }
    };
    let (mut since, mut seen, mut answers) = (None, Vec::new(), 0);
    loop {
        let answer = pull_limited(since).await;
        answers += 1;
        let interviews = &answer["changes"]["interviews"];
        let records = if since.is_none() { &interviews["created"] } else { &interviews["updated"] };
        for record in records.as_array().unwrap() {
            seen.push((record["id"].as_str().unwrap().to_owned(), record["notes"].clone()));
        }
        let timestamp = answer["timestamp"].as_i64().unwrap();
        assert!(since.is_none_or(|since| timestamp > since), "every answer moves on");
        since = Some(timestamp);
        if answer["has_more"] == false {
            break;
        }
    }
    assert!(answers >= 3, "{answers} answers of at most about 3 changes");
    // The cohort's read-only records arrive too; each interview at least once, and the edited
    // one last as `later` (an earlier answer may have carried its first state).
    let mut ids: Vec<String> = seen.iter().map(|(id, _)| id.clone()).collect();
    ids.sort();
    ids.dedup();
    let mut expected = written.clone();
    expected.sort();
    assert_eq!(ids, expected);
    let last_of_first = seen.iter().rev().find(|(id, _)| *id == written[0]).unwrap();
    assert_eq!(last_of_first.1, "later");
    // Nothing after the last answer.
    let rest = pull(&app, &token, since).await;
    assert_eq!(rest["has_more"], false);
    assert_eq!(rest["changes"]["interviews"], json!({"created": [], "updated": [], "deleted": []}));
});

db_test!(async fn a_device_s_whole_offline_work_is_pushed_at_once_past_the_api_s_body_limit(app) {
    // WatermelonDB pushes everything changed offline in one request: 80 interviews with long
    // notes are 1.6 MB, more than the API's 1 MiB bodies.
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let pulled_at = pull(&app, &token, None).await["timestamp"].as_i64().unwrap();
    let notes = "Bewoners vertellen over de wijk en de markt. ".repeat(440);
    assert!(notes.chars().count() <= 20_000);
    let created: Vec<Value> = (0..80).map(|_| raw_interview(cohort, &notes)).collect();
    let changes = json!({"interviews": {"created": created}});
    assert!(changes.to_string().len() > 1024 * 1024);
    let answer = push(&app, &token, pulled_at, changes).await.expect(200);
    assert_eq!(answer["experimentalRejectedIds"], json!({}));
    phone.sync().await.unwrap();
    assert_eq!(phone.ids("interviews").len(), 80);
});

db_test!(async fn a_push_past_its_own_limit_is_refused_whole_with_413(app) with |config| {
    config.max_watermelon_push_bytes = 64 * 1024;
}; {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let notes = "x".repeat(10_000);
    let created: Vec<Value> = (0..10).map(|_| raw_interview(cohort, &notes)).collect();
    push(&app, &token, 0, json!({"interviews": {"created": created}}))
        .await
        .expect_error(413, "body_too_large");
    phone.sync().await.unwrap();
    assert!(phone.ids("interviews").is_empty(), "nothing of a refused push is applied");
});

db_test!(async fn devices_on_rxdb_and_watermelondb_report_their_sync_health_too(app) {
    let (phone, cohort, trainer) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let tablet = crate::sync::tablet(&app, &phone, &token).await;
    let oldest = "2027-01-12T09:30:00Z";
    let watermelon = app.client
        .get(format!("{}&outbox_pending=3&outbox_oldest={oldest}", sync_url(&app, None)))
        .bearer_auth(&token).header("veldwerk-protocol", "1").header("veldwerk-app-version", "2.0.1")
        .send().await.unwrap();
    Reply::from(watermelon).await.expect(200);
    let rxdb = app.client
        .get(format!("{}/v1/rxdb/interviews/pull?batchSize=10&outboxPending=0", app.address))
        .bearer_auth(tablet.debug_token()).header("veldwerk-protocol", "1")
        .send().await.unwrap();
    Reply::from(rxdb).await.expect(200);

    let (_, row) = crate::progress::progress_of(&app, &trainer.token, cohort, phone.user_id).await;
    let device = |id: Uuid| {
        row["devices"].as_array().unwrap().iter()
            .find(|d| d["user_device_id"] == id.to_string()).unwrap().clone()
    };
    let on_watermelon = device(phone.device_id);
    assert_eq!(on_watermelon["outbox_pending"], 3, "{on_watermelon}");
    assert_eq!(on_watermelon["app_version"], "2.0.1");
    let reported: chrono::DateTime<chrono::Utc> = on_watermelon["outbox_oldest_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(reported, oldest.parse::<chrono::DateTime<chrono::Utc>>().unwrap());
    assert!(on_watermelon["last_sync_at"].is_string());
    let on_rxdb = device(tablet.device_id);
    assert_eq!(on_rxdb["outbox_pending"], 0, "{on_rxdb}");
    assert!(on_rxdb["last_sync_at"].is_string());
});
