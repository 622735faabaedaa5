//! The protocol in the shape of WatermelonDB's sync contract, for apps built on WatermelonDB.
//!
//! WatermelonDB's `synchronize()` calls two handlers: `pullChanges({lastPulledAt, schemaVersion,
//! migration})`, answered with `{changes, timestamp}`, and `pushChanges({changes, lastPulledAt})`.
//! `changes` holds, per table, the `created` and `updated` *raw records* (a record's columns with
//! plain string, number and boolean values) and the ids of `deleted` ones. This module translates
//! between those shapes and this protocol's records and mutations, so the server keeps one store,
//! one scope and one merge (see `PROTOCOL.md`, "WatermelonDB").
//!
//! - **The timestamp is the server version** (the number inside a cursor): the pull answers every
//!   change after `lastPulledAt` and the version it read up to.
//! - **A raw record** is a record's `id`, its fields, `owner_id` and `cohort_id`. Fields that hold
//!   JSON documents (an interview's `questions`, say) travel as JSON text, because a WatermelonDB
//!   column holds only strings, numbers and booleans. Tombstones and records that left the
//!   caller's scope are `deleted` ids.
//! - **A pushed raw record** becomes one mutation writing the fields whose value differs from the
//!   server's current one (all of a new record's non-null fields), over the server's clocks. Keys
//!   that are not fields of the collection (`_status`, `_changed`, anything else) are ignored, as
//!   WatermelonDB's contract asks; an empty string in a field that is not text means `null`.
//! - **Conflicts** follow WatermelonDB's documented rule: the server refuses the whole push when
//!   a pushed record changed on the server after `lastPulledAt`; `synchronize()` then pulls,
//!   resolves per column (local changes win) and pushes again. The server checks that inside the
//!   push's transaction.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{
    Change, Hlc, Mutation, Record,
    schema::{CollectionSpec, FieldType},
};

/// Namespace of the mutation ids derived from pushed raw records.
const RECORD_NAMESPACE: Uuid = Uuid::from_u128(0x8d2e_6a41_07c3_4f95_b1de_39a0_5c7f_e214);

/// One table's changes: raw records created and updated, ids deleted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableChanges {
    #[serde(default)]
    pub created: Vec<Map<String, Value>>,
    #[serde(default)]
    pub updated: Vec<Map<String, Value>>,
    #[serde(default)]
    pub deleted: Vec<String>,
}

/// WatermelonDB's `changes` object: per table name.
pub type Changes = BTreeMap<String, TableChanges>;

/// Most changes one pull answers by default, and at most: a bound on the answer's size (about
/// 30 MB of 2.8 KB interviews). WatermelonDB has no pages; an answer cut here is a consistent
/// prefix (every change up to `timestamp`), and `has_more` tells the app to sync again.
pub const MAX_PULL_CHANGES: usize = 10_000;

/// The answer to `pullChanges`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullAnswer {
    pub changes: Changes,
    /// The version read up to; the next pull's `lastPulledAt`.
    pub timestamp: i64,
    /// More changes wait after `timestamp`: call `synchronize()` again. WatermelonDB itself
    /// ignores this key.
    pub has_more: bool,
}

/// What a push could not apply, per table: WatermelonDB's `experimentalRejectedIds` keeps these
/// records marked as changed on the device, so they stay visible and are sent again.
pub type RejectedIds = BTreeMap<String, Vec<String>>;

/// Collects a pull's changes (in version order) into WatermelonDB's `changes`: each record once,
/// in its latest state. On a first sync (`first`) records arrive as `created` and tombstones are
/// left out (the device never had them); later, as `updated`: the server does not know whether a
/// device has a record, so apps set `sendCreatedAsUpdated: true`, as WatermelonDB advises.
pub fn changes<'a>(
    tables: impl IntoIterator<Item = &'a str>,
    pulled: impl IntoIterator<Item = Change>,
    first: bool,
) -> Changes {
    let mut latest: HashMap<(String, Uuid), Change> = HashMap::new();
    let mut order: Vec<(String, Uuid)> = Vec::new();
    for change in pulled {
        let key = match &change {
            Change::Put(record) => (record.collection.clone(), record.id),
            Change::Evict { collection, id } => (collection.clone(), *id),
        };
        if latest.insert(key.clone(), change).is_none() {
            order.push(key);
        }
    }
    let mut changes: Changes = tables
        .into_iter()
        .map(|table| (table.to_owned(), TableChanges::default()))
        .collect();
    for key in order {
        let change = latest.remove(&key).expect("collected above");
        let table = changes.entry(key.0).or_default();
        match change {
            Change::Put(record) if !record.deleted => {
                let raw = raw_record(&record);
                if first {
                    table.created.push(raw);
                } else {
                    table.updated.push(raw);
                }
            }
            _ if first => {}
            _ => table.deleted.push(key.1.to_string()),
        }
    }
    changes
}

/// A record as WatermelonDB's raw record: `id`, fields (JSON documents as JSON text),
/// `owner_id`, `cohort_id`.
pub fn raw_record(record: &Record) -> Map<String, Value> {
    let mut raw = Map::new();
    raw.insert("id".into(), Value::String(record.id.to_string()));
    for (field, value) in &record.fields {
        let value = match value {
            Value::Array(_) | Value::Object(_) => Value::String(value.to_string()),
            other => other.clone(),
        };
        raw.insert(field.clone(), value);
    }
    if let Some(owner) = record.owner_id {
        raw.insert("owner_id".into(), Value::String(owner.to_string()));
    }
    if let Some(cohort) = record.cohort_id {
        raw.insert("cohort_id".into(), Value::String(cohort.to_string()));
    }
    raw
}

/// Why one pushed record cannot be applied; it goes back in `experimentalRejectedIds`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    pub table: String,
    pub id: String,
    pub code: String,
    pub message: String,
}

/// A pushed record read: its id and, when there is something to write, the mutation.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRecord {
    pub id: Uuid,
    pub mutation: Option<Mutation>,
}

/// The record ids a table's push names, with those that are not UUIDs rejected.
pub fn pushed_ids(table: &str, changes: &TableChanges) -> (Vec<Uuid>, Vec<Rejection>) {
    let mut ids = Vec::new();
    let mut rejections = Vec::new();
    let raw_ids = changes
        .created
        .iter()
        .chain(&changes.updated)
        .map(|raw| raw.get("id").and_then(Value::as_str).unwrap_or_default())
        .chain(changes.deleted.iter().map(String::as_str));
    for id in raw_ids {
        match id.parse::<Uuid>() {
            Ok(id) => ids.push(id),
            Err(_) => rejections.push(Rejection {
                table: table.to_owned(),
                id: id.to_owned(),
                code: "invalid_id".to_owned(),
                message:
                    "record ids are UUIDs: give WatermelonDB a UUID generator (`setGenerator`)"
                        .to_owned(),
            }),
        }
    }
    (ids, rejections)
}

/// The mutations one table's pushed changes stand for, given the server's current state of each
/// record the caller can see (`current`). Records whose id is not a UUID are left out (see
/// [`pushed_ids`]). `tick` gives each mutation's clock: it receives the latest clock of the
/// record's current state, so the write orders after what the device had pulled.
pub fn mutations(
    spec: &CollectionSpec,
    changes: &TableChanges,
    last_pulled_at: i64,
    current: &HashMap<Uuid, Record>,
    mut tick: impl FnMut(Option<&Hlc>) -> Hlc,
) -> Vec<Mutation> {
    let mut mutations = Vec::new();
    for raw in changes.created.iter().chain(&changes.updated) {
        let Some(id) = raw
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| id.parse().ok())
        else {
            continue;
        };
        let now = current.get(&id).filter(|record| !record.deleted);
        let mut fields = BTreeMap::new();
        for field in spec.fields.iter().filter(|field| !field.server_written) {
            let Some(value) = raw.get(field.name) else {
                continue;
            };
            let value = column_value(field.ty, field.nullable, value);
            let before = now
                .and_then(|record| record.fields.get(field.name))
                .unwrap_or(&Value::Null);
            if &value != before {
                fields.insert(field.name.to_owned(), value);
            }
        }
        if fields.is_empty() {
            continue;
        }
        let cohort_id = match now {
            Some(_) => None,
            None => raw
                .get("cohort_id")
                .and_then(Value::as_str)
                .and_then(|id| id.parse().ok()),
        };
        let base = now
            .map(|record| {
                fields
                    .keys()
                    .filter_map(|field| Some((field.clone(), record.clocks.get(field)?.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let seen = now.and_then(|record| record.clocks.values().max());
        let clock = tick(seen);
        let mutation_id = record_mutation_id(spec.name, id, last_pulled_at, Some(raw));
        mutations.push(Mutation {
            id: mutation_id,
            collection: spec.name.to_owned(),
            record_id: id,
            cohort_id,
            fields,
            delete: false,
            clock,
            base,
        });
    }
    for id in &changes.deleted {
        let Ok(id) = id.parse::<Uuid>() else {
            continue;
        };
        // Deleting what the server does not have (or already deleted) is nothing to do.
        let Some(record) = current.get(&id).filter(|record| !record.deleted) else {
            continue;
        };
        let clock = tick(record.clocks.values().max());
        mutations.push(Mutation {
            id: record_mutation_id(spec.name, id, last_pulled_at, None),
            collection: spec.name.to_owned(),
            record_id: id,
            cohort_id: None,
            fields: BTreeMap::new(),
            delete: true,
            clock,
            base: BTreeMap::new(),
        });
    }
    mutations
}

/// A column's value as the field's value: JSON documents arrive as JSON text, and an empty
/// string in a nullable field that is not text is WatermelonDB's default for "no value".
/// Anything else is passed on as it is, for the server's validation to judge.
fn column_value(ty: FieldType, nullable: bool, value: &Value) -> Value {
    match (ty, value) {
        (FieldType::Text { .. }, _) => value.clone(),
        (_, Value::String(text)) if text.is_empty() && nullable => Value::Null,
        (FieldType::Json { .. }, Value::String(text)) => {
            serde_json::from_str(text).unwrap_or_else(|_| value.clone())
        }
        _ => value.clone(),
    }
}

/// The id of the mutation a pushed record (`None`: a deletion) stands for, derived from the
/// record as the device sent it, not from what it changes on the server: the same push sent
/// again (its answer was lost) is the same mutation even after another device wrote the record
/// in between, so it is answered from the first time, neither applied again nor refused as a
/// conflict (which would make WatermelonDB pull and push its stale value over the newer one).
fn record_mutation_id(
    collection: &str,
    id: Uuid,
    last_pulled_at: i64,
    record: Option<&Map<String, Value>>,
) -> Uuid {
    // serde_json's maps are ordered, so this form is canonical.
    let record = record.map_or_else(
        || "deleted".to_owned(),
        |raw| serde_json::to_string(raw).unwrap_or_default(),
    );
    let text = format!("{collection}\n{id}\n{last_pulled_at}\n{record}");
    Uuid::new_v5(&RECORD_NAMESPACE, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::{HARVESTS, INTERVIEWS};

    const ID: &str = "0190a0e1-0000-7000-8000-000000000001";
    const OTHER: &str = "0190a0e1-0000-7000-8000-000000000002";
    const COHORT: &str = "0190a0e1-0000-7000-8000-0000000000c0";

    fn clock(wall: u64) -> Hlc {
        Hlc::new(wall, 0, "d")
    }

    fn record(id: &str, fields: Value, deleted: bool) -> Record {
        let fields: BTreeMap<String, Value> = serde_json::from_value(fields).unwrap();
        Record {
            collection: "interviews".into(),
            id: id.parse().unwrap(),
            version: 7,
            owner_id: Some(OTHER.parse().unwrap()),
            cohort_id: Some(COHORT.parse().unwrap()),
            deleted,
            clocks: fields
                .keys()
                .enumerate()
                .map(|(n, field)| (field.clone(), clock(n as u64 + 1)))
                .collect(),
            fields,
            conflicts: Vec::new(),
        }
    }

    fn table(value: Value) -> TableChanges {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_pull_lists_each_record_once_in_its_latest_state() {
        let first = record(ID, json!({"notes": "a", "questions": [{"q": "?"}]}), false);
        let later = record(ID, json!({"notes": "b"}), false);
        let gone = record(OTHER, json!({}), true);
        let pulled = || {
            vec![
                Change::Put(first.clone()),
                Change::Put(gone.clone()),
                Change::Put(later.clone()),
                Change::Evict {
                    collection: "harvests".into(),
                    id: ID.parse().unwrap(),
                },
            ]
        };
        let since = changes(["interviews", "harvests", "profiles"], pulled(), false);
        assert_eq!(since["interviews"].updated.len(), 1);
        assert_eq!(since["interviews"].updated[0]["notes"], json!("b"));
        assert_eq!(since["interviews"].deleted, vec![OTHER.to_owned()]);
        assert_eq!(since["harvests"].deleted, vec![ID.to_owned()]);
        assert_eq!(since["profiles"], TableChanges::default());
        assert!(since["interviews"].created.is_empty());

        let first_sync = changes(["interviews"], pulled(), true);
        assert_eq!(first_sync["interviews"].created.len(), 1);
        assert!(first_sync["interviews"].deleted.is_empty());
        assert!(first_sync["harvests"].deleted.is_empty());
    }

    #[test]
    fn raw_records_carry_documents_as_json_text() {
        let raw = raw_record(&record(
            ID,
            json!({"questions": [{"q": "?"}], "name_consent": true}),
            false,
        ));
        assert_eq!(raw["questions"], json!("[{\"q\":\"?\"}]"));
        assert_eq!(raw["name_consent"], json!(true));
        assert_eq!(raw["owner_id"], json!(OTHER));
        assert_eq!(raw["cohort_id"], json!(COHORT));
        assert!(!raw.contains_key("version"));
    }

    #[test]
    fn a_new_record_writes_its_fields_and_names_its_cohort() {
        let changes = table(json!({"created": [{
            "id": ID, "cohort_id": COHORT, "status": "draft", "name_consent": false,
            "notes": "", "interviewed_on": "", "questions": "[1,2]", "place": null,
            "_status": "created", "_changed": "", "version": 99, "unknown": "x"}]}));
        let mutations = mutations(&INTERVIEWS, &changes, 0, &HashMap::new(), |seen| {
            assert!(seen.is_none());
            clock(9)
        });
        let [mutation] = mutations.as_slice() else {
            panic!("one mutation: {mutations:?}")
        };
        assert_eq!(mutation.cohort_id.unwrap().to_string(), COHORT);
        assert_eq!(
            mutation.fields,
            BTreeMap::from([
                ("name_consent".to_owned(), json!(false)),
                ("notes".to_owned(), json!("")),
                ("questions".to_owned(), json!([1, 2])),
                ("status".to_owned(), json!("draft")),
            ]),
            "an empty date is no date; text stays text; unknown keys are ignored"
        );
        assert!(mutation.base.is_empty() && !mutation.delete);
    }

    #[test]
    fn an_update_writes_what_differs_from_the_server_over_its_clocks() {
        let now = record(
            ID,
            json!({"notes": "oud", "status": "draft", "place": "Hal"}),
            false,
        );
        let current = HashMap::from([(now.id, now.clone())]);
        let changes = table(json!({"updated": [{
            "id": ID, "cohort_id": COHORT, "status": "draft", "notes": "nieuw", "place": null,
            "_status": "updated", "_changed": "notes,place"}]}));
        let mut seen = None;
        let mutations = mutations(&INTERVIEWS, &changes, 7, &current, |latest| {
            seen = latest.cloned();
            clock(20)
        });
        assert_eq!(seen, now.clocks.values().max().cloned());
        assert_eq!(mutations.len(), 1);
        assert_eq!(
            mutations[0].fields,
            BTreeMap::from([
                ("notes".to_owned(), json!("nieuw")),
                ("place".to_owned(), Value::Null),
            ])
        );
        assert_eq!(mutations[0].base["notes"], now.clocks["notes"]);
        assert_eq!(
            mutations[0].cohort_id, None,
            "only a new record names its cohort"
        );
        // Nothing differs: nothing to send.
        let same = table(json!({"updated": [{"id": ID, "notes": "oud", "status": "draft"}]}));
        assert!(super::mutations(&INTERVIEWS, &same, 7, &current, |_| clock(1)).is_empty());
    }

    #[test]
    fn deletions_of_what_the_server_holds_only() {
        let now = record(ID, json!({"notes": "x"}), false);
        let current = HashMap::from([(now.id, now)]);
        let changes = table(json!({"deleted": [ID, OTHER, "not-a-uuid"]}));
        let mutations = mutations(&HARVESTS, &changes, 3, &current, |_| clock(5));
        assert_eq!(mutations.len(), 1);
        assert!(mutations[0].delete);
        assert_eq!(mutations[0].record_id.to_string(), ID);
    }

    #[test]
    fn the_same_push_is_the_same_mutation_and_another_is_not() {
        let changes =
            table(json!({"created": [{"id": ID, "cohort_id": COHORT, "status": "draft"}]}));
        let id = |since: i64, changes: &TableChanges| {
            mutations(&INTERVIEWS, changes, since, &HashMap::new(), |_| clock(1))[0].id
        };
        assert_eq!(id(4, &changes), id(4, &changes.clone()));
        assert_ne!(id(4, &changes), id(5, &changes));
        let other = table(json!({"created": [{"id": ID, "cohort_id": COHORT, "status": "done"}]}));
        assert_ne!(id(4, &changes), id(4, &other));
    }

    #[test]
    fn ids_that_are_not_uuids_are_rejected_by_name() {
        let changes = table(json!({"created": [{"id": "abcdefgh12345678"}], "deleted": [ID]}));
        let (ids, rejections) = pushed_ids("interviews", &changes);
        assert_eq!(ids, vec![ID.parse::<Uuid>().unwrap()]);
        assert_eq!(rejections.len(), 1);
        assert_eq!(rejections[0].id, "abcdefgh12345678");
        assert_eq!(rejections[0].code, "invalid_id");
    }
}
