//! Typed configuration, layered: built-in defaults, then an optional TOML file, then `VELDWERK_*`
//! environment variables (and `PORT`, as container platforms set it).
//!
//! The defaults are the embedded development setup: a SQLite file under `./data`, log-only push,
//! demo data. Production mode (`VELDWERK_MODE=production`) refuses the development JWT secret and
//! never creates demo data.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The JWT secret used when none is configured. Accepted only in development mode.
pub const DEVELOPMENT_JWT_SECRET: &str = "veldwerk-development-secret-do-not-use-in-production";

/// How the server behaves towards demo data, secrets and log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Zero-config local use: demo data, readable logs, the development JWT secret allowed.
    Development,
    /// Real deployments: no demo data, JSON logs, a real JWT secret required.
    Production,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured lines.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A string that never shows up in `Debug` output or logs.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// How push notifications leave the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushMode {
    /// Log and record what would be sent: the embedded default, no Firebase needed.
    Log,
    /// Send through Firebase Cloud Messaging (HTTP v1).
    Fcm,
}

/// Push delivery settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    pub mode: PushMode,
    /// Path of the Firebase service-account key (JSON).
    pub fcm_credentials_file: Option<PathBuf>,
    /// The service-account key itself, for platforms that pass secrets as variables.
    pub fcm_credentials_json: Option<Secret>,
    /// FCM's address; tests point it at a local server.
    pub fcm_base_url: String,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// Ask FCM to validate without delivering (a dry run).
    pub validate_only: bool,
    /// Attempts per delivery before it counts as failed.
    pub max_attempts: i32,
    /// Default quiet hours, local `HH:MM`; devices may send their own.
    pub quiet_hours_start: String,
    pub quiet_hours_end: String,
    /// Seconds between worker runs.
    pub worker_interval_secs: u64,
    /// Run the delivery worker in this process.
    pub worker_enabled: bool,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            mode: PushMode::Log,
            fcm_credentials_file: None,
            fcm_credentials_json: None,
            fcm_base_url: "https://fcm.googleapis.com".to_owned(),
            concurrency: 200,
            validate_only: false,
            max_attempts: 5,
            quiet_hours_start: "21:00".to_owned(),
            quiet_hours_end: "08:00".to_owned(),
            worker_interval_secs: 5,
            worker_enabled: true,
        }
    }
}

/// Limits on how often one client address or one account may try to log in or enrol.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Attempts allowed per client address in one window.
    pub per_address: u32,
    /// Attempts allowed per account (email, invite code or link code) in one window.
    pub per_account: u32,
    /// Length of the window in seconds.
    pub window_secs: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_address: 120,
            per_account: 10,
            window_secs: 300,
        }
    }
}

/// Where attachment bytes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// Files under a local directory: the embedded default, one server.
    Local,
    /// An S3-compatible bucket, shared by several replicas.
    S3,
}

/// Attachments: storage, limits, and how long deleted files are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttachmentConfig {
    pub storage: StorageKind,
    /// Directory for local storage; `<data_dir>/attachments` when unset.
    pub dir: Option<PathBuf>,
    /// S3 endpoint, e.g. `https://s3.eu-central-1.amazonaws.com` or a local server's address.
    pub s3_endpoint: Option<String>,
    pub s3_bucket: String,
    pub s3_region: String,
    pub s3_access_key_id: Option<Secret>,
    pub s3_secret_access_key: Option<Secret>,
    /// Allow a plain-HTTP endpoint (local test servers).
    pub s3_allow_http: bool,
    /// Largest file accepted, in bytes.
    pub max_file_bytes: i64,
    /// Total size of one participant's attachments, in bytes.
    pub quota_bytes: i64,
    /// Content types accepted; `image/*` accepts every image type.
    pub content_types: Vec<String>,
    /// Bytes of an upload request held in memory before they are stored as one part (S3 needs
    /// at least 5 MiB for every part of a multipart object but the last).
    pub part_bytes: usize,
    /// Seconds the bytes of a deleted attachment are kept before they are removed.
    pub gc_grace_secs: u64,
    /// Seconds between runs of the collector.
    pub gc_interval_secs: u64,
}

impl Default for AttachmentConfig {
    fn default() -> Self {
        Self {
            storage: StorageKind::Local,
            dir: None,
            s3_endpoint: None,
            s3_bucket: "veldwerk".to_owned(),
            s3_region: "eu-central-1".to_owned(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
            max_file_bytes: 100 * 1024 * 1024,
            quota_bytes: 2 * 1024 * 1024 * 1024,
            content_types: vec![
                "image/*".to_owned(),
                "audio/*".to_owned(),
                "application/pdf".to_owned(),
            ],
            part_bytes: 8 * 1024 * 1024,
            gc_grace_secs: 7 * 86_400,
            gc_interval_secs: 3_600,
        }
    }
}

impl AttachmentConfig {
    /// Whether files of this content type may be attached (parameters such as `; codecs=` are
    /// ignored; case does not matter).
    pub fn allows(&self, content_type: &str) -> bool {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let Some((kind, _)) = essence.split_once('/') else {
            return false;
        };
        self.content_types.iter().any(|allowed| {
            let allowed = allowed.trim().to_ascii_lowercase();
            match allowed.strip_suffix("/*") {
                Some(prefix) => prefix == kind,
                None => allowed == essence,
            }
        })
    }
}

/// The data's life: how long participant data and the audit log are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Months a cohort's participant data is kept after its Day 6, unless its organisation sets
    /// its own period.
    pub retention_months: u32,
    /// Days before the purge that the cohort's trainers are told (push, and the audit log).
    pub retention_warning_days: u32,
    /// Days an audit entry is kept.
    pub audit_retention_days: u32,
    /// Seconds between runs of the retention job.
    pub retention_interval_secs: u64,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            retention_months: 12,
            retention_warning_days: 14,
            audit_retention_days: 730,
            retention_interval_secs: 3_600,
        }
    }
}

/// The whole configuration of one server process.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Development or production.
    pub mode: Mode,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// `sqlite://...` or `postgres://...`.
    pub database_url: String,
    /// Writable directory for the SQLite file and, later, media.
    pub data_dir: PathBuf,
    /// HMAC key for access tokens.
    pub jwt_secret: Secret,
    /// Lifetime of an access token in seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token (a device's session) in days, renewed at every refresh.
    pub refresh_token_ttl_days: u64,
    /// Lifetime of a fresh invite code in days.
    pub invite_ttl_days: u64,
    /// Largest accepted request body in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest accepted WatermelonDB push in bytes. WatermelonDB sends everything a device
    /// changed offline in one push, with no batches, so its pushes get their own, larger bound.
    pub max_watermelon_push_bytes: usize,
    /// Create the demo organisation, cohort and logins on an empty database (development only).
    pub demo_data: bool,
    /// Log format; defaults to pretty in development and JSON in production.
    pub log_format: Option<LogFormat>,
    /// `tracing` filter directives.
    pub log_filter: String,
    /// Login, enrolment and device-link rate limits.
    pub rate_limit: RateLimitConfig,
    /// Push notifications.
    pub push: PushConfig,
    /// Oldest app version (`1.4.0`) the sync endpoints serve; older apps get 426 and a message.
    pub min_app_version: Option<String>,
    /// Seconds between a shutdown signal and closing the listener, while `/readyz` says not
    /// ready (give the load balancer time to notice).
    pub shutdown_drain_secs: u64,
    /// Seconds in-flight requests (and the push round in hand) get to finish after the listener
    /// closed.
    pub shutdown_grace_secs: u64,
    /// Days a deletion is kept for devices to sync it; devices offline longer re-sync fully.
    pub tombstone_retention_days: u64,
    /// Trust the first address of `X-Forwarded-For` as the client (only behind a proxy that sets it).
    pub trust_forwarded_for: bool,
    /// Attachments (photos, recordings, PDFs).
    pub attachments: AttachmentConfig,
    /// Sync pushes applied at once; more wait (read, not yet parsed). Their transactions take
    /// turns anyway (one writer on SQLite, the version row on PostgreSQL), so a few keep the
    /// database busy.
    pub sync_push_concurrency: usize,
    /// Web origins (`https://console.example.nl`) whose pages may call the API from a browser.
    /// None by default: the apps are native and the console is served by this binary.
    pub cors_allowed_origins: Vec<String>,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`; unset, it is open (keep
    /// it off the public ingress, as `deploy/k8s/ingress.example.yaml` does).
    pub metrics_token: Option<Secret>,
    /// Seconds after a refresh during which its old token, presented again, gets the same
    /// successor (the answer was lost) instead of revoking the device; 0 turns this off.
    pub refresh_reuse_grace_secs: u64,
    /// Seconds a client has to send a complete request head; a slow trickle is cut off.
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may take to arrive (JSON and sync bodies; attachment uploads are
    /// bounded by the idle timeout instead, so a slow phone can still send a long recording).
    pub body_read_timeout_secs: u64,
    /// Seconds a connection may stay without traffic either way before it is closed.
    pub idle_timeout_secs: u64,
    /// Live sync streams one device may hold open at once.
    pub max_streams_per_device: usize,
    /// Retention of participant data and of the audit log.
    pub privacy: PrivacyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Development,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://data/veldwerk.db?mode=rwc".to_owned(),
            data_dir: PathBuf::from("data"),
            jwt_secret: Secret::new(DEVELOPMENT_JWT_SECRET),
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_days: 60,
            invite_ttl_days: 60,
            max_body_bytes: 1024 * 1024,
            max_watermelon_push_bytes: 32 * 1024 * 1024,
            demo_data: true,
            log_format: None,
            log_filter: "info,sqlx=warn".to_owned(),
            rate_limit: RateLimitConfig::default(),
            push: PushConfig::default(),
            min_app_version: None,
            shutdown_drain_secs: 0,
            shutdown_grace_secs: 10,
            tombstone_retention_days: 90,
            trust_forwarded_for: false,
            attachments: AttachmentConfig::default(),
            sync_push_concurrency: 4,
            cors_allowed_origins: Vec::new(),
            metrics_token: None,
            refresh_reuse_grace_secs: 60,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 60,
            idle_timeout_secs: 75,
            max_streams_per_device: 4,
            privacy: PrivacyConfig::default(),
        }
    }
}

impl Config {
    /// Loads the configuration from the process environment: defaults, then the file named by
    /// `VELDWERK_CONFIG` (if any), then `VELDWERK_*` variables and `PORT`.
    pub fn load() -> anyhow::Result<Self> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::from_sources(&vars)
    }

    /// The same layering with the environment given explicitly, so tests need not touch the
    /// process environment.
    pub fn from_sources(vars: &[(String, String)]) -> anyhow::Result<Self> {
        let var = |name: &str| {
            vars.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        // Whether the operator chose a push mode, or got the default (log only) by leaving it out.
        let mut push_mode_chosen = var("VELDWERK_PUSH_MODE").is_some();
        let mut config = match var("VELDWERK_CONFIG") {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("Failed to read the configuration file {path}"))?;
                let table: toml::Table = toml::from_str(&text)
                    .with_context(|| format!("Failed to parse the configuration file {path}"))?;
                push_mode_chosen |= table
                    .get("push")
                    .and_then(|push| push.get("mode"))
                    .is_some();
                toml::from_str(&text)
                    .with_context(|| format!("Failed to parse the configuration file {path}"))?
            }
            None => Config::default(),
        };
        config.apply_env(vars)?;
        config.validate(push_mode_chosen)?;
        Ok(config)
    }

    fn apply_env(&mut self, vars: &[(String, String)]) -> anyhow::Result<()> {
        fn parse<T: std::str::FromStr>(name: &str, value: &str) -> anyhow::Result<T>
        where
            T::Err: fmt::Display,
        {
            value
                .parse()
                .map_err(|err| anyhow::anyhow!("{name}={value:?} is not valid: {err}"))
        }
        // PORT first, so an explicit VELDWERK_LISTEN still wins.
        if let Some((_, port)) = vars.iter().find(|(key, _)| key == "PORT") {
            let port: u16 = parse("PORT", port)?;
            self.listen = SocketAddr::from(([0, 0, 0, 0], port));
        }
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("VELDWERK_") else {
                continue;
            };
            match key {
                // CONFIG was read above; TEST_* belong to the test suite, not to the server.
                "CONFIG" => {}
                _ if key.starts_with("TEST_") => {}
                "MODE" => {
                    self.mode = match value.as_str() {
                        "development" => Mode::Development,
                        "production" => Mode::Production,
                        _ => bail!("{name} must be `development` or `production`, not {value:?}"),
                    }
                }
                "LISTEN" => self.listen = parse(name, value)?,
                "DATABASE_URL" => self.database_url = value.clone(),
                "DATA_DIR" => self.data_dir = PathBuf::from(value),
                "JWT_SECRET" => self.jwt_secret = Secret::new(value.clone()),
                "ACCESS_TOKEN_TTL_SECS" => self.access_token_ttl_secs = parse(name, value)?,
                "REFRESH_TOKEN_TTL_DAYS" => self.refresh_token_ttl_days = parse(name, value)?,
                "REFRESH_REUSE_GRACE_SECS" => self.refresh_reuse_grace_secs = parse(name, value)?,
                "HEADER_READ_TIMEOUT_SECS" => self.header_read_timeout_secs = parse(name, value)?,
                "BODY_READ_TIMEOUT_SECS" => self.body_read_timeout_secs = parse(name, value)?,
                "IDLE_TIMEOUT_SECS" => self.idle_timeout_secs = parse(name, value)?,
                "MAX_STREAMS_PER_DEVICE" => self.max_streams_per_device = parse(name, value)?,
                "INVITE_TTL_DAYS" => self.invite_ttl_days = parse(name, value)?,
                "MAX_BODY_BYTES" => self.max_body_bytes = parse(name, value)?,
                "MAX_WATERMELON_PUSH_BYTES" => self.max_watermelon_push_bytes = parse(name, value)?,
                "DEMO_DATA" => self.demo_data = parse(name, value)?,
                "LOG_FORMAT" => {
                    self.log_format = Some(match value.as_str() {
                        "pretty" => LogFormat::Pretty,
                        "json" => LogFormat::Json,
                        _ => bail!("{name} must be `pretty` or `json`, not {value:?}"),
                    })
                }
                "LOG_FILTER" => self.log_filter = value.clone(),
                "RATE_LIMIT_PER_ADDRESS" => self.rate_limit.per_address = parse(name, value)?,
                "RATE_LIMIT_PER_ACCOUNT" => self.rate_limit.per_account = parse(name, value)?,
                "RATE_LIMIT_WINDOW_SECS" => self.rate_limit.window_secs = parse(name, value)?,
                "MIN_APP_VERSION" => {
                    self.min_app_version = Some(value.clone()).filter(|v| !v.is_empty())
                }
                "PUSH_MODE" => {
                    self.push.mode = match value.as_str() {
                        "log" => PushMode::Log,
                        "fcm" => PushMode::Fcm,
                        _ => bail!("{name} must be `log` or `fcm`, not {value:?}"),
                    }
                }
                "FCM_CREDENTIALS_FILE" => {
                    self.push.fcm_credentials_file = Some(PathBuf::from(value))
                }
                // Empty counts as unset: compose passes the variable through even when unset.
                "FCM_CREDENTIALS_JSON" => {
                    self.push.fcm_credentials_json =
                        (!value.trim().is_empty()).then(|| Secret::new(value.clone()))
                }
                "FCM_BASE_URL" => self.push.fcm_base_url = value.clone(),
                "PUSH_CONCURRENCY" => self.push.concurrency = parse(name, value)?,
                "PUSH_VALIDATE_ONLY" => self.push.validate_only = parse(name, value)?,
                "PUSH_MAX_ATTEMPTS" => self.push.max_attempts = parse(name, value)?,
                "QUIET_HOURS_START" => self.push.quiet_hours_start = value.clone(),
                "QUIET_HOURS_END" => self.push.quiet_hours_end = value.clone(),
                "PUSH_WORKER_INTERVAL_SECS" => self.push.worker_interval_secs = parse(name, value)?,
                "PUSH_WORKER" => self.push.worker_enabled = parse(name, value)?,
                "SHUTDOWN_GRACE_SECS" => self.shutdown_grace_secs = parse(name, value)?,
                "SHUTDOWN_DRAIN_SECS" => self.shutdown_drain_secs = parse(name, value)?,
                "TOMBSTONE_RETENTION_DAYS" => self.tombstone_retention_days = parse(name, value)?,
                "TRUST_FORWARDED_FOR" => self.trust_forwarded_for = parse(name, value)?,
                "CORS_ALLOWED_ORIGINS" => {
                    self.cors_allowed_origins = value
                        .split(',')
                        .map(str::trim)
                        .filter(|origin| !origin.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                "METRICS_TOKEN" => {
                    self.metrics_token =
                        (!value.trim().is_empty()).then(|| Secret::new(value.clone()))
                }
                "ATTACHMENT_STORAGE" => {
                    self.attachments.storage = match value.as_str() {
                        "local" => StorageKind::Local,
                        "s3" => StorageKind::S3,
                        _ => bail!("{name} must be `local` or `s3`, not {value:?}"),
                    }
                }
                "ATTACHMENT_DIR" => self.attachments.dir = Some(PathBuf::from(value)),
                "ATTACHMENT_MAX_FILE_BYTES" => {
                    self.attachments.max_file_bytes = parse(name, value)?
                }
                "ATTACHMENT_QUOTA_BYTES" => self.attachments.quota_bytes = parse(name, value)?,
                "ATTACHMENT_CONTENT_TYPES" => {
                    self.attachments.content_types =
                        value.split(',').map(|t| t.trim().to_owned()).collect()
                }
                "ATTACHMENT_PART_BYTES" => self.attachments.part_bytes = parse(name, value)?,
                "ATTACHMENT_GC_GRACE_SECS" => self.attachments.gc_grace_secs = parse(name, value)?,
                "ATTACHMENT_GC_INTERVAL_SECS" => {
                    self.attachments.gc_interval_secs = parse(name, value)?
                }
                "S3_ENDPOINT" => self.attachments.s3_endpoint = Some(value.clone()),
                "S3_BUCKET" => self.attachments.s3_bucket = value.clone(),
                "S3_REGION" => self.attachments.s3_region = value.clone(),
                "S3_ACCESS_KEY_ID" => {
                    self.attachments.s3_access_key_id = Some(Secret::new(value.clone()))
                }
                "S3_SECRET_ACCESS_KEY" => {
                    self.attachments.s3_secret_access_key = Some(Secret::new(value.clone()))
                }
                "S3_ALLOW_HTTP" => self.attachments.s3_allow_http = parse(name, value)?,
                "RETENTION_MONTHS" => self.privacy.retention_months = parse(name, value)?,
                "RETENTION_WARNING_DAYS" => {
                    self.privacy.retention_warning_days = parse(name, value)?
                }
                "AUDIT_RETENTION_DAYS" => self.privacy.audit_retention_days = parse(name, value)?,
                "RETENTION_INTERVAL_SECS" => {
                    self.privacy.retention_interval_secs = parse(name, value)?
                }
                "SYNC_PUSH_CONCURRENCY" => self.sync_push_concurrency = parse(name, value)?,
                // A typo in a variable name should not silently fall back to a default.
                _ => bail!("unknown configuration variable {name}"),
            }
        }
        Ok(())
    }

    fn validate(&self, push_mode_chosen: bool) -> anyhow::Result<()> {
        if self.mode == Mode::Production {
            if self.jwt_secret.expose() == DEVELOPMENT_JWT_SECRET {
                bail!(
                    "production mode needs VELDWERK_JWT_SECRET: the development secret is public"
                );
            }
            // The examples in this repository (deploy/k8s/secret.example.yaml) are public too.
            if self
                .jwt_secret
                .expose()
                .to_lowercase()
                .contains("change-me")
            {
                bail!(
                    "VELDWERK_JWT_SECRET is an example value; generate one, e.g. `openssl rand -hex 32`"
                );
            }
            if self.demo_data {
                bail!("production mode refuses demo data: set VELDWERK_DEMO_DATA=false");
            }
            if self.push.mode == PushMode::Log && !push_mode_chosen {
                // Otherwise a deployment that forgot its FCM key looks healthy while no
                // reminder reaches anyone.
                bail!(
                    "production mode needs a push mode: VELDWERK_PUSH_MODE=fcm with a service \
                     account key, or VELDWERK_PUSH_MODE=log to run without push on purpose"
                );
            }
        }
        if self.jwt_secret.expose().len() < 32 {
            bail!("the JWT secret must be at least 32 characters long");
        }
        if self.push.mode == PushMode::Fcm
            && self.push.fcm_credentials_file.is_none()
            && self.push.fcm_credentials_json.is_none()
        {
            bail!(
                "push mode fcm needs VELDWERK_FCM_CREDENTIALS_FILE or VELDWERK_FCM_CREDENTIALS_JSON"
            );
        }
        for time in [&self.push.quiet_hours_start, &self.push.quiet_hours_end] {
            if chrono::NaiveTime::parse_from_str(time, "%H:%M").is_err() {
                bail!("quiet hours are local times like 21:00, not {time:?}");
            }
        }
        if self.header_read_timeout_secs == 0
            || self.body_read_timeout_secs == 0
            || self.idle_timeout_secs == 0
            || self.max_streams_per_device == 0
        {
            bail!("connection timeouts and the stream limit must be positive");
        }
        for origin in &self.cors_allowed_origins {
            let bare = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            if bare.is_none_or(|host| host.is_empty() || host.contains('/')) {
                bail!(
                    "a CORS origin is a scheme and host like https://console.example.nl, not {origin:?}"
                );
            }
        }
        if self.attachments.part_bytes == 0 || self.attachments.max_file_bytes < 1 {
            bail!("attachment size limits must be positive");
        }
        if self.rate_limit.window_secs == 0 {
            bail!("the rate limit window must be at least one second");
        }
        Ok(())
    }

    /// The effective log format.
    pub fn log_format(&self) -> LogFormat {
        self.log_format.unwrap_or(match self.mode {
            Mode::Development => LogFormat::Pretty,
            Mode::Production => LogFormat::Json,
        })
    }

    /// Lifetime of an access token.
    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_embedded_development_setup() {
        let config = Config::from_sources(&[]).unwrap();
        assert_eq!(config.mode, Mode::Development);
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert!(config.database_url.starts_with("sqlite://"));
        assert!(config.demo_data);
    }

    #[test]
    fn port_listens_on_all_interfaces_and_veldwerk_listen_overrides_it() {
        let config = Config::from_sources(&vars(&[("PORT", "9000")])).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        let config = Config::from_sources(&vars(&[
            ("PORT", "9000"),
            ("VELDWERK_LISTEN", "127.0.0.1:7000"),
        ]))
        .unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:7000");
    }

    #[test]
    fn a_file_is_overridden_by_the_environment() {
        let dir = std::env::temp_dir().join(format!("veldwerk-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("veldwerk.toml");
        std::fs::write(&path, "max_body_bytes = 2048\ninvite_ttl_days = 3\n").unwrap();
        let config = Config::from_sources(&vars(&[
            ("VELDWERK_CONFIG", path.to_str().unwrap()),
            ("VELDWERK_INVITE_TTL_DAYS", "5"),
        ]))
        .unwrap();
        assert_eq!(config.max_body_bytes, 2048);
        assert_eq!(config.invite_ttl_days, 5);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn production_refuses_the_development_secret_and_demo_data() {
        let err = Config::from_sources(&vars(&[("VELDWERK_MODE", "production")])).unwrap_err();
        assert!(err.to_string().contains("VELDWERK_JWT_SECRET"), "{err}");
        let err = Config::from_sources(&vars(&[
            ("VELDWERK_MODE", "production"),
            (
                "VELDWERK_JWT_SECRET",
                "a-real-secret-of-at-least-32-characters",
            ),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("demo"), "{err}");
    }

    #[test]
    fn production_refuses_the_example_secret_of_the_manifests() {
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/k8s/secret.example.yaml"
        ))
        .unwrap();
        let secret = example
            .lines()
            .find_map(|line| line.trim().strip_prefix("VELDWERK_JWT_SECRET: "))
            .unwrap();
        let err = Config::from_sources(&vars(&[
            ("VELDWERK_MODE", "production"),
            ("VELDWERK_DEMO_DATA", "false"),
            ("VELDWERK_PUSH_MODE", "log"),
            ("VELDWERK_JWT_SECRET", secret),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("example"), "{err}");
    }

    #[test]
    fn production_runs_log_only_push_only_when_chosen() {
        let production = [
            ("VELDWERK_MODE", "production"),
            (
                "VELDWERK_JWT_SECRET",
                "a-real-secret-of-at-least-32-characters",
            ),
            ("VELDWERK_DEMO_DATA", "false"),
        ];
        let err = Config::from_sources(&vars(&production)).unwrap_err();
        assert!(err.to_string().contains("VELDWERK_PUSH_MODE"), "{err}");
        let mut chosen = production.to_vec();
        chosen.push(("VELDWERK_PUSH_MODE", "log"));
        assert_eq!(
            Config::from_sources(&vars(&chosen)).unwrap().push.mode,
            PushMode::Log
        );
        // Chosen in the configuration file counts too.
        let dir = std::env::temp_dir().join(format!("veldwerk-push-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("veldwerk.toml");
        std::fs::write(&file, "[push]\nmode = \"log\"\n").unwrap();
        let mut from_file = production.to_vec();
        let path = file.to_string_lossy().into_owned();
        from_file.push(("VELDWERK_CONFIG", &path));
        assert!(Config::from_sources(&vars(&from_file)).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn attachment_content_types_match_by_family_or_exactly() {
        let config = Config::default();
        assert!(config.attachments.allows("image/jpeg"));
        assert!(config.attachments.allows("Audio/MP4; codecs=mp4a"));
        assert!(config.attachments.allows("application/pdf"));
        assert!(!config.attachments.allows("application/zip"));
        assert!(!config.attachments.allows("image"));
        assert!(!config.attachments.allows("text/html"));
    }

    #[test]
    fn unknown_variables_are_rejected() {
        let err = Config::from_sources(&vars(&[("VELDWERK_DATABSE_URL", "x")])).unwrap_err();
        assert!(err.to_string().contains("VELDWERK_DATABSE_URL"));
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let config = Config::from_sources(&vars(&[(
            "VELDWERK_JWT_SECRET",
            "super-secret-value-that-is-long-enough",
        )]))
        .unwrap();
        assert!(!format!("{config:?}").contains("super-secret"));
    }
}
