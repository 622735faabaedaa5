//! Collects the bytes of deleted attachments. A deleted attachment's bytes are kept for a grace
//! period (an undo, a device still downloading), then removed from storage; its upload row stays,
//! marked collected, until the record's tombstone itself is purged.

use std::time::Duration;

use chrono::Utc;

use crate::service::{Result, Services};

/// Removes the bytes of attachments deleted more than `grace` ago; returns how many.
pub async fn run_once(services: &Services, grace: Duration) -> Result<u64> {
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let cutoff = Utc::now()
        .checked_sub_signed(grace)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    services.collect_attachments(cutoff).await
}

/// Runs [`run_once`] every `interval` until the task is dropped.
pub async fn run(services: Services, interval: Duration, grace: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match run_once(&services, grace).await {
            Ok(0) => {}
            Ok(collected) => tracing::info!(collected, "removed the bytes of deleted attachments"),
            Err(err) => tracing::error!(error = %err, "collecting attachments failed"),
        }
    }
}
