//! Log output: readable lines in development, JSON lines in production.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{Config, LogFormat};

/// Installs the global subscriber. `RUST_LOG` overrides the configured filter.
pub fn init(config: &Config) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_filter));
    let builder = fmt().with_env_filter(filter).with_target(true);
    // try_init: a second call (e.g. from tests) keeps the first subscriber.
    let _ = match config.log_format() {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
