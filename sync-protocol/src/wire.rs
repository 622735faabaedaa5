//! The JSON shapes of push and pull. Do not modify lightly: apps in the field send and expect
//! these, and the golden fixtures in `tests/fixtures/` freeze them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::hlc::Hlc;

/// The protocol version this crate describes.
pub const PROTOCOL_VERSION: u32 = 1;
/// Request header carrying the client's protocol version.
pub const PROTOCOL_HEADER: &str = "veldwerk-protocol";
/// Request header carrying the app's version, e.g. `1.4.2`.
pub const APP_VERSION_HEADER: &str = "veldwerk-app-version";
/// Most mutations in one push.
pub const MAX_BATCH: usize = 500;
/// Most changes a pull returns by default, and at most.
pub const DEFAULT_PULL_LIMIT: usize = 1_000;
pub const MAX_PULL_LIMIT: usize = 5_000;

/// A batch of mutations from one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// In the order the device made them; at most [`MAX_BATCH`].
    pub mutations: Vec<Mutation>,
}

/// One change to one record, made on one device at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mutation {
    /// Unique per mutation (UUID v7 recommended). The server applies a mutation id once; sending
    /// it again returns the first result.
    pub id: Uuid,
    /// A writable collection, e.g. `interviews`.
    pub collection: String,
    /// The record's id (client-generated, or the deterministic id of singleton collections).
    pub record_id: Uuid,
    /// The cohort the record belongs to; required when creating a record, fixed afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort_id: Option<Uuid>,
    /// The fields this mutation sets; fields left out keep their value.
    #[serde(default)]
    pub fields: BTreeMap<String, Value>,
    /// `true` deletes the record (a tombstone that syncs like any field).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete: bool,
    /// When the device made the change.
    pub clock: Hlc,
    /// Per field, the clock of the value the user saw when editing it; leave a field out when the
    /// device never had a value for it. Used to detect concurrent edits.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub base: BTreeMap<String, Hlc>,
}

/// A push as the server reads it: the envelope must be a push, but each mutation is read on its
/// own, so one that cannot be read (an unknown key, a malformed record id or clock, a wrong type)
/// is rejected alone with `invalid_mutation` and the others apply. Only a mutation without a
/// readable `id` fails the whole push: its result could not be told apart.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadPush {
    /// The mutations that could be read, in order.
    pub request: PushRequest,
    /// Those that could not: (position in the push, rejection).
    pub unreadable: Vec<(usize, MutationResult)>,
}

impl ReadPush {
    /// Reads a push body; an error means the body is not a push at all.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Envelope {
            mutations: Vec<Value>,
        }
        #[derive(Deserialize)]
        struct Identified {
            id: Uuid,
        }
        let envelope: Envelope = serde_json::from_slice(&replace_lone_surrogates(bytes))?;
        let mut read = ReadPush {
            request: PushRequest {
                mutations: Vec::with_capacity(envelope.mutations.len()),
            },
            unreadable: Vec::new(),
        };
        for (position, value) in envelope.mutations.into_iter().enumerate() {
            let Identified { id } = Identified::deserialize(&value)?;
            match Mutation::deserialize(value) {
                Ok(mutation) => read.request.mutations.push(mutation),
                Err(err) => read.unreadable.push((
                    position,
                    MutationResult {
                        id,
                        status: MutationStatus::Rejected,
                        code: Some("invalid_mutation".to_owned()),
                        message: Some(format!("the mutation cannot be read: {err}")),
                        conflicts: Vec::new(),
                    },
                )),
            }
        }
        Ok(read)
    }

    /// How many mutations the push carried, readable or not.
    pub fn len(&self) -> usize {
        self.request.mutations.len() + self.unreadable.len()
    }

    /// Whether the push carried no mutations.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The answer for the whole push: the results of the readable mutations (`response`) with
    /// the rejections of the `unreadable` ones put back in their places.
    pub fn answer(
        unreadable: &[(usize, MutationResult)],
        mut response: PushResponse,
    ) -> PushResponse {
        for (position, rejection) in unreadable {
            let at = (*position).min(response.results.len());
            response.results.insert(at, rejection.clone());
        }
        response
    }
}

/// Replaces `\uXXXX` escapes of lone UTF-16 surrogates in JSON strings with `\ufffd`, the
/// replacement character, as browsers do when such a string becomes text. A JavaScript app that
/// cuts a string in the middle of an emoji sends exactly this; it is valid JSON syntax but no
/// Unicode text, and would otherwise make the whole push unreadable forever. Same length, so only
/// a copy when there is something to replace.
pub fn replace_lone_surrogates(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    fn surrogate_at(bytes: &[u8], at: usize) -> Option<u16> {
        let escape = bytes.get(at..at + 6)?;
        if escape[0] != b'\\' || escape[1] != b'u' {
            return None;
        }
        let hex = std::str::from_utf8(&escape[2..]).ok()?;
        u16::from_str_radix(hex, 16)
            .ok()
            .filter(|unit| (0xD800..=0xDFFF).contains(unit))
    }
    let mut fixed: Option<Vec<u8>> = None;
    let (mut at, mut in_string) = (0, false);
    while at < bytes.len() {
        match bytes[at] {
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                match surrogate_at(bytes, at) {
                    Some(0xD800..=0xDBFF)
                        if surrogate_at(bytes, at + 6)
                            .is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) =>
                    {
                        at += 12; // a well-formed pair
                        continue;
                    }
                    Some(_) => {
                        let copy = fixed.get_or_insert_with(|| bytes.to_vec());
                        copy[at..at + 6].copy_from_slice(b"\\ufffd");
                        at += 6;
                        continue;
                    }
                    None => at += 1, // skip the escaped character
                }
            }
            _ => {}
        }
        at += 1;
    }
    match fixed {
        Some(copy) => std::borrow::Cow::Owned(copy),
        None => std::borrow::Cow::Borrowed(bytes),
    }
}

/// The server's answer to a push: one result per mutation, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushResponse {
    pub results: Vec<MutationResult>,
    /// The server's clock; devices observe it so their next writes order after the server's.
    pub server_clock: Hlc,
}

/// What happened to one mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MutationStatus {
    /// Merged into the record (possibly losing some fields to later writes; see `conflicts`).
    Applied,
    /// Refused; `code` says why. The device should drop it from its outbox (and may show it).
    Rejected,
}

/// The result of one mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MutationResult {
    /// The mutation's id.
    pub id: Uuid,
    pub status: MutationStatus,
    /// For a rejection: a stable code such as `forbidden`, `invalid_field`, `unknown_record`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Fields where this mutation and another device's edit crossed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<ConflictReport>,
}

/// A concurrent edit of one field: which value was kept, which lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConflictReport {
    pub field: String,
    pub kept_value: Value,
    pub kept_clock: Hlc,
    pub lost_value: Value,
    pub lost_clock: Hlc,
}

/// A page of changes since a cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullResponse {
    /// In server version order.
    pub changes: Vec<Change>,
    /// Pass it to the next pull. Opaque.
    pub cursor: String,
    /// More changes are waiting: pull again at once with `cursor`.
    pub has_more: bool,
    pub server_clock: Hlc,
}

/// One change in a pull.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// The record's whole current state: replace the local copy (then re-apply pending edits).
    Put(Record),
    /// The record left the caller's scope: remove the local copy (pending edits to it are moot).
    Evict { collection: String, id: Uuid },
}

/// A record as the server holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub collection: String,
    pub id: Uuid,
    /// The server version of this state; increases with every change to the record.
    pub version: i64,
    /// The participant who owns it (absent for read-only collections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort_id: Option<Uuid>,
    /// A tombstone: the record was deleted. Keep it deleted locally.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    pub fields: BTreeMap<String, Value>,
    /// Per field, the clock of its current value (send these back as `base` when editing).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clocks: BTreeMap<String, Hlc>,
    /// Values that lost a concurrent edit, newest last; visible to the owner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<ConflictReport>,
}

/// The error body of a sync request that fails as a whole (the same shape as the whole API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// E.g. `reset_required`, `unsupported_protocol`, `batch_too_large`.
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

#[cfg(test)]
mod surrogate_tests {
    use super::replace_lone_surrogates;

    fn fixed(json: &str) -> String {
        String::from_utf8(replace_lone_surrogates(json.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn lone_surrogates_become_replacement_characters_and_pairs_stay() {
        assert_eq!(fixed(r#"["a\ud83d"]"#), r#"["a\ufffd"]"#);
        assert_eq!(fixed(r#"["\ude00b"]"#), r#"["\ufffdb"]"#);
        assert_eq!(fixed(r#"["\ud83d\ude00"]"#), r#"["\ud83d\ude00"]"#);
        assert_eq!(
            fixed(r#"["\ud83d\ud83d\ude00"]"#),
            r#"["\ufffd\ud83d\ude00"]"#
        );
        // An escaped backslash before `u` is not an escape; nor is anything outside strings.
        assert_eq!(fixed(r#"["\\ud800"]"#), r#"["\\ud800"]"#);
        assert_eq!(
            fixed(r#"{"k": "\"", "v": "\ud800"}"#),
            r#"{"k": "\"", "v": "\ufffd"}"#
        );
        let parsed: Vec<String> =
            serde_json::from_slice(&replace_lone_surrogates(br#"["x\ud800"]"#)).unwrap();
        assert_eq!(parsed, ["x\u{fffd}"]);
    }
}
