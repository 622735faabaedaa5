//! The one error type of the use cases. `api::error` maps it to HTTP in one place.

use std::time::Duration;

/// Why a use case did not succeed.
///
/// Every client-facing variant carries a stable, machine-readable `code` (snake_case) that mobile
/// apps may switch on, and a message a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is well-formed but not acceptable (an unknown time zone, days out of order).
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: String,
        details: Option<serde_json::Value>,
    },
    /// No valid credentials: a missing, expired or revoked token, a wrong password.
    #[error("{message}")]
    Unauthenticated { code: &'static str, message: String },
    /// The caller can see the resource but their role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist, or is outside the caller's scope (which we do not reveal).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the current state (an email already taken, an invite used).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The thing existed but is no longer usable (an expired or revoked invite).
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    /// Too many attempts; try again after the given time.
    #[error("too many attempts, retry after {} seconds", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// Anything unexpected: logged with its cause, answered generically.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// A validation failure with a stable code.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// A conflict with a stable code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// An authentication failure with a stable code.
    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unauthenticated {
            code,
            message: message.into(),
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::Internal(anyhow::Error::new(err).context("database query failed"))
    }
}

impl From<sea_orm::TransactionError<Error>> for Error {
    fn from(err: sea_orm::TransactionError<Error>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(err) => err.into(),
            sea_orm::TransactionError::Transaction(err) => err,
        }
    }
}

/// The result of a use case.
pub type Result<T, E = Error> = std::result::Result<T, E>;
