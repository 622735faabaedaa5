//! RxDB's replication contract (PROTOCOL.md, "RxDB"): per collection, `GET .../pull` by
//! checkpoint, `POST .../push` of `{newDocumentState, assumedMasterState}` rows, and one live
//! stream for all collections whose messages are `"RESYNC"`. Each is one `fetch` in an app's
//! `replicateRxCollection` handlers. Same headers, authentication and errors as `/v1/sync`.

use poem::{
    Body, IntoResponse, Request, Response, Route, get, handler,
    http::StatusCode,
    post,
    web::{Data, Json, Path},
};
use serde::Deserialize;
use veldwerk_sync_protocol::rxdb::{PushRow, row_id};

use super::error::error_response;
use super::sync::{
    Pokes, authenticate, event_stream, failure, read_push_body, read_query, record_health, reject,
};
use crate::service::Services;

/// The RxDB routes, to nest under `/v1/rxdb`.
pub fn routes() -> Route {
    Route::new()
        .at("/events", get(events))
        .at("/:collection/pull", get(pull))
        .at("/:collection/push", post(push))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PullParams {
    /// The checkpoint's cursor; empty or absent for the first pull.
    cursor: Option<String>,
    /// RxDB's `batchSize`.
    batch_size: Option<usize>,
    /// Sync health, as with `/v1/sync/pull`: documents the device has not pushed yet...
    outbox_pending: Option<u32>,
    /// ...and when the oldest of them was changed.
    outbox_oldest: Option<chrono::DateTime<chrono::Utc>>,
}

#[handler]
async fn pull(
    req: &Request,
    Path(collection): Path<String>,
    services: Data<&Services>,
) -> poem::Result<Response> {
    let actor = authenticate(req, &services).await?;
    let params: PullParams = read_query(req).await?;
    let answer = services
        .rxdb_pull(
            &actor,
            &collection,
            params.cursor.as_deref(),
            params
                .batch_size
                .unwrap_or(veldwerk_sync_protocol::DEFAULT_PULL_LIMIT),
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
async fn push(
    req: &Request,
    Path(collection): Path<String>,
    body: Body,
    services: Data<&Services>,
) -> poem::Result<Response> {
    let actor = authenticate(req, &services).await?;
    let _own = services.admit_client_push(actor.user_id).map_err(failure)?;
    let bytes = read_push_body(body, &services).await?;
    let _turn = services.admit_push().await;
    let text = veldwerk_sync_protocol::replace_lone_surrogates(bytes.as_ref());
    let rows: Vec<PushRow> = serde_json::from_slice(&text).map_err(|err| {
        reject(error_response(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the push is not a list of RxDB push rows: {err}"),
        ))
    })?;
    if let Some(err) = rows.iter().find_map(|row| row_id(row).err()) {
        return Err(reject(error_response(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            err.to_string(),
        )));
    }
    let masters = services
        .rxdb_push(&actor, &collection, rows)
        .await
        .map_err(failure)?;
    Ok(Json(masters).into_response())
}

#[handler]
async fn events(req: &Request, services: Data<&Services>) -> poem::Result<Response> {
    event_stream(req, &services, Pokes::Resync).await
}
