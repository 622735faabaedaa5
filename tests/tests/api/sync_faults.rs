//! Sync under faults and load: a crash mid-push, concurrent writers and pullers, missed pokes,
//! and cursors older than the retained deletions.

use std::{collections::BTreeSet, time::Duration};

use serde_json::json;
use uuid::Uuid;
use veldwerk_sync_protocol::PushRequest;
use veldwerk_tests::{LiveStream, client::Device, db_test, veldwerk_server::jobs};

use crate::{
    fixtures::{demo_cohort, demo_trainer, invite_code},
    sync::{phone, tablet},
};

fn interview(notes: &str) -> serde_json::Value {
    json!({ "name_consent": false, "status": "draft", "notes": notes })
}

/// Interviews as the server holds them, read by a fresh trainer device.
async fn server_interviews(app: &veldwerk_tests::TestApp) -> Device {
    let session = app
        .login("trainer@veldwerk.test", "demo-trainer-wachtwoord")
        .await;
    let mut trainer = Device::new(&app.address, &session);
    trainer.pull().await.unwrap();
    trainer
}

db_test!(async fn a_server_killed_mid_push_applies_nothing_and_the_retry_applies_all_once(app) {
    let mut app = app;
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    phone.batch_size = 500;
    let mut interrupted = 0;
    let mut expected: BTreeSet<Uuid> = BTreeSet::new();
    // How long an uninterrupted push of 500 new interviews takes here: kills are timed within it.
    for _ in 0..500 {
        let id = Uuid::now_v7();
        expected.insert(id);
        phone.write("interviews", id, Some(cohort), interview("lang verhaal"));
    }
    let started = std::time::Instant::now();
    phone.push().await.unwrap();
    let push_time = started.elapsed();
    // Kill the server part-way through later pushes of the same size, until a kill lands while
    // the push is in flight (the request fails).
    for fraction in [0.5, 0.3, 0.7, 0.2, 0.9] {
        let ids: Vec<Uuid> = (0..500).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            phone.write("interviews", *id, Some(cohort), interview("lang verhaal"));
        }
        expected.extend(ids.iter().copied());
        let body = serde_json::to_vec(&PushRequest { mutations: phone.outbox.clone() }).unwrap();
        let request = app
            .client
            .post(format!("{}/v1/sync/push", app.address))
            .bearer_auth(phone.debug_token())
            .header("veldwerk-protocol", "1")
            .header("content-type", "application/json")
            .body(body)
            .send();
        let in_flight = tokio::spawn(request);
        tokio::time::sleep(push_time.mul_f64(fraction)).await;
        app.kill();
        let outcome = in_flight.await.unwrap();
        app.restart().await;
        phone.address = app.address.clone();

        let stored: BTreeSet<Uuid> = server_interviews(&app).await.ids("interviews").into_iter().collect();
        let landed = ids.iter().filter(|id| stored.contains(id)).count();
        assert!(landed == 0 || landed == 500, "a push is all or nothing, {landed} of 500 landed");
        if outcome.is_err() {
            interrupted += 1;
        }
        // The device retries its whole outbox: everything lands exactly once.
        phone.sync().await.unwrap();
        assert!(phone.rejected.is_empty());
        let stored = server_interviews(&app).await.ids("interviews");
        assert_eq!(stored.len(), expected.len(), "no duplicates, nothing lost");
        assert_eq!(stored.into_iter().collect::<BTreeSet<_>>(), expected);
        if interrupted > 0 {
            break;
        }
    }
    assert!(
        interrupted > 0,
        "no kill landed while a push was in flight (a push takes {push_time:?})"
    );
});

db_test!(async fn concurrent_writers_and_pullers_all_converge_to_the_server(app) {
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let cohort_id: Uuid = cohort.parse().unwrap();
    let mut writers = Vec::new();
    for n in 0..8 {
        let code = invite_code(&app, &trainer, &cohort).await;
        writers.push(Device::new(&app.address, &app.enrol(&code, &format!("P{n}")).await));
    }
    let mut pullers = Vec::new();
    for _ in 0..3 {
        let session = app.login("trainer@veldwerk.test", "demo-trainer-wachtwoord").await;
        pullers.push(Device::new(&app.address, &session));
    }
    let writing = futures_util::future::join_all(writers.into_iter().map(|mut device| async move {
        device.batch_size = 10;
        let mut mine = Vec::new();
        for round in 0..15 {
            for _ in 0..10 {
                let id = Uuid::now_v7();
                mine.push(id);
                device.write("interviews", id, Some(cohort_id), interview(&format!("ronde {round}")));
            }
            // Edit an earlier record too, so updates race with pulls as well as inserts.
            let earlier = mine[mine.len() / 2];
            device.write("interviews", earlier, None, json!({ "insights": format!("ronde {round}") }));
            device.push().await.unwrap();
        }
        assert!(device.rejected.is_empty());
        mine
    }));
    let done = std::sync::atomic::AtomicBool::new(false);
    let pulling = futures_util::future::join_all(pullers.iter_mut().map(|device| {
        let done = &done;
        async move {
            let mut pulls = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                device.pull().await.unwrap();
                pulls += 1;
            }
            pulls
        }
    }));
    let (written, pulls) = tokio::join!(
        async {
            let written = writing.await;
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            written
        },
        pulling
    );
    assert!(pulls.iter().all(|n| *n > 0));
    let all: BTreeSet<Uuid> = written.into_iter().flatten().collect();
    assert_eq!(all.len(), 8 * 15 * 10);

    // One last pull from where each puller was: each must now hold exactly the server's state.
    // A change committed with a lower version after a puller passed it would be missing here.
    let reference = server_interviews(&app).await;
    assert_eq!(reference.ids("interviews").into_iter().collect::<BTreeSet<_>>(), all);
    for puller in &mut pullers {
        puller.pull().await.unwrap();
        assert_eq!(puller.replica(), reference.replica());
    }
});

db_test!(async fn devices_editing_the_same_records_at_once_lose_no_field(app) {
    // Two devices of one participant (the most pushes one participant may have in flight) write
    // one field each of the same fifty interviews, both at once, round after round, and the
    // server must hold both after each round. A push that read its records before its turn on
    // the version would write the other push's field back to its old value (seen on PostgreSQL
    // with a push that read and merged first and took the version after).
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let ids: Vec<Uuid> = (0..50).map(|_| Uuid::now_v7()).collect();
    for id in &ids {
        phone.write("interviews", *id, Some(cohort), interview("gedeeld"));
    }
    phone.sync().await.unwrap();
    let mut devices = vec![phone];
    let mut tablet = tablet(&app, &devices[0], &token).await;
    tablet.pull().await.unwrap();
    devices.push(tablet);
    const FIELDS: [&str; 2] = ["interviewee_role", "insights"];
    let mut server = server_interviews(&app).await;
    for round in 0..20 {
        futures_util::future::join_all(devices.iter_mut().enumerate().map(|(n, device)| {
            for id in &ids {
                device.write("interviews", *id, None, json!({ FIELDS[n]: format!("d{n} r{round}") }));
            }
            async move {
                device.push().await.unwrap();
                assert!(device.rejected.is_empty());
            }
        }))
        .await;
        server.pull().await.unwrap();
        for id in &ids {
            let record = server.view("interviews", *id).unwrap();
            for (n, field) in FIELDS.iter().enumerate() {
                assert_eq!(
                    record.get(*field),
                    Some(&json!(format!("d{n} r{round}"))),
                    "{field} of {id} in round {round}: a push wrote back what it read before \
                     the other push changed it"
                );
            }
        }
    }
});

db_test!(async fn a_connected_device_is_poked_when_its_data_changes(app) {
    let (mut phone, cohort, trainer) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let mut tablet = tablet(&app, &phone, &token).await;
    let mut live = LiveStream::open(&app.client, &app.address, tablet.debug_token()).await;
    live.next_event("ready").await;
    let id = Uuid::now_v7();
    phone.write("interviews", id, Some(cohort), interview("poke"));
    phone.sync().await.unwrap();
    live.next_event("poke").await;
    tablet.pull().await.unwrap();
    assert!(tablet.view("interviews", id).is_some(), "the poke was followed by a pull that brings it");
    // A schedule change pokes every member too.
    app.patch(
        &format!("/v1/cohorts/{cohort}/schedule"),
        &trainer.token,
        json!({ "days": [{ "day_number": 1, "location": "Elders" }] }),
    )
    .await
    .expect(200);
    live.next_event("poke").await;
});

db_test!(async fn a_cursor_older_than_the_kept_deletions_must_reset_and_keeps_its_outbox(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let mut tablet = tablet(&app, &phone, &token).await;
    let (doomed, kept) = (Uuid::now_v7(), Uuid::now_v7());
    phone.write("interviews", doomed, Some(cohort), interview("weg"));
    phone.write("interviews", kept, Some(cohort), interview("blijft"));
    phone.sync().await.unwrap();
    tablet.pull().await.unwrap();
    assert_eq!(tablet.ids("interviews").len(), 2);

    phone.delete("interviews", doomed);
    phone.sync().await.unwrap();
    // Nothing older than an hour: nothing purged yet.
    let purged = jobs::tombstones::run_once(&app.services, Duration::from_secs(3_600)).await.unwrap();
    assert_eq!(purged, 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let purged = jobs::tombstones::run_once(&app.services, Duration::ZERO).await.unwrap();
    assert_eq!(purged, 1);

    // The tablet was offline all along and has an unsent edit.
    let note = Uuid::now_v7();
    tablet.write("interviews", note, Some(cohort), interview("offline geschreven"));
    let old_cursor = tablet.cursor.clone().unwrap();
    let reply = app
        .client
        .get(format!("{}/v1/sync/pull?cursor={old_cursor}", app.address))
        .bearer_auth(tablet.debug_token())
        .header("veldwerk-protocol", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 410);
    assert_eq!(reply.json::<serde_json::Value>().await.unwrap()["code"], "reset_required");
    tablet.pull().await.unwrap();
    tablet.sync().await.unwrap();
    let mut ids = tablet.ids("interviews");
    ids.sort();
    let mut expected = vec![kept, note];
    expected.sort();
    assert_eq!(ids, expected, "the deletion is not missed and the offline edit is not lost");
});
