//! Hostile input at the edge: NUL characters, dates at the ends of the calendar, wrong media
//! types, protective headers, CORS, and a `/metrics` that strangers cannot grow or break.

use reqwest::Method;
use serde_json::{Value, json};
use veldwerk_tests::{TestApp, db_test};

use crate::fixtures::{demo_admin, demo_cohort, demo_trainer, invite_code, programme_id};

/// Sends raw JSON text (so that `\u0000` reaches the server as the client wrote it).
async fn raw_json(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn error_of(reply: reqwest::Response) -> (u16, Value) {
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

db_test!(async fn a_nul_character_is_refused_everywhere_with_one_clear_error(app) {
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let code = invite_code(&app, &trainer, &cohort).await;
    let nul = r"\u0000";
    let probes: Vec<(Method, String, Option<&str>, String)> = vec![
        // Before logging in.
        (Method::POST, "/v1/auth/login".into(), None, format!(r#"{{"email":"a{nul}@x.test","password":"p"}}"#)),
        (Method::POST, "/v1/auth/enrol".into(), None, format!(r#"{{"invite_code":"{code}","display_name":"Sanne{nul}"}}"#)),
        (Method::POST, "/v1/auth/link-device".into(), None, format!(r#"{{"link_code":"AB{nul}CD"}}"#)),
        // Signed in.
        (Method::POST, "/v1/organisations".into(), Some(&trainer.token), format!(r#"{{"name":"Gemeente{nul}"}}"#)),
        (
            Method::POST,
            format!("/v1/cohorts/{cohort}/announcements"),
            Some(&trainer.token),
            format!(r#"{{"title":"Let op{nul}","body":"x"}}"#),
        ),
        (Method::POST, format!("/v1/cohorts/{cohort}/invites"), Some(&trainer.token), format!(r#"{{"label":"{nul}"}}"#)),
        (
            Method::PUT,
            "/v1/me/push-device".into(),
            Some(&trainer.token),
            format!(r#"{{"token":"t{nul}","platform":"android","locale":"nl","time_zone":"UTC","app_version":"1"}}"#),
        ),
    ];
    for (method, path, token, body) in probes {
        let (status, error) = error_of(raw_json(&app, method.clone(), &path, token, &body).await).await;
        assert_eq!((status, error["code"].as_str()), (400, Some("invalid_text")), "{method} {path}: {error}");
    }
    // In a path or query, percent-encoded.
    let reply = app.client.get(format!("{}/v1/cohorts/{cohort}/members?x=%00", app.address)).bearer_auth(&trainer.token).send().await.unwrap();
    let (status, error) = error_of(reply).await;
    assert_eq!((status, error["code"].as_str()), (400, Some("invalid_text")), "{error}");
    // Nothing was consumed: the invite still enrols.
    app.enrol(&code, "Sanne").await;
    // A backslash followed by the text `u0000` is ordinary text.
    let reply = raw_json(
        &app,
        Method::POST,
        &format!("/v1/cohorts/{cohort}/announcements"),
        Some(&trainer.token),
        r#"{"title":"Pad C:\\u0000","body":"x"}"#,
    )
    .await;
    assert_eq!(reply.status(), 201);
    let created: Value = reply.json().await.unwrap();
    assert_eq!(created["title"], r"Pad C:\u0000");
});

db_test!(async fn dates_far_from_now_are_refused_and_planning_never_panics(app) {
    let trainer = demo_trainer(&app).await;
    let organisations = app.get("/v1/organisations", &trainer.token).await.expect(200);
    let programme = programme_id(&app, &trainer).await;
    for first_year in ["-5000", "+262142", "1999", "2101"] {
        let days: Vec<Value> = (1..=6)
            .map(|n| json!({ "day_number": n, "date": format!("{first_year}-0{n}-01"), "starts_at": "09:00:00", "ends_at": "16:00:00", "location": "Zaal" }))
            .collect();
        let body = json!({ "organisation_id": organisations[0]["id"], "programme_id": programme, "name": "Ver weg", "days": days });
        let (status, error) = error_of(raw_json(&app, Method::POST, "/v1/cohorts", Some(&trainer.token), &body.to_string()).await).await;
        assert!(status == 400 || status == 422, "{first_year}: {status} {error}");
        assert!(["invalid_schedule", "invalid_body"].contains(&error["code"].as_str().unwrap()), "{first_year}: {error}");
    }
    // A schedule edit to the end of the calendar is refused too, and the cohort stays usable.
    let cohort = demo_cohort(&app, &trainer).await;
    let reply = app
        .call(
            Method::PATCH,
            &format!("/v1/cohorts/{cohort}/schedule"),
            Some(&trainer.token),
            Some(json!({ "days": [{ "day_number": 6, "date": "+262142-12-31" }] })),
        )
        .await;
    let error = reply.expect_error(422, "invalid_schedule");
    assert_eq!(error["details"]["day_number"], 6);
    let admin = demo_admin(&app).await;
    app.call(
        Method::PUT,
        &format!("/v1/programmes/{programme}/reminder-rules"),
        Some(&admin.token),
        Some(json!({ "rules": [{ "applies_to": "harvest", "days_before": 60, "at": "23:59:00" }] })),
    )
    .await
    .expect(200);
    app.enrol(&invite_code(&app, &trainer, &cohort).await, "Noor").await;
});

db_test!(async fn a_wrong_media_type_is_415_in_the_error_shape(app) {
    let admin = demo_admin(&app).await;
    let trainer = demo_trainer(&app).await;
    let programme = programme_id(&app, &trainer).await;
    for content_type in [Some("text/plain"), None] {
        let mut request = app
            .client
            .put(format!("{}/v1/programmes/{programme}/reminder-rules", app.address))
            .bearer_auth(&admin.token)
            .body(r#"{"rules":[]}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, error) = error_of(request.send().await.unwrap()).await;
        assert_eq!((status, error["code"].as_str()), (415, Some("unsupported_media_type")), "{content_type:?}: {error}");
    }
});

db_test!(async fn answers_carry_protective_headers_and_no_cors_by_default(app) {
    let login = app
        .client
        .post(format!("{}/v1/auth/login", app.address))
        .header("origin", "https://evil.example")
        .json(&json!({ "email": "trainer@veldwerk.test", "password": "demo-trainer-wachtwoord" }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 201);
    assert_eq!(login.headers()["x-content-type-options"], "nosniff");
    assert_eq!(login.headers()["cache-control"], "no-store", "tokens are never cached");
    assert!(login.headers().get("access-control-allow-origin").is_none(), "no CORS unless configured");
    let missing = app.client.get(format!("{}/nowhere", app.address)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-content-type-options"], "nosniff");
    let docs = app.client.get(format!("{}/docs", app.address)).send().await.unwrap();
    assert_eq!(docs.headers()["x-frame-options"], "DENY");
    assert_eq!(docs.headers()["content-security-policy"], "frame-ancestors 'none'");
});

db_test!(async fn cors_answers_only_the_configured_origins(app) with |config| {
    config.cors_allowed_origins = vec!["https://console.gemeente.nl".into()];
}; {
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, format!("{}/v1/cohorts", app.address))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("https://console.gemeente.nl").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://console.gemeente.nl");
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
});

db_test!(async fn strangers_cannot_grow_or_break_metrics(app) {
    let metrics = || async { app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap() };
    let before = metrics().await.len();
    let long = "x".repeat(4_000);
    for n in 0..100 {
        let path = format!("/{long}{n}/a\\b\"c");
        app.client.get(format!("{}{}", app.address, path.replace('"', "%22"))).send().await.unwrap();
        app.client.request(Method::from_bytes(format!("BREW{n}").as_bytes()).unwrap(), format!("{}/v1/cohorts", app.address)).send().await.unwrap();
    }
    let text = metrics().await;
    assert!(text.len() < before + 4_000, "grew from {before} to {} bytes", text.len());
    assert!(text.contains(r#"route="unmatched""#), "{text}");
    assert!(text.contains(r#"method="other""#), "{text}");
    // Every sample line is name{labels} value, each label value a properly escaped string.
    let label = regex_lite_label();
    for line in text.lines().filter(|line| !line.starts_with('#') && !line.is_empty()) {
        assert!(label(line), "unparseable: {line}");
    }
});

/// A small checker of one sample line of the Prometheus text format.
fn regex_lite_label() -> impl Fn(&str) -> bool {
    |line: &str| {
        let Some((series, value)) = line.rsplit_once(' ') else {
            return false;
        };
        if value.parse::<f64>().is_err() {
            return false;
        }
        let Some((name, labels)) = series.split_once('{') else {
            return series
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return false;
        }
        let Some(mut rest) = labels.strip_suffix('}') else {
            return false;
        };
        while !rest.is_empty() {
            let Some((key, after)) = rest.split_once("=\"") else {
                return false;
            };
            if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return false;
            }
            let mut chars = after.char_indices();
            let mut end = None;
            while let Some((at, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, '\\' | '"' | 'n')) => {}
                        _ => return false,
                    },
                    '"' => {
                        end = Some(at);
                        break;
                    }
                    '\n' => return false,
                    _ => {}
                }
            }
            let Some(end) = end else { return false };
            rest = after[end + 1..]
                .strip_prefix(',')
                .unwrap_or(&after[end + 1..]);
        }
        true
    }
}

db_test!(async fn metrics_can_require_a_token(app) with |config| {
    config.metrics_token = Some(veldwerk_tests::veldwerk_server::config::Secret::new("scrape-me"));
}; {
    let get = |token: Option<&'static str>| {
        let mut request = app.client.get(format!("{}/metrics", app.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let (status, error) = error_of(get(None).await.unwrap()).await;
    assert_eq!((status, error["code"].as_str()), (401, Some("unauthenticated")));
    assert_eq!(get(Some("wrong")).await.unwrap().status(), 401);
    let scraped = get(Some("scrape-me")).await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("veldwerk_http_requests_total"));
});
