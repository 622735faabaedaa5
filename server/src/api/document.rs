//! The OpenAPI document as served: what poem-openapi generates from the operations, completed
//! with what it cannot know: the sync and attachment operations (`sync_spec`), an example of
//! every request and answer (`examples.json`, captured from a real server and checked against
//! the schemas by the API tests), and for each operation only the error statuses it can give
//! (poem-openapi lists the one error type's statuses on all of them).

use serde_json::Value;

use super::sync_spec;

/// Example values by schema name: requests and answers of a demo server, lists cut to two items
/// and tokens replaced. `tests/tests/api/openapi.rs` checks that each fits its schema and that
/// every operation's JSON request and answer has one.
const EXAMPLES: &str = include_str!("examples.json");

/// The complete document, from the one poem-openapi generated.
pub fn complete(generated: &str) -> String {
    let Ok(mut document) = serde_json::from_str::<Value>(generated) else {
        return generated.to_owned();
    };
    narrow_errors(&mut document);
    add_enums(&mut document);
    sync_spec::add_to(&mut document);
    add_examples(&mut document);
    serde_json::to_string_pretty(&document).unwrap_or_else(|_| generated.to_owned())
}

/// Gives each schema without an example its example from [`EXAMPLES`].
fn add_examples(document: &mut Value) {
    let Ok(Value::Object(examples)) = serde_json::from_str::<Value>(EXAMPLES) else {
        return;
    };
    let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (name, example) in examples {
        if let Some(schema) = schemas.get_mut(&name).and_then(Value::as_object_mut) {
            schema.entry("example").or_insert(example);
        }
    }
}

/// Operations that answer 409, with the codes they give.
const CONFLICTING: &[(&str, &str)] = &[
    (
        "enrol",
        "`invite_already_used`: the invite code was redeemed already.",
    ),
    (
        "cancelAnnouncement",
        "`already_published`: the announcement went out; it can no longer be cancelled.",
    ),
    (
        "revokeInvite",
        "`invite_already_used`: the invite was redeemed; remove the member instead.",
    ),
    (
        "nudgeParticipant",
        "`already_nudged`: this participant was nudged today already.",
    ),
    (
        "createUser",
        "`email_taken`: an account with this email exists.",
    ),
];
/// Operations that answer 410, with the codes they give.
const GONE: &[(&str, &str)] = &[(
    "enrol",
    "`invite_revoked` or `invite_expired`: ask the trainer for a new code.",
)];
/// Operations limited per address and per account (password, invite and link code guessing).
const RATE_LIMITED: &[&str] = &["login", "enrol", "linkDevice", "createUser"];
/// Operations on the caller's own session and devices, which no role is forbidden.
const NEVER_FORBIDDEN: &[&str] = &[
    "login",
    "enrol",
    "linkDevice",
    "refresh",
    "logout",
    "getMe",
    "listDevices",
    "revokeDevice",
    "createLinkCode",
    "exportMe",
    "registerPushDevice",
    "unregisterPushDevice",
];
/// Operations without a path parameter that still answer 404: an unknown invite code, a caller
/// whose account is gone.
const NOT_FOUND_WITHOUT_ID: &[&str] = &["enrol", "getMe"];
/// Operations whose body names nothing that could be missing (a body naming an organisation,
/// a programme or a user is answered 404 when it does not exist).
const BODY_WITHOUT_REFERENCES: &[&str] = &["login", "refresh", "linkDevice", "registerPushDevice"];

/// Removes the error statuses an operation cannot give from the list poem-openapi puts on all
/// of them (one error type): 405 (a declared operation is never answered with it), 413 and
/// 415 without a request body, 404 without an id in the path or the body, 422 without any input, 403 on
/// the caller's own session and devices, and 409, 410 and 429 outside the operations above. schemathesis in CI fails on any status an answer
/// has that its operation does not list.
fn narrow_errors(document: &mut Value) {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, operations) in paths.iter_mut() {
        let path_has_id = path.contains('{');
        let Some(operations) = operations.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let has_body = operation.get("requestBody").is_some();
            let has_input = has_body
                || path_has_id
                || operation["parameters"]
                    .as_array()
                    .is_some_and(|parameters| !parameters.is_empty());
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let named = |list: &[&str]| list.contains(&id.as_str());
            let coded = |list: &[(&str, &'static str)]| {
                list.iter()
                    .find(|(operation, _)| *operation == id)
                    .map(|(_, codes)| *codes)
            };
            let conflict = coded(CONFLICTING);
            let gone = coded(GONE);
            responses.retain(|status, _| match status.as_str() {
                "405" => false,
                "403" => !named(NEVER_FORBIDDEN),
                "413" | "415" => has_body,
                "404" => {
                    path_has_id
                        || (has_body && !named(BODY_WITHOUT_REFERENCES))
                        || named(NOT_FOUND_WITHOUT_ID)
                }
                "422" => has_input,
                "409" => conflict.is_some(),
                "410" => gone.is_some(),
                "429" => named(RATE_LIMITED),
                _ => true,
            });
            for (status, codes) in [("409", conflict), ("410", gone)] {
                if let (Some(codes), Some(response)) = (codes, responses.get_mut(status)) {
                    response["description"] = Value::String(codes.to_owned());
                }
            }
        }
    }
}

/// Text fields of answers whose values are a closed set the server writes as strings (database
/// columns), given as enums so that generated clients get them as types: (schema, property,
/// values). An answer with any other value fails the schema checks in the tests and CI.
const ENUMS: &[(&str, &str, &[&str])] = &[
    (
        "DeliveryView",
        "status",
        &[
            "pending", "sending", "sent", "logged", "failed", "pruned", "unknown",
        ],
    ),
    (
        "PlannedReminderView",
        "status",
        &["pending", "dispatched", "skipped", "cancelled"],
    ),
    (
        "NudgeView",
        "status",
        &["pending", "dispatched", "skipped", "cancelled"],
    ),
    ("HarvestProgressView", "status", &["draft", "ready"]),
    ("PushDeviceRequest", "platform", &["android", "ios", "web"]),
    ("PushDeviceView", "platform", &["android", "ios", "web"]),
];

fn add_enums(document: &mut Value) {
    for (schema, property, values) in ENUMS {
        let pointer = format!("/components/schemas/{schema}/properties/{property}");
        if let Some(property) = document
            .pointer_mut(&pointer)
            .and_then(Value::as_object_mut)
        {
            property.insert("enum".into(), serde_json::json!(values));
        }
    }
}
