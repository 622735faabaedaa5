//! The use cases: accounts, organisations and programmes, cohorts. No HTTP types here; the
//! `api` layer calls these and maps [`Error`] to responses.

pub mod access;
pub mod accounts;
pub mod announcements;
pub mod catalog;
pub mod cohorts;
pub mod demo;
pub mod error;
pub mod password;
pub mod rate_limit;
pub mod schedule;
pub mod sync;
pub mod tokens;

use std::{sync::Arc, time::Duration};

use sea_orm::DatabaseConnection;

pub use self::{
    access::{Actor, Role},
    error::{Error, Result},
};
use self::{rate_limit::RateLimiter, tokens::TokenIssuer};
use crate::config::Config;

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
    /// The server's hybrid logical clock, returned to devices so theirs move past it.
    clock: Arc<std::sync::Mutex<veldwerk_sync_protocol::Clock>>,
}

impl Services {
    pub fn new(db: DatabaseConnection, config: Config) -> anyhow::Result<Self> {
        let tokens = TokenIssuer::new(
            config.jwt_secret.expose().as_bytes(),
            config.access_token_ttl(),
        )?;
        let window = Duration::from_secs(config.rate_limit.window_secs);
        Ok(Self {
            address_limiter: Arc::new(RateLimiter::new(config.rate_limit.per_address, window)),
            account_limiter: Arc::new(RateLimiter::new(config.rate_limit.per_account, window)),
            changes: tokio::sync::broadcast::channel(1024).0,
            clock: Arc::new(std::sync::Mutex::new(veldwerk_sync_protocol::Clock::new(
                "server",
            ))),
            db,
            config: Arc::new(config),
            tokens: Arc::new(tokens),
        })
    }

    /// The database pool.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The configuration the services run with.
    pub fn config(&self) -> &Config {
        &self.config
    }
}
