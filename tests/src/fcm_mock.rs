//! A local server that speaks FCM HTTP v1 and Google's OAuth token protocol, for testing our
//! real FCM client: it checks the signed token request against the test key, records every
//! message, and answers with scripted errors per device token.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use poem::{
    EndpointExt, IntoResponse, Request, Response, Route, Server,
    http::StatusCode,
    listener::TcpAcceptor,
    post,
    web::{Data, Form, Json},
};
use serde::Deserialize;
use serde_json::{Value, json};

/// The test service account's private key (see `tests/fixtures/README.md`).
pub const TEST_PRIVATE_KEY: &str = include_str!("../fixtures/fcm-test-key.pem");
const TEST_PUBLIC_KEY: &str = include_str!("../fixtures/fcm-test-key.pub.pem");
const CLIENT_EMAIL: &str = "veldwerk-push@veldwerk-test.iam.gserviceaccount.com";
/// The project in the test key.
pub const PROJECT: &str = "veldwerk-test";

/// One scripted answer to a send.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<u64>,
}

impl Scripted {
    /// An FCM error in Google's JSON shape, with `details[].errorCode`.
    pub fn fcm_error(status: u16, grpc_status: &str, error_code: &str, message: &str) -> Self {
        Self {
            status,
            body: json!({
                "error": {
                    "code": status,
                    "message": message,
                    "status": grpc_status,
                    "details": [{
                        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                        "errorCode": error_code
                    }]
                }
            })
            .to_string(),
            retry_after: None,
        }
    }

    /// An HTML error page, as a proxy in front of FCM might answer.
    pub fn html(status: u16) -> Self {
        Self {
            status,
            body:
                "<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>"
                    .into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

#[derive(Default)]
struct State {
    issued: Mutex<Vec<String>>,
    token_requests: AtomicUsize,
    /// Every send attempt: (device token, message JSON).
    attempts: Mutex<Vec<(String, Value)>>,
    scripts: Mutex<HashMap<String, VecDeque<Scripted>>>,
    /// When set, the token endpoint refuses.
    refuse_tokens: Mutex<bool>,
    latency: Mutex<Duration>,
    token_url: Mutex<String>,
}

/// A running mock; stops with the test's runtime.
#[derive(Clone)]
pub struct MockFcm {
    pub url: String,
    state: Arc<State>,
}

impl MockFcm {
    /// Starts the mock on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let state = Arc::new(State::default());
        *state.token_url.lock().unwrap() = format!("{url}/token");
        let app = Route::new()
            .at("/token", post(token))
            .at("/v1/projects/*rest", post(send))
            .data(state.clone());
        let acceptor = TcpAcceptor::from_tokio(listener).expect("an acceptor");
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        Self { url, state }
    }

    /// A service-account key file pointing at this mock.
    pub fn service_account_json(&self) -> String {
        json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "test",
            "private_key": TEST_PRIVATE_KEY,
            "client_email": CLIENT_EMAIL,
            "token_uri": format!("{}/token", self.url),
        })
        .to_string()
    }

    /// Queues answers for sends to one device token, in order; later sends succeed.
    pub fn script(&self, device_token: &str, answers: impl IntoIterator<Item = Scripted>) {
        self.state
            .scripts
            .lock()
            .unwrap()
            .entry(device_token.to_owned())
            .or_default()
            .extend(answers);
    }

    /// Makes the token endpoint refuse (a revoked service account).
    pub fn refuse_tokens(&self, refuse: bool) {
        *self.state.refuse_tokens.lock().unwrap() = refuse;
    }

    /// Expires every access token issued so far, as Google's do after an hour: sends with them
    /// get 401 `UNAUTHENTICATED` until the client fetches a new one.
    pub fn expire_access_tokens(&self) {
        self.state.issued.lock().unwrap().clear();
    }

    /// Adds latency to every send (for the fan-out benchmark).
    pub fn set_latency(&self, latency: Duration) {
        *self.state.latency.lock().unwrap() = latency;
    }

    /// How many access tokens were requested.
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// Every send attempt so far: (device token, message).
    pub fn attempts(&self) -> Vec<(String, Value)> {
        self.state.attempts.lock().unwrap().clone()
    }

    /// How many send attempts arrived, without copying them.
    pub fn attempt_count(&self) -> usize {
        self.state.attempts.lock().unwrap().len()
    }

    /// Send attempts to one device token.
    pub fn attempts_to(&self, device_token: &str) -> Vec<Value> {
        self.attempts()
            .into_iter()
            .filter(|(sent_to, _)| sent_to == device_token)
            .map(|(_, message)| message)
            .collect()
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: String,
    assertion: String,
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    scope: String,
    aud: String,
    exp: u64,
    iat: u64,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    Json(json!({ "error": error, "error_description": description }))
        .with_status(status)
        .into_response()
}

#[poem::handler]
async fn token(form: Form<TokenRequest>, state: Data<&Arc<State>>) -> Response {
    state.token_requests.fetch_add(1, Ordering::SeqCst);
    if *state.refuse_tokens.lock().unwrap() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT Signature.",
        );
    }
    if form.grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "wrong grant type",
        );
    }
    let key = DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY.as_bytes()).expect("the test public key");
    let mut validation = Validation::new(Algorithm::RS256);
    let token_url = state.token_url.lock().unwrap().clone();
    validation.set_audience(&[token_url]);
    let claims = match jsonwebtoken::decode::<AssertionClaims>(&form.assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(err) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &err.to_string()),
    };
    let _ = (&claims.aud, claims.iat);
    if claims.iss != CLIENT_EMAIL
        || claims.scope != "https://www.googleapis.com/auth/firebase.messaging"
        || claims.exp <= claims.iat
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "wrong issuer or scope",
        );
    }
    let access = format!("mock-access-{}", uuid::Uuid::new_v4().simple());
    state.issued.lock().unwrap().push(access.clone());
    Json(json!({ "access_token": access, "expires_in": 3600, "token_type": "Bearer" }))
        .into_response()
}

#[poem::handler]
async fn send(req: &Request, Json(mut body): Json<Value>, state: Data<&Arc<State>>) -> Response {
    let latency = *state.latency.lock().unwrap();
    if !req
        .uri()
        .path()
        .ends_with(&format!("/{PROJECT}/messages:send"))
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    let bearer = req
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    if !state.issued.lock().unwrap().contains(&bearer) {
        // What FCM answers for an expired or unknown access token: no FCM error details.
        let error = Scripted {
            status: 401,
            body: json!({ "error": {
                "code": 401,
                "message": "Request had invalid authentication credentials. Expected OAuth 2 access token.",
                "status": "UNAUTHENTICATED",
            }})
            .to_string(),
            retry_after: None,
        };
        return scripted_response(error);
    }
    let message = body["message"].take();
    let device_token = message["token"].as_str().unwrap_or_default().to_owned();
    // Recorded as it arrives, then held: what has reached "FCM" is known even if the sender
    // dies before the answer.
    state
        .attempts
        .lock()
        .unwrap()
        .push((device_token.clone(), message));
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let scripted = state
        .scripts
        .lock()
        .unwrap()
        .get_mut(&device_token)
        .and_then(VecDeque::pop_front);
    match scripted {
        Some(answer) => scripted_response(answer),
        None => Json(json!({
            "name": format!("projects/{PROJECT}/messages/{}", uuid::Uuid::new_v4().simple())
        }))
        .into_response(),
    }
}

fn scripted_response(answer: Scripted) -> Response {
    let mut response = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(
            "content-type",
            if answer.body.starts_with('<') {
                "text/html"
            } else {
                "application/json"
            },
        );
    if let Some(seconds) = answer.retry_after {
        response = response.header("retry-after", seconds.to_string());
    }
    response.body(answer.body)
}
