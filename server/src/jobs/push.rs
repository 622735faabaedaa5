//! The push worker: publishes scheduled announcements, turns due notifications into
//! deliveries, and sends deliveries, each at most once.
//!
//! Deliveries are leased with `FOR UPDATE SKIP LOCKED` (on PostgreSQL), so workers on several
//! replicas share the work and never take the same row; a worker that dies before sending loses
//! its lease and another takes the rows over. As its request starts, a row is marked `sending`;
//! a worker that dies mid-send leaves it so, and it becomes `unknown` instead of being sent
//! again: nobody gets a reminder twice, and only the requests in flight at a crash are unknown.

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream::FuturesUnordered};
use uuid::Uuid;

use crate::{
    push::{Alert, Message, SendOutcome, Urgency},
    service::{Result, Services},
    store::{
        entity::delivery,
        push::{self as store, DeliveryUpdate},
    },
};

/// Deliveries leased per round.
const CLAIM_BATCH: u64 = 1_000;
/// How long a lease lasts: a worker that has not finished by then is presumed dead.
const LEASE: Duration = Duration::from_secs(120);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3_600);

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub published: usize,
    pub dispatched: usize,
    pub sent: usize,
    /// Written to the log instead of sent (push mode `log`).
    pub logged: usize,
    pub retried: usize,
    pub failed: usize,
    pub pruned: usize,
    /// Deliveries found mid-send after a worker died.
    pub unknown: u64,
    /// Whether sending is paused because the credentials failed.
    pub paused: bool,
}

/// One round of the worker. Tests call this directly instead of waiting for [`run`].
pub async fn run_once(services: &Services, worker: &str) -> Result<Outcome> {
    run_once_at(services, worker, Utc::now()).await
}

/// [`run_once`] as if it were `now` (for tests of scheduled sends).
pub async fn run_once_at(services: &Services, worker: &str, now: DateTime<Utc>) -> Result<Outcome> {
    let mut outcome = Outcome {
        unknown: store::reap_interrupted(services.db(), now).await?,
        published: services.publish_due_announcements(now).await?,
        ..Outcome::default()
    };
    // The first deliveries go out while later ones are still being dispatched. On SQLite the
    // dispatcher's transactions take the write turn like the sender's and the recorder's.
    let overlap = !services.push_paused(now);
    let turn = WriteTurn::for_backend(services.db().get_database_backend());
    let (progress, dispatching) = tokio::sync::watch::channel(false);
    let dispatcher = {
        let services = services.clone();
        let turn = turn.clone();
        async move {
            let mut dispatched = 0;
            loop {
                let handled = {
                    let _turn = turn.take().await;
                    services.dispatch_due(now).await?
                };
                dispatched += handled;
                if handled == 0 {
                    // `true`: every due notification has its deliveries.
                    let _ = progress.send(true);
                    return Ok::<usize, crate::service::Error>(dispatched);
                }
                // A batch's deliveries are committed: the sender may claim them.
                progress.send_modify(|_| {});
            }
        }
    };
    // Either the dispatcher's task, or what it dispatched before sending began.
    let dispatcher = if overlap {
        Err(tokio::spawn(dispatcher))
    } else {
        Ok(dispatcher.await?)
    };
    if services.push_paused(now) {
        outcome.dispatched = dispatched(dispatcher).await?;
        outcome.paused = true;
        return Ok(outcome);
    }
    let concurrency = services.config().push.concurrency.max(1);
    let batch = concurrency.clamp(1, 500);
    // Sending and recording run side by side: this loop keeps `concurrency` sends in flight
    // without waves, and a recorder task writes outcomes in batches, one transaction each.
    let (results, received) = tokio::sync::mpsc::channel(concurrency * 2);
    let recorder = tokio::spawn(record_outcomes(
        services.clone(),
        received,
        batch,
        turn.clone(),
    ));
    let sending = send_claimed(
        services,
        worker,
        now,
        concurrency,
        dispatching,
        &results,
        &turn,
    )
    .await;
    drop(results);
    let recorded = recorder
        .await
        .map_err(|err| anyhow::anyhow!("the push recorder stopped: {err}"))??;
    outcome.dispatched = dispatched(dispatcher).await?;
    outcome.absorb(recorded);
    outcome.paused |= sending?;
    Ok(outcome)
}

/// How many notifications the round dispatched, once its dispatcher has finished.
async fn dispatched(
    dispatcher: std::result::Result<usize, tokio::task::JoinHandle<Result<usize>>>,
) -> Result<usize> {
    match dispatcher {
        Ok(dispatched) => Ok(dispatched),
        Err(task) => task
            .await
            .map_err(|err| anyhow::anyhow!("the push dispatcher stopped: {err}"))?,
    }
}

/// Claims due deliveries and sends them, at most `concurrency` at a time, handing every outcome
/// to the recorder. Returns whether sending paused for broken credentials.
///
/// A delivery is marked `sending` only as its request starts, so a crash leaves `unknown` at most
/// the requests in flight; the rest of a claim is still `pending` and is sent after the lease runs
/// out. Marks are written for a group of starts at once (an eighth of `concurrency`), one
/// statement per group rather than one per message, and while a group's mark is being written
/// the requests already in flight keep completing and their slots keep filling: waiting for each
/// mark before anything else kept about a quarter of the slots idle (BENCHMARKS.md, "Push
/// fan-out"). Slots are reserved for a group when its mark starts, so marked rows never wait
/// for a slot.
///
/// `dispatching` turns `true` once every due notification has its deliveries; until then a short
/// claim does not end the round, and the next claim waits for the dispatcher's next batch.
async fn send_claimed(
    services: &Services,
    worker: &str,
    now: DateTime<Utc>,
    concurrency: usize,
    mut dispatching: tokio::sync::watch::Receiver<bool>,
    results: &tokio::sync::mpsc::Sender<(delivery::Model, SendOutcome)>,
    turn: &WriteTurn,
) -> Result<bool> {
    let mut in_flight = FuturesUnordered::new();
    // The group whose `sending` mark is being written, with the slots it holds. One at a time,
    // and no claim meanwhile: the sender holds at most one of the pool's connections. Several
    // marks at once, each waiting for SQLite's write lock on a connection of its own, took the
    // whole pool, and a claim's acquire timed out under CI's load.
    let mut marking = FuturesUnordered::new();
    let mut reserved = 0;
    let mut waiting: VecDeque<delivery::Model> = VecDeque::new();
    // Whether a claim may find more now, and whether nothing more can come this round.
    let mut may_find_more = true;
    let mut claimed_all = false;
    let mut paused = false;
    let group = (concurrency / 8).max(1);
    loop {
        if waiting.is_empty() && marking.is_empty() && may_find_more && !claimed_all && !paused {
            // Read before the claim: a batch committed after it is found by the next one.
            let dispatched_all = *dispatching.borrow_and_update();
            let claimed = {
                let _turn = turn.take().await;
                store::claim_deliveries(services.db(), worker, now, now + LEASE, CLAIM_BATCH)
                    .await?
            };
            if (claimed.len() as u64) < CLAIM_BATCH {
                claimed_all = dispatched_all;
                may_find_more = false;
            }
            let unwanted: HashMap<Uuid, &str> = services
                .unwanted_deliveries(&claimed, now)
                .await?
                .into_iter()
                .collect();
            for delivery in claimed {
                match unwanted.get(&delivery.id) {
                    Some(reason) => skip(services, &delivery, reason).await?,
                    None => waiting.push_back(delivery),
                }
            }
            continue;
        }
        if !paused && !waiting.is_empty() && services.push_paused(now) {
            // Credentials broke mid-round: hand the rest back untouched.
            for delivery in waiting.drain(..) {
                release(services, &delivery, now).await?;
            }
            paused = true;
        }
        let free = concurrency - in_flight.len() - reserved;
        if !waiting.is_empty() && marking.is_empty() && free >= group.min(waiting.len()) {
            let starting: Vec<delivery::Model> = waiting.drain(..free.min(waiting.len())).collect();
            reserved += starting.len();
            // A task of its own: it holds the write turn, and must finish even while this loop
            // waits for the recorder (which may be waiting for the turn) to take a result.
            let (services, turn, worker) = (services.clone(), turn.clone(), worker.to_owned());
            marking.push(tokio::spawn(async move {
                let ids: Vec<Uuid> = starting.iter().map(|d| d.id).collect();
                let _turn = turn.take().await;
                let marked = store::mark_sending(services.db(), &ids, &worker).await;
                (marked, starting)
            }));
            continue;
        }
        tokio::select! {
            Some(mark) = marking.next(), if !marking.is_empty() => {
                let (marked, starting) =
                    mark.map_err(|err| anyhow::anyhow!("a push mark stopped: {err}"))?;
                reserved -= starting.len();
                marked?;
                for delivery in starting {
                    in_flight.push(async move {
                        let result = send(services, &delivery).await;
                        (delivery, result)
                    });
                }
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                let _ = results.send(done).await;
            }
            // The dispatcher committed another batch (or finished): claim again.
            Ok(()) = dispatching.changed(), if !may_find_more && !claimed_all && !paused => {
                may_find_more = true;
            }
            // Nothing marking, nothing in flight, and nothing more to start.
            else => break,
        }
    }
    Ok(paused)
}

/// Writes send outcomes as they come, `batch` at a time in one transaction, successes in one
/// statement.
async fn record_outcomes(
    services: Services,
    mut received: tokio::sync::mpsc::Receiver<(delivery::Model, SendOutcome)>,
    batch: usize,
    turn: WriteTurn,
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut buffer = Vec::with_capacity(batch);
    while received.recv_many(&mut buffer, batch).await > 0 {
        let now = Utc::now();
        let mut sent = Vec::new();
        let _turn = turn.take().await;
        let txn = crate::store::begin_write(services.db()).await?;
        for (delivery, result) in buffer.drain(..) {
            match result {
                SendOutcome::Sent { message_id } => sent.push((delivery.id, message_id)),
                other => record(&services, &txn, &delivery, other, &mut outcome).await?,
            }
        }
        store::record_sent(&txn, &sent, now).await?;
        txn.commit().await?;
        if !sent.is_empty() {
            services.push_recovered();
        }
        outcome.sent += sent.len();
        services.metrics().observe_sent(sent.len());
    }
    Ok(outcome)
}

/// On SQLite, whose turn it is to write: the dispatcher's transactions, the sender's claims and
/// marks and the recorder's transactions queue here instead of in SQLite's busy handler, which sleeps (1, 2, 5, 10 ms and
/// longer) and left a mark waiting several milliseconds behind a recorder's commit while the
/// slots it would fill stood idle. PostgreSQL's writers only wait for each other's rows: no turn.
#[derive(Clone)]
struct WriteTurn(Option<std::sync::Arc<tokio::sync::Mutex<()>>>);

impl WriteTurn {
    fn for_backend(backend: sea_orm::DbBackend) -> Self {
        Self((backend == sea_orm::DbBackend::Sqlite).then(Default::default))
    }

    async fn take(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.0 {
            Some(turn) => Some(turn.lock().await),
            None => None,
        }
    }
}

impl Outcome {
    fn absorb(&mut self, part: Outcome) {
        self.sent += part.sent;
        self.logged += part.logged;
        self.retried += part.retried;
        self.failed += part.failed;
        self.pruned += part.pruned;
        self.paused |= part.paused;
    }
}

/// Runs [`run_once`] every `interval`, and at once when woken (an announcement published now),
/// until `stop` turns true; a round in progress is finished first, so a shutdown does not cut a
/// batch of sends in half.
pub async fn run(
    services: Services,
    worker: String,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = services.push_worker_woken() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        if let Err(err) = run_once(&services, &worker).await {
            tracing::error!(error = %err, "push worker round failed");
        }
    }
    tracing::info!("push worker stopped");
}

async fn send(services: &Services, delivery: &delivery::Model) -> SendOutcome {
    let data = serde::Deserialize::deserialize(&delivery.data).unwrap_or_default();
    let urgency = if delivery.data["kind"] == "announcement" {
        Urgency::High
    } else {
        Urgency::Normal
    };
    let alert = Alert {
        title: delivery.title.clone(),
        body: delivery.body.clone(),
        data,
        // One occasion, one visible notification, even if a message were repeated.
        collapse_id: delivery.notification_id.simple().to_string(),
        urgency,
        ttl: Duration::from_secs(2 * 86_400),
    };
    let message = Message::alert(&delivery.token, &alert, Utc::now().timestamp());
    services.sender().send(&message).await
}

/// Ends a delivery that is no longer wanted, unsent.
async fn skip(services: &Services, delivery: &delivery::Model, reason: &str) -> Result<()> {
    store::record_delivery(
        services.db(),
        &DeliveryUpdate {
            id: delivery.id,
            status: "skipped",
            attempts: delivery.attempts,
            next_attempt_at: delivery.next_attempt_at,
            error_code: Some("no_longer_wanted".into()),
            error_message: Some(reason.to_owned()),
            message_id: None,
            sent_at: None,
        },
    )
    .await?;
    Ok(())
}

async fn release(
    services: &Services,
    delivery: &delivery::Model,
    now: DateTime<Utc>,
) -> Result<()> {
    store::record_delivery(
        services.db(),
        &DeliveryUpdate {
            id: delivery.id,
            status: "pending",
            attempts: delivery.attempts,
            next_attempt_at: now,
            error_code: delivery.error_code.clone(),
            error_message: delivery.error_message.clone(),
            message_id: None,
            sent_at: None,
        },
    )
    .await?;
    Ok(())
}

async fn record(
    services: &Services,
    txn: &sea_orm::DatabaseTransaction,
    delivery: &delivery::Model,
    result: SendOutcome,
    outcome: &mut Outcome,
) -> Result<()> {
    let now = Utc::now();
    let attempts = delivery.attempts + 1;
    let mut update = DeliveryUpdate {
        id: delivery.id,
        status: "sent",
        attempts,
        next_attempt_at: now,
        error_code: None,
        error_message: None,
        message_id: None,
        sent_at: None,
    };
    let (label, code) = match &result {
        SendOutcome::Sent { .. } => ("sent", ""),
        SendOutcome::Logged => ("logged", ""),
        SendOutcome::TokenInvalid { code, .. } => ("pruned", code.as_str()),
        SendOutcome::Retry { code, .. } => ("retry", code.as_str()),
        SendOutcome::AuthFailure { code, .. } => ("auth_failure", code.as_str()),
        SendOutcome::Failed { code, .. } => ("failed", code.as_str()),
    };
    services.metrics().observe_send(label, code);
    match result {
        SendOutcome::Sent { message_id } => {
            services.push_recovered();
            update.message_id = Some(message_id);
            update.sent_at = Some(now);
            outcome.sent += 1;
        }
        SendOutcome::Logged => {
            update.status = "logged";
            update.sent_at = Some(now);
            outcome.logged += 1;
        }
        SendOutcome::TokenInvalid { code, message } => {
            update.status = "pruned";
            store::deactivate_token(txn, &delivery.token, &code, now).await?;
            store::prune_token_deliveries(txn, &delivery.token, &code).await?;
            tracing::info!(device.id = %delivery.device_id, %code, "push token is dead; device deactivated");
            (update.error_code, update.error_message) = (Some(code), Some(message));
            outcome.pruned += 1;
        }
        SendOutcome::Retry {
            code,
            message,
            after,
        } => {
            if attempts >= services.config().push.max_attempts {
                update.status = "failed";
                outcome.failed += 1;
            } else {
                update.status = "pending";
                update.next_attempt_at = now + to_chrono(after.unwrap_or(backoff(attempts)));
                outcome.retried += 1;
                // The wait holds for the device (see `store::push::claim_deliveries`); the
                // project's quota, not one device's, holds for everyone until it passes.
                if code == "QUOTA_EXCEEDED" && !message.to_lowercase().contains("device") {
                    services.push_throttled(update.next_attempt_at);
                }
            }
            (update.error_code, update.error_message) = (Some(code), Some(message));
        }
        SendOutcome::AuthFailure { code, message } => {
            // Not this message's fault: it waits, unattempted, until the credentials work.
            let until = services.push_auth_failed(&code, &message, now);
            update.status = "pending";
            update.attempts = delivery.attempts;
            update.next_attempt_at = until;
            (update.error_code, update.error_message) = (Some(code), Some(message));
            outcome.paused = true;
        }
        SendOutcome::Failed { code, message } => {
            update.status = "failed";
            tracing::warn!(delivery.id = %delivery.id, %code, "push message refused for good");
            (update.error_code, update.error_message) = (Some(code), Some(message));
            outcome.failed += 1;
        }
    }
    store::record_delivery(txn, &update).await?;
    Ok(())
}

/// Exponential backoff with jitter: about 2^attempts seconds, between half and all of it.
fn backoff(attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 12)).unwrap_or(12);
    let full = Duration::from_secs(2u64.pow(exponent)).min(MAX_BACKOFF);
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    full.mul_f64(0.5 + f64::from(byte[0]) / 510.0)
}

fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::hours(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for attempts in 1..6 {
            let full = Duration::from_secs(2u64.pow(attempts as u32));
            let wait = backoff(attempts);
            assert!(wait >= full / 2 && wait <= full, "{attempts}: {wait:?}");
        }
        assert!(backoff(40) <= MAX_BACKOFF);
    }
}
