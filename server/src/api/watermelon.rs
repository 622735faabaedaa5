//! WatermelonDB's sync contract (PROTOCOL.md, "WatermelonDB"): `GET /v1/watermelon/sync` for
//! `pullChanges` and `POST /v1/watermelon/sync` for `pushChanges`, with the query parameters of
//! WatermelonDB's own example (`last_pulled_at`, `schema_version`, `migration`), so each handler
//! of `synchronize()` is one `fetch`. Same headers, authentication and errors as `/v1/sync`.

use poem::{
    Body, IntoResponse, Request, Response, Route, get, handler,
    http::StatusCode,
    web::{Data, Json},
};
use serde::Deserialize;
use veldwerk_sync_protocol::watermelon::Changes;

use super::error::error_response;
use super::sync::{authenticate, failure, read_body_up_to, read_query, record_health, reject};
use crate::service::Services;

/// The WatermelonDB routes, to nest under `/v1/watermelon`.
pub fn routes() -> Route {
    Route::new().at("/sync", get(pull).post(push))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncParams {
    /// The `timestamp` of the last pull; `null` (as WatermelonDB's example sends it), empty or
    /// absent on the first sync.
    last_pulled_at: Option<String>,
    /// The app's schema version: the server's collections do not depend on it.
    #[allow(dead_code)]
    schema_version: Option<String>,
    /// WatermelonDB's migration info, as JSON: anything but `null` pulls from the beginning.
    migration: Option<String>,
    /// Most changes in this answer (default and at most 10,000); `has_more` says to sync again.
    limit: Option<usize>,
    /// Sync health, as with `/v1/sync/pull`: records the device has not pushed yet...
    outbox_pending: Option<u32>,
    /// ...and when the oldest of them was changed.
    outbox_oldest: Option<chrono::DateTime<chrono::Utc>>,
}

impl SyncParams {
    fn last_pulled_at(&self) -> poem::Result<Option<i64>> {
        match self.last_pulled_at.as_deref().map(str::trim) {
            None | Some("" | "null" | "undefined") => Ok(None),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|value| *value >= 0)
                .map(Some)
                .ok_or_else(|| {
                    reject(error_response(
                        StatusCode::BAD_REQUEST,
                        "invalid_parameter",
                        "`last_pulled_at` is the `timestamp` of the last pull (a whole number) or null",
                    ))
                }),
        }
    }

    fn migration(&self) -> bool {
        self.migration
            .as_deref()
            .map(str::trim)
            .is_some_and(|text| !matches!(text, "" | "null" | "undefined"))
    }
}

#[handler]
async fn pull(req: &Request, services: Data<&Services>) -> poem::Result<Response> {
    let actor = authenticate(req, &services).await?;
    let params: SyncParams = read_query(req).await?;
    let answer = services
        .watermelon_pull(
            &actor,
            params.last_pulled_at()?,
            params.migration(),
            params.limit,
        )
        .await
        .map_err(failure)?;
    record_health(
        req,
        &services,
        &actor,
        params.outbox_pending,
        params.outbox_oldest,
    )
    .await?;
    Ok(Json(answer).into_response())
}

#[handler]
async fn push(req: &Request, body: Body, services: Data<&Services>) -> poem::Result<Response> {
    let actor = authenticate(req, &services).await?;
    let params: SyncParams = read_query(req).await?;
    let last_pulled_at = params.last_pulled_at()?.unwrap_or(0);
    let _own = services.admit_client_push(actor.user_id).map_err(failure)?;
    // Everything the device changed offline comes at once (WatermelonDB has no batches): its
    // own bound, `max_watermelon_push_bytes`, not the API's 1 MiB.
    let max = services.config().max_watermelon_push_bytes;
    let bytes = read_body_up_to(body, &services, max).await?;
    let _turn = services.admit_push().await;
    let text = veldwerk_sync_protocol::replace_lone_surrogates(bytes.as_ref());
    let changes: Changes = serde_json::from_slice(&text).map_err(|err| {
        reject(error_response(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the push is not a WatermelonDB `changes` object: {err}"),
        ))
    })?;
    let answer = services
        .watermelon_push(&actor, last_pulled_at, changes)
        .await
        .map_err(failure)?;
    Ok(Json(answer).into_response())
}
