//! The trainer console: server-rendered HTML pages for trainers and the provider's admins, served
//! by the same binary under `/console`.
//!
//! Pages are built with maud (templates checked at compile time, escaped by default) and work
//! without JavaScript: every action is a plain form post followed by a redirect. The console is a
//! presentation layer beside [`crate::api`]: it calls the same service functions with the same
//! [`Actor`], so it has no access rules of its own. Sessions are an HttpOnly, SameSite=Strict
//! cookie (Secure in production), separate from the app's bearer tokens; every form carries a
//! CSRF token derived from the session ([`service::console::csrf_token`]).

// A handler's steps return `Result<_, Response>`: the error is the page to answer with, made at
// most once per request, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

/// Unwraps a step of a handler, or answers with the page it gave instead.
macro_rules! attempt {
    ($step:expr) => {
        match $step {
            Ok(value) => value,
            Err(answer) => return answer,
        }
    };
}

/// The same, for a service call: its error becomes an error page.
macro_rules! service {
    ($ctx:expr, $call:expr) => {
        match $call.await {
            Ok(value) => value,
            Err(err) => return $crate::console::error_page($ctx.lang, err),
        }
    };
}

mod admin;
mod cohort;
mod layout;
mod login;
mod progress;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route, get,
    http::{StatusCode, header},
    post,
    web::Html,
};
use uuid::Uuid;

use crate::service::{self, Actor, Services};

pub use layout::Lang;

/// The session cookie's name.
const SESSION_COOKIE: &str = "veldwerk_console";
/// The login form's CSRF cookie (double submit: there is no session yet to derive it from).
const LOGIN_CSRF_COOKIE: &str = "veldwerk_console_login";
/// The chosen language.
const LANG_COOKIE: &str = "veldwerk_lang";

/// The console's routes, to nest under `/console`.
pub fn routes() -> impl Endpoint {
    Route::new()
        .at("/", get(cohort::cohorts))
        .at("/login", get(login::form).post(login::submit))
        .at("/logout", post(login::logout))
        .at("/assets/console.css", get(stylesheet))
        .at("/cohorts/:id", get(cohort::overview))
        .at("/cohorts/:id/invites", post(cohort::create_invites))
        .at("/cohorts/:id/invites/sheet", get(cohort::invite_sheet))
        .at(
            "/cohorts/:id/announcements",
            post(cohort::publish_announcement),
        )
        .at(
            "/cohorts/:id/announcements/:announcement/cancel",
            post(cohort::cancel_announcement),
        )
        .at("/cohorts/:id/schedule", post(cohort::change_schedule))
        .at("/cohorts/:id/progress", get(progress::progress_page))
        .at("/cohorts/:id/participants/:user", get(progress::work_page))
        .at(
            "/cohorts/:id/participants/:user/nudge",
            post(progress::send_nudge),
        )
        .at("/attachments/:id", get(progress::attachment_bytes))
        .at("/cohorts/:id/settings", get(admin::cohort_settings))
        .at(
            "/cohorts/:id/settings/texts",
            post(admin::change_cohort_texts),
        )
        .at(
            "/cohorts/:id/settings/reminder-rules",
            post(admin::change_cohort_rules),
        )
        .at("/cohorts/:id/settings/trainers", post(admin::add_trainer))
        .at("/admin", get(admin::admin_page))
        .at("/admin/organisations", post(admin::create_organisation))
        .at("/admin/users", post(admin::create_user))
        .at("/admin/cohorts", post(admin::create_cohort))
        .at("/admin/programmes/:id", get(admin::programme_page))
        .at(
            "/admin/programmes/:id/texts",
            post(admin::change_programme_texts),
        )
        .at(
            "/admin/programmes/:id/reminder-rules",
            post(admin::change_programme_rules),
        )
        .around(|endpoint, req| async move {
            // A language chosen with `?lang=` is remembered for the next pages.
            let chosen = query_lang(&req).and_then(|lang| {
                let services = req.data::<Services>()?;
                Some(set_cookie(
                    services,
                    LANG_COOKIE,
                    lang.code(),
                    365 * 24 * 3600,
                ))
            });
            let mut response = endpoint.call(req).await?.into_response();
            if let Some(cookie) = chosen.and_then(|cookie| cookie.parse().ok()) {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            // Pages show participants' data: never cached, never framed by another site.
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, "no-store".parse().expect("a header"));
            headers.insert("x-frame-options", "DENY".parse().expect("a header"));
            headers.insert(
                "content-security-policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                 script-src 'none'; frame-ancestors 'none'; form-action 'self'"
                    .parse()
                    .expect("a header"),
            );
            Ok(response)
        })
}

#[poem::handler]
fn stylesheet() -> Response {
    Response::builder()
        .content_type("text/css; charset=utf-8")
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .body(include_str!("console.css"))
}

/// The cohort's zone (its name was checked when it was stored).
pub fn zone(name: &str) -> Tz {
    name.parse().unwrap_or(chrono_tz::Europe::Amsterdam)
}

/// A moment in the cohort's zone, e.g. `2026-12-03 14:05`.
pub fn local(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

/// What a page needs to know of its request: who, in which language, and the form token.
pub struct Context {
    pub actor: Actor,
    pub lang: Lang,
    pub csrf: String,
    cookie: String,
}

impl Context {
    /// Dutch or English, as the visitor chose.
    pub fn t(&self, nl: &'static str, en: &'static str) -> &'static str {
        self.lang.pick(nl, en)
    }
}

/// The signed-in console user, or the answer to give instead (the login page).
pub async fn signed_in(req: &Request, services: &Services) -> Result<Context, Response> {
    let lang = language(req);
    let Some(cookie) = cookie(req, SESSION_COOKIE) else {
        return Err(to_login());
    };
    match services.console_actor(&cookie).await {
        Ok(actor) => Ok(Context {
            actor,
            lang,
            csrf: service::console::csrf_token(&cookie),
            cookie,
        }),
        Err(service::Error::Unauthenticated { .. }) => Err(to_login()),
        Err(err) => Err(error_page(lang, err)),
    }
}

/// Checks a posted form's CSRF token against the session; a mismatch answers 403.
fn check_csrf(ctx: &Context, form: &Fields) -> Result<(), Response> {
    if service::console::csrf_matches(&ctx.cookie, form.get("csrf").unwrap_or_default()) {
        Ok(())
    } else {
        Err(csrf_refused(ctx.lang))
    }
}

fn csrf_refused(lang: Lang) -> Response {
    message_page(
        lang,
        StatusCode::FORBIDDEN,
        lang.pick("Formulier verlopen", "Form expired"),
        lang.pick(
            "Dit formulier kwam niet van deze pagina of is verlopen. Open de pagina opnieuw.",
            "This form did not come from this page or has expired. Open the page again.",
        ),
    )
}

/// A posted form's fields. A NUL in any of them refuses the whole form.
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// Reads an `application/x-www-form-urlencoded` body.
    pub async fn read(req: &Request, body: poem::Body, lang: Lang) -> Result<Self, Response> {
        let bad = || {
            message_page(
                lang,
                StatusCode::BAD_REQUEST,
                lang.pick("Ongeldig formulier", "Invalid form"),
                lang.pick(
                    "Het formulier kon niet worden gelezen.",
                    "The form could not be read.",
                ),
            )
        };
        let is_form = req
            .content_type()
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(bad());
        }
        let bytes = body.into_bytes().await.map_err(|_| bad())?;
        let fields: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&bytes).map_err(|_| bad())?;
        if fields
            .iter()
            .any(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(bad());
        }
        Ok(Self(fields))
    }

    /// A signed-in user's form: read, and refused (403) unless its CSRF token is this session's.
    pub async fn posted(ctx: &Context, req: &Request, body: poem::Body) -> Result<Self, Response> {
        let fields = Self::read(req, body, ctx.lang).await?;
        check_csrf(ctx, &fields)?;
        Ok(fields)
    }

    /// Every field, in the order posted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A path segment that must be an id; anything else is a page that does not exist.
pub fn parse_id(lang: Lang, raw: &str) -> Result<Uuid, Response> {
    raw.parse()
        .map_err(|_| error_page(lang, service::Error::NotFound("page")))
}

/// The visitor's language: `?lang=` when given, else the cookie, else Dutch.
fn language(req: &Request) -> Lang {
    query_lang(req)
        .or_else(|| cookie(req, LANG_COOKIE).and_then(|value| Lang::parse(&value)))
        .unwrap_or(Lang::Nl)
}

fn query_lang(req: &Request) -> Option<Lang> {
    req.uri().query()?.split('&').find_map(|pair| {
        let value = pair.strip_prefix("lang=")?;
        Lang::parse(value)
    })
}

/// A cookie's value from the request.
fn cookie(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name && !value.is_empty()).then(|| value.to_owned())
        })
}

/// A `Set-Cookie` value for one of the console's cookies.
fn set_cookie(services: &Services, name: &str, value: &str, max_age_secs: i64) -> String {
    let secure = if services.config().mode == crate::config::Mode::Production {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    )
}

/// A redirect after a successful post (303, so the browser follows with a GET).
pub fn see_other(location: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .finish()
}

fn to_login() -> Response {
    see_other("/console/login")
}

/// A page for a service error: the same status the API gives for it, in words.
pub fn error_page(lang: Lang, err: service::Error) -> Response {
    let (title, message) = match &err {
        service::Error::NotFound(_) => (
            lang.pick("Niet gevonden", "Not found"),
            lang.pick(
                "Deze pagina bestaat niet, of u hebt er geen toegang toe.",
                "This page does not exist, or you have no access to it.",
            )
            .to_owned(),
        ),
        service::Error::Internal(_) => (
            lang.pick("Er ging iets mis", "Something went wrong"),
            lang.pick(
                "Er ging aan onze kant iets mis; het is gelogd. Probeer het opnieuw.",
                "Something went wrong on our side; it has been logged. Try again.",
            )
            .to_owned(),
        ),
        other => (lang.pick("Niet gelukt", "Not done"), other.to_string()),
    };
    // The API's one mapping decides the status (and logs an internal error's cause).
    let status = crate::api::error::ApiError::from(err)
        .into_response()
        .status();
    message_page(lang, status, title, &message)
}

fn message_page(lang: Lang, status: StatusCode, title: &str, message: &str) -> Response {
    let markup = layout::bare(
        lang,
        title,
        maud::html! {
            p role="alert" { (message) }
            p { a href="/console" { (lang.pick("Naar het overzicht", "Back to the overview")) } }
        },
    );
    Html(markup.into_string())
        .with_status(status)
        .into_response()
}
