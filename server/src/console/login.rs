//! Logging in and out of the console.

use maud::html;
use poem::{
    Body, IntoResponse, Request, Response, handler,
    http::{StatusCode, header},
    web::{Data, Html},
};

use super::{
    Fields, LOGIN_CSRF_COOKIE, Lang, SESSION_COOKIE, cookie, language, layout, see_other,
    set_cookie, signed_in,
};
use crate::service::{self, Services, console::SESSION_HOURS, tokens::random_token};

/// The login form. It carries a fresh random token that must come back both as a cookie and in
/// the form (double submit), so another site cannot post a login in the visitor's name.
#[handler]
pub async fn form(req: &Request, Data(services): Data<&Services>) -> Response {
    let lang = language(req);
    if signed_in(req, services).await.is_ok() {
        return see_other("/console");
    }
    login_page(services, lang, None, "", StatusCode::OK)
}

fn login_page(
    services: &Services,
    lang: Lang,
    problem: Option<String>,
    email: &str,
    status: StatusCode,
) -> Response {
    let token = match random_token() {
        Ok(token) => token,
        Err(err) => return super::error_page(lang, service::Error::Internal(err)),
    };
    let markup = layout::bare(
        lang,
        lang.pick("Inloggen bij Veldwerk", "Log in to Veldwerk"),
        html! {
            p { (lang.pick(
                "De console voor trainers en beheerders van het leertraject Urban Professional.",
                "The console for trainers and admins of the Urban Professional programme."))
            }
            @if let Some(problem) = problem {
                p class="problem" role="alert" id="login-problem" { (problem) }
            }
            form method="post" action="/console/login" class="stack" {
                input type="hidden" name="csrf" value=(token);
                label for="email" { (lang.pick("E-mailadres", "Email address")) }
                input id="email" name="email" type="email" autocomplete="username" required value=(email);
                label for="password" { (lang.pick("Wachtwoord", "Password")) }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button type="submit" { (lang.pick("Inloggen", "Log in")) }
            }
            p {
                a href={ "/console/login?lang=" (other(lang).code()) } lang=(other(lang).code()) {
                    (other(lang).pick("Nederlands", "English"))
                }
            }
        },
    );
    Html(markup.into_string())
        .with_status(status)
        .with_header(
            header::SET_COOKIE,
            set_cookie(services, LOGIN_CSRF_COOKIE, &token, 3600),
        )
        .into_response()
}

fn other(lang: Lang) -> Lang {
    match lang {
        Lang::Nl => Lang::En,
        Lang::En => Lang::Nl,
    }
}

#[handler]
pub async fn submit(req: &Request, body: Body, Data(services): Data<&Services>) -> Response {
    let lang = language(req);
    let fields = match Fields::read(req, body, lang).await {
        Ok(fields) => fields,
        Err(answer) => return answer,
    };
    let presented = fields.get("csrf").unwrap_or_default();
    let expected = cookie(req, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || presented != expected {
        return super::csrf_refused(lang);
    }
    let email = fields.get("email").unwrap_or_default();
    let password = fields.get("password").unwrap_or_default();
    let client = crate::api::auth::client_address(req, services.config().trust_forwarded_for);
    match services.console_login(&client, email, password).await {
        Ok(session) => {
            let max_age = SESSION_HOURS * 3600;
            let mut answer = see_other("/console");
            answer.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(services, SESSION_COOKIE, &session.cookie, max_age)
                    .parse()
                    .expect("a cookie header"),
            );
            answer.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(services, LOGIN_CSRF_COOKIE, "", 0)
                    .parse()
                    .expect("a cookie header"),
            );
            answer
        }
        Err(service::Error::Unauthenticated { .. }) => login_page(
            services,
            lang,
            Some(
                lang.pick(
                    "Het e-mailadres of wachtwoord klopt niet.",
                    "The email address or password is wrong.",
                )
                .to_owned(),
            ),
            email,
            StatusCode::UNAUTHORIZED,
        ),
        Err(service::Error::RateLimited { retry_after }) => login_page(
            services,
            lang,
            Some(format!(
                "{} {} s.",
                lang.pick(
                    "Te veel pogingen. Probeer het opnieuw over",
                    "Too many attempts. Try again in"
                ),
                retry_after.as_secs()
            )),
            email,
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(service::Error::Forbidden(_)) => login_page(
            services,
            lang,
            Some(
                lang.pick(
                    "De console is voor trainers en beheerders. Deelnemers gebruiken de app.",
                    "The console is for trainers and admins. Participants use the app.",
                )
                .to_owned(),
            ),
            email,
            StatusCode::FORBIDDEN,
        ),
        Err(err) => super::error_page(lang, err),
    }
}

/// Ends the session: its device is revoked, its cookie cleared.
#[handler]
pub async fn logout(req: &Request, body: Body, Data(services): Data<&Services>) -> Response {
    let ctx = match signed_in(req, services).await {
        Ok(ctx) => ctx,
        Err(answer) => return answer,
    };
    if let Err(answer) = Fields::posted(&ctx, req, body).await {
        return answer;
    }
    if let Err(err) = services.console_logout(&ctx.actor).await {
        return super::error_page(ctx.lang, err);
    }
    let mut answer = see_other("/console/login");
    answer.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(services, SESSION_COOKIE, "", 0)
            .parse()
            .expect("a cookie header"),
    );
    answer
}
