//! Several server processes on one PostgreSQL database.

use sea_orm::{ConnectionTrait, Statement};
use veldwerk_tests::{Backend, POSTGRES_URL_VAR, fresh_database, veldwerk_server::store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_run_the_migrations_once() {
    let Some(database) = fresh_database(Backend::Postgres).await else {
        eprintln!("skipped: {POSTGRES_URL_VAR} is not set, so this PostgreSQL test did not run");
        return;
    };
    let (a, b) = (
        store::connect(database.url()).await.unwrap(),
        store::connect(database.url()).await.unwrap(),
    );
    let (first, second) = tokio::join!(store::migrate(&a), store::migrate(&b));
    first.unwrap();
    second.unwrap();
    let applied = a
        .query_one_raw(Statement::from_string(
            a.get_database_backend(),
            "SELECT COUNT(*) AS n FROM seaql_migrations",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    let migrations = store::migrations_count();
    assert_eq!(applied as usize, migrations, "each migration recorded once");
    assert_eq!(store::pending_migrations(&b).await.unwrap(), 0);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_one_replica_is_poked_by_a_change_through_another() {
    veldwerk_tests::run_scenario(
        Backend::Postgres,
        |_| {},
        |app| async move {
            let replica = app.start_replica().await;
            let (mut phone, cohort, _) = crate::sync::phone(&app, "Sanne").await;
            let token = phone.debug_token().to_owned();
            let mut tablet = crate::sync::tablet(&app, &phone, &token).await;
            tablet.address = replica.address.clone();
            let mut live = veldwerk_tests::LiveStream::open(
                &app.client,
                &replica.address,
                tablet.debug_token(),
            )
            .await;
            live.next_event("ready").await;
            let id = uuid::Uuid::now_v7();
            phone.write(
                "interviews",
                id,
                Some(cohort),
                serde_json::json!({ "name_consent": false, "status": "draft", "notes": "via A" }),
            );
            phone.sync().await.unwrap();
            live.next_event("poke").await;
            tablet.pull().await.unwrap();
            assert!(
                tablet.view("interviews", id).is_some(),
                "replica B serves what A stored"
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_two_replicas_deliver_each_message_once() {
    veldwerk_tests::run_with_fcm(
        Backend::Postgres,
        |_| {},
        |app, fcm| async move {
            use veldwerk_tests::veldwerk_server::jobs::push::run_once;
            let replica = app.start_replica().await;
            let trainer = crate::fixtures::demo_trainer(&app).await;
            let cohort = crate::fixtures::demo_cohort(&app, &trainer).await;
            let mut tokens = Vec::new();
            for n in 0..12 {
                let code = crate::fixtures::invite_code(&app, &trainer, &cohort).await;
                let session = app.enrol(&code, &format!("P{n}")).await;
                let token = format!("tok-replica-{n}");
                app.call(
                    reqwest::Method::PUT,
                    "/v1/me/push-device",
                    session["access_token"].as_str(),
                    Some(serde_json::json!({
                        "token": token, "platform": "ios", "locale": "nl-NL",
                        "time_zone": "Europe/Amsterdam", "app_version": "1.0.0"
                    })),
                )
                .await
                .expect(200);
                tokens.push(token);
            }
            for title in ["Eén", "Twee"] {
                app.post(
                    &format!("/v1/cohorts/{cohort}/announcements"),
                    Some(&trainer.token),
                    serde_json::json!({ "title": title, "body": "Tot dinsdag" }),
                )
                .await
                .expect(201);
            }
            fcm.set_latency(std::time::Duration::from_millis(5));
            let (a, b) = tokio::join!(
                run_once(&app.services, "replica-a"),
                run_once(&replica.services, "replica-b")
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(a.sent + b.sent, 24, "{a:?} {b:?}");
            for token in &tokens {
                assert_eq!(fcm.attempts_to(token).len(), 2, "{token}");
            }
        },
    )
    .await;
}
