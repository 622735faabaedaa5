//! Sending push notifications: the message shape (FCM HTTP v1), what a send can come to, and the
//! two senders: the FCM client and a log-only sender (the embedded default, so the demo works
//! without Firebase).

pub mod fcm;

use std::{collections::BTreeMap, future::Future, pin::Pin, time::Duration};

use serde::Serialize;
use serde_json::Value;

/// FCM's limit on a message's payload.
pub const MAX_PAYLOAD_BYTES: usize = 4_096;

/// One push message to one device token, in FCM HTTP v1's shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Message {
    pub token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<Notification>,
    /// FCM allows string values only.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub android: Option<AndroidConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apns: Option<ApnsConfig>,
}

/// The visible part of a message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Notification {
    pub title: String,
    pub body: String,
}

/// Android delivery options.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AndroidConfig {
    /// `high` or `normal`.
    pub priority: String,
    /// How long FCM keeps trying, e.g. `86400s`.
    pub ttl: String,
    /// Messages with one key replace each other while waiting for an offline device.
    pub collapse_key: String,
    pub notification: AndroidNotification,
}

/// Android notification options.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AndroidNotification {
    /// A notification with the same tag replaces the shown one instead of adding another.
    pub tag: String,
}

/// APNs (iOS) delivery options: headers and the `aps` payload.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ApnsConfig {
    /// `apns-priority`, `apns-push-type`, `apns-expiration`, `apns-collapse-id`.
    pub headers: BTreeMap<String, String>,
    pub payload: Value,
}

/// How urgent a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Reminders: delivered when convenient for the device's battery.
    Normal,
    /// Announcements from a trainer: delivered at once.
    High,
}

/// What to show, independent of the device.
#[derive(Debug, Clone)]
pub struct Alert {
    pub title: String,
    pub body: String,
    pub data: BTreeMap<String, String>,
    /// Makes a repeated send of the same occasion replace, not add to, what the phone shows.
    pub collapse_id: String,
    pub urgency: Urgency,
    /// How long FCM keeps trying to reach an offline device.
    pub ttl: Duration,
}

impl Message {
    /// A notification message for both platforms.
    pub fn alert(token: &str, alert: &Alert, now_unix: i64) -> Self {
        let Alert {
            title,
            body,
            data,
            collapse_id,
            urgency,
            ttl,
        } = alert;
        let (urgency, ttl, data) = (*urgency, *ttl, data.clone());
        let expires_at_unix = now_unix + i64::try_from(ttl.as_secs()).unwrap_or(0);
        let collapse_id: String = collapse_id.chars().take(64).collect();
        let headers = BTreeMap::from([
            (
                "apns-priority".to_owned(),
                match urgency {
                    Urgency::High => "10",
                    Urgency::Normal => "5",
                }
                .to_owned(),
            ),
            ("apns-push-type".to_owned(), "alert".to_owned()),
            ("apns-expiration".to_owned(), expires_at_unix.to_string()),
            ("apns-collapse-id".to_owned(), collapse_id.clone()),
        ]);
        Self {
            token: token.to_owned(),
            notification: Some(Notification {
                title: title.to_owned(),
                body: body.to_owned(),
            }),
            data,
            android: Some(AndroidConfig {
                priority: match urgency {
                    Urgency::High => "high",
                    Urgency::Normal => "normal",
                }
                .to_owned(),
                ttl: format!("{}s", ttl.as_secs()),
                collapse_key: collapse_id.clone(),
                notification: AndroidNotification { tag: collapse_id },
            }),
            apns: Some(ApnsConfig {
                headers,
                payload: serde_json::json!({
                    "aps": { "alert": { "title": title, "body": body }, "sound": "default" }
                }),
            }),
        }
    }

    /// The size FCM counts against its limit: the serialised message.
    pub fn payload_bytes(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |bytes| bytes.len())
    }
}

/// What became of one send.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// Accepted; FCM's message name.
    Sent { message_id: String },
    /// The token is dead (`UNREGISTERED`, `SENDER_ID_MISMATCH`, an invalid token): stop using it.
    TokenInvalid { code: String, message: String },
    /// Try again later; `after` when the server said how long to wait.
    Retry {
        code: String,
        message: String,
        after: Option<Duration>,
    },
    /// The credentials are broken: no message will go until ops fixes them.
    AuthFailure { code: String, message: String },
    /// This message can never be sent (too large, malformed).
    Failed { code: String, message: String },
    /// Written to the log instead of sent (push mode `log`): it reached no device.
    Logged,
}

/// A boxed send future, so senders can be chosen at run time.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = SendOutcome> + Send + 'a>>;

/// Something that delivers push messages.
pub trait PushSender: Send + Sync {
    /// Sends one message.
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a>;
    /// For logs and metrics: `fcm` or `log`.
    fn name(&self) -> &'static str;
}

/// Logs what would be sent and reports it sent: the development default.
#[derive(Debug, Default)]
pub struct LogSender;

impl PushSender for LogSender {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(async move {
            if message.payload_bytes() > MAX_PAYLOAD_BYTES {
                return SendOutcome::Failed {
                    code: "payload_too_large".into(),
                    message: format!("the message exceeds {MAX_PAYLOAD_BYTES} bytes"),
                };
            }
            let title = message
                .notification
                .as_ref()
                .map_or("", |notification| notification.title.as_str());
            // Never the token: it is a credential of the device.
            tracing::info!(%title, "push (log only): would send");
            SendOutcome::Logged
        })
    }

    fn name(&self) -> &'static str {
        "log"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_carries_both_platforms_options_and_a_collapse_id() {
        let alert = Alert {
            title: "Herinnering".into(),
            body: "Interview".into(),
            data: BTreeMap::from([("kind".into(), "reminder".into())]),
            collapse_id: "reminder:abc".into(),
            urgency: Urgency::Normal,
            ttl: Duration::from_secs(86_400),
        };
        let message = Message::alert("tok", &alert, 1_800_000_000);
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["android"]["priority"], "normal");
        assert_eq!(json["android"]["ttl"], "86400s");
        assert_eq!(json["android"]["notification"]["tag"], "reminder:abc");
        assert_eq!(json["apns"]["headers"]["apns-collapse-id"], "reminder:abc");
        assert_eq!(json["apns"]["headers"]["apns-priority"], "5");
        assert_eq!(json["apns"]["headers"]["apns-expiration"], "1800086400");
        assert_eq!(
            json["apns"]["payload"]["aps"]["alert"]["title"],
            "Herinnering"
        );
        assert_eq!(json["data"]["kind"], "reminder");
    }

    #[tokio::test]
    async fn the_log_sender_refuses_oversized_payloads() {
        let alert = Alert {
            title: "t".into(),
            body: "x".repeat(5_000),
            data: BTreeMap::new(),
            collapse_id: "c".into(),
            urgency: Urgency::High,
            ttl: Duration::from_secs(60),
        };
        let message = Message::alert("tok", &alert, 0);
        assert!(matches!(
            LogSender.send(&message).await,
            SendOutcome::Failed { code, .. } if code == "payload_too_large"
        ));
    }
}
