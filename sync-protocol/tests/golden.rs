//! Golden fixtures freeze the wire format: each file must read into the protocol's types and
//! write back to exactly the same JSON. A change that breaks this breaks apps in the field.

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use veldwerk_sync_protocol::{PullResponse, PushRequest, PushResponse};

fn round_trips<T: DeserializeOwned + Serialize>(file: &str) {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("the fixture exists");
    let expected: Value = serde_json::from_str(&text).expect("the fixture is JSON");
    let parsed: T = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{file}: {err}"));
    assert_eq!(
        serde_json::to_value(&parsed).unwrap(),
        expected,
        "{file} changed shape"
    );
}

#[test]
fn a_push_request_keeps_its_wire_format() {
    round_trips::<PushRequest>("push_request.json");
}

#[test]
fn a_push_response_keeps_its_wire_format() {
    round_trips::<PushResponse>("push_response.json");
}

#[test]
fn a_pull_response_keeps_its_wire_format() {
    round_trips::<PullResponse>("pull_response.json");
}

#[test]
fn unknown_fields_in_a_push_are_refused() {
    let text = r#"{"mutations": [], "extra": 1}"#;
    assert!(serde_json::from_str::<PushRequest>(text).is_err());
}
