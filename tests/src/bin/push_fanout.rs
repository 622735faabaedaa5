//! Benchmark: one announcement to many devices through our FCM client and a local FCM server
//! with a fixed latency per request. Prints notifications per second and the process's peak
//! memory (server parts, the local FCM server and this program share the process).
//! `FANOUT_TIMELINE=1` prints the FCM server's count every 250 ms; `FANOUT_PHASES=1` dispatches
//! before the first round and prints how long publishing and dispatching took.
//!
//! ```text
//! cargo run --release -p veldwerk-tests --bin push_fanout -- --devices 10000 --latency-ms 20
//! cargo run --release -p veldwerk-tests --bin push_fanout -- --database postgres://postgres@127.0.0.1/test
//! ```

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use sea_orm::ConnectionTrait;
use uuid::Uuid;
use veldwerk_server::{
    Config,
    config::{PushMode, Secret},
    jobs,
    service::{
        Actor, Role, Services,
        announcements::NewAnnouncement,
        cohorts::{DayPlan, NewCohort},
    },
    store,
};
use veldwerk_tests::fcm_mock::MockFcm;

struct Options {
    devices: usize,
    latency: Duration,
    database: Option<String>,
    concurrency: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        devices: 10_000,
        latency: Duration::from_millis(20),
        database: None,
        concurrency: 200,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).context("every option takes a value")?;
        match pair[0].as_str() {
            "--devices" => options.devices = value.parse()?,
            "--latency-ms" => options.latency = Duration::from_millis(value.parse()?),
            "--database" => options.database = Some(value.clone()),
            "--concurrency" => options.concurrency = value.parse()?,
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    Ok(options)
}

/// Peak resident memory of this process, from /proc (Linux).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let fcm = MockFcm::start().await;
    fcm.set_latency(options.latency);
    // `TMPDIR` chooses where the SQLite file lives (e.g. /dev/shm to leave the disk out).
    let dir = tempfile::tempdir()?;
    let (url, backend) = match &options.database {
        Some(url) => (url.clone(), "postgres"),
        None => (
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("bench.db").display()
            ),
            "sqlite",
        ),
    };
    let mut config = Config {
        database_url: url.clone(),
        demo_data: false,
        ..Config::default()
    };
    config.push.mode = PushMode::Fcm;
    config.push.fcm_credentials_json = Some(Secret::new(fcm.service_account_json()));
    config.push.fcm_base_url = fcm.url.clone();
    config.push.concurrency = options.concurrency;
    let db = store::connect(&url).await?;
    store::migrate(&db).await?;
    if backend == "postgres" {
        // A clean slate for repeated runs against one database.
        db.execute_unprepared("TRUNCATE providers CASCADE").await?;
    }
    let services = Services::new(db.clone(), config)?;

    // Seed: a provider, a cohort, and `devices` participants each with one registered phone.
    let (provider, admin) = services
        .bootstrap_provider(
            "Bench",
            veldwerk_server::service::accounts::NewStaff {
                role: Role::Admin,
                email: "bench@veldwerk.test".into(),
                display_name: "Bench".into(),
                password: "benchmark-password".into(),
            },
        )
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let admin = Actor {
        user_id: admin.id,
        device_id: Uuid::nil(),
        role: Role::Admin,
        provider_id: provider.id,
        organisation_id: None,
    };
    let organisation = services
        .create_organisation(&admin, "Gemeente Bench")
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let programme = services
        .list_programmes(&admin)
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?
        .remove(0);
    let start_date = Utc::now().date_naive() + chrono::Duration::days(30);
    let cohort = services
        .create_cohort(
            &admin,
            NewCohort {
                organisation_id: organisation.id,
                programme_id: programme.id,
                name: "Bench".into(),
                time_zone: None,
                days: (0..6)
                    .map(|i| DayPlan {
                        day_number: i + 1,
                        date: start_date + chrono::Duration::weeks(i64::from(i)),
                        starts_at: chrono::NaiveTime::from_hms_opt(9, 30, 0).unwrap_or_default(),
                        ends_at: chrono::NaiveTime::from_hms_opt(16, 30, 0).unwrap_or_default(),
                        location: "Zaal".into(),
                    })
                    .collect(),
                trainer_ids: vec![],
            },
        )
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let seeding = Instant::now();
    veldwerk_tests::seed::participants_with_phones(
        &db,
        provider.id,
        organisation.id,
        cohort.cohort.id,
        options.devices,
        "bench",
    )
    .await?;
    eprintln!(
        "seeded {} devices in {:.1?}",
        options.devices,
        seeding.elapsed()
    );

    let started = Instant::now();
    if std::env::var_os("FANOUT_TIMELINE").is_some() {
        let fcm = fcm.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                eprintln!(
                    "{:.2?}: FCM received {}",
                    started.elapsed(),
                    fcm.attempt_count()
                );
            }
        });
    }
    services
        .publish_announcement(
            &admin,
            cohort.cohort.id,
            NewAnnouncement {
                title: "Dag 3 verplaatst".into(),
                body: "We beginnen om 10:00 in het Stadskantoor.".into(),
                recipient_ids: vec![],
                publish_at: None,
                // Urgent, so the figure does not depend on the hour the benchmark runs at.
                respect_quiet_hours: false,
            },
        )
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let published = started.elapsed();
    eprintln!("publish {published:.2?}");
    if std::env::var_os("FANOUT_PHASES").is_some() {
        // Dispatch alone first, to time it apart from sending (the rounds below then only send).
        let dispatching = Instant::now();
        let mut dispatched = 0;
        loop {
            let handled = services
                .dispatch_due(Utc::now())
                .await
                .map_err(|err| anyhow::anyhow!("{err}"))?;
            if handled == 0 {
                break;
            }
            dispatched += handled;
        }
        eprintln!(
            "dispatch {dispatched} notifications {:.2?}",
            dispatching.elapsed()
        );
    }
    // The worker's rounds, as the server runs them (each dispatches and sends at once).
    let mut sent = 0;
    let mut rounds = 0;
    while sent < options.devices && rounds < 100 {
        let outcome = jobs::push::run_once(&services, "bench")
            .await
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        sent += outcome.sent;
        rounds += 1;
        eprintln!(
            "round {rounds}: dispatched {}, sent {}, at {:.2?}",
            outcome.dispatched,
            outcome.sent,
            started.elapsed()
        );
    }
    let elapsed = started.elapsed();
    let received = fcm.attempts().len();
    anyhow::ensure!(
        sent == options.devices,
        "sent {sent} of {}",
        options.devices
    );
    anyhow::ensure!(
        received == options.devices,
        "FCM received {received} of {}",
        options.devices
    );
    let rate = sent as f64 / elapsed.as_secs_f64();
    println!("| database | devices | latency | concurrency | time | notifications/s | peak RSS |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {backend} | {} | {} ms | {} | {:.2} s | {:.0} | {:.0} MB |",
        options.devices,
        options.latency.as_millis(),
        options.concurrency,
        elapsed.as_secs_f64(),
        rate,
        peak_rss_mb().unwrap_or(f64::NAN)
    );
    Ok(())
}
