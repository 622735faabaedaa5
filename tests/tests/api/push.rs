//! Push through our FCM client against the local FCM server: announcements, reminders, every
//! error class, credential failures, crashes and two workers.

use std::time::Duration;

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_tests::{
    TestApp,
    client::Device,
    fcm_mock::Scripted,
    fcm_test,
    veldwerk_server::{
        jobs::push::{run_once, run_once_at},
        store::{
            entity::{cohort, delivery, organisation},
            push as push_store,
        },
    },
};

use crate::{fixtures::invite_code, sync::phone};

/// Registers a device's push token.
async fn register(app: &TestApp, device: &Device, token: &str, locale: &str, zone: &str) {
    app.call(
        reqwest::Method::PUT,
        "/v1/me/push-device",
        Some(device.debug_token()),
        Some(json!({
            "token": token, "platform": "android", "locale": locale,
            "time_zone": zone, "app_version": "1.0.0"
        })),
    )
    .await
    .expect(200);
}

/// Enrols another participant in the cohort and registers their token.
async fn participant_with_token(
    app: &TestApp,
    trainer: &crate::fixtures::User,
    cohort: Uuid,
    name: &str,
    token: &str,
) -> Device {
    let code = invite_code(app, trainer, &cohort.to_string()).await;
    let device = Device::new(&app.address, &app.enrol(&code, name).await);
    register(app, &device, token, "nl-NL", "Europe/Amsterdam").await;
    device
}

async fn announce(
    app: &TestApp,
    trainer: &crate::fixtures::User,
    cohort: Uuid,
    title: &str,
) -> Value {
    app.post(
        &format!("/v1/cohorts/{cohort}/announcements"),
        Some(&trainer.token),
        json!({ "title": title, "body": "Neem je interviewverslag mee." }),
    )
    .await
    .expect(201)
}

async fn deliveries(app: &TestApp) -> Vec<delivery::Model> {
    delivery::Entity::find()
        .all(app.services.db())
        .await
        .unwrap()
}

/// The between-day assignment after day 1, as the device sees it.
fn first_assignment(device: &Device) -> Uuid {
    device
        .ids("assignments")
        .into_iter()
        .find(|id| device.view("assignments", *id).unwrap()["after_day"] == 1)
        .unwrap()
}

/// When the first reminder of an assignment is due, from a reminder plan.
fn first_reminder(plan: &[Value], assignment: Uuid) -> chrono::DateTime<Utc> {
    plan.iter()
        .filter(|r| r["assignment_id"] == assignment.to_string())
        .map(|r| r["send_at"].as_str().unwrap().parse().unwrap())
        .min()
        .unwrap()
}

fn fcm_error(status: u16, grpc: &str, code: &str, message: &str) -> Scripted {
    Scripted::fcm_error(status, grpc, code, message)
}

fcm_test!(async fn an_announcement_reaches_every_device_once_and_dead_tokens_are_pruned(app, fcm) {
    let (sanne, cohort, trainer) = phone(&app, "Sanne").await;
    register(&app, &sanne, "tok-sanne", "nl-NL", "Europe/Amsterdam").await;
    participant_with_token(&app, &trainer, cohort, "Pieter", "tok-unregistered").await;
    participant_with_token(&app, &trainer, cohort, "Fatima", "tok-mismatch").await;
    participant_with_token(&app, &trainer, cohort, "Jan", "tok-invalid").await;
    fcm.script("tok-unregistered", [fcm_error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")]);
    fcm.script("tok-mismatch", [fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch")]);
    fcm.script(
        "tok-invalid",
        [fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token")],
    );

    let first = announce(&app, &trainer, cohort, "Dag 2 begint later").await;
    let outcome = run_once(&app.services, "worker-a").await.unwrap();
    assert_eq!((outcome.sent, outcome.pruned, outcome.failed), (1, 3, 0), "{outcome:?}");
    assert_eq!(fcm.token_requests(), 1, "one access token, cached");

    let sent = fcm.attempts_to("tok-sanne");
    assert_eq!(sent.len(), 1);
    let message = &sent[0];
    assert_eq!(message["notification"]["title"], "Dag 2 begint later");
    assert_eq!(message["data"]["kind"], "announcement");
    assert_eq!(message["data"]["announcement_id"], first["id"]);
    assert_eq!(message["android"]["priority"], "high");
    assert_eq!(message["apns"]["headers"]["apns-priority"], "10");
    assert_eq!(message["apns"]["headers"]["apns-push-type"], "alert");
    assert!(message["apns"]["headers"]["apns-collapse-id"].is_string());
    assert!(message["apns"]["headers"]["apns-expiration"].is_string());

    let listed = app.get(&format!("/v1/cohorts/{cohort}/announcements"), &trainer.token).await.expect(200);
    assert_eq!(listed[0]["delivery_counts"], json!({ "pending": 0, "sent": 1, "logged": 0, "failed": 0, "pruned": 3, "unknown": 0 }));
    let codes: Vec<&str> = listed[0]["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["error_code"].as_str())
        .collect();
    for code in ["UNREGISTERED", "SENDER_ID_MISMATCH", "INVALID_ARGUMENT"] {
        assert!(codes.contains(&code), "{codes:?}");
    }

    // Ops sees sends by outcome and FCM error code.
    let metrics = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"veldwerk_push_sends_total{outcome="sent",code=""} 1"#,
        r#"veldwerk_push_sends_total{outcome="pruned",code="UNREGISTERED"} 1"#,
        r#"veldwerk_push_sends_total{outcome="pruned",code="SENDER_ID_MISMATCH"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line:?}");
    }

    // Pruned tokens get nothing more; nothing goes out twice.
    announce(&app, &trainer, cohort, "Tweede bericht").await;
    run_once(&app.services, "worker-a").await.unwrap();
    run_once(&app.services, "worker-b").await.unwrap();
    assert_eq!(fcm.attempts_to("tok-sanne").len(), 2);
    for dead in ["tok-unregistered", "tok-mismatch", "tok-invalid"] {
        assert_eq!(fcm.attempts_to(dead).len(), 1, "{dead}");
    }
});

/// A cohort with Sanne and `phones` more participants, each with one registered phone; its
/// trainer.
async fn cohort_with_phones(
    app: &TestApp,
    phones: usize,
    prefix: &str,
) -> (Uuid, crate::fixtures::User) {
    let (_, cohort, trainer) = phone(app, "Sanne").await;
    let db = app.services.db();
    let organisation_id = cohort::Entity::find_by_id(cohort)
        .one(db)
        .await
        .unwrap()
        .unwrap()
        .organisation_id;
    let provider_id = organisation::Entity::find_by_id(organisation_id)
        .one(db)
        .await
        .unwrap()
        .unwrap()
        .provider_id;
    veldwerk_tests::seed::participants_with_phones(
        db,
        provider_id,
        organisation_id,
        cohort,
        phones,
        prefix,
    )
    .await
    .unwrap();
    (cohort, trainer)
}

// A fan-out larger than a dispatch batch (2,000) and a claim (1,000) is sent whole in one round,
// each device once: a round that stopped after its first batch of either would leave the rest
// for the next tick, 5 s later (a sender that claimed while the dispatcher still worked, tried
// for speed, sent nothing in that round on PostgreSQL).
fcm_test!(async fn one_round_sends_a_fan_out_larger_than_every_batch_each_device_once(app, fcm) {
    const PHONES: usize = 2_345;
    let (cohort, trainer) = cohort_with_phones(&app, PHONES, "fan").await;

    app.post(
        &format!("/v1/cohorts/{cohort}/announcements"),
        Some(&trainer.token),
        json!({ "title": "Dag 3 verplaatst", "body": "Stadskantoor, 10:00.", "respect_quiet_hours": false }),
    )
    .await
    .expect(201);
    let outcome = run_once(&app.services, "worker-a").await.unwrap();
    assert_eq!((outcome.dispatched, outcome.sent), (PHONES + 1, PHONES), "{outcome:?}");

    let attempts = fcm.attempts();
    assert_eq!(attempts.len(), PHONES);
    let tokens: std::collections::HashSet<&str> = attempts.iter().map(|(token, _)| token.as_str()).collect();
    assert_eq!(tokens.len(), PHONES, "every device once");
    let again = run_once(&app.services, "worker-b").await.unwrap();
    assert_eq!((again.dispatched, again.sent), (0, 0), "{again:?}");
    assert_eq!(fcm.attempts().len(), PHONES);
});

// While another writer holds SQLite's write lock mid-fan-out, the push round waits for it with at
// most one of the pool's connections: its claims, marks, dispatch and recorder queue for a write
// turn of their own instead of each waiting in SQLite's busy handler on a connection (two at once
// took half the pool, and with a claim more, a request's acquire timed out). When the lock is
// released the round goes on, each device once. On PostgreSQL the same stall (the deliveries
// table locked against writes) must not lose or repeat a message either.
fcm_test!(async fn a_fan_out_stalled_by_another_writer_waits_on_one_connection_and_sends_each_device_once(app, fcm) {
    const PHONES: usize = 600;
    let (cohort, trainer) = cohort_with_phones(&app, PHONES, "stall").await;
    let db = app.services.db();
    fcm.set_latency(Duration::from_millis(150));
    app.post(
        &format!("/v1/cohorts/{cohort}/announcements"),
        Some(&trainer.token),
        json!({ "title": "Dag 4 verplaatst", "body": "Wijkcentrum, 9:30.", "respect_quiet_hours": false }),
    )
    .await
    .expect(201);
    let services = app.services.clone();
    let round = tokio::spawn(async move { run_once(&services, "worker-a").await });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while fcm.attempt_count() < 50 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(fcm.attempt_count() >= 50, "the round began sending");

    let other = sea_orm::Database::connect(app.database_url()).await.unwrap();
    let stall = veldwerk_tests::veldwerk_server::store::begin_write(&other).await.unwrap();
    let sqlite = app.backend == veldwerk_tests::Backend::Sqlite;
    if !sqlite {
        use sea_orm::ConnectionTrait;
        stall.execute_unprepared("LOCK TABLE deliveries IN EXCLUSIVE MODE").await.unwrap();
    }
    // Let the round run into the lock, then watch the pool while it waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut most_in_use = 0;
    for _ in 0..150 {
        let (open, idle) = veldwerk_tests::veldwerk_server::store::pool_use(db);
        most_in_use = most_in_use.max(open as usize - idle);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sent_while_stalled = fcm.attempt_count();
    stall.commit().await.unwrap();
    let outcome = round.await.unwrap().unwrap();
    assert!(sent_while_stalled < PHONES, "the stall came mid-round ({sent_while_stalled} sent)");
    if sqlite {
        assert!(most_in_use <= 1, "{most_in_use} connections waited for the write lock");
    }
    assert_eq!((outcome.dispatched, outcome.sent), (PHONES + 1, PHONES), "{outcome:?}");
    let attempts = fcm.attempts();
    let tokens: std::collections::HashSet<&str> = attempts.iter().map(|(token, _)| token.as_str()).collect();
    assert_eq!((attempts.len(), tokens.len()), (PHONES, PHONES), "every device once");
});

// The worker runs every 5 s, but an announcement published now should not wait for the tick:
// publishing wakes this replica's worker. With a tick of an hour (its first round runs at start),
// only the wake can deliver it.
fcm_test!(async fn publishing_now_wakes_the_push_worker(app, fcm) with |config| {
    config.push.worker_enabled = true;
    config.push.worker_interval_secs = 3_600;
}; {
    let (sanne, cohort, trainer) = phone(&app, "Sanne").await;
    register(&app, &sanne, "tok-sanne", "nl-NL", "Europe/Amsterdam").await;
    // Let the worker's first round (at start) pass.
    tokio::time::sleep(Duration::from_millis(300)).await;
    announce(&app, &trainer, cohort, "Dag 2 begint later").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while fcm.attempt_count() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fcm.attempts_to("tok-sanne").len(), 1, "the announcement went out without waiting for the hourly tick");
});

veldwerk_tests::db_test!(async fn log_only_push_records_deliveries_as_logged_not_sent(app) {
    let (sanne, cohort, trainer) = phone(&app, "Sanne").await;
    register(&app, &sanne, "tok-sanne", "nl-NL", "Europe/Amsterdam").await;
    announce(&app, &trainer, cohort, "Let op").await;
    let outcome = run_once(&app.services, "w").await.unwrap();
    assert_eq!((outcome.sent, outcome.logged), (0, 1), "{outcome:?}");
    let listed = app.get(&format!("/v1/cohorts/{cohort}/announcements"), &trainer.token).await.expect(200);
    assert_eq!(listed[0]["delivery_counts"]["logged"], 1);
    assert_eq!(listed[0]["delivery_counts"]["sent"], 0);
    assert_eq!(deliveries(&app).await[0].status, "logged");
});

fcm_test!(async fn an_expired_access_token_is_refreshed_once_and_nothing_waits(app, fcm) {
    let (sanne, cohort, trainer) = phone(&app, "Sanne").await;
    register(&app, &sanne, "tok-0", "nl-NL", "Europe/Amsterdam").await;
    for n in 1..30 {
        participant_with_token(&app, &trainer, cohort, &format!("P{n}"), &format!("tok-{n}")).await;
    }
    announce(&app, &trainer, cohort, "Eerste").await;
    assert_eq!(run_once(&app.services, "w").await.unwrap().sent, 30);
    let exchanges = fcm.token_requests();

    // The token expires; thirty sends at once are refused with it.
    fcm.expire_access_tokens();
    fcm.set_latency(Duration::from_millis(20));
    announce(&app, &trainer, cohort, "Tweede").await;
    let outcome = run_once(&app.services, "w").await.unwrap();
    assert_eq!((outcome.sent, outcome.retried, outcome.paused), (30, 0, false), "{outcome:?}");
    assert_eq!(fcm.token_requests(), exchanges + 1, "one token exchange for all of them");
    // A key that is refused for real still pauses sending (see the credential test).
    fcm.expire_access_tokens();
    fcm.refuse_tokens(true);
    announce(&app, &trainer, cohort, "Derde").await;
    let outcome = run_once(&app.services, "w").await.unwrap();
    assert!(outcome.paused, "{outcome:?}");
});

fcm_test!(async fn retry_after_holds_for_the_device_and_a_project_quota_for_everyone(app, fcm) {
    let (sanne, cohort, trainer) = phone(&app, "Sanne").await;
    register(&app, &sanne, "tok-sanne", "nl-NL", "Europe/Amsterdam").await;
    participant_with_token(&app, &trainer, cohort, "Pieter", "tok-pieter").await;
    let device_rate = fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Device message rate exceeded.");
    fcm.script("tok-sanne", [device_rate.with_retry_after(70)]);
    announce(&app, &trainer, cohort, "Eerste").await;
    let start = Utc::now();
    let outcome = run_once_at(&app.services, "w", start).await.unwrap();
    assert_eq!((outcome.sent, outcome.retried), (1, 1), "{outcome:?}");
    // A second message for Sanne's phone waits out the same 70 seconds; Pieter's goes.
    announce(&app, &trainer, cohort, "Tweede").await;
    let outcome = run_once_at(&app.services, "w", start + chrono::Duration::seconds(5)).await.unwrap();
    assert_eq!(outcome.sent, 1, "{outcome:?}");
    assert_eq!(fcm.attempts_to("tok-sanne").len(), 1, "nothing more to the throttled device");
    let outcome = run_once_at(&app.services, "w", start + chrono::Duration::seconds(71)).await.unwrap();
    assert_eq!(outcome.sent, 2, "{outcome:?}");
    assert_eq!(fcm.attempts_to("tok-sanne").len(), 3);

    // The project's quota: nobody gets anything until it passes.
    let project = fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded for quota metric 'Send requests'.");
    fcm.script("tok-pieter", [project.with_retry_after(300)]);
    fcm.set_latency(Duration::from_millis(50));
    announce(&app, &trainer, cohort, "Derde").await;
    let later = start + chrono::Duration::seconds(80);
    run_once_at(&app.services, "w", later).await.unwrap();
    let attempts = fcm.attempts().len();
    announce(&app, &trainer, cohort, "Vierde").await;
    let outcome = run_once_at(&app.services, "w", later + chrono::Duration::seconds(30)).await.unwrap();
    assert!(outcome.paused, "{outcome:?}");
    assert_eq!(fcm.attempts().len(), attempts, "nothing is sent during the project's pause");
});

veldwerk_tests::db_test!(async fn a_participants_device_change_replans_only_that_participant(app) {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, IntoActiveModel};
    use veldwerk_tests::veldwerk_server::store::entity::notification;
    let (sanne, cohort, trainer) = phone(&app, "Sanne").await;
    let pieter = participant_with_token(&app, &trainer, cohort, "Pieter", "tok-pieter").await;
    // Mark one of Pieter's planned reminders, as if planned long ago: a whole-cohort replan
    // would put it back.
    let marked = chrono::DateTime::parse_from_rfc3339("2030-01-01T08:00:00Z").unwrap().with_timezone(&Utc);
    let his = notification::Entity::find()
        .filter(notification::Column::UserId.eq(pieter.user_id))
        .one(app.services.db())
        .await
        .unwrap()
        .unwrap();
    let mut active = his.clone().into_active_model();
    active.due_at = Set(marked);
    active.update(app.services.db()).await.unwrap();

    // Sanne's phone moves to another zone, and a new participant enrols: only their own
    // reminders are planned again.
    register(&app, &sanne, "tok-sanne", "en-GB", "Europe/London").await;
    participant_with_token(&app, &trainer, cohort, "Fatima", "tok-fatima").await;
    let after = notification::Entity::find_by_id(his.id).one(app.services.db()).await.unwrap().unwrap();
    assert_eq!(after.due_at, marked, "Pieter's reminders were not replanned");
    let sannes = notification::Entity::find()
        .filter(notification::Column::UserId.eq(sanne.user_id))
        .all(app.services.db())
        .await
        .unwrap();
    assert!(!sannes.is_empty());
    // A change of the cohort's rules (even back to the programme's) still replans everyone.
    app.delete(&format!("/v1/cohorts/{cohort}/reminder-rules"), &trainer.token).await.expect(200);
    let after = notification::Entity::find_by_id(his.id).one(app.services.db()).await.unwrap().unwrap();
    assert_eq!(after.due_at, his.due_at, "Pieter's reminder is planned again");
});

fcm_test!(async fn work_done_between_a_429_and_its_retry_stops_the_reminder(app, fcm) {
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    register(&app, &sanne, "tok-sanne", "nl-NL", "Europe/Amsterdam").await;
    sanne.pull().await.unwrap();
    let first = first_assignment(&sanne);
    let plan = app.get(&format!("/v1/cohorts/{cohort}/reminder-plan"), &trainer.token).await.expect(200);
    let first_due = first_reminder(plan.as_array().unwrap(), first);
    fcm.script("tok-sanne", [fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "slow down").with_retry_after(70)]);
    let at = first_due + chrono::Duration::minutes(1);
    let outcome = run_once_at(&app.services, "w", at).await.unwrap();
    assert_eq!((outcome.sent, outcome.retried), (0, 1), "{outcome:?}");

    // While the reminder waits for its retry, Sanne marks the work done.
    let work = veldwerk_sync_protocol::schema::assignment_record_id(sanne.user_id, first);
    sanne.write("assignment_work", work, Some(cohort), json!({ "assignment_id": first, "done": true }));
    sanne.sync().await.unwrap();
    let outcome = run_once_at(&app.services, "w", at + chrono::Duration::seconds(71)).await.unwrap();
    assert_eq!(outcome.sent, 0, "{outcome:?}");
    assert_eq!(fcm.attempts_to("tok-sanne").len(), 1, "only the attempt that got the 429");
    let rows = deliveries(&app).await;
    assert_eq!(rows[0].status, "skipped");
    assert_eq!(rows[0].error_message.as_deref(), Some("already done"));
});

fcm_test!(async fn transient_errors_are_retried_and_quota_waits_at_least_a_minute(app, fcm) {
    let (sanne, cohort, trainer) = phone(&app, "Sanne").await;
    register(&app, &sanne, "tok-quota", "nl-NL", "Europe/Amsterdam").await;
    participant_with_token(&app, &trainer, cohort, "B", "tok-unavailable").await;
    participant_with_token(&app, &trainer, cohort, "C", "tok-html").await;
    participant_with_token(&app, &trainer, cohort, "D", "tok-internal").await;
    participant_with_token(&app, &trainer, cohort, "E", "tok-too-big").await;
    fcm.script("tok-quota", [fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Device message rate exceeded").with_retry_after(5)]);
    fcm.script("tok-unavailable", [fcm_error(503, "UNAVAILABLE", "UNAVAILABLE", "busy").with_retry_after(7)]);
    fcm.script("tok-html", [Scripted::html(502)]);
    fcm.script("tok-internal", [fcm_error(500, "INTERNAL", "INTERNAL", "oops")]);
    fcm.script("tok-too-big", [fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Message is too big")]);
    announce(&app, &trainer, cohort, "Let op").await;

    let start = Utc::now();
    let outcome = run_once(&app.services, "w").await.unwrap();
    assert_eq!((outcome.retried, outcome.failed, outcome.sent), (4, 1, 0), "{outcome:?}");
    let rows = deliveries(&app).await;
    let by_token = |token: &str| rows.iter().find(|d| d.token == token).unwrap().clone();
    let wait = |token: &str| (by_token(token).next_attempt_at - start).num_milliseconds();
    assert!(wait("tok-quota") >= 60_000, "quota waits a minute, not the 5 s it said: {}", wait("tok-quota"));
    assert!((6_000..9_000).contains(&wait("tok-unavailable")), "Retry-After is honoured: {}", wait("tok-unavailable"));
    assert!((0..3_000).contains(&wait("tok-html")), "a 502 page backs off briefly: {}", wait("tok-html"));
    assert_eq!(by_token("tok-html").error_code.as_deref(), Some("http_502"));
    assert_eq!(by_token("tok-too-big").status, "failed", "a message FCM refuses is not retried");
    assert!(rows.iter().filter(|d| d.status == "pending").all(|d| d.attempts == 1));

    let outcome = run_once_at(&app.services, "w", start + chrono::Duration::seconds(10)).await.unwrap();
    assert_eq!(outcome.sent, 3, "{outcome:?}");
    let outcome = run_once_at(&app.services, "w", start + chrono::Duration::seconds(61)).await.unwrap();
    assert_eq!(outcome.sent, 1, "{outcome:?}");
    for token in ["tok-quota", "tok-unavailable", "tok-html", "tok-internal"] {
        assert_eq!(fcm.attempts_to(token).len(), 2, "{token}: one failure, one success");
    }
    assert_eq!(fcm.attempts_to("tok-too-big").len(), 1);
});

fcm_test!(async fn a_broken_credential_pauses_sending_and_is_not_retried_per_message(app, fcm) {
    let (sanne, cohort, trainer) = phone(&app, "Sanne").await;
    register(&app, &sanne, "tok-a", "nl-NL", "Europe/Amsterdam").await;
    participant_with_token(&app, &trainer, cohort, "B", "tok-b").await;
    participant_with_token(&app, &trainer, cohort, "C", "tok-c").await;
    fcm.refuse_tokens(true);
    announce(&app, &trainer, cohort, "Let op").await;
    let start = Utc::now();
    let outcome = run_once(&app.services, "w").await.unwrap();
    assert!(outcome.paused);
    assert_eq!(outcome.sent + outcome.failed + outcome.retried, 0, "{outcome:?}");
    assert_eq!(fcm.token_requests(), 1, "one refused exchange, not one per message");
    assert!(fcm.attempts().is_empty());
    let rows = deliveries(&app).await;
    assert!(rows.iter().all(|d| d.status == "pending" && d.attempts == 0), "{rows:?}");
    assert_eq!(rows[0].error_code.as_deref(), Some("token_refused"));
    // While paused, rounds send nothing and ask for no tokens.
    assert!(run_once(&app.services, "w").await.unwrap().paused);
    assert_eq!(fcm.token_requests(), 1);

    fcm.refuse_tokens(false);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let outcome = run_once_at(&app.services, "w", start + chrono::Duration::minutes(3)).await.unwrap();
    assert_eq!(outcome.sent, 3, "{outcome:?}");
    assert!(!outcome.paused);
});

fcm_test!(async fn a_scheduled_announcement_goes_out_at_its_time_unless_cancelled(app, fcm) {
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    register(&app, &sanne, "tok-sanne", "en-GB", "Europe/Amsterdam").await;
    let at = Utc::now() + chrono::Duration::hours(1);
    let path = format!("/v1/cohorts/{cohort}/announcements");
    let kept = app
        .post(&path, Some(&trainer.token), json!({ "title": "Morgen", "body": "Tot morgen!", "publish_at": at }))
        .await
        .expect(201);
    assert_eq!(kept["status"], "scheduled");
    let dropped = app
        .post(&path, Some(&trainer.token), json!({ "title": "Vergissing", "body": "x", "publish_at": at }))
        .await
        .expect(201);
    let dropped_path = format!("{path}/{}", dropped["id"].as_str().unwrap());
    app.delete(&dropped_path, &trainer.token).await.expect(204);
    app.delete(&dropped_path, &trainer.token).await.expect(204);

    assert_eq!(run_once(&app.services, "w").await.unwrap().sent, 0);
    sanne.pull().await.unwrap();
    assert!(sanne.ids("announcements").is_empty(), "not in the inbox before its time");

    let outcome = run_once_at(&app.services, "w", at + chrono::Duration::minutes(1)).await.unwrap();
    assert_eq!((outcome.published, outcome.sent), (1, 1), "{outcome:?}");
    assert_eq!(fcm.attempts_to("tok-sanne")[0]["notification"]["title"], "Morgen");
    sanne.pull().await.unwrap();
    assert_eq!(sanne.ids("announcements").len(), 1);
    let kept_path = format!("{path}/{}", kept["id"].as_str().unwrap());
    app.delete(&kept_path, &trainer.token).await.expect_error(409, "already_published");
});

fcm_test!(async fn reminders_come_at_local_times_in_the_devices_language_and_not_when_done(app, fcm) {
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    register(&app, &sanne, "tok-sanne", "nl-NL", "Europe/Amsterdam").await;
    let emma = participant_with_token(&app, &trainer, cohort, "Emma", "tok-emma").await;
    // Emma's phone speaks English.
    register(&app, &emma, "tok-emma", "en-GB", "Europe/Amsterdam").await;
    let emma_id = {
        let members = app.get(&format!("/v1/cohorts/{cohort}/members"), &trainer.token).await.expect(200);
        members.as_array().unwrap().iter().find(|m| m["display_name"] == "Emma").unwrap()["user_id"].clone()
    };

    let plan = app.get(&format!("/v1/cohorts/{cohort}/reminder-plan"), &trainer.token).await.expect(200);
    let plan = plan.as_array().unwrap();
    let detail = app.get(&format!("/v1/cohorts/{cohort}"), &trainer.token).await.expect(200);
    let assignments = detail["assignments"].as_array().unwrap();
    // Two participants; nine between-day assignments with two rules, the harvest with three.
    assert_eq!(plan.len(), 2 * (9 * 2 + 3), "{}", plan.len());
    let amsterdam: chrono_tz::Tz = "Europe/Amsterdam".parse().unwrap();
    for reminder in plan {
        let at: chrono::DateTime<Utc> = reminder["send_at"].as_str().unwrap().parse().unwrap();
        let local = at.with_timezone(&amsterdam).format("%H:%M").to_string();
        assert!(["09:00", "19:00", "08:30"].contains(&local.as_str()), "{local}");
        assert_eq!(reminder["status"], "pending");
        // Sent before the work's deadline, which is the start of its assignment's due day.
        let deadline: chrono::DateTime<Utc> = reminder["assignment_due_at"].as_str().unwrap().parse().unwrap();
        assert!(at < deadline, "{reminder}");
        let assignment = assignments.iter().find(|a| a["id"] == reminder["assignment_id"]).unwrap();
        assert_eq!(assignment["due_at"].as_str().unwrap().parse::<chrono::DateTime<Utc>>().unwrap(), deadline);
    }

    // Sanne marks the first assignment done; then its first reminder falls due.
    sanne.pull().await.unwrap();
    let first = first_assignment(&sanne);
    let work = veldwerk_sync_protocol::schema::assignment_record_id(sanne.user_id, first);
    sanne.write("assignment_work", work, Some(cohort), json!({ "assignment_id": first, "done": true }));
    sanne.sync().await.unwrap();
    let first_due = first_reminder(plan, first);
    let outcome = run_once_at(&app.services, "w", first_due + chrono::Duration::minutes(1)).await.unwrap();
    assert_eq!(outcome.sent, 1, "{outcome:?}");
    assert!(fcm.attempts_to("tok-sanne").is_empty(), "no reminder for finished work");
    let to_emma = fcm.attempts_to("tok-emma");
    assert_eq!(to_emma.len(), 1);
    assert_eq!(to_emma[0]["notification"]["title"], "Reminder: Opdracht uitvoeren");
    assert_eq!(to_emma[0]["android"]["priority"], "normal");
    assert_eq!(to_emma[0]["data"]["assignment_id"], first.to_string());

    let plan = app.get(&format!("/v1/cohorts/{cohort}/reminder-plan"), &trainer.token).await.expect(200);
    let skipped = plan
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "skipped")
        .expect("Sanne's reminder is skipped");
    assert_eq!(skipped["status_reason"], "already done");
    assert_ne!(skipped["participant_id"], emma_id);
    // Never twice.
    run_once_at(&app.services, "w", first_due + chrono::Duration::minutes(2)).await.unwrap();
    assert_eq!(fcm.attempts_to("tok-emma").len(), 1);
});

fcm_test!(async fn reminders_follow_the_devices_language_zone_quiet_hours_and_dst(app, fcm) {
    let _ = &fcm;
    let trainer = crate::fixtures::demo_trainer(&app).await;
    let organisations = app.get("/v1/organisations", &trainer.token).await.expect(200);
    // Day 2 on Monday 29 March 2027, the day after summer time starts; day 6 on Monday 1 November
    // 2027, the day after it ends.
    let dates = ["2027-03-01", "2027-03-29", "2027-05-03", "2027-07-05", "2027-09-06", "2027-11-01"];
    let days: Vec<Value> = dates
        .iter()
        .enumerate()
        .map(|(i, date)| json!({ "day_number": i + 1, "date": date, "starts_at": "09:30:00", "ends_at": "16:30:00", "location": "Zaal" }))
        .collect();
    let created = app
        .post(
            "/v1/cohorts",
            Some(&trainer.token),
            json!({
                "organisation_id": organisations[0]["id"],
                "programme_id": crate::fixtures::programme_id(&app, &trainer).await,
                "name": "DST-groep",
                "days": days,
            }),
        )
        .await
        .expect(201);
    let cohort: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let first = created["assignments"][0]["id"].as_str().unwrap().to_owned();
    let harvest_id = created["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "harvest_presentation")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let device = participant_with_token(&app, &trainer, cohort, "Noor", "tok-noor").await;
    let plan_of = |plan: &Value, assignment: &str| -> Vec<String> {
        let mut times: Vec<String> = plan
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["assignment_id"] == assignment && r["status"] == "pending")
            .map(|r| r["send_at"].as_str().unwrap().to_owned())
            .collect();
        times.sort();
        times
    };
    let plan = app.get(&format!("/v1/cohorts/{cohort}/reminder-plan"), &trainer.token).await.expect(200);
    // 26 March is still winter time (UTC+1), 28 March summer time (UTC+2).
    assert_eq!(plan_of(&plan, &first), ["2027-03-26T08:00:00+00:00", "2027-03-28T17:00:00+00:00"]);
    // Harvest: a week, two days and the morning before 1 November; only 31 October is winter time.
    assert_eq!(
        plan_of(&plan, &harvest_id),
        ["2027-10-25T07:00:00+00:00", "2027-10-30T07:00:00+00:00", "2027-10-31T07:30:00+00:00"]
    );

    // Quiet hours until 09:30 and from 18:00: 09:00 moves to 09:30, 19:00 to the next morning.
    app.call(
        reqwest::Method::PUT,
        "/v1/me/push-device",
        Some(device.debug_token()),
        Some(json!({
            "token": "tok-noor", "platform": "ios", "locale": "nl-NL", "time_zone": "Europe/Amsterdam",
            "app_version": "1.0.0", "quiet_hours_start": "18:00", "quiet_hours_end": "09:30"
        })),
    )
    .await
    .expect(200);
    let plan = app.get(&format!("/v1/cohorts/{cohort}/reminder-plan"), &trainer.token).await.expect(200);
    assert_eq!(plan_of(&plan, &first), ["2027-03-26T08:30:00+00:00"], "the evening reminder would come on the day itself, after it started");

    // Travelling: the same local times in the device's new zone.
    app.call(
        reqwest::Method::PUT,
        "/v1/me/push-device",
        Some(device.debug_token()),
        Some(json!({ "token": "tok-noor", "platform": "ios", "locale": "nl-NL", "time_zone": "America/Curacao", "app_version": "1.0.0" })),
    )
    .await
    .expect(200);
    let plan = app.get(&format!("/v1/cohorts/{cohort}/reminder-plan"), &trainer.token).await.expect(200);
    assert_eq!(plan_of(&plan, &first), ["2027-03-26T13:00:00+00:00", "2027-03-28T23:00:00+00:00"]);

    // A cohort's own rules replace the programme's.
    let rules = app
        .call(
            reqwest::Method::PUT,
            &format!("/v1/cohorts/{cohort}/reminder-rules"),
            Some(&trainer.token),
            Some(json!({ "rules": [{ "applies_to": "between_day", "days_before": 2, "at": "12:00:00" }] })),
        )
        .await
        .expect(200);
    assert_eq!(rules["overridden"], true);
    let plan = app.get(&format!("/v1/cohorts/{cohort}/reminder-plan"), &trainer.token).await.expect(200);
    assert_eq!(plan_of(&plan, &first), ["2027-03-27T16:00:00+00:00"]);
    assert!(plan_of(&plan, &harvest_id).is_empty());
    let rules = app.delete(&format!("/v1/cohorts/{cohort}/reminder-rules"), &trainer.token).await.expect(200);
    assert_eq!(rules["overridden"], false);
    assert_eq!(rules["rules"].as_array().unwrap().len(), 5);
});

fcm_test!(async fn a_worker_that_dies_is_taken_over_without_a_second_send(app, fcm) {
    let (sanne, cohort, trainer) = phone(&app, "Sanne").await;
    register(&app, &sanne, "tok-mid-send", "nl-NL", "Europe/Amsterdam").await;
    participant_with_token(&app, &trainer, cohort, "B", "tok-claimed").await;
    announce(&app, &trainer, cohort, "Let op").await;
    let now = Utc::now();
    app.services.dispatch_due(now).await.unwrap();
    // A worker claims both deliveries, starts sending one, and dies.
    let lease = now + chrono::Duration::minutes(2);
    let claimed = push_store::claim_deliveries(app.services.db(), "doomed", now, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let mid_send = claimed.iter().find(|d| d.token == "tok-mid-send").unwrap().id;
    push_store::mark_sending(app.services.db(), &[mid_send], "doomed").await.unwrap();

    let outcome = run_once(&app.services, "survivor").await.unwrap();
    assert_eq!(outcome.sent, 0, "live leases are respected");
    let outcome = run_once_at(&app.services, "survivor", now + chrono::Duration::minutes(3)).await.unwrap();
    assert_eq!((outcome.sent, outcome.unknown), (1, 1), "{outcome:?}");
    assert_eq!(fcm.attempts_to("tok-claimed").len(), 1, "the unsent claim was taken over");
    assert!(fcm.attempts_to("tok-mid-send").is_empty(), "what may have gone out is not sent again");
    let listed = app.get(&format!("/v1/cohorts/{cohort}/announcements"), &trainer.token).await.expect(200);
    assert_eq!(listed[0]["delivery_counts"]["unknown"], 1);
});

fcm_test!(async fn a_crash_mid_fan_out_leaves_unknown_only_what_was_in_flight(app, fcm) with |config| {
    // The worker runs inside the server, as in production, so killing the server kills it.
    config.push.worker_enabled = true;
    config.push.worker_interval_secs = 1;
    config.push.concurrency = 8;
}; {
    const DEVICES: usize = 48;
    let mut app = app;
    let (sanne, cohort, trainer) = phone(&app, "Sanne").await;
    register(&app, &sanne, "tok-0", "nl-NL", "Europe/Amsterdam").await;
    for n in 1..DEVICES {
        participant_with_token(&app, &trainer, cohort, &format!("P{n}"), &format!("tok-{n}")).await;
    }
    // FCM holds each request 300 ms: once the first eight have arrived, nothing completes and
    // nothing new starts for a while. The server is killed in that while.
    fcm.set_latency(Duration::from_millis(300));
    announce(&app, &trainer, cohort, "Morgen een andere zaal").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fcm.attempts().len() < 8 {
        assert!(std::time::Instant::now() < deadline, "the worker starts sending");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.kill();
    let reached_before: std::collections::BTreeSet<String> =
        fcm.attempts().into_iter().map(|(token, _)| token).collect();
    assert_eq!(reached_before.len(), 8, "killed with the first eight in flight");

    // Restarted; once the dead worker's lease has run out the rest goes out.
    app.restart().await;
    run_once_at(&app.services, "survivor", Utc::now() + chrono::Duration::minutes(3)).await.unwrap();
    let rows = deliveries(&app).await;
    let unknown: Vec<&str> = rows.iter().filter(|d| d.status == "unknown").map(|d| d.token.as_str()).collect();
    let sent = rows.iter().filter(|d| d.status == "sent").count();
    // Unknown: exactly the eight requests in flight. Marking rows ahead of their requests (the
    // defect this test was written for) left more, whose requests never left.
    let never_arrived: Vec<&&str> = unknown.iter().filter(|token| !reached_before.contains(**token)).collect();
    assert!(never_arrived.is_empty(), "unknown deliveries that never reached FCM: {never_arrived:?}");
    assert_eq!(unknown.len(), 8, "{unknown:?}");
    assert_eq!(sent + unknown.len(), DEVICES, "every other device got its message");
    let mut attempts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for (token, _) in fcm.attempts() {
        *attempts.entry(token).or_default() += 1;
    }
    assert!(attempts.values().all(|n| *n == 1), "nobody got it twice: {attempts:?}");
    for n in 0..DEVICES {
        let token = format!("tok-{n}");
        if !unknown.contains(&token.as_str()) {
            assert_eq!(attempts.get(&token), Some(&1), "{token} was sent once");
        }
    }
});

fcm_test!(async fn two_workers_deliver_each_message_exactly_once(app, fcm) {
    let (sanne, cohort, trainer) = phone(&app, "Sanne").await;
    register(&app, &sanne, "tok-0", "nl-NL", "Europe/Amsterdam").await;
    for n in 1..20 {
        participant_with_token(&app, &trainer, cohort, &format!("P{n}"), &format!("tok-{n}")).await;
    }
    for n in 0..3 {
        announce(&app, &trainer, cohort, &format!("Bericht {n}")).await;
    }
    fcm.set_latency(Duration::from_millis(5));
    let (a, b) = tokio::join!(run_once(&app.services, "worker-a"), run_once(&app.services, "worker-b"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.sent + b.sent, 60, "{a:?} {b:?}");
    for n in 0..20 {
        assert_eq!(fcm.attempts_to(&format!("tok-{n}")).len(), 3, "tok-{n}");
    }
});

fcm_test!(async fn stale_and_logged_out_devices_get_nothing(app, fcm) {
    use sea_orm::{ActiveModelTrait, ActiveValue, IntoActiveModel};
    use veldwerk_tests::veldwerk_server::store::entity::push_device;
    let (sanne, cohort, trainer) = phone(&app, "Sanne").await;
    register(&app, &sanne, "tok-stale", "nl-NL", "Europe/Amsterdam").await;
    let leaving = participant_with_token(&app, &trainer, cohort, "B", "tok-leaving").await;
    let staying = participant_with_token(&app, &trainer, cohort, "C", "tok-staying").await;
    let _ = staying;
    // Sanne's phone has not been seen for 31 days.
    let row = push_device::Entity::find()
        .filter(push_device::Column::Token.eq("tok-stale"))
        .one(app.services.db())
        .await
        .unwrap()
        .unwrap();
    let mut row = row.into_active_model();
    row.last_seen_at = ActiveValue::Set(Utc::now() - chrono::Duration::days(31));
    row.update(app.services.db()).await.unwrap();
    app.post("/v1/auth/logout", Some(leaving.debug_token()), json!({})).await.expect(204);

    announce(&app, &trainer, cohort, "Let op").await;
    run_once(&app.services, "w").await.unwrap();
    assert!(fcm.attempts_to("tok-stale").is_empty());
    assert!(fcm.attempts_to("tok-leaving").is_empty());
    assert_eq!(fcm.attempts_to("tok-staying").len(), 1);
});

fcm_test!(async fn push_registration_is_validated(app, fcm) {
    let _ = &fcm;
    let (sanne, _, _) = phone(&app, "Sanne").await;
    for (body, code) in [
        (json!({ "token": "t", "platform": "symbian", "locale": "nl", "time_zone": "Europe/Amsterdam", "app_version": "1" }), "invalid_platform"),
        (json!({ "token": "t", "platform": "ios", "locale": "nl", "time_zone": "Mars/Olympus", "app_version": "1" }), "invalid_time_zone"),
        (json!({ "token": "t", "platform": "ios", "locale": "nl", "time_zone": "Europe/Amsterdam", "app_version": "1", "quiet_hours_start": "25:00" }), "invalid_quiet_hours"),
    ] {
        app.call(reqwest::Method::PUT, "/v1/me/push-device", Some(sanne.debug_token()), Some(body))
            .await
            .expect_error(422, code);
    }
});

fcm_test!(async fn programme_rules_apply_to_cohorts_without_their_own(app, fcm) {
    let _ = &fcm;
    let (_sanne, cohort, trainer) = phone(&app, "Sanne").await;
    let admin = crate::fixtures::demo_admin(&app).await;
    let programme = crate::fixtures::programme_id(&app, &admin).await;
    let path = format!("/v1/programmes/{programme}/reminder-rules");
    let body = json!({ "rules": [{ "applies_to": "harvest", "days_before": 1, "at": "10:00:00" }] });
    app.call(reqwest::Method::PUT, &path, Some(&trainer.token), Some(body.clone()))
        .await
        .expect_error(403, "forbidden");
    let set = app.call(reqwest::Method::PUT, &path, Some(&admin.token), Some(body)).await.expect(200);
    assert_eq!(set["rules"].as_array().unwrap().len(), 1);
    let plan = app.get(&format!("/v1/cohorts/{cohort}/reminder-plan"), &trainer.token).await.expect(200);
    let pending: Vec<&Value> = plan.as_array().unwrap().iter().filter(|r| r["status"] == "pending").collect();
    assert_eq!(pending.len(), 1, "only the programme's one harvest rule is planned");
    let rules = app.get(&format!("/v1/cohorts/{cohort}/reminder-rules"), &trainer.token).await.expect(200);
    assert_eq!(rules["overridden"], false);
    assert_eq!(rules["rules"][0]["applies_to"], "harvest");
});

veldwerk_tests::db_test!(async fn the_push_worker_finishes_its_round_and_stops_when_asked(app) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(veldwerk_tests::veldwerk_server::jobs::push::run(
        app.services.clone(),
        "stopping".into(),
        Duration::from_secs(3_600),
        stopped,
    ));
    // Let it run its first round, then ask it to stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the worker stops when asked")
        .unwrap();
});

/// Registers a device's push token with its own quiet hours.
async fn register_quiet(
    app: &TestApp,
    device: &Device,
    token: &str,
    zone: &str,
    quiet: (&str, &str),
) {
    app.call(
        reqwest::Method::PUT,
        "/v1/me/push-device",
        Some(device.debug_token()),
        Some(json!({
            "token": token, "platform": "android", "locale": "nl-NL", "time_zone": zone,
            "app_version": "1.0.0", "quiet_hours_start": quiet.0, "quiet_hours_end": quiet.1
        })),
    )
    .await
    .expect(200);
}

fcm_test!(async fn each_device_gets_its_reminder_at_its_own_zone_and_quiet_hours(app, fcm) {
    let (mut phone_device, cohort, trainer) = phone(&app, "Sanne").await;
    let token = phone_device.debug_token().to_owned();
    let tablet_device = crate::sync::tablet(&app, &phone_device, &token).await;
    // Two rules: two days before and the day before, at 09:10 local time.
    app.call(
        reqwest::Method::PUT,
        &format!("/v1/cohorts/{cohort}/reminder-rules"),
        Some(&trainer.token),
        Some(json!({ "rules": [
            { "applies_to": "between_day", "days_before": 2, "at": "09:10:00" },
            { "applies_to": "between_day", "days_before": 1, "at": "09:10:00" },
        ] })),
    )
    .await
    .expect(200);
    register_quiet(&app, &phone_device, "tok-phone", "Europe/Amsterdam", ("21:00", "08:00")).await;
    // The tablet, seen last, is in London and quiet until 11:10 there.
    register_quiet(&app, &tablet_device, "tok-tablet", "Europe/London", ("08:10", "11:10")).await;

    phone_device.pull().await.unwrap();
    let first = first_assignment(&phone_device);
    let plan = app.get(&format!("/v1/cohorts/{cohort}/reminder-plan"), &trainer.token).await.expect(200);
    let mut moments: Vec<chrono::DateTime<Utc>> = plan
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "pending" && r["assignment_id"] == first.to_string())
        .map(|r| r["send_at"].as_str().unwrap().parse().unwrap())
        .collect();
    moments.sort();
    assert_eq!(moments.len(), 2, "one notification per rule, not per device");
    let amsterdam: chrono_tz::Tz = "Europe/Amsterdam".parse().unwrap();
    let london: chrono_tz::Tz = "Europe/London".parse().unwrap();
    // The phone's moment: 09:10 in Amsterdam. The tablet's: the same date, 11:10 in London.
    let device_moments = |phone_at: chrono::DateTime<Utc>| {
        let local = phone_at.with_timezone(&amsterdam);
        assert_eq!(local.format("%H:%M").to_string(), "09:10", "due at the earliest device's moment");
        let tablet_at = local
            .date_naive()
            .and_hms_opt(11, 10, 0)
            .unwrap()
            .and_local_timezone(london)
            .unwrap()
            .with_timezone(&Utc);
        assert!(tablet_at > phone_at + chrono::Duration::hours(2));
        (phone_at, tablet_at)
    };

    let (phone_at, tablet_at) = device_moments(moments[0]);
    run_once_at(&app.services, "w", phone_at + chrono::Duration::minutes(1)).await.unwrap();
    assert_eq!(fcm.attempts_to("tok-phone").len(), 1, "the phone at 09:10 in Amsterdam");
    assert!(fcm.attempts_to("tok-tablet").is_empty(), "the tablet is in its quiet hours");
    run_once_at(&app.services, "w", tablet_at - chrono::Duration::minutes(1)).await.unwrap();
    assert!(fcm.attempts_to("tok-tablet").is_empty(), "still quiet at 11:09 in London");
    run_once_at(&app.services, "w", tablet_at + chrono::Duration::minutes(1)).await.unwrap();
    assert_eq!(fcm.attempts_to("tok-tablet").len(), 1, "the tablet once its quiet hours end");
    assert_eq!(fcm.attempts_to("tok-phone").len(), 1, "the phone only once");

    // The day before: the work is done on the phone after its reminder, before the tablet's.
    let (phone_at, tablet_at) = device_moments(moments[1]);
    run_once_at(&app.services, "w", phone_at + chrono::Duration::minutes(1)).await.unwrap();
    assert_eq!(fcm.attempts_to("tok-phone").len(), 2);
    let work = veldwerk_sync_protocol::schema::assignment_record_id(phone_device.user_id, first);
    phone_device.write("assignment_work", work, Some(cohort), json!({ "assignment_id": first, "done": true }));
    phone_device.sync().await.unwrap();
    run_once_at(&app.services, "w", tablet_at + chrono::Duration::minutes(1)).await.unwrap();
    assert_eq!(fcm.attempts_to("tok-tablet").len(), 1, "no reminder for work done in between");
    let held = deliveries(&app).await;
    assert!(
        held.iter().any(|d| d.token == "tok-tablet" && d.status == "skipped"),
        "the held reminder is skipped: {:?}",
        held.iter().map(|d| (&d.token, &d.status)).collect::<Vec<_>>()
    );
});

fcm_test!(async fn announcements_wait_for_quiet_hours_unless_the_trainer_says_urgent(app, fcm) {
    let (phone_device, cohort, trainer) = phone(&app, "Sanne").await;
    let token = phone_device.debug_token().to_owned();
    let tablet_device = crate::sync::tablet(&app, &phone_device, &token).await;
    // The phone is quiet from an hour ago until an hour from now; the tablet is awake.
    let now = Utc::now();
    let hh_mm = |at: chrono::DateTime<Utc>| at.format("%H:%M").to_string();
    let quiet_until = now + chrono::Duration::hours(1);
    let (start, end) = (hh_mm(now - chrono::Duration::hours(1)), hh_mm(quiet_until));
    register_quiet(&app, &phone_device, "tok-phone", "UTC", (&start, &end)).await;
    let (start, end) = (hh_mm(now + chrono::Duration::hours(3)), hh_mm(now + chrono::Duration::hours(4)));
    register_quiet(&app, &tablet_device, "tok-tablet", "UTC", (&start, &end)).await;

    let routine = announce(&app, &trainer, cohort, "Nieuwe leesstof").await;
    assert_eq!(routine["respect_quiet_hours"], true, "quiet hours are respected by default");
    let urgent = app
        .post(
            &format!("/v1/cohorts/{cohort}/announcements"),
            Some(&trainer.token),
            json!({ "title": "Morgen andere zaal", "body": "Wijkcentrum De Boog.", "respect_quiet_hours": false }),
        )
        .await
        .expect(201);
    assert_eq!(urgent["respect_quiet_hours"], false);
    run_once_at(&app.services, "w", now + chrono::Duration::seconds(5)).await.unwrap();
    let titles = |token: &str| -> Vec<String> {
        let mut titles: Vec<String> = fcm
            .attempts_to(token)
            .iter()
            .map(|m| m["notification"]["title"].as_str().unwrap().to_owned())
            .collect();
        titles.sort();
        titles
    };
    assert_eq!(titles("tok-tablet"), ["Morgen andere zaal", "Nieuwe leesstof"]);
    assert_eq!(titles("tok-phone"), ["Morgen andere zaal"], "only the urgent one in quiet hours");
    run_once_at(&app.services, "w", quiet_until + chrono::Duration::minutes(1)).await.unwrap();
    assert_eq!(titles("tok-phone"), ["Morgen andere zaal", "Nieuwe leesstof"], "the rest when they end");
    assert_eq!(titles("tok-tablet").len(), 2, "nothing twice");
});
