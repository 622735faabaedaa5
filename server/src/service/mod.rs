//! The use cases: accounts, organisations and programmes, cohorts. No HTTP types here; the
//! `api` layer calls these and maps [`Error`] to responses.

pub mod access;
pub mod accounts;
pub mod announcements;
pub mod attachments;
pub mod audit;
pub mod catalog;
pub mod cohorts;
pub mod console;
pub mod demo;
pub mod error;
pub mod in_flight;
pub mod password;
pub mod privacy;
pub mod progress;
pub mod push;
pub mod rate_limit;
pub mod schedule;
pub mod sync;
pub mod texts;
pub mod tokens;

/// Pushes one participant may have in progress at once, all devices together.
pub const MAX_PUSHES_PER_USER: usize = 2;

use std::{sync::Arc, time::Duration};

use sea_orm::DatabaseConnection;

pub use self::{
    access::{Actor, Role},
    error::{Error, Result},
};
use self::{rate_limit::RateLimiter, tokens::TokenIssuer};
use crate::{
    config::{Config, PushMode},
    push::{
        LogSender, PushSender,
        fcm::{FcmClient, FcmSettings, ServiceAccountKey},
    },
};

/// The sender the configuration asks for.
fn push_sender(config: &Config) -> anyhow::Result<Arc<dyn PushSender>> {
    use anyhow::Context;
    match config.push.mode {
        PushMode::Log => Ok(Arc::new(LogSender)),
        PushMode::Fcm => {
            let json = match (
                &config.push.fcm_credentials_json,
                &config.push.fcm_credentials_file,
            ) {
                (Some(json), _) => json.expose().to_owned(),
                (None, Some(path)) => std::fs::read_to_string(path).with_context(|| {
                    format!("Failed to read the FCM key file {}", path.display())
                })?,
                (None, None) => anyhow::bail!("push mode fcm needs a service-account key"),
            };
            let key = ServiceAccountKey::from_json(&json)?;
            let settings = FcmSettings {
                base_url: config.push.fcm_base_url.clone(),
                concurrency: config.push.concurrency,
                validate_only: config.push.validate_only,
                request_timeout: Duration::from_secs(30),
            };
            Ok(Arc::new(FcmClient::new(key, settings)?))
        }
    }
}

/// Everything the use cases need, cheap to clone into each request.
#[derive(Clone)]
pub struct Services {
    db: DatabaseConnection,
    config: Arc<Config>,
    tokens: Arc<TokenIssuer>,
    address_limiter: Arc<RateLimiter>,
    account_limiter: Arc<RateLimiter>,
    /// Change notices for live sync streams.
    changes: tokio::sync::broadcast::Sender<Arc<sync::ChangeNotice>>,
    /// This process, among replicas.
    instance_id: uuid::Uuid,
    /// What the process counts, for `/metrics`.
    metrics: Arc<crate::metrics::Metrics>,
    /// The server's hybrid logical clock, returned to devices so theirs move past it.
    clock: Arc<std::sync::Mutex<veldwerk_sync_protocol::Clock>>,
    /// Where push messages go: FCM, or the log.
    sender: Arc<dyn PushSender>,
    /// Whether sending is paused after a credential failure.
    pub(crate) push_health: Arc<std::sync::Mutex<PushHealth>>,
    /// Set when the process is shutting down: readiness turns false so traffic moves elsewhere.
    draining: Arc<std::sync::atomic::AtomicBool>,
    /// Where attachment bytes are kept.
    blobs: crate::store::blobs::BlobStore,
    /// Pushes admitted at once; the rest wait before their bodies are read.
    push_permits: Arc<tokio::sync::Semaphore>,
    /// Pushes in progress per participant.
    pushes_in_flight: in_flight::InFlight,
    /// Live streams open per device.
    streams_open: in_flight::StreamSlots,
    /// Wakes this replica's push worker before its next tick, when there is something to send
    /// now (an announcement published): the trainer's "now" should not wait for the interval.
    push_wake: Arc<tokio::sync::Notify>,
    /// The sync health last written per device, so unchanged reports are not rewritten.
    sync_health: Arc<progress::SyncHealthCache>,
}

/// Whether this process should receive traffic, and why not.
#[derive(Debug)]
pub struct Readiness {
    pub database_reachable: bool,
    pub pending_migrations: usize,
    pub draining: bool,
}

impl Readiness {
    /// Ready: the database answers, its schema is current, and the process is not draining.
    pub fn is_ready(&self) -> bool {
        self.database_reachable && self.pending_migrations == 0 && !self.draining
    }
}

/// Sending stops while the push credentials are broken, and ops hears about it once.
#[derive(Debug, Default)]
pub struct PushHealth {
    /// No sending before this instant.
    pub paused_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Consecutive credential failures (for the backoff), 0 when healthy.
    pub auth_failures: u32,
}

impl Services {
    pub fn new(db: DatabaseConnection, config: Config) -> anyhow::Result<Self> {
        let sender = push_sender(&config)?;
        Self::with_sender(db, config, sender)
    }

    /// Like [`Services::new`] with a given push sender.
    pub fn with_sender(
        db: DatabaseConnection,
        config: Config,
        sender: Arc<dyn PushSender>,
    ) -> anyhow::Result<Self> {
        let tokens = TokenIssuer::new(
            config.jwt_secret.expose().as_bytes(),
            config.access_token_ttl(),
        )?;
        let window = Duration::from_secs(config.rate_limit.window_secs);
        let blobs =
            crate::store::blobs::BlobStore::from_config(&config.attachments, &config.data_dir)?;
        Ok(Self {
            blobs,
            address_limiter: Arc::new(RateLimiter::new(config.rate_limit.per_address, window)),
            account_limiter: Arc::new(RateLimiter::new(config.rate_limit.per_account, window)),
            changes: tokio::sync::broadcast::channel(1024).0,
            instance_id: uuid::Uuid::now_v7(),
            metrics: Arc::default(),
            clock: Arc::new(std::sync::Mutex::new(veldwerk_sync_protocol::Clock::new(
                "server",
            ))),
            sender,
            push_health: Arc::default(),
            draining: Arc::default(),
            push_permits: Arc::new(tokio::sync::Semaphore::new(
                config.sync_push_concurrency.max(1),
            )),
            pushes_in_flight: in_flight::InFlight::default(),
            streams_open: in_flight::StreamSlots::default(),
            push_wake: Arc::default(),
            sync_health: Arc::default(),
            db,
            config: Arc::new(config),
            tokens: Arc::new(tokens),
        })
    }

    /// The database pool.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Waits for a turn to apply a push. Pushes are write transactions, applied one at a time on
    /// SQLite and a few at a time on PostgreSQL; the body is read before (within the body timeout),
    /// so a client that stalls mid-body holds no turn, and waits here unparsed.
    pub async fn admit_push(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.push_permits
            .clone()
            .acquire_owned()
            .await
            .expect("the push semaphore is never closed")
    }

    /// Lets a participant's push in, unless they already have [`MAX_PUSHES_PER_USER`] in progress
    /// (an app pushes one batch at a time per device; more is a loop or an attack).
    pub fn admit_client_push(&self, user_id: uuid::Uuid) -> Result<in_flight::InFlightGuard> {
        self.pushes_in_flight
            .try_enter(user_id, MAX_PUSHES_PER_USER)
            .ok_or(Error::RateLimited {
                retry_after: Duration::from_secs(1),
            })
    }

    /// A place for a device's new live stream; its oldest is told to end when it already
    /// holds as many as it may (`VELDWERK_MAX_STREAMS_PER_DEVICE`).
    pub fn admit_stream(&self, device_id: uuid::Uuid) -> in_flight::StreamSlot {
        self.streams_open
            .open(device_id, self.config.max_streams_per_device)
    }

    /// Asks this replica's push worker for a round now rather than at its next tick. A wake
    /// during a round is kept, and starts another round right after it.
    pub fn wake_push_worker(&self) {
        self.push_wake.notify_one();
    }

    /// Resolves when [`Services::wake_push_worker`] was called.
    pub async fn push_worker_woken(&self) {
        self.push_wake.notified().await;
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Marks the process as shutting down.
    pub fn start_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake this replica's live streams so they can say goodbye (only here: other replicas
        // keep serving).
        let _ = self.changes.send(Arc::new(sync::ChangeNotice {
            everyone: true,
            ..sync::ChangeNotice::default()
        }));
    }

    /// Whether the process is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether the process can take traffic.
    pub async fn readiness(&self) -> Readiness {
        let pending = crate::store::pending_migrations(&self.db).await;
        Readiness {
            database_reachable: pending.is_ok(),
            pending_migrations: pending.unwrap_or(0),
            draining: self.draining.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    /// The push sender in use.
    pub fn sender(&self) -> &dyn PushSender {
        self.sender.as_ref()
    }

    /// The configuration the services run with.
    pub fn config(&self) -> &Config {
        &self.config
    }
}
