//! Authentication extraction: the bearer scheme and the client's address.

use std::net::IpAddr;

use poem::{Request, web::RemoteAddr};
use poem_openapi::{SecurityScheme, auth::Bearer};

use super::error::ApiError;
use crate::service::{Actor, Services};

/// A short-lived access token from login, enrolment, device linking or refresh.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "authenticate")]
pub struct BearerAuth(pub Actor);

async fn authenticate(req: &Request, bearer: Bearer) -> poem::Result<Actor> {
    let services = req.data::<Services>().ok_or_else(|| {
        poem::Error::from_string(
            "services missing",
            poem::http::StatusCode::INTERNAL_SERVER_ERROR,
        )
    })?;
    services
        .authenticate(&bearer.token)
        .await
        .map_err(|err| ApiError::from(err).into())
}

/// The address rate limits count against: the peer, or the first `X-Forwarded-For` entry when
/// the server is configured to sit behind a proxy that sets it.
pub fn client_address(req: &Request, trust_forwarded_for: bool) -> String {
    if trust_forwarded_for
        && let Some(forwarded) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .and_then(|first| first.trim().parse::<IpAddr>().ok())
    {
        return forwarded.to_string();
    }
    match req.remote_addr() {
        RemoteAddr(poem::Addr::SocketAddr(addr)) => addr.ip().to_string(),
        other => other.to_string(),
    }
}
