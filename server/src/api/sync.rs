//! The sync endpoints: `POST /v1/sync/push`, `GET /v1/sync/pull`, `GET /v1/sync/events`.
//!
//! Their wire format is `veldwerk-sync-protocol`'s serde types, read straight from the body
//! (no intermediate JSON tree), and specified in `sync-protocol/PROTOCOL.md` rather than in the
//! OpenAPI document. Errors use the API's one JSON shape.

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures_util::{StreamExt, stream, stream::BoxStream};
use poem::{
    Body, FromRequest, IntoResponse, Request, Response, Route, get, handler,
    http::StatusCode,
    post,
    web::{Data, Json, Query, sse::Event},
};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use veldwerk_sync_protocol::{
    APP_VERSION_HEADER, MAX_BATCH, PROTOCOL_HEADER, PROTOCOL_VERSION, ReadPush,
};

use super::error::{ApiError, error_response};
use crate::service::{
    Actor, Error, Services,
    progress::OutboxReport,
    sync::{ChangeNotice, PageChange, PullPage},
};

/// The sync routes, to nest under `/v1/sync`.
pub fn routes() -> Route {
    Route::new()
        .at("/push", post(push))
        .at("/pull", get(pull))
        .at("/events", get(events))
}

/// Refuses clients that speak another protocol version, or apps older than the configured
/// minimum, with a message the app can show.
fn check_protocol(req: &Request, min_app_version: Option<&str>) -> poem::Result<()> {
    let sent = req.header(PROTOCOL_HEADER);
    if sent == Some(PROTOCOL_VERSION.to_string().as_str()) {
        let Some(minimum) = min_app_version else {
            return Ok(());
        };
        let app = req.header(APP_VERSION_HEADER).unwrap_or("0");
        if version_parts(app) >= version_parts(minimum) {
            return Ok(());
        }
        return Err(reject(error_response(
            StatusCode::UPGRADE_REQUIRED,
            "app_update_required",
            format!("this app version ({app}) is too old; please update to {minimum} or later"),
        )));
    }
    let message = match sent {
        None => format!(
            "send the header `{PROTOCOL_HEADER}: {PROTOCOL_VERSION}` with every sync request"
        ),
        Some(version) => format!(
            "this server speaks sync protocol {PROTOCOL_VERSION}, not {version}; please update the app"
        ),
    };
    Err(reject(error_response(
        StatusCode::UPGRADE_REQUIRED,
        "unsupported_protocol",
        message,
    )))
}

/// `1.10.2` as `[1, 10, 2]`, so versions compare numerically; anything unreadable counts as 0.
fn version_parts(version: &str) -> Vec<u64> {
    let mut parts: Vec<u64> = version
        .split('.')
        .map(|part| part.trim().parse().unwrap_or(0))
        .collect();
    // 1.4 and 1.4.0 are the same version.
    while parts.last() == Some(&0) {
        parts.pop();
    }
    parts
}

pub(super) async fn authenticate(req: &Request, services: &Services) -> poem::Result<Actor> {
    check_protocol(req, services.config().min_app_version.as_deref())?;
    bearer_actor(req, services).await
}

/// The caller named by the `Authorization: Bearer` access token, for the plain poem handlers
/// (sync and attachments) that sit outside poem-openapi's security schemes.
pub(super) async fn bearer_actor(req: &Request, services: &Services) -> poem::Result<Actor> {
    let token = req
        .header("authorization")
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .ok_or_else(|| {
            reject(error_response(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "this endpoint needs an `Authorization: Bearer <access token>` header",
            ))
        })?;
    services.authenticate(token.trim()).await.map_err(failure)
}

/// An error response as a poem error: it leaves the handler unchanged (see `error::normalise`).
pub(super) fn reject(response: Response) -> poem::Error {
    poem::Error::from_response(response)
}

/// A use case's error as a poem error, in the API's one shape.
pub(super) fn failure(err: Error) -> poem::Error {
    ApiError::from(err).into()
}

#[handler]
async fn push(req: &Request, body: Body, services: Data<&Services>) -> poem::Result<Response> {
    let actor = authenticate(req, &services).await?;
    // A fair share: one participant's stalled or parallel pushes cannot fill the queue.
    let _own = services.admit_client_push(actor.user_id).map_err(failure)?;
    let bytes = read_push_body(body, &services).await?;
    let _turn = services.admit_push().await;
    let read = ReadPush::from_slice(bytes.as_ref()).map_err(|err| {
        reject(error_response(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the push is not valid: {err}"),
        ))
    })?;
    if read.len() > MAX_BATCH {
        return Err(failure(Error::Invalid {
            code: "batch_too_large",
            message: format!(
                "a push carries at most {MAX_BATCH} mutations; send the outbox in several pushes"
            ),
            details: Some(serde_json::json!({ "max": MAX_BATCH })),
        }));
    }
    let ReadPush {
        request,
        unreadable,
    } = read;
    let response = services.push(&actor, request).await.map_err(failure)?;
    Ok(Json(ReadPush::answer(&unreadable, response)).into_response())
}

/// A push's body, read before a turn is taken and within a time limit, so that a client that
/// announces a body and stalls holds no turn that other participants wait for.
pub(super) async fn read_push_body(
    body: Body,
    services: &Services,
) -> poem::Result<impl AsRef<[u8]>> {
    read_body_up_to(body, services, services.config().max_body_bytes).await
}

/// A request body of at most `max_body` bytes, read within the body timeout.
pub(super) async fn read_body_up_to(
    body: Body,
    services: &Services,
    max_body: usize,
) -> poem::Result<impl AsRef<[u8]>> {
    let limit = Duration::from_secs(services.config().body_read_timeout_secs);
    let bytes = tokio::time::timeout(limit, body.into_bytes_limit(max_body))
        .await
        .map_err(|_| super::body_too_slow(limit))?
        .map_err(|err| match err {
            poem::error::ReadBodyError::PayloadTooLarge => reject(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is larger than {max_body} bytes"),
            )),
            err => reject(error_response(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                err.to_string(),
            )),
        })?;
    Ok(bytes)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PullParams {
    cursor: Option<String>,
    limit: Option<usize>,
    /// Sync health (PROTOCOL.md): mutations the device still holds in its outbox...
    outbox_pending: Option<u32>,
    /// ...and when the oldest of them was made.
    outbox_oldest: Option<chrono::DateTime<chrono::Utc>>,
}

/// A request's query string as `T`, or 400 `invalid_parameter` saying what is wrong with it.
pub(super) async fn read_query<T: serde::de::DeserializeOwned>(req: &Request) -> poem::Result<T> {
    let Query(params) = Query::<T>::from_request_without_body(req)
        .await
        .map_err(|err| {
            reject(error_response(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                err.to_string(),
            ))
        })?;
    Ok(params)
}

#[handler]
async fn pull(req: &Request, services: Data<&Services>) -> poem::Result<Response> {
    let actor = authenticate(req, &services).await?;
    let params: PullParams = read_query(req).await?;
    let response = services
        .pull_page(&actor, params.cursor.as_deref(), params.limit)
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
    Ok(streamed_page(response))
}

/// Changes per chunk of a streamed pull page.
const CHANGES_PER_CHUNK: usize = 200;

/// A pull page as a streamed body: the bytes `Json(page)` would send, written a few hundred
/// changes at a time, each chunk's changes dropped as it is written. A page of 5,000 interviews
/// never exists as records and as one 15 MB JSON text at once; the server's peak memory follows
/// the chunk, not the page (BENCHMARKS.md, "the standard workload").
fn streamed_page(page: PullPage) -> Response {
    #[derive(serde::Serialize)]
    struct Tail<'a> {
        cursor: &'a str,
        has_more: bool,
        server_clock: &'a veldwerk_sync_protocol::Hlc,
    }
    let PullPage {
        changes,
        cursor,
        has_more,
        server_clock,
    } = page;
    // `{"cursor":...}` becomes `],"cursor":...}` after the last change. Serialising these types
    // cannot fail (string keys, no maps with other keys).
    let tail = serde_json::to_vec(&Tail {
        cursor: &cursor,
        has_more,
        server_clock: &server_clock,
    })
    .unwrap_or_default();
    let mut closing = b"],".to_vec();
    closing.extend_from_slice(tail.get(1..).unwrap_or_default());
    let mut remaining = changes.into_iter().peekable();
    let mut chunk = b"{\"changes\":[".to_vec();
    let mut finished = false;
    let mut first = true;
    let chunks = stream::iter(std::iter::from_fn(move || {
        if finished {
            return None;
        }
        for change in remaining.by_ref().take(CHANGES_PER_CHUNK) {
            if matches!(change, PageChange::Moved { .. }) {
                // Not sent in this page (the service leaves them out): no separator either.
                continue;
            }
            if !std::mem::take(&mut first) {
                chunk.push(b',');
            }
            match change {
                // Records hold JSON values and strings only: writing them to a Vec cannot fail.
                PageChange::Change(change) => {
                    let _ = serde_json::to_writer(&mut chunk, &change);
                }
                // Most records: their JSON as stored, copied.
                PageChange::Json { json, .. } => chunk.extend_from_slice(json.as_bytes()),
                PageChange::Moved { .. } => {}
            }
        }
        if remaining.peek().is_none() {
            chunk.extend_from_slice(&closing);
            finished = true;
        }
        Some(Ok::<_, std::io::Error>(bytes::Bytes::from(std::mem::take(
            &mut chunk,
        ))))
    }));
    Response::builder()
        .content_type("application/json; charset=utf-8")
        .body(Body::from_bytes_stream(chunks))
}

/// Records what a device reported with a successful pull (native, RxDB, WatermelonDB): its
/// outbox, when it says, and its app version, so the trainer sees its last sync.
pub(super) async fn record_health(
    req: &Request,
    services: &Services,
    actor: &Actor,
    outbox_pending: Option<u32>,
    outbox_oldest: Option<chrono::DateTime<chrono::Utc>>,
) -> poem::Result<()> {
    let report = OutboxReport {
        pending: outbox_pending,
        oldest_at: outbox_oldest.filter(|_| outbox_pending != Some(0)),
        app_version: req
            .header(APP_VERSION_HEADER)
            .map(|v| v.chars().filter(|c| !c.is_control()).take(40).collect()),
    };
    services
        .record_sync_health(actor, report)
        .await
        .map_err(failure)
}

#[cfg(test)]
mod tests {
    /// Events go out one chunk each as they come, a quiet stream gets a comment every keep-alive
    /// period, and the body ends with the events.
    #[tokio::test]
    async fn an_event_stream_sends_events_as_they_come_and_comments_while_quiet() {
        use futures_util::StreamExt;
        use poem::web::sse::Event;
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let events = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|event| (event, receiver))
        })
        .boxed();
        let response = super::event_stream_response(events, std::time::Duration::from_millis(200));
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{:?}",
            response.headers()
        );
        assert_eq!(response.headers()["cache-control"], "no-cache");
        let mut body = response.into_body().into_bytes_stream();
        let mut next = async || {
            tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
                .await
                .expect("a chunk within 5 s")
                .map(|chunk| String::from_utf8(chunk.unwrap().to_vec()).unwrap())
        };
        sender
            .send(Event::message("{}").event_type("poke"))
            .unwrap();
        assert_eq!(next().await.unwrap(), "event: poke\ndata: {}\n\n");
        // Quiet: a comment, then another.
        assert_eq!(next().await.unwrap(), ":\n\n");
        assert_eq!(next().await.unwrap(), ":\n\n");
        sender
            .send(Event::message("{}").event_type("ready"))
            .unwrap();
        assert_eq!(next().await.unwrap(), "event: ready\ndata: {}\n\n");
        drop(sender);
        assert_eq!(next().await, None, "the body ends with the events");
    }

    #[test]
    fn app_versions_compare_numerically() {
        assert!(super::version_parts("1.10.0") > super::version_parts("1.9.3"));
        assert!(super::version_parts("2") > super::version_parts("1.99"));
        assert!(super::version_parts("1.4") < super::version_parts("1.4.1"));
        assert_eq!(super::version_parts("1.4.0"), super::version_parts("1.4"));
    }

    /// The streamed page is byte for byte what `Json(page)` sends for the decoded page, at the
    /// chunk edges too (empty, one change, exactly one chunk, one past it, several chunks), with
    /// changes built here and stored record JSON mixed.
    #[tokio::test]
    async fn a_streamed_page_is_the_pages_json() {
        use crate::service::sync::{PageChange, PullPage};
        use veldwerk_sync_protocol::{Change, Hlc};
        for count in [
            0,
            1,
            super::CHANGES_PER_CHUNK,
            super::CHANGES_PER_CHUNK + 1,
            450,
        ] {
            let mut changes: Vec<PageChange> = (0..count)
                .map(|n| {
                    let id = uuid::Uuid::now_v7();
                    if n % 3 == 0 {
                        PageChange::Json {
                            collection: "interviews",
                            id,
                            json: format!(
                                r#"{{"op":"put","collection":"interviews","id":"{id}","version":{n},"fields":{{"notes":"\u0000 \"{n}\""}}}}"#
                            ),
                        }
                    } else {
                        PageChange::Change(Change::Evict {
                            collection: format!("interviews \u{0} \"{n}\""),
                            id,
                        })
                    }
                })
                .collect();
            // A moved record is left out whole, separator and all, wherever it stands.
            for at in [0, count / 2, count] {
                changes.insert(
                    at.min(changes.len()),
                    PageChange::Moved {
                        collection: "interviews",
                        id: uuid::Uuid::now_v7(),
                    },
                );
            }
            let page = PullPage {
                changes,
                cursor: "c1.42".to_owned(),
                has_more: count % 2 == 0,
                server_clock: Hlc::new(1_733_000_000_000, 3, "server"),
            };
            let body = super::streamed_page(page)
                .into_body()
                .into_vec()
                .await
                .unwrap();
            let decoded: veldwerk_sync_protocol::PullResponse =
                serde_json::from_slice(&body).expect("the page parses");
            assert_eq!(decoded.changes.len(), count, "{count} changes");
            let expected = serde_json::to_vec(&decoded).unwrap();
            assert_eq!(
                String::from_utf8(body).unwrap(),
                String::from_utf8(expected).unwrap(),
                "{count} changes"
            );
        }
    }
}

/// Server-sent events: a retry hint and `ready` once, then `poke` whenever something in the
/// caller's scope changed. Pokes carry no data: the client pulls. Comments keep idle connections
/// open. When the server shuts down, `reconnect` ends the stream; the client reconnects after the
/// retry hint (to another replica). When the device's session ends (logout, revocation),
/// `revoked` ends the stream for good. A device holds at most `VELDWERK_MAX_STREAMS_PER_DEVICE`
/// streams: opening one more ends its oldest with `replaced` (do not reconnect that one).
#[handler]
async fn events(req: &Request, services: Data<&Services>) -> poem::Result<Response> {
    event_stream(req, &services, Pokes::Named).await
}

/// How a stream tells a device to pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pokes {
    /// `ready` once, then `poke` events (the native protocol).
    Named,
    /// Unnamed messages whose data is `"RESYNC"`: what RxDB's `pull.stream$` takes.
    Resync,
}

impl Pokes {
    fn event(self, name: &'static str) -> Event {
        match self {
            Pokes::Named => Event::message("{}").event_type(name),
            Pokes::Resync => Event::message("\"RESYNC\""),
        }
    }
}

/// The live stream of changes in the caller's scope (see `events`).
pub(super) async fn event_stream(
    req: &Request,
    services: &Services,
    pokes: Pokes,
) -> poem::Result<Response> {
    let actor = authenticate(req, services).await?;
    let (member, staff) = services.sync_scope(&actor).await.map_err(failure)?;
    let interest = Interest {
        user: actor.user_id,
        device: actor.device_id,
        member: member.into_iter().collect(),
        staff: staff.into_iter().collect(),
    };
    let open = OpenStream::new(services.clone(), actor.device_id);
    let receiver = services.subscribe_changes();
    Ok(event_stream_response(
        poke_stream(receiver, interest, open, pokes),
        KEEP_ALIVE,
    ))
}

/// How often a stream with nothing to say sends a comment, which keeps it open through proxies
/// and the server's own idle timeout.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A `text/event-stream` answer carrying `outgoing`, with a comment every `keep_alive`. Not poem's
/// `SSE`: that one writes its events through a reader with a 4 KiB buffer, which every open stream
/// keeps for its life (10,000 idle streams, BENCHMARKS.md); here each event becomes its own chunk.
fn event_stream_response(
    mut outgoing: BoxStream<'static, Event>,
    keep_alive: Duration,
) -> Response {
    let mut comments =
        tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
    comments.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let body = stream::poll_fn(move |cx| {
        if let std::task::Poll::Ready(event) = outgoing.poll_next_unpin(cx) {
            return std::task::Poll::Ready(
                event.map(|event| Ok::<_, std::io::Error>(bytes::Bytes::from(event.to_string()))),
            );
        }
        comments
            .poll_tick(cx)
            .map(|_| Some(Ok(bytes::Bytes::from_static(b":\n\n"))))
    });
    Response::builder()
        .content_type("text/event-stream")
        .header("X-Accel-Buffering", "no")
        .header("Cache-Control", "no-cache")
        .body(Body::from_bytes_stream(body))
}

/// What one stream listens for.
struct Interest {
    user: uuid::Uuid,
    device: uuid::Uuid,
    member: HashSet<uuid::Uuid>,
    staff: HashSet<uuid::Uuid>,
}

impl Interest {
    fn concerns(&self, notice: &ChangeNotice) -> bool {
        notice.everyone
            || notice.users.contains(&self.user)
            || notice
                .member_cohorts
                .iter()
                .any(|c| self.member.contains(c))
            || notice.record_cohorts.iter().any(|c| self.staff.contains(c))
    }
}

/// An open stream, counted for `/metrics` and holding a place among its device's streams.
struct OpenStream {
    services: Services,
    slot: crate::service::in_flight::StreamSlot,
}

impl OpenStream {
    fn new(services: Services, device: uuid::Uuid) -> Self {
        let slot = services.admit_stream(device);
        services
            .metrics()
            .open_streams
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self { services, slot }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.services
            .metrics()
            .open_streams
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How long a client waits before reconnecting a closed stream, in milliseconds.
const RECONNECT_AFTER_MS: u64 = 3_000;

fn poke_stream(
    receiver: tokio::sync::broadcast::Receiver<Arc<ChangeNotice>>,
    interest: Interest,
    open: OpenStream,
    pokes: Pokes,
) -> BoxStream<'static, Event> {
    let hello = stream::iter([Event::retry(RECONNECT_AFTER_MS), pokes.event("ready")]);
    let pokes = stream::unfold(Some((receiver, interest, open)), move |state| async move {
        let (mut receiver, interest, open) = state?;
        loop {
            let received = tokio::select! {
                received = receiver.recv() => received,
                // The device opened a newer stream than it may hold with this one.
                () = open.slot.replaced.notified() => {
                    return Some((Event::message("{}").event_type("replaced"), None));
                }
            };
            match received {
                Ok(_) if open.services.is_draining() => {
                    return Some((Event::message("{}").event_type("reconnect"), None));
                }
                Ok(notice) if notice.wiped_devices.contains(&interest.device) => {
                    return Some((Event::message("{}").event_type("device_wiped"), None));
                }
                Ok(notice) if notice.ended_devices.contains(&interest.device) => {
                    return Some((Event::message("{}").event_type("revoked"), None));
                }
                Ok(notice) if interest.concerns(&notice) => break,
                Ok(_) => continue,
                // Missed notices: one of them may have concerned us, so poke to be safe.
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return None,
            }
        }
        Some((pokes.event("poke"), Some((receiver, interest, open))))
    });
    hello.chain(pokes).boxed()
}
