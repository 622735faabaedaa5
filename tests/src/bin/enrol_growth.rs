//! Benchmark: does enrolling get slower as a cohort grows? Enrols participants into one cohort
//! through the HTTP API, each followed by its push registration (what a phone does on its first
//! start), and prints the time of every hundred. Both steps plan reminders; planning must touch
//! only the participant concerned, so the time per hundred should stay flat.
//!
//! ```text
//! cargo run --release -p veldwerk-tests --bin enrol_growth -- --participants 500
//! VELDWERK_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo run --release -p veldwerk-tests --bin enrol_growth -- --participants 500 --database postgres
//! ```

use std::time::Instant;

use anyhow::Context;
use serde_json::json;
use veldwerk_server::service::demo;
use veldwerk_tests::{Backend, TestApp};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut participants: usize = 500;
    let mut backend = Backend::Sqlite;
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).context("every option takes a value")?;
        match (pair[0].as_str(), value.as_str()) {
            ("--participants", n) => participants = n.parse()?,
            ("--database", "sqlite") => backend = Backend::Sqlite,
            ("--database", "postgres") => backend = Backend::Postgres,
            (other, _) => anyhow::bail!("unknown option {other} (or value {value})"),
        }
    }
    let app = TestApp::spawn_with(backend, |config| {
        // One address enrols everyone here; the limiter is not what is measured.
        config.rate_limit.per_address = u32::MAX;
        config.rate_limit.per_account = u32::MAX;
    })
    .await
    .context("PostgreSQL needs VELDWERK_TEST_POSTGRES_URL")?;
    let trainer = app.login(demo::TRAINER_EMAIL, demo::TRAINER_PASSWORD).await;
    let trainer = trainer["access_token"]
        .as_str()
        .context("a token")?
        .to_owned();
    let cohorts = app.get("/v1/cohorts", &trainer).await.expect(200);
    let cohort = cohorts[0]["id"].as_str().context("a cohort")?.to_owned();

    println!(
        "| participants before | enrol + register 100 (s) | per participant (ms) | of which enrol (ms) |"
    );
    println!("|---|---|---|---|");
    for hundred in 0..participants.div_ceil(100) {
        let count = (participants - hundred * 100).min(100);
        let invites = app
            .post(
                &format!("/v1/cohorts/{cohort}/invites"),
                Some(&trainer),
                json!({ "count": count }),
            )
            .await
            .expect(201);
        let codes: Vec<String> = invites
            .as_array()
            .context("a list of invites")?
            .iter()
            .filter_map(|invite| Some(invite["code"].as_str()?.to_owned()))
            .collect();
        let started = Instant::now();
        let mut enrolling = std::time::Duration::ZERO;
        for (index, code) in codes.iter().enumerate() {
            let enrol_started = Instant::now();
            let session = app.enrol(code, &format!("Deelnemer {index}")).await;
            enrolling += enrol_started.elapsed();
            let token = session["access_token"].as_str().context("a token")?;
            app.call(
                reqwest::Method::PUT,
                "/v1/me/push-device",
                Some(token),
                Some(json!({
                    "token": format!("fcm-{hundred}-{index}"), "platform": "android",
                    "locale": "nl-NL", "time_zone": "Europe/Amsterdam", "app_version": "1.0.0"
                })),
            )
            .await
            .expect(200);
        }
        let elapsed = started.elapsed();
        println!(
            "| {} | {:.2} | {:.1} | {:.1} |",
            hundred * 100,
            elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1000.0 / count as f64,
            enrolling.as_secs_f64() * 1000.0 / count as f64
        );
    }
    Ok(())
}
