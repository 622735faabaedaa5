//! Our FCM HTTP v1 client: a service-account key, an OAuth access token obtained with a signed
//! JWT assertion and cached until shortly before it expires, and `messages:send` with every FCM
//! error classified into a [`SendOutcome`].

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use super::{MAX_PAYLOAD_BYTES, Message, PushSender, SendFuture, SendOutcome};
use crate::config::Secret;

/// The OAuth scope for sending messages.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Refresh the access token when less than this is left of it.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// The least wait after `QUOTA_EXCEEDED`.
pub const QUOTA_BACKOFF: Duration = Duration::from_secs(60);

/// The fields of a Google service-account key file that we use.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    pub project_id: String,
    pub client_email: String,
    pub private_key: Secret,
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// Parses a key file's JSON.
    pub fn from_json(json: &str) -> anyhow::Result<Self> {
        serde_json::from_str(json).context("Failed to read the FCM service-account key")
    }
}

/// How the client talks to FCM.
#[derive(Debug, Clone)]
pub struct FcmSettings {
    /// `https://fcm.googleapis.com`, or a local server in tests.
    pub base_url: String,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// Ask FCM to validate messages without delivering them (a dry run).
    pub validate_only: bool,
    /// Give up on one HTTP request after this long.
    pub request_timeout: Duration,
}

/// The token cache: a valid token, or the last failure to get one.
#[derive(Default)]
struct TokenCache {
    token: Option<(String, Instant)>,
    /// A refused exchange is not repeated for every waiting message: they all get this answer
    /// until it is a little old.
    failure: Option<(SendOutcome, Instant)>,
}

/// How long a failed token exchange is answered from the cache.
const FAILURE_MEMORY: Duration = Duration::from_secs(1);

/// The FCM client. Cheap to share: one HTTP client (HTTP/2 to FCM) and one token cache.
pub struct FcmClient {
    key: ServiceAccountKey,
    signing_key: EncodingKey,
    settings: FcmSettings,
    http: reqwest::Client,
    /// One refresh in flight at a time: senders wait on this lock while it refreshes.
    token: Mutex<TokenCache>,
    in_flight: Arc<Semaphore>,
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorStatus,
}

#[derive(Deserialize)]
struct ErrorStatus {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

impl FcmClient {
    pub fn new(key: ServiceAccountKey, settings: FcmSettings) -> anyhow::Result<Self> {
        let signing_key = EncodingKey::from_rsa_pem(key.private_key.expose().as_bytes())
            .context("Failed to read the private key of the FCM service account")?;
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .pool_max_idle_per_host(settings.concurrency)
            .build()
            .context("Failed to build the HTTP client for FCM")?;
        Ok(Self {
            in_flight: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            key,
            signing_key,
            settings,
            http,
            token: Mutex::new(TokenCache::default()),
        })
    }

    /// A valid access token, from the cache or freshly exchanged.
    async fn access_token(&self) -> Result<String, SendOutcome> {
        let mut cache = self.token.lock().await;
        let now = Instant::now();
        if let Some((token, refresh_at)) = &cache.token
            && now < *refresh_at
        {
            return Ok(token.clone());
        }
        if let Some((failure, at)) = &cache.failure
            && now.duration_since(*at) < FAILURE_MEMORY
        {
            return Err(failure.clone());
        }
        match self.exchange_assertion().await {
            Ok(fresh) => {
                let lifetime = Duration::from_secs(fresh.expires_in);
                let refresh_at = Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN);
                cache.token = Some((fresh.access_token.clone(), refresh_at));
                cache.failure = None;
                Ok(fresh.access_token)
            }
            Err(failure) => {
                cache.failure = Some((failure.clone(), Instant::now()));
                Err(failure)
            }
        }
    }

    async fn exchange_assertion(&self) -> Result<TokenResponse, SendOutcome> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Assertion {
            iss: &self.key.client_email,
            scope: SCOPE,
            aud: &self.key.token_uri,
            iat: now,
            exp: now + 3_600,
        };
        let assertion =
            jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.signing_key)
                .map_err(|err| SendOutcome::AuthFailure {
                    code: "invalid_key".into(),
                    message: format!("could not sign the token request: {err}"),
                })?;
        let response = self
            .http
            .post(&self.key.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|err| SendOutcome::Retry {
                code: "token_unreachable".into(),
                message: format!("the token endpoint did not answer: {err}"),
                after: None,
            })?;
        let status = response.status();
        if status.is_success() {
            return response
                .json::<TokenResponse>()
                .await
                .map_err(|err| SendOutcome::Retry {
                    code: "token_unreadable".into(),
                    message: format!("the token endpoint's answer was unreadable: {err}"),
                    after: None,
                });
        }
        let body = response.text().await.unwrap_or_default();
        let message = format!("the token endpoint answered {status}: {}", truncate(&body));
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(SendOutcome::Retry {
                code: "token_unavailable".into(),
                message,
                after: None,
            })
        } else {
            Err(SendOutcome::AuthFailure {
                code: "token_refused".into(),
                message,
            })
        }
    }

    async fn send_one(&self, message: &Message) -> SendOutcome {
        // The message is serialised once: its size is checked on these bytes and the request
        // body is built around them (no `serde_json::Value` of it, no second serialisation).
        let Ok(message_json) = serde_json::to_vec(message) else {
            return SendOutcome::Failed {
                code: "unserialisable".into(),
                message: "the message cannot be written as JSON".into(),
            };
        };
        if message_json.len() > MAX_PAYLOAD_BYTES {
            return SendOutcome::Failed {
                code: "payload_too_large".into(),
                message: format!("the message exceeds FCM's {MAX_PAYLOAD_BYTES} bytes"),
            };
        }
        let body = request_body(&message_json, self.settings.validate_only);
        let Ok(_permit) = self.in_flight.acquire().await else {
            return SendOutcome::Retry {
                code: "shutting_down".into(),
                message: "the client is closing".into(),
                after: None,
            };
        };
        // An access token can expire (or be revoked) between our refresh and FCM's check: the
        // first 401 fetches a new token, once for all senders that saw the old one, and the
        // message is sent again at once. Only a 401 with a fresh token is a credential failure.
        for attempt in 0..2 {
            let token = match self.access_token().await {
                Ok(token) => token,
                Err(outcome) => return outcome,
            };
            let answer = self.post_message(body.clone(), &token).await;
            match answer {
                Ok((reqwest::StatusCode::UNAUTHORIZED, _, _)) if attempt == 0 => {
                    self.forget_token(&token).await;
                }
                Ok((status, retry_after, text)) => {
                    if status.is_success() {
                        let name = serde_json::from_str::<Value>(&text)
                            .ok()
                            .and_then(|value| value["name"].as_str().map(str::to_owned))
                            .unwrap_or_default();
                        return SendOutcome::Sent { message_id: name };
                    }
                    if status == reqwest::StatusCode::UNAUTHORIZED {
                        self.forget_token(&token).await;
                    }
                    return classify(status.as_u16(), &text, retry_after);
                }
                Err(outcome) => return outcome,
            }
        }
        unreachable!("the second attempt always answers")
    }

    /// Sends one request body with this access token: (status, Retry-After, body).
    async fn post_message(
        &self,
        body: bytes::Bytes,
        token: &str,
    ) -> Result<(reqwest::StatusCode, Option<Duration>, String), SendOutcome> {
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            self.settings.base_url.trim_end_matches('/'),
            self.key.project_id
        );
        let response = self
            .http
            .post(url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|err| SendOutcome::Retry {
                code: "unreachable".into(),
                message: format!("FCM did not answer: {err}"),
                after: None,
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        Ok((status, retry_after, text))
    }

    /// Drops the cached access token if it still is `used`: of many senders refused with the same
    /// token, the first makes the next sender fetch a new one, and the rest then find it.
    async fn forget_token(&self, used: &str) {
        let mut cache = self.token.lock().await;
        if cache.token.as_ref().is_some_and(|(token, _)| token == used) {
            cache.token = None;
        }
    }
}

/// FCM's request body, `{"message": ..., "validate_only": ...}`, around a serialised message.
fn request_body(message_json: &[u8], validate_only: bool) -> bytes::Bytes {
    let mut body = Vec::with_capacity(message_json.len() + 40);
    body.extend_from_slice(b"{\"message\":");
    body.extend_from_slice(message_json);
    body.extend_from_slice(if validate_only {
        b",\"validate_only\":true}"
    } else {
        b",\"validate_only\":false}"
    });
    bytes::Bytes::from(body)
}

impl PushSender for FcmClient {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(self.send_one(message))
    }

    fn name(&self) -> &'static str {
        "fcm"
    }
}

/// Classifies an FCM error answer by `details[].errorCode`, then by status.
pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> SendOutcome {
    let parsed: Option<ErrorStatus> = serde_json::from_str::<ErrorEnvelope>(body)
        .ok()
        .map(|envelope| envelope.error);
    let Some(error) = parsed else {
        // Not JSON: a proxy's HTML error page, say. Server-side trouble is worth a retry.
        let message = format!(
            "FCM answered {status} with a non-JSON body: {}",
            truncate(body)
        );
        return if status >= 500 || status == 429 {
            SendOutcome::Retry {
                code: format!("http_{status}"),
                message,
                after: retry_after,
            }
        } else if status == 401 || status == 403 {
            SendOutcome::AuthFailure {
                code: format!("http_{status}"),
                message,
            }
        } else {
            SendOutcome::Failed {
                code: format!("http_{status}"),
                message,
            }
        };
    };
    let error_code = error
        .details
        .iter()
        .find_map(|detail| detail["errorCode"].as_str())
        .unwrap_or(&error.status)
        .to_owned();
    let message = error.message;
    match error_code.as_str() {
        "UNREGISTERED" | "SENDER_ID_MISMATCH" => SendOutcome::TokenInvalid {
            code: error_code,
            message,
        },
        "INVALID_ARGUMENT" if message.to_lowercase().contains("token") => {
            SendOutcome::TokenInvalid {
                code: error_code,
                message,
            }
        }
        "QUOTA_EXCEEDED" => SendOutcome::Retry {
            code: error_code,
            message,
            after: Some(retry_after.unwrap_or(QUOTA_BACKOFF).max(QUOTA_BACKOFF)),
        },
        "UNAVAILABLE" | "INTERNAL" => SendOutcome::Retry {
            code: error_code,
            message,
            after: retry_after,
        },
        "THIRD_PARTY_AUTH_ERROR" | "UNAUTHENTICATED" | "PERMISSION_DENIED" => {
            SendOutcome::AuthFailure {
                code: error_code,
                message,
            }
        }
        _ if status >= 500 => SendOutcome::Retry {
            code: error_code,
            message,
            after: retry_after,
        },
        _ if status == 401 || status == 403 => SendOutcome::AuthFailure {
            code: error_code,
            message,
        },
        _ => SendOutcome::Failed {
            code: error_code,
            message,
        },
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_body_is_the_message_wrapped_as_fcm_reads_it() {
        let alert = super::super::Alert {
            title: "Dag 2 \"verplaatst\"".into(),
            body: "Om 10:00 in het Stadskantoor".into(),
            data: std::collections::BTreeMap::from([(
                "kind".to_owned(),
                "announcement".to_owned(),
            )]),
            collapse_id: "c0ffee".into(),
            urgency: super::super::Urgency::High,
            ttl: Duration::from_secs(60),
        };
        let message = Message::alert("device-token", &alert, 1_767_225_600);
        for validate_only in [false, true] {
            let body = request_body(&serde_json::to_vec(&message).unwrap(), validate_only);
            let read: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                read,
                serde_json::json!({ "message": message, "validate_only": validate_only })
            );
        }
    }

    fn fcm_error(status: &str, code: Option<&str>, message: &str) -> String {
        let details = code.map_or(serde_json::json!([]), |code| {
            serde_json::json!([{
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": code
            }])
        });
        serde_json::json!({ "error": { "code": 400, "message": message, "status": status, "details": details } })
            .to_string()
    }

    #[test]
    fn dead_tokens_are_recognised() {
        for (status, code, message) in [
            (404, "NOT_FOUND", Some("UNREGISTERED")),
            (403, "PERMISSION_DENIED", Some("SENDER_ID_MISMATCH")),
        ] {
            assert!(matches!(
                classify(status, &fcm_error(code, message, "x"), None),
                SendOutcome::TokenInvalid { .. }
            ));
        }
        let invalid_token = fcm_error(
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "The registration token is not a valid FCM registration token",
        );
        assert!(matches!(
            classify(400, &invalid_token, None),
            SendOutcome::TokenInvalid { .. }
        ));
        let bad_payload = fcm_error(
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "Invalid JSON payload",
        );
        assert!(matches!(
            classify(400, &bad_payload, None),
            SendOutcome::Failed { .. }
        ));
    }

    #[test]
    fn quota_waits_at_least_a_minute_and_unavailable_honours_retry_after() {
        let quota = fcm_error("RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED"), "slow down");
        assert!(matches!(
            classify(429, &quota, Some(Duration::from_secs(5))),
            SendOutcome::Retry { after: Some(after), .. } if after == QUOTA_BACKOFF
        ));
        let unavailable = fcm_error("UNAVAILABLE", Some("UNAVAILABLE"), "busy");
        assert!(matches!(
            classify(503, &unavailable, Some(Duration::from_secs(7))),
            SendOutcome::Retry { after: Some(after), .. } if after == Duration::from_secs(7)
        ));
    }

    #[test]
    fn auth_trouble_and_html_pages_are_classified() {
        let third_party = fcm_error("UNAUTHENTICATED", Some("THIRD_PARTY_AUTH_ERROR"), "apns");
        assert!(matches!(
            classify(401, &third_party, None),
            SendOutcome::AuthFailure { .. }
        ));
        assert!(matches!(
            classify(502, "<html><body>Bad Gateway</body></html>", None),
            SendOutcome::Retry { code, .. } if code == "http_502"
        ));
    }
}
