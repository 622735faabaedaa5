//! The HTTP API: poem-openapi operations under `/v1`, the generated spec at `/openapi.json`,
//! Swagger UI at `/docs`, and `/healthz`.
//!
//! Handlers translate between JSON and the use cases in [`crate::service`]; they hold no rules of
//! their own. Every error, ours or poem's, leaves as the JSON shape of [`error::ErrorBody`].

pub mod accounts;
pub mod announcements;
pub mod auth;
pub mod catalog;
pub mod cohorts;
pub mod error;
pub mod push;
pub mod sync;

use poem::{
    Endpoint, EndpointExt, IntoResponse, Response, Route, get, handler,
    http::StatusCode,
    middleware::{CatchPanic, Tracing},
    web::Json as PoemJson,
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
        push::PushApi { services },
    );
    OpenApiService::new(apis, "Veldwerk API", env!("CARGO_PKG_VERSION"))
        .description(
            "The backend of the Urban Professional learning app: accounts and devices, \
             municipalities, programmes, cohorts and invites. Every error answers \
             `{\"code\", \"message\", \"details\"}` with a stable `code`. The sync endpoints \
             (`/v1/sync/push`, `/v1/sync/pull`, `/v1/sync/events`) are specified in the sync \
             protocol document, `sync-protocol/PROTOCOL.md`.",
        )
        .server("/v1")
}

/// The whole HTTP application.
pub fn app(services: Services) -> impl Endpoint<Output = Response> {
    let max_body = services.config().max_body_bytes;
    let api = openapi(services.clone());
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    Route::new()
        .nest("/v1/sync", sync::routes())
        .nest("/v1", api)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .at("/healthz", get(healthz))
        .around(move |endpoint, mut req| async move {
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
                Some(_) => {}
                None => {
                    let body = req
                        .take_body()
                        .into_bytes_limit(max_body)
                        .await
                        .map_err(|_| {
                            poem::Error::from_string(
                                format!("the request body is larger than {max_body} bytes"),
                                StatusCode::PAYLOAD_TOO_LARGE,
                            )
                        })?;
                    req.set_body(body);
                }
            }
            endpoint.call(req).await
        })
        // A bug must cost one request a 500, not the connection an empty reply.
        .with(CatchPanic::new())
        .with(Tracing)
        .data(services)
        .catch_all_error(|err| async move { error::normalise(err) })
}

/// Liveness: the process answers HTTP.
#[handler]
fn healthz() -> impl IntoResponse {
    PoemJson(serde_json::json!({ "status": "ok" }))
}
