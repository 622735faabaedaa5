//! The one JSON error shape of the whole API, and the one place where errors become HTTP.
//!
//! Every failure answers `{"code": "...", "message": "...", "details": ...}`. Codes are stable
//! snake_case identifiers that apps may switch on; messages are for people and may change.

use poem::{IntoResponse, Response, http::StatusCode};
use poem_openapi::{ApiResponse, Object, payload::Json, types::Example};

use crate::service::Error;

/// The body of every error response.
#[derive(Debug, Object)]
#[oai(example)]
pub struct ErrorBody {
    /// Stable, machine-readable error code, e.g. `invalid_credentials`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// Structured context where it helps, e.g. the offending field.
    #[oai(skip_serializing_if_is_none)]
    pub details: Option<serde_json::Value>,
}

impl Example for ErrorBody {
    fn example() -> Self {
        Self {
            code: "invalid_schedule".into(),
            message: "day 3 must be on a later date than day 2".into(),
            details: Some(serde_json::json!({ "day_number": 3 })),
        }
    }
}

impl ErrorBody {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            details: None,
        }
    }
}

/// The error responses an operation can give.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed: bad JSON, unknown fields, wrong types, bad ids or dates.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The caller's role may not do this.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such resource, or not visible to the caller.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request conflicts with the current state.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The resource is no longer usable (an expired or revoked invite).
    #[oai(status = 410)]
    Gone(Json<ErrorBody>),
    /// Well-formed but not acceptable values.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// The path exists, but not with this method.
    #[oai(status = 405)]
    MethodNotAllowed(Json<ErrorBody>),
    /// The body is larger than the server accepts (`VELDWERK_MAX_BODY_BYTES`, 1 MiB by default).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is not `application/json` (or the `Content-Type` header is missing).
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// Too many attempts; `Retry-After` says how many seconds to wait.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// An unexpected failure on our side; it has been logged.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let body = |code: &str, message: String| Json(ErrorBody::new(code, message));
        match err {
            Error::Invalid {
                code,
                message,
                details,
            } => ApiError::Unprocessable(Json(ErrorBody {
                code: code.to_owned(),
                message,
                details,
            })),
            Error::Unauthenticated { code, message } => ApiError::Unauthorized(body(code, message)),
            Error::Forbidden(message) => ApiError::Forbidden(body("forbidden", message)),
            err @ Error::NotFound(_) => ApiError::NotFound(body("not_found", err.to_string())),
            Error::Conflict { code, message } => ApiError::Conflict(body(code, message)),
            Error::Gone { code, message } => ApiError::Gone(body(code, message)),
            Error::RateLimited { retry_after } => {
                let seconds = retry_after.as_secs();
                let message = format!("too many attempts; try again in {seconds} seconds");
                ApiError::TooManyRequests(body("rate_limited", message), seconds)
            }
            Error::Internal(cause) => {
                // Logged once, here, with its whole chain; the client gets no internals.
                tracing::error!(error = ?cause, "internal error");
                ApiError::Internal(body("internal", "an internal error occurred".into()))
            }
        }
    }
}

/// The error-shaped response for any status, code and message.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    Json(ErrorBody::new(code, message))
        .with_status(status)
        .into_response()
}

/// Turns errors raised outside our handlers (routing, payload parsing, authentication
/// extraction, the body limit) into the same JSON shape.
pub fn normalise(err: poem::Error) -> Response {
    use poem_openapi::error::{
        AuthorizationError, ContentTypeError, ParseParamError, ParsePathError,
        ParseRequestPayloadError,
    };
    if err.is_from_response() {
        // Already one of ours (an ApiError raised from a security checker).
        return err.into_response();
    }
    let status = err.status();
    let message = err.to_string();
    let (code, message) = if err.is::<ParseRequestPayloadError>() {
        ("invalid_body", message)
    } else if let Some(path) = err.downcast_ref::<ParsePathError>() {
        // poem names path parameters by position; the reason says what was wrong.
        (
            "invalid_parameter",
            format!("invalid path parameter: {}", path.reason),
        )
    } else if err.is::<ParseParamError>() {
        ("invalid_parameter", message)
    } else if err.is::<ContentTypeError>() {
        ("unsupported_media_type", message)
    } else if err.is::<AuthorizationError>() {
        (
            "unauthenticated",
            "this endpoint needs an `Authorization: Bearer <access token>` header".to_owned(),
        )
    } else {
        match status {
            StatusCode::NOT_FOUND => ("not_found", "no such endpoint".to_owned()),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "this endpoint does not accept that method".to_owned(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE => ("body_too_large", message),
            status if status.is_server_error() => {
                tracing::error!(error = %message, "internal error outside a handler");
                ("internal", "an internal error occurred".to_owned())
            }
            _ => ("bad_request", message),
        }
    };
    let body = Json(ErrorBody::new(code, message));
    // The statuses every operation lists, through the type that lists them.
    match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(body).into_response(),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(body).into_response(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(body).into_response(),
        _ => body.with_status(status).into_response(),
    }
}
