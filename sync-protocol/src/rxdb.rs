//! The protocol in the shape of RxDB's replication contract, for apps built on RxDB.
//!
//! RxDB (`replicateRxCollection`) replicates one collection at a time with three handlers: a
//! *pull* by checkpoint answering `{documents, checkpoint}`, a *push* of rows
//! `{newDocumentState, assumedMasterState}` answering the master states in conflict, and a live
//! stream. This module translates between those shapes and this protocol's records and mutations,
//! so the server keeps one store, one scope and one merge (see `PROTOCOL.md`, "RxDB").
//!
//! A **document** is a record flattened: its `id`, its fields at the top level, and what the
//! server writes: `owner_id`, `cohort_id`, `version`, `clocks` (each field's clock) and, for the
//! owner, `conflicts`; `_deleted` marks a tombstone or a record that left the caller's scope.
//!
//! A **push row** becomes one mutation that writes the fields in which `newDocumentState`
//! differs from `assumedMasterState` (every non-null field when there is no master state yet),
//! with the assumed state's clocks as its `base`: a field someone else changed since the device
//! last saw it is then a conflict exactly as in a native push. The mutation's id is derived from
//! the row, so a row sent again (its answer was lost) is answered from the first time and
//! applied once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{Change, Hlc, Mutation, schema::COLLECTIONS};

/// The document key that marks a deleted document (RxDB's own).
pub const DELETED_KEY: &str = "_deleted";

/// Keys the server writes into a document; a push never writes them as fields.
pub const SERVER_KEYS: [&str; 6] = [
    "id",
    "owner_id",
    "cohort_id",
    "version",
    "clocks",
    "conflicts",
];

/// Keys RxDB itself may keep on a document; they are never fields.
const RXDB_KEYS: [&str; 4] = [DELETED_KEY, "_meta", "_rev", "_attachments"];

/// Namespace of the mutation ids derived from push rows.
const ROW_NAMESPACE: Uuid = Uuid::from_u128(0x3b6f_52d1_9c0e_4a7b_8e21_6d5f_0a9c_47e3);

/// Where a collection's replication has got to: the protocol's cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub cursor: String,
}

/// The answer to a pull: documents in version order, and the checkpoint after them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullAnswer {
    pub documents: Vec<Value>,
    pub checkpoint: Checkpoint,
}

/// One row of a push, as RxDB sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushRow {
    pub new_document_state: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumed_master_state: Option<Map<String, Value>>,
}

/// Why a push row cannot be read at all.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError(pub String);

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RowError {}

/// Whether a collection can be replicated (the writable ones and the server's read-only ones).
pub fn is_replicated(collection: &str) -> bool {
    COLLECTIONS.iter().any(|spec| spec.name == collection)
        || ["cohorts", "cohort_days", "assignments", "announcements"].contains(&collection)
}

/// A pulled change as the document RxDB stores: a record flattened, or `_deleted` for a
/// tombstone and for a record that left the caller's scope (`evict`).
pub fn document(change: &Change) -> (Uuid, Value) {
    match change {
        Change::Evict { id, .. } => (*id, removed(*id)),
        Change::Put(record) => {
            let mut doc = Map::new();
            doc.insert("id".into(), Value::String(record.id.to_string()));
            for (field, value) in &record.fields {
                doc.insert(field.clone(), value.clone());
            }
            if let Some(owner) = record.owner_id {
                doc.insert("owner_id".into(), Value::String(owner.to_string()));
            }
            if let Some(cohort) = record.cohort_id {
                doc.insert("cohort_id".into(), Value::String(cohort.to_string()));
            }
            doc.insert("version".into(), Value::from(record.version));
            let clocks = record
                .clocks
                .iter()
                .map(|(field, clock)| (field.clone(), Value::String(clock.to_string())))
                .collect();
            doc.insert("clocks".into(), Value::Object(clocks));
            if !record.conflicts.is_empty() {
                doc.insert(
                    "conflicts".into(),
                    serde_json::to_value(&record.conflicts).unwrap_or(Value::Null),
                );
            }
            doc.insert(DELETED_KEY.into(), Value::Bool(record.deleted));
            (record.id, Value::Object(doc))
        }
    }
}

/// The document of a record the caller cannot see (or that does not exist): deleted.
pub fn removed(id: Uuid) -> Value {
    serde_json::json!({ "id": id.to_string(), DELETED_KEY: true })
}

/// The id of the document a row writes.
pub fn row_id(row: &PushRow) -> Result<Uuid, RowError> {
    row.new_document_state
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| RowError("every newDocumentState needs an `id` that is a UUID".into()))
}

/// The mutation a push row stands for, or `None` when it changes nothing.
///
/// `tick` gives the mutation's clock: it receives the latest clock the device had seen (from
/// the assumed master state), so that the write is ordered after everything it was made over,
/// as a native device's clock would be.
pub fn mutation(
    collection: &str,
    row: &PushRow,
    tick: impl FnOnce(Option<&Hlc>) -> Hlc,
) -> Result<Option<Mutation>, RowError> {
    let record_id = row_id(row)?;
    let new = &row.new_document_state;
    let assumed = row.assumed_master_state.as_ref();
    let is_deleted = |doc: &Map<String, Value>| doc.get(DELETED_KEY) == Some(&Value::Bool(true));
    let seen_clocks: BTreeMap<String, Hlc> = assumed
        .and_then(|doc| doc.get("clocks"))
        .and_then(Value::as_object)
        .map(|clocks| {
            clocks
                .iter()
                .filter_map(|(field, clock)| {
                    Some((field.clone(), clock.as_str()?.parse::<Hlc>().ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let is_field = |key: &str| !SERVER_KEYS.contains(&key) && !RXDB_KEYS.contains(&key);

    let delete = is_deleted(new) && !assumed.is_some_and(is_deleted);
    let mut fields = BTreeMap::new();
    if !is_deleted(new) {
        for (key, value) in new.iter().filter(|(key, _)| is_field(key)) {
            let before = assumed.and_then(|doc| doc.get(key)).unwrap_or(&Value::Null);
            if value != before {
                fields.insert(key.clone(), value.clone());
            }
        }
        // A field the device cleared (RxDB leaves it out of the document) becomes null.
        for key in assumed.iter().flat_map(|doc| doc.keys()) {
            if is_field(key) && !new.contains_key(key) && assumed_value(assumed, key).is_some() {
                fields.insert(key.clone(), Value::Null);
            }
        }
    }
    if !delete && fields.is_empty() {
        return Ok(None);
    }
    // A record created and deleted before it ever reached the server has nothing to write.
    if delete && assumed.is_none() {
        return Ok(None);
    }
    let base = fields
        .keys()
        .filter_map(|field| Some((field.clone(), seen_clocks.get(field)?.clone())))
        .collect();
    let cohort_id = match assumed {
        Some(_) => None,
        None => new
            .get("cohort_id")
            .and_then(Value::as_str)
            .and_then(|id| id.parse().ok()),
    };
    Ok(Some(Mutation {
        id: row_mutation_id(collection, row),
        collection: collection.to_owned(),
        record_id,
        cohort_id,
        fields,
        delete,
        clock: tick(seen_clocks.values().max()),
        base,
    }))
}

fn assumed_value<'a>(assumed: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a Value> {
    assumed
        .and_then(|doc| doc.get(key))
        .filter(|value| !value.is_null())
}

/// The mutation id of a row: the same row, sent again, is the same mutation.
fn row_mutation_id(collection: &str, row: &PushRow) -> Uuid {
    // serde_json's maps are ordered, so this form is canonical.
    let text = serde_json::to_string(row).unwrap_or_default();
    Uuid::new_v5(&ROW_NAMESPACE, format!("{collection}\n{text}").as_bytes())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Record;

    fn row(new: Value, assumed: Option<Value>) -> PushRow {
        serde_json::from_value(json!({
            "newDocumentState": new,
            "assumedMasterState": assumed,
        }))
        .unwrap()
    }

    fn clock(wall: u64) -> Hlc {
        Hlc::new(wall, 0, "d")
    }

    const ID: &str = "0190a0e1-0000-7000-8000-000000000001";
    const COHORT: &str = "0190a0e1-0000-7000-8000-0000000000c0";

    #[test]
    fn a_new_document_writes_its_fields_and_names_its_cohort() {
        let row = row(
            json!({"id": ID, "cohort_id": COHORT, "status": "draft", "name_consent": false,
                   "notes": null, "_deleted": false}),
            None,
        );
        let mutation = mutation("interviews", &row, |_| clock(5)).unwrap().unwrap();
        assert_eq!(mutation.record_id.to_string(), ID);
        assert_eq!(mutation.cohort_id.unwrap().to_string(), COHORT);
        assert_eq!(
            mutation.fields,
            BTreeMap::from([
                ("name_consent".to_owned(), json!(false)),
                ("status".to_owned(), json!("draft")),
            ])
        );
        assert!(mutation.base.is_empty());
        assert!(!mutation.delete);
    }

    #[test]
    fn an_edit_writes_only_what_changed_over_the_clocks_it_saw() {
        let master = json!({"id": ID, "cohort_id": COHORT, "version": 7, "status": "draft",
            "notes": "oud", "place": "Wijkcentrum",
            "clocks": {"status": clock(3).to_string(), "notes": clock(4).to_string(),
                       "place": clock(2).to_string()},
            "_deleted": false});
        let mut edited = master.clone();
        edited["notes"] = json!("nieuw");
        edited.as_object_mut().unwrap().remove("place");
        let row = row(edited, Some(master));
        let mut seen = None;
        let mutation = mutation("interviews", &row, |latest| {
            seen = latest.cloned();
            clock(9)
        })
        .unwrap()
        .unwrap();
        assert_eq!(seen, Some(clock(4)), "the latest clock the device had seen");
        assert_eq!(
            mutation.fields,
            BTreeMap::from([
                ("notes".to_owned(), json!("nieuw")),
                ("place".to_owned(), Value::Null),
            ])
        );
        assert_eq!(
            mutation.base,
            BTreeMap::from([
                ("notes".to_owned(), clock(4)),
                ("place".to_owned(), clock(2)),
            ])
        );
        assert_eq!(
            mutation.cohort_id, None,
            "only a new record names its cohort"
        );
    }

    #[test]
    fn deleting_and_unchanged_rows() {
        let master = json!({"id": ID, "status": "draft", "_deleted": false});
        let mut deleted = master.clone();
        deleted["_deleted"] = json!(true);
        let delete = mutation(
            "interviews",
            &row(deleted.clone(), Some(master.clone())),
            |_| clock(1),
        )
        .unwrap()
        .unwrap();
        assert!(delete.delete);
        assert!(delete.fields.is_empty());
        // Nothing changed; a deletion of a deleted document; a document created and deleted
        // offline: nothing to send.
        for (new, assumed) in [
            (master.clone(), Some(master.clone())),
            (deleted.clone(), Some(deleted.clone())),
            (deleted, None),
        ] {
            assert_eq!(
                mutation("interviews", &row(new, assumed), |_| clock(1)).unwrap(),
                None
            );
        }
    }

    #[test]
    fn the_same_row_is_the_same_mutation_and_another_row_is_not() {
        let master = json!({"id": ID, "notes": "a", "version": 3, "_deleted": false});
        let mut edited = master.clone();
        edited["notes"] = json!("b");
        let id = |row: &PushRow| {
            mutation("interviews", row, |_| clock(1))
                .unwrap()
                .unwrap()
                .id
        };
        let first = row(edited.clone(), Some(master.clone()));
        assert_eq!(id(&first), id(&first.clone()));
        let mut later_master = master.clone();
        later_master["version"] = json!(4);
        assert_ne!(id(&first), id(&row(edited, Some(later_master))));
    }

    #[test]
    fn a_row_without_a_uuid_id_cannot_be_read() {
        for doc in [json!({"notes": "x"}), json!({"id": "7"}), json!({"id": 7})] {
            assert!(mutation("interviews", &row(doc, None), |_| clock(1)).is_err());
        }
    }

    #[test]
    fn documents_flatten_records_and_mark_evictions_deleted() {
        let id: Uuid = ID.parse().unwrap();
        let record = Record {
            collection: "interviews".into(),
            id,
            version: 12,
            owner_id: Some(id),
            cohort_id: None,
            deleted: false,
            fields: BTreeMap::from([("notes".to_owned(), json!("x"))]),
            clocks: BTreeMap::from([("notes".to_owned(), clock(4))]),
            conflicts: Vec::new(),
        };
        let (_, doc) = document(&Change::Put(record));
        assert_eq!(
            doc,
            json!({"id": ID, "notes": "x", "owner_id": ID, "version": 12,
                   "clocks": {"notes": clock(4).to_string()}, "_deleted": false})
        );
        let (_, evicted) = document(&Change::Evict {
            collection: "interviews".into(),
            id,
        });
        assert_eq!(evicted, json!({"id": ID, "_deleted": true}));
    }
}
