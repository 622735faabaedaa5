//! Purges sync tombstones older than the retention period. Devices whose cursor is older than
//! what was purged get `reset_required` on their next pull and re-sync from scratch (keeping
//! their outbox), so a deletion is never missed.

use std::time::Duration;

use chrono::Utc;

use crate::service::{Result, Services};

/// Purges tombstones last changed more than `retention` ago; returns how many were removed.
pub async fn run_once(services: &Services, retention: Duration) -> Result<u64> {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let cutoff = Utc::now()
        .checked_sub_signed(retention)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    services.purge_tombstones(cutoff).await
}

/// Runs [`run_once`] every `interval` until the task is dropped.
pub async fn run(services: Services, interval: Duration, retention: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match run_once(&services, retention).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged old sync tombstones"),
            Err(err) => tracing::error!(error = %err, "purging sync tombstones failed"),
        }
    }
}
