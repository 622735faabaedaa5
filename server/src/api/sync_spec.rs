//! The sync and attachment operations in the OpenAPI document.
//!
//! Their handlers are plain poem handlers (bodies read mutation by mutation, raw bytes, event
//! streams), outside poem-openapi's operations, so poem-openapi cannot describe them. This module
//! describes them and merges them into the document poem-openapi generates: every collection's
//! record as its own schema, built from `veldwerk_sync_protocol::schema` (fields, types, formats,
//! limits, what is required on create, fixed or server-written), so the rules have one source.
//! Mutations are a union discriminated by `collection`, changes by `op`. The API's tests check
//! the document against real answers (PROTOCOL.md's examples, schemathesis in CI).

use serde_json::{Map, Value, json};
use veldwerk_sync_protocol::{
    DEFAULT_PULL_LIMIT, MAX_BATCH, MAX_PULL_LIMIT,
    schema::{COLLECTIONS, CollectionSpec, FieldSpec, FieldType, READ_ONLY_SPECS},
};

/// `interviews` -> `Interviews`, `feedback_exercises` -> `FeedbackExercises`.
fn pascal(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn fields_schema_name(collection: &str) -> String {
    format!("Sync{}Fields", pascal(collection))
}

fn mutation_schema_name(collection: &str) -> String {
    format!("Sync{}Mutation", pascal(collection))
}

fn record_schema_name(collection: &str) -> String {
    format!("Sync{}Record", pascal(collection))
}

/// One field's JSON schema.
fn field_schema(field: &FieldSpec) -> Value {
    let mut schema = match field.ty {
        FieldType::Text { max_chars } if max_chars == usize::MAX => json!({"type": "string"}),
        FieldType::Text { max_chars } => json!({"type": "string", "maxLength": max_chars}),
        FieldType::Bool => json!({"type": "boolean"}),
        FieldType::Date => json!({"type": "string", "format": "date"}),
        FieldType::Timestamp => json!({"type": "string", "format": "date-time"}),
        FieldType::Uuid => json!({"type": "string", "format": "uuid"}),
        FieldType::Json { max_bytes } => json!({
            "description": format!("A JSON array or object of at most {max_bytes} bytes."),
            "anyOf": [{"type": "array", "items": {}}, {"type": "object"}],
        }),
        FieldType::Choice(options) => json!({"type": "string", "enum": options}),
        FieldType::Integer { min, max } => {
            json!({"type": "integer", "format": "int64", "minimum": min, "maximum": max})
        }
        FieldType::Sha256 => json!({"type": "string", "pattern": "^[0-9a-f]{64}$"}),
        FieldType::LocalTime => json!({
            "type": "string",
            "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$",
            "description": "A local time of day in the cohort's time zone, HH:MM:SS.",
        }),
    };
    let object = schema.as_object_mut().expect("an object");
    if field.nullable {
        // OpenAPI 3.0 allows `nullable` only beside a `type`: on each alternative of a union.
        match object.get_mut("anyOf").and_then(Value::as_array_mut) {
            Some(alternatives) => {
                for alternative in alternatives {
                    alternative["nullable"] = Value::Bool(true);
                }
            }
            None => {
                object.insert("nullable".into(), Value::Bool(true));
            }
        }
    }
    if field.server_written {
        object.insert("readOnly".into(), Value::Bool(true));
    }
    let mut notes = Vec::new();
    if field.immutable {
        notes.push("Fixed once the record is created.");
    }
    if field.counterpart_writable {
        notes.push("The counterpart of a shared exercise may write it too.");
    }
    if field.server_written {
        notes.push("Written by the server only.");
    }
    if !notes.is_empty() {
        let before = object
            .remove("description")
            .and_then(|d| d.as_str().map(str::to_owned))
            .map(|d| format!("{d} "))
            .unwrap_or_default();
        object.insert(
            "description".into(),
            Value::String(format!("{before}{}", notes.join(" "))),
        );
    }
    schema
}

/// A collection's fields: what a mutation may set (every field optional) and what a pulled
/// record holds (fields that are null are left out).
fn fields_schema(spec: &CollectionSpec, writable: bool) -> Value {
    let properties: Map<String, Value> = spec
        .fields
        .iter()
        .map(|field| (field.name.to_owned(), field_schema(field)))
        .collect();
    let description = if writable {
        let required: Vec<&str> = spec
            .fields
            .iter()
            .filter(|field| !field.nullable && !field.server_written)
            .map(|field| field.name)
            .collect();
        format!(
            "The fields of a record of `{}`. A mutation carries just the fields it sets; a \
             mutation creating a record must set {}. A pulled record leaves out fields that are \
             null.",
            spec.name,
            if required.is_empty() {
                "none in particular".to_owned()
            } else {
                required
                    .iter()
                    .map(|name| format!("`{name}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )
    } else {
        format!(
            "The fields of a record of `{}`, which only the server writes.",
            spec.name
        )
    };
    let mut schema = json!({
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": false,
    });
    if !writable {
        schema["required"] = json!(
            spec.fields
                .iter()
                .map(|field| field.name)
                .collect::<Vec<_>>()
        );
    }
    schema
}

fn mutation_schema(spec: &CollectionSpec) -> Value {
    json!({
        "type": "object",
        "description": format!("One change to one record of `{}`, made on one device at one moment.", spec.name),
        "required": ["id", "collection", "record_id", "clock"],
        "additionalProperties": false,
        "properties": {
            "id": {"type": "string", "format": "uuid", "description": "Unique per mutation (UUID v7 recommended). The server applies a mutation id once; sending it again answers the first result."},
            "collection": {"type": "string", "enum": [spec.name]},
            "record_id": {"type": "string", "format": "uuid", "description": "The record's id: client-generated, or derived (see PROTOCOL.md, \"Collections\")."},
            "cohort_id": {"type": "string", "format": "uuid", "description": "The cohort the record belongs to; required when creating a record, fixed afterwards."},
            "fields": schema_ref(&fields_schema_name(spec.name)),
            "delete": {"type": "boolean", "description": "`true` deletes the record (a tombstone); absent means `false`."},
            "clock": schema_ref("SyncClock"),
            "base": {
                "type": "object",
                "description": "Per field, the clock of the value the user saw when editing it.",
                "additionalProperties": schema_ref("SyncClock"),
            },
        },
    })
}

fn record_schema(spec: &CollectionSpec, writable: bool) -> Value {
    let mut properties = json!({
        "op": {"type": "string", "enum": ["put"]},
        "collection": {"type": "string", "enum": [spec.name]},
        "id": {"type": "string", "format": "uuid"},
        "version": {"type": "integer", "format": "int64", "description": "The server version of this state; increases with every change to the record."},
        "cohort_id": {"type": "string", "format": "uuid"},
        "deleted": {"type": "boolean", "description": "A tombstone: the record was deleted. Keep it deleted locally."},
        "fields": schema_ref(&fields_schema_name(spec.name)),
        "clocks": {
            "type": "object",
            "description": "Per field, the clock of its current value (send these back as `base` when editing).",
            "additionalProperties": schema_ref("SyncClock"),
        },
    });
    if writable {
        properties["owner_id"] = json!({"type": "string", "format": "uuid"});
        properties["conflicts"] = json!({
            "type": "array",
            "description": "Values that lost a concurrent edit, newest last; sent to the owner.",
            "items": schema_ref("SyncConflict"),
        });
    }
    json!({
        "type": "object",
        "description": format!("A record of `{}` as the server holds it, in a pull.", spec.name),
        "required": ["op", "collection", "id", "version", "fields"],
        "additionalProperties": false,
        "properties": properties,
    })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema_ref("ErrorBody")}},
    })
}

/// The error answers of an operation: (status, the codes it can give).
fn errors(list: &[(&str, &str)]) -> Map<String, Value> {
    list.iter()
        .map(|(status, description)| ((*status).to_owned(), error_response(description)))
        .collect()
}

const UNAUTHENTICATED: (&str, &str) = (
    "401",
    "`unauthenticated`, `invalid_token` (refresh it), `session_revoked`, `device_wiped` (delete everything local).",
);
const PROTOCOL: (&str, &str) = (
    "426",
    "`unsupported_protocol` (send `veldwerk-protocol: 1`) or `app_update_required`.",
);
const RATE_LIMITED: (&str, &str) = (
    "429",
    "`rate_limited`: too many requests; `Retry-After` says how many seconds to wait.",
);

const OWNER_ONLY: (&str, &str) = (
    "403",
    "`forbidden`: only the attachment's owner uploads it.",
);
const NOT_FOUND: (&str, &str) = ("404", "`not_found`.");
const INTERNAL: (&str, &str) = (
    "500",
    "`internal`: an unexpected failure on the server; it has been logged. Retry later.",
);

fn protocol_headers() -> Value {
    json!([
        {"name": "veldwerk-protocol", "in": "header", "required": true,
         "description": "The sync protocol version the app speaks.",
         "schema": {"type": "string", "enum": ["1"]}},
        {"name": "veldwerk-app-version", "in": "header", "required": false,
         "description": "The app's version, e.g. `1.4.2`; the server may ask old apps to update.",
         "schema": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)*$"}},
    ])
}

fn id_parameter() -> Value {
    json!({"name": "id", "in": "path", "required": true,
           "description": "The attachment's id (its record's id).",
           "schema": {"type": "string", "format": "uuid"}})
}

fn bearer() -> Value {
    json!([{"BearerAuth": []}])
}

/// The sync and attachment operations, by path (relative to the `/v1` server).
fn paths() -> Map<String, Value> {
    let mut paths = Map::new();
    let mut push_errors = errors(&[
        ("400", "`invalid_body`: the body is not a push."),
        UNAUTHENTICATED,
        INTERNAL,
        ("413", "`body_too_large`."),
        ("415", "`unsupported_media_type`: send `application/json`."),
        (
            "422",
            "`batch_too_large`: at most 500 mutations in one push.",
        ),
        PROTOCOL,
        RATE_LIMITED,
    ]);
    push_errors.insert("200".into(), json!({
        "description": "One result per mutation, in order: `applied` (possibly with `conflicts`) or `rejected` with a stable `code`.",
        "content": {"application/json": {
            "schema": schema_ref("SyncPushResponse"),
            "example": {"results": [{"id": "0190a0e1-7c1e-7000-8000-000000000101", "status": "applied"}],
                        "server_clock": "1767225600000-000001-server"},
        }},
    }));
    paths.insert("/sync/push".into(), json!({"post": {
        "operationId": "syncPush",
        "tags": ["Sync"],
        "summary": "Push a device's mutations",
        "description": format!("Applies a batch of at most {MAX_BATCH} mutations in one transaction, each at most once (a mutation id sent again answers its first result), merged per field by clock. Each mutation is checked alone: one that is refused is answered `rejected` and the others apply. See PROTOCOL.md, \"Push\"."),
        "security": bearer(),
        "parameters": protocol_headers(),
        "requestBody": {"required": true, "content": {"application/json": {
            "schema": schema_ref("SyncPushRequest"),
            "example": {"mutations": [{
                "id": "0190a0e1-7c1e-7000-8000-000000000101",
                "collection": "interviews",
                "record_id": "0190a0e1-7c1e-7000-8000-0000000000a1",
                "cohort_id": "0190a0e1-7c1e-7000-8000-0000000000c0",
                "fields": {"status": "draft", "name_consent": false, "interviewee_role": "wijkagent", "notes": "Gesprek bij de markt"},
                "clock": "1767225600000-000000-3f9c2d1e",
            }]},
        }}},
        "responses": push_errors,
    }}));

    let mut pull_errors = errors(&[
        (
            "400",
            "`invalid_parameter`: a query parameter that is not one of these, or of the wrong type.",
        ),
        UNAUTHENTICATED,
        INTERNAL,
        (
            "410",
            "`reset_required`: the cursor is older than the kept deletions; pull again from the beginning, keeping the outbox.",
        ),
        (
            "422",
            "`invalid_cursor`: the cursor was not issued by this server.",
        ),
        PROTOCOL,
    ]);
    pull_errors.insert("200".into(), json!({
        "description": "Changes in server version order; pull again at once with `cursor` while `has_more`.",
        "content": {"application/json": {
            "schema": schema_ref("SyncPullResponse"),
            "example": {"changes": [{"op": "evict", "collection": "feedback_exercises", "id": "0190a0e1-7c1e-7000-8000-0000000000f1"}],
                        "cursor": "c1.42", "has_more": false, "server_clock": "1767225600000-000001-server"},
        }},
    }));
    let mut pull_parameters = protocol_headers();
    pull_parameters.as_array_mut().expect("a list").extend([
        json!({"name": "cursor", "in": "query", "required": false,
               "description": "The `cursor` of the previous pull; absent for the first.",
               "schema": {"type": "string", "example": "c1.42"}}),
        json!({"name": "limit", "in": "query", "required": false,
               "description": format!("Most changes in this page (default {DEFAULT_PULL_LIMIT})."),
               "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PULL_LIMIT}}),
        json!({"name": "outbox_pending", "in": "query", "required": false,
               "description": "Sync health: mutations the device still holds in its outbox.",
               "schema": {"type": "integer", "minimum": 0, "maximum": u32::MAX}}),
        json!({"name": "outbox_oldest", "in": "query", "required": false,
               "description": "Sync health: when the oldest of them was made.",
               "schema": {"type": "string", "format": "date-time"}}),
    ]);
    paths.insert("/sync/pull".into(), json!({"get": {
        "operationId": "syncPull",
        "tags": ["Sync"],
        "summary": "Pull what changed since a cursor",
        "description": "Every change in the caller's scope after `cursor`, in server version order, each record in its whole current state (`put`) or as leaving the scope (`evict`). See PROTOCOL.md, \"Pull\".",
        "security": bearer(),
        "parameters": pull_parameters,
        "responses": pull_errors,
    }}));

    let mut event_errors = errors(&[UNAUTHENTICATED, INTERNAL, PROTOCOL]);
    event_errors.insert("200".into(), json!({
        "description": "Server-sent events: `event: poke` when something in the caller's scope changed (pull then), `event: device_wiped` before the stream ends for a wiped device.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }));
    paths.insert("/sync/events".into(), json!({"get": {
        "operationId": "syncEvents",
        "tags": ["Sync"],
        "summary": "Live pokes",
        "description": "A stream that tells a connected device when to pull. See PROTOCOL.md, \"Live\".",
        "security": bearer(),
        "parameters": protocol_headers(),
        "responses": event_errors,
    }}));

    let view = |description: &str| {
        json!({"description": description,
               "content": {"application/json": {"schema": schema_ref("SyncAttachmentView")}}})
    };
    let mut metadata = errors(&[
        ("400", "`invalid_parameter`: the id is not a UUID."),
        UNAUTHENTICATED,
        INTERNAL,
        (
            "404",
            "`not_found`: no such attachment, or not the caller's to see.",
        ),
    ]);
    metadata.insert(
        "200".into(),
        view("The attachment, with how many bytes the server has."),
    );
    paths.insert("/attachments/{id}".into(), json!({"get": {
        "operationId": "getAttachment",
        "tags": ["Attachments"],
        "summary": "An attachment's state",
        "description": "Its metadata, `state` (`pending` until the bytes arrived whole and verified, then `stored`) and `received`: where the next chunk of the upload starts.",
        "security": bearer(),
        "parameters": [id_parameter()],
        "responses": metadata,
    }}));

    let offset_header = json!({"description": "Bytes the server has.", "schema": {"type": "integer", "format": "int64", "minimum": 0}});
    let mut download = errors(&[
        ("400", "`invalid_parameter`."),
        UNAUTHENTICATED,
        INTERNAL,
        NOT_FOUND,
        (
            "409",
            "`not_uploaded`: the bytes have not all arrived and been verified yet.",
        ),
        (
            "416",
            "`range_not_satisfiable`: the `Range` starts past the end of the file.",
        ),
    ]);
    download.insert("200".into(), json!({"description": "The file.", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}));
    download.insert("206".into(), json!({"description": "The requested `Range` of the file.", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}));
    let mut head = errors(&[
        ("400", "`invalid_parameter`: the id is not a UUID."),
        UNAUTHENTICATED,
        INTERNAL,
        NOT_FOUND,
    ]);
    head.insert("200".into(), json!({"description": "Where the upload stands (tus `HEAD`).",
        "headers": {"Upload-Offset": offset_header.clone(),
                    "Upload-Length": {"description": "The file's declared size.", "schema": {"type": "integer", "format": "int64"}}}}));
    let mut patch = errors(&[
        (
            "400",
            "`invalid_parameter`, `invalid_offset` (send `Upload-Offset`), `invalid_checksum`, `checksum_algorithm_not_supported` (use `sha256`), `body_incomplete` (the body ended early; `Upload-Offset` says what the server has).",
        ),
        UNAUTHENTICATED,
        INTERNAL,
        OWNER_ONLY,
        NOT_FOUND,
        (
            "409",
            "`offset_mismatch`: `Upload-Offset` is not where the server stands (the answer's `Upload-Offset` is), or `finish_in_progress`.",
        ),
        (
            "412",
            "`tus_version_not_supported`: send `Tus-Resumable: 1.0.0`.",
        ),
        ("413", "`body_too_large`."),
        (
            "415",
            "`unsupported_media_type`: send `application/offset+octet-stream`.",
        ),
        (
            "422",
            "`size_exceeded` (more bytes than declared), `hash_mismatch` or `upload_lost` (start again from 0).",
        ),
        (
            "460",
            "`checksum_mismatch`: this chunk does not match its `Upload-Checksum` and was discarded; send it again.",
        ),
    ]);
    patch.insert("204".into(), json!({"description": "The chunk is stored; after the last byte the file is verified and `stored`.",
        "headers": {"Upload-Offset": offset_header}}));
    let mut options = Map::new();
    options.insert("204".into(), json!({"description": "What the server supports (tus `OPTIONS`).",
        "headers": {
            "Tus-Version": {"description": "`1.0.0`.", "schema": {"type": "string"}},
            "Tus-Extension": {"description": "`checksum`.", "schema": {"type": "string"}},
            "Tus-Checksum-Algorithm": {"description": "`sha256`.", "schema": {"type": "string"}},
            "Tus-Max-Size": {"description": "The largest file accepted, in bytes.", "schema": {"type": "integer", "format": "int64"}},
        }}));
    paths.insert("/attachments/{id}/content".into(), json!({
        "get": {
            "operationId": "downloadAttachment",
            "tags": ["Attachments"],
            "summary": "Download an attachment's bytes",
            "description": "The stored file; with `Range: bytes=<from>-` to resume a broken download.",
            "security": bearer(),
            "parameters": [id_parameter(),
                {"name": "Range", "in": "header", "required": false, "schema": {"type": "string", "example": "bytes=1048576-"}}],
            "responses": download,
        },
        "head": {
            "operationId": "getUploadOffset",
            "tags": ["Attachments"],
            "summary": "Where an upload stands (tus)",
            "description": "A tus 1.0 `HEAD`: `Upload-Offset` is where the next chunk starts. Answers for stored attachments too.",
            "security": bearer(),
            "parameters": [id_parameter()],
            "responses": head,
        },
        "patch": {
            "operationId": "uploadAttachmentChunk",
            "tags": ["Attachments"],
            "summary": "Upload bytes at an offset (tus)",
            "description": "A tus 1.0 core `PATCH`: the bytes that follow `Upload-Offset`. See PROTOCOL.md, \"Attachments\".",
            "security": bearer(),
            "parameters": [id_parameter(),
                {"name": "Tus-Resumable", "in": "header", "required": false, "schema": {"type": "string", "enum": ["1.0.0"]}},
                {"name": "Upload-Offset", "in": "header", "required": true, "schema": {"type": "integer", "format": "int64", "minimum": 0}},
                {"name": "Upload-Checksum", "in": "header", "required": false, "description": "`sha256 <base64 digest of this chunk>`.", "schema": {"type": "string"}}],
            "requestBody": {"required": true, "content": {
                "application/offset+octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            }},
            "responses": patch,
        },
        "options": {
            "operationId": "getTusOptions",
            "tags": ["Attachments"],
            "summary": "What uploads the server supports (tus)",
            "description": "A tus 1.0 `OPTIONS`: the version, extensions, checksum algorithm and largest size. Needs no credentials.",
            "security": [],
            "parameters": [id_parameter()],
            "responses": options,
        },
    }));
    let mut finish = errors(&[
        ("400", "`invalid_parameter`."),
        UNAUTHENTICATED,
        INTERNAL,
        OWNER_ONLY,
        NOT_FOUND,
        (
            "409",
            "`finish_in_progress`: another request is finishing it; ask for its state in a moment.",
        ),
        (
            "422",
            "`upload_incomplete` (bytes are still missing), `hash_mismatch` or `upload_lost` (upload it again from 0).",
        ),
    ]);
    finish.insert("200".into(), view("The attachment, `stored`."));
    paths.insert("/attachments/{id}/finish".into(), json!({"post": {
        "operationId": "finishAttachment",
        "tags": ["Attachments"],
        "summary": "Verify and store an upload",
        "description": "Checks the received bytes against the declared size and `sha256` and stores them (this also happens by itself when the last byte arrives).",
        "security": bearer(),
        "parameters": [id_parameter()],
        "responses": finish,
    }}));
    paths
}

/// The schemas the sync and attachment operations use.
fn schemas() -> Map<String, Value> {
    let mut schemas = Map::new();
    schemas.insert("SyncClock".into(), json!({
        "type": "string",
        "description": "A hybrid logical clock: 13 digits of milliseconds, 6 of counter, the device's node id.",
        "pattern": "^[0-9]{13}-[0-9]{6}-[A-Za-z0-9]{1,64}$",
        "example": "1767225600000-000000-3f9c2d1e",
    }));
    schemas.insert(
        "SyncConflict".into(),
        json!({
            "type": "object",
            "description": "A concurrent edit of one field: which value was kept, which lost.",
            "required": ["field", "kept_value", "kept_clock", "lost_value", "lost_clock"],
            "additionalProperties": false,
            "properties": {
                "field": {"type": "string"},
                "kept_value": {"description": "Any JSON value, null included."},
                "kept_clock": schema_ref("SyncClock"),
                "lost_value": {"description": "Any JSON value, null included."},
                "lost_clock": schema_ref("SyncClock"),
            },
        }),
    );
    let mut mutation_mapping = Map::new();
    let mut record_mapping = Map::new();
    for spec in COLLECTIONS {
        schemas.insert(fields_schema_name(spec.name), fields_schema(spec, true));
        schemas.insert(mutation_schema_name(spec.name), mutation_schema(spec));
        schemas.insert(record_schema_name(spec.name), record_schema(spec, true));
        mutation_mapping.insert(
            spec.name.to_owned(),
            json!(format!(
                "#/components/schemas/{}",
                mutation_schema_name(spec.name)
            )),
        );
    }
    for spec in READ_ONLY_SPECS {
        schemas.insert(fields_schema_name(spec.name), fields_schema(spec, false));
        schemas.insert(record_schema_name(spec.name), record_schema(spec, false));
    }
    for spec in COLLECTIONS.iter().chain(READ_ONLY_SPECS) {
        record_mapping.insert(
            spec.name.to_owned(),
            json!(format!(
                "#/components/schemas/{}",
                record_schema_name(spec.name)
            )),
        );
    }
    let one_of = |mapping: &Map<String, Value>| -> Vec<Value> {
        mapping
            .values()
            .map(|target| json!({"$ref": target}))
            .collect()
    };
    schemas.insert(
        "SyncMutation".into(),
        json!({
            "description": "A mutation of any writable collection, told apart by `collection`.",
            "oneOf": one_of(&mutation_mapping),
            "discriminator": {"propertyName": "collection", "mapping": mutation_mapping},
        }),
    );
    schemas.insert(
        "SyncPushRequest".into(),
        json!({
            "type": "object",
            "required": ["mutations"],
            "additionalProperties": false,
            "properties": {"mutations": {
                "type": "array", "maxItems": MAX_BATCH,
                "description": "In the order the device made them.",
                "items": schema_ref("SyncMutation"),
            }},
        }),
    );
    schemas.insert("SyncMutationResult".into(), json!({
        "type": "object",
        "required": ["id", "status"],
        "additionalProperties": false,
        "properties": {
            "id": {"type": "string", "format": "uuid", "description": "The mutation's id."},
            "status": {"type": "string", "enum": ["applied", "rejected"]},
            "code": {"type": "string", "description": "For a rejection: a stable code such as `forbidden`, `invalid_field`, `unknown_record`."},
            "message": {"type": "string"},
            "conflicts": {"type": "array", "items": schema_ref("SyncConflict"),
                          "description": "Fields where this mutation and another device's edit crossed."},
        },
    }));
    schemas.insert(
        "SyncPushResponse".into(),
        json!({
            "type": "object",
            "required": ["results", "server_clock"],
            "additionalProperties": false,
            "properties": {
                "results": {"type": "array", "items": schema_ref("SyncMutationResult")},
                "server_clock": schema_ref("SyncClock"),
            },
        }),
    );
    let all_collections: Vec<&str> = record_mapping.keys().map(String::as_str).collect();
    schemas.insert(
        "SyncEvict".into(),
        json!({
            "type": "object",
            "description": "The record left the caller's scope: remove the local copy.",
            "required": ["op", "collection", "id"],
            "additionalProperties": false,
            "properties": {
                "op": {"type": "string", "enum": ["evict"]},
                "collection": {"type": "string", "enum": all_collections},
                "id": {"type": "string", "format": "uuid"},
            },
        }),
    );
    schemas.insert("SyncPut".into(), json!({
        "description": "A record's whole current state, of any collection, told apart by `collection`.",
        "oneOf": one_of(&record_mapping),
        "discriminator": {"propertyName": "collection", "mapping": record_mapping},
    }));
    schemas.insert(
        "SyncChange".into(),
        json!({
            "description": "One change in a pull, told apart by `op`.",
            "oneOf": [schema_ref("SyncPut"), schema_ref("SyncEvict")],
            "discriminator": {"propertyName": "op", "mapping": {
                "put": "#/components/schemas/SyncPut",
                "evict": "#/components/schemas/SyncEvict",
            }},
        }),
    );
    schemas.insert("SyncPullResponse".into(), json!({
        "type": "object",
        "required": ["changes", "cursor", "has_more", "server_clock"],
        "additionalProperties": false,
        "properties": {
            "changes": {"type": "array", "items": schema_ref("SyncChange")},
            "cursor": {"type": "string", "description": "Pass it to the next pull. Opaque."},
            "has_more": {"type": "boolean", "description": "More changes are waiting: pull again at once."},
            "server_clock": schema_ref("SyncClock"),
        },
    }));
    let attachment = veldwerk_sync_protocol::schema::ATTACHMENTS;
    let mut attachment_properties: Map<String, Value> = attachment
        .fields
        .iter()
        .map(|field| {
            let mut schema = field_schema(field);
            schema.as_object_mut().map(|o| o.remove("readOnly"));
            (field.name.to_owned(), schema)
        })
        .collect();
    for (name, schema) in [
        ("id", json!({"type": "string", "format": "uuid"})),
        ("owner_id", json!({"type": "string", "format": "uuid"})),
        ("cohort_id", json!({"type": "string", "format": "uuid"})),
        (
            "received",
            json!({"type": "integer", "format": "int64", "minimum": 0,
                   "description": "Bytes the server has: where the next chunk starts."}),
        ),
    ] {
        attachment_properties.insert(name.to_owned(), schema);
    }
    schemas.insert(
        "SyncAttachmentView".into(),
        json!({
            "type": "object",
            "description": "An attachment as its owner (or a trainer of its cohort) sees it.",
            "example": {
                "id": "0190a0e1-7c1e-7000-8000-0000000000b1",
                "owner_id": "0190a0e1-7c1e-7000-8000-0000000000d1",
                "cohort_id": "0190a0e1-7c1e-7000-8000-0000000000c0",
                "parent_collection": "interviews",
                "parent_id": "0190a0e1-7c1e-7000-8000-0000000000a1",
                "file_name": "whiteboard.jpg",
                "content_type": "image/jpeg",
                "size": 734_003,
                "sha256": "9f2c4b1e8a7d6c5b4a3928171605f4e3d2c1b0a9f8e7d6c5b4a3928171605f4e",
                "state": "pending",
                "received": 262_144,
            },
            "required": ["id", "owner_id", "cohort_id", "parent_collection", "parent_id",
                         "file_name", "content_type", "size", "sha256", "state", "received"],
            "properties": attachment_properties,
        }),
    );
    schemas
}

/// Adds the sync and attachment operations, their schemas and tags to the document.
pub fn add_to(document: &mut Value) {
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        paths.extend(self::paths());
    }
    if let Some(components) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        components.extend(schemas());
    }
    if let Some(tags) = document.get_mut("tags").and_then(Value::as_array_mut) {
        tags.push(json!({"name": "Sync", "description": "The offline sync protocol: push, pull, live pokes (PROTOCOL.md)."}));
        tags.push(json!({"name": "Attachments", "description": "Files of records: tus 1.0 uploads and downloads (PROTOCOL.md, \"Attachments\")."}));
    }
}
