//! The HTTP API: poem-openapi operations under `/v1`, the generated spec at `/openapi.json`,
//! Swagger UI at `/docs`, and `/healthz`.
//!
//! Handlers translate between JSON and the use cases in [`crate::service`]; they hold no rules of
//! their own. Every error, ours or poem's, leaves as the JSON shape of [`error::ErrorBody`].

pub mod accounts;
pub mod announcements;
pub mod attachments;
pub mod auth;
pub mod catalog;
pub mod cohorts;
pub mod document;
pub mod edge;
pub mod error;
pub mod privacy;
pub mod progress;
pub mod push;
pub mod rxdb;
pub mod sync;
pub mod sync_spec;
pub mod types;
pub mod watermelon;

use poem::{
    Endpoint, EndpointExt, IntoResponse, Response, Route, get, handler, http::StatusCode,
    middleware::CatchPanic, web::Json as PoemJson,
};
use poem_openapi::{ApiResponse, OpenApiService, Tags};

use crate::service::Services;

/// Groups of operations in the spec.
#[derive(Tags)]
pub enum ApiTags {
    /// Logging in, enrolling devices, tokens.
    Auth,
    /// The caller's own account and devices.
    Me,
    /// Staff accounts.
    Users,
    /// Municipalities.
    Organisations,
    /// Programme templates.
    Programmes,
    /// Cohorts: schedule, assignments, members.
    Cohorts,
    /// Invite codes for participants.
    Invites,
    /// Messages from trainers to their cohort.
    Announcements,
    /// Push registration, reminder rules and plans.
    Push,
    /// Export, erasure, retention and the audit log (AVG/GDPR).
    Privacy,
    /// What trainers follow between the days: progress, sync health, participants' work,
    /// nudges.
    Progress,
}

/// A value the database stores as text, as an enum in the spec, so that generated clients get
/// a real type. `from_stored` falls back (and logs) for a value this version does not know:
/// the answer stays valid against the spec.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident, fallback $fallback:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
        pub enum $name {
            $($(#[$vmeta])* #[oai(rename = $text)] $variant),+
        }

        impl $name {
            pub fn from_stored(text: &str) -> Self {
                match text {
                    $($text => Self::$variant,)+
                    other => {
                        tracing::error!(value = other, kind = stringify!($name), "an unknown stored value");
                        Self::$fallback
                    }
                }
            }
        }
    };
}
pub(crate) use stored_enum;

stored_enum! {
    /// A user's role.
    RoleView, fallback Participant {
        Admin = "admin",
        Trainer = "trainer",
        Participant = "participant",
    }
}

stored_enum! {
    /// What kind of between-day work an assignment is.
    AssignmentKindView, fallback Assignment {
        /// A task to do.
        Assignment = "assignment",
        /// Apply what was learnt in one's own work.
        ApplyInWork = "apply_in_work",
        /// An interview in the field.
        Interview = "interview",
        /// The Day 6 harvest presentation.
        HarvestPresentation = "harvest_presentation",
    }
}

/// An empty success.
#[derive(ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

type Apis = (
    accounts::AccountsApi,
    catalog::CatalogApi,
    cohorts::CohortsApi,
    announcements::AnnouncementsApi,
    push::PushApi,
    privacy::PrivacyApi,
    progress::ProgressApi,
);

/// The OpenAPI service with every operation; also used to print the spec.
pub fn openapi(services: Services) -> OpenApiService<Apis, ()> {
    let apis = (
        accounts::AccountsApi {
            services: services.clone(),
        },
        catalog::CatalogApi {
            services: services.clone(),
        },
        cohorts::CohortsApi {
            services: services.clone(),
        },
        announcements::AnnouncementsApi {
            services: services.clone(),
        },
        push::PushApi {
            services: services.clone(),
        },
        privacy::PrivacyApi {
            services: services.clone(),
        },
        progress::ProgressApi { services },
    );
    OpenApiService::new(apis, "Veldwerk API", env!("CARGO_PKG_VERSION"))
        .description(
            "The backend of the Urban Professional learning app: accounts and devices, \
             municipalities, programmes, cohorts and invites. Every error answers \
             `{\"code\", \"message\", \"details\"}` with a stable `code`. The sync operations \
             (push, pull, live pokes) and attachments (tus 1.0 uploads, downloads) are here \
             with every collection's record as its own schema; the sync protocol document, \
             `sync-protocol/PROTOCOL.md`, explains the flow.",
        )
        .server("/v1")
}

/// The whole HTTP application.
pub fn app(services: Services) -> impl Endpoint<Output = Response> {
    let max_body = services.config().max_body_bytes;
    let body_timeout = std::time::Duration::from_secs(services.config().body_read_timeout_secs);
    let api = openapi(services.clone());
    services.metrics().set_routes(route_templates(&api.spec()));
    // The document poem-openapi generates, with the sync and attachment operations added, both
    // at `/openapi.json` and in the Swagger UI (which embeds the document it is given).
    let generated = api.spec();
    let document = document::complete(&generated);
    let docs_html = api.swagger_ui_html().replacen(&generated, &document, 1);
    let spec = poem::endpoint::make_sync(move |_| {
        Response::builder()
            .content_type("application/json")
            .body(document.clone())
    });
    let docs = poem::endpoint::make_sync(move |_| poem::web::Html(docs_html.clone()));
    let cors = (!services.config().cors_allowed_origins.is_empty()).then(|| {
        poem::middleware::Cors::new()
            .allow_origins(services.config().cors_allowed_origins.iter().cloned())
            .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
            .allow_headers([
                "authorization",
                "content-type",
                "x-request-id",
                "tus-resumable",
                "upload-offset",
                "upload-length",
                "upload-checksum",
            ])
            .expose_headers(["x-request-id", "retry-after", "upload-offset", "location"])
            .max_age(600)
    });
    Route::new()
        .nest("/v1/sync", sync::routes())
        .nest("/v1/rxdb", rxdb::routes())
        .nest("/v1/watermelon", watermelon::routes())
        .nest("/v1/attachments", attachments::routes())
        .nest("/v1", api)
        .nest("/docs", docs)
        .nest("/console", crate::console::routes())
        .at("/", get(to_console))
        .at("/openapi.json", spec)
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .at("/metrics", get(metrics))
        .around(move |endpoint, mut req| async move {
            if edge::uri_has_nul(req.uri()) {
                return Err(nul_refused());
            }
            // Attachment bodies are bounded by the attachment's declared size and stored part by
            // part as they stream in (see `service::attachments`), not held here. WatermelonDB
            // pushes carry a device's whole offline work at once and are bounded by their own
            // limit where they are read (`api::watermelon`).
            if req.uri().path().starts_with("/v1/attachments/")
                || req.uri().path().starts_with("/v1/watermelon/")
            {
                return endpoint.call(req).await;
            }
            // The sync pushes (native and RxDB; WatermelonDB's above) read their mutations one by
            // one and reject a NUL in one of them alone (`invalid_field`); every other JSON body
            // is refused whole.
            let path = req.uri().path();
            let check_nul = !(path.starts_with("/v1/sync/") || path.starts_with("/v1/rxdb/"));
            // poem's own SizeLimit demands a Content-Length on every request; we only need to
            // bound bodies, whether their length is announced or streamed.
            let announced = req
                .header("content-length")
                .and_then(|value| value.parse::<usize>().ok());
            match announced {
                Some(length) if length > max_body => {
                    return Err(poem::Error::from_string(
                        format!("the request body is larger than {max_body} bytes"),
                        StatusCode::PAYLOAD_TOO_LARGE,
                    ));
                }
                Some(_) if !check_nul => {}
                _ => {
                    let reading = req.take_body().into_bytes_limit(max_body);
                    let body = tokio::time::timeout(body_timeout, reading)
                        .await
                        .map_err(|_| body_too_slow(body_timeout))?
                        .map_err(|_| {
                            poem::Error::from_string(
                                format!("the request body is larger than {max_body} bytes"),
                                StatusCode::PAYLOAD_TOO_LARGE,
                            )
                        })?;
                    if check_nul && edge::json_has_nul(&body) {
                        return Err(nul_refused());
                    }
                    req.set_body(body);
                }
            }
            endpoint.call(req).await
        })
        .with_if(cors.is_some(), cors.unwrap_or_default())
        // A bug must cost one request a 500 in the one error shape, not the connection an empty
        // reply; its transaction, dropped unfinished, rolls back.
        .with(CatchPanic::new().with_handler(panic_answer))
        .around(log_request)
        .data(services)
        .catch_all_error(|err| async move { error::normalise(err) })
}

/// The root is the trainer console's front door.
#[handler]
fn to_console() -> poem::web::Redirect {
    poem::web::Redirect::see_other("/console")
}

/// The answer to a body that did not arrive in time (a stalled or trickling client).
pub(crate) fn body_too_slow(limit: std::time::Duration) -> poem::Error {
    poem::Error::from_response(error::error_response(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!(
            "the request body did not arrive within {} seconds",
            limit.as_secs()
        ),
    ))
}

/// The answer to a request whose handler panicked: a 500 in the one error shape.
fn panic_answer(_: Box<dyn std::any::Any + Send>) -> Response {
    tracing::error!("a request handler panicked");
    error::error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "an internal error occurred",
    )
}

/// The answer to text with a NUL character, wherever it is.
fn nul_refused() -> poem::Error {
    poem::Error::from_response(error::error_response(
        StatusCode::BAD_REQUEST,
        "invalid_text",
        "text may not contain the NUL character (U+0000)",
    ))
}

/// The spec's paths as route templates under `/v1` (`/v1/cohorts/{id}`), for metrics labels.
fn route_templates(spec: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(spec)
        .ok()
        .and_then(|spec| {
            Some(
                spec.get("paths")?
                    .as_object()?
                    .keys()
                    .map(|path| format!("/v1{path}"))
                    .collect(),
            )
        })
        .unwrap_or_default()
}

/// Readiness: the database answers, migrations are current, and the process is not shutting
/// down. 503 otherwise, so a load balancer sends traffic elsewhere.
#[handler]
async fn readyz(services: poem::web::Data<&Services>) -> Response {
    let readiness = services.readiness().await;
    let details = serde_json::json!({
        "database_reachable": readiness.database_reachable,
        "pending_migrations": readiness.pending_migrations,
        "draining": readiness.draining,
    });
    if readiness.is_ready() {
        PoemJson(serde_json::json!({ "status": "ready", "checks": details })).into_response()
    } else {
        PoemJson(serde_json::json!({
            "code": "not_ready",
            "message": "this instance is not ready for traffic",
            "details": details,
        }))
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
        .into_response()
    }
}

/// One log line per request, in a span carrying a request id (the client's `X-Request-Id` when it
/// sends a sane one, else a new one), which the response echoes. Never bodies or tokens.
async fn log_request<E: Endpoint>(
    endpoint: std::sync::Arc<E>,
    req: poem::Request,
) -> poem::Result<Response> {
    use tracing::Instrument;
    let services = req.data::<Services>().cloned();
    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
    let request_id = req
        .header("x-request-id")
        .filter(|id| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let span = tracing::info_span!(
        "request",
        request.id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let started = std::time::Instant::now();
    async move {
        let mut response = match endpoint.call(req).await {
            Ok(response) => response.into_response(),
            Err(err) => error::normalise(err),
        };
        let status = response.status();
        if let Some(services) = &services {
            services
                .metrics()
                .observe_request(&method, &path, status.as_u16(), started.elapsed());
        }
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), millis, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), millis, "request");
        }
        if let Ok(value) = poem::http::HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", value);
        }
        edge::protect(&path, response.headers_mut());
        Ok(response)
    }
    .instrument(span)
    .await
}

/// Prometheus metrics: requests, sync, live streams, push sends, the outbox, the database pool.
#[handler]
async fn metrics(services: poem::web::Data<&Services>, req: &poem::Request) -> Response {
    let token = services.config().metrics_token.as_ref().map(|t| t.expose());
    if !edge::metrics_allowed(token, req.header("authorization")) {
        return error::error_response(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "/metrics needs `Authorization: Bearer <VELDWERK_METRICS_TOKEN>`",
        );
    }
    let (pending, lag) = crate::store::push::outbox_backlog(services.db(), chrono::Utc::now())
        .await
        .unwrap_or((0, 0.0));
    let (size, idle) = crate::store::pool_use(services.db());
    let text = services.metrics().render(&[
        (
            "veldwerk_outbox_pending",
            "Push deliveries waiting to be sent.",
            pending as f64,
        ),
        (
            "veldwerk_outbox_lag_seconds",
            "How long the most overdue delivery has waited.",
            lag,
        ),
        (
            "veldwerk_db_pool_connections",
            "Database connections open.",
            size as f64,
        ),
        (
            "veldwerk_db_pool_idle",
            "Database connections idle.",
            idle as f64,
        ),
    ]);
    Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}

/// Liveness: the process answers HTTP.
#[handler]
fn healthz() -> impl IntoResponse {
    PoemJson(serde_json::json!({ "status": "ok" }))
}

#[cfg(test)]
mod tests {
    use poem::{Endpoint, EndpointExt, Request, Route, get, handler, middleware::CatchPanic};

    #[handler]
    fn broken() -> &'static str {
        panic!("a bug")
    }

    #[tokio::test]
    async fn a_panic_answers_500_in_the_error_shape() {
        let app = Route::new()
            .at("/", get(broken))
            .with(CatchPanic::new().with_handler(super::panic_answer));
        let response = app.get_response(Request::builder().finish()).await;
        assert_eq!(response.status(), 500);
        assert_eq!(
            response.content_type(),
            Some("application/json; charset=utf-8")
        );
        let body: serde_json::Value =
            serde_json::from_slice(&response.into_body().into_vec().await.unwrap()).unwrap();
        assert_eq!(body["code"], "internal");
    }
}

#[cfg(test)]
mod stored_enum_tests {
    use super::{AssignmentKindView, RoleView};

    #[test]
    fn stored_values_map_to_their_variants_and_unknown_ones_fall_back() {
        assert_eq!(RoleView::from_stored("trainer"), RoleView::Trainer);
        assert_eq!(
            AssignmentKindView::from_stored("harvest_presentation"),
            AssignmentKindView::HarvestPresentation
        );
        assert_eq!(RoleView::from_stored("superuser"), RoleView::Participant);
        // The spec's names are the stored ones.
        assert_eq!(
            serde_json::to_value(poem_openapi::types::ToJSON::to_json(
                &AssignmentKindView::ApplyInWork
            ))
            .unwrap(),
            "apply_in_work"
        );
    }
}
