//! Enforces retention: warns trainers before a cohort's participant data is purged, purges it
//! when its period after Day 6 ends, and trims the audit log (see `service::privacy::retention`).
//! Every step is idempotent, so replicas may run it side by side.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::service::{Result, Services, privacy::retention::RetentionReport};

/// One pass at `now` (tests pass a time in the future instead of waiting a year).
pub async fn run_once(services: &Services, now: DateTime<Utc>) -> Result<RetentionReport> {
    services.enforce_retention(now).await
}

/// Runs [`run_once`] every `interval` until the task is dropped.
pub async fn run(services: Services, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match run_once(&services, Utc::now()).await {
            Ok(report) if report == RetentionReport::default() => {}
            Ok(report) => tracing::info!(
                warned = report.warned.len(),
                purged = report.purged.len(),
                participants = report.participants,
                audit_entries = report.audit_entries,
                "retention enforced"
            ),
            Err(err) => tracing::error!(error = %err, "enforcing retention failed"),
        }
    }
}
