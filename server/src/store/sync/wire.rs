//! Each record row keeps the JSON a pull sends for it (its "wire tail": everything after the
//! version), written with every version of the record. A pull page is then built by
//! concatenating stored texts: no decoding of every column into maps and encoding them again.
//!
//! The tail must be byte for byte what decoding the row would send, so it is made from the record
//! as its columns will read back (`as_read_back`: timestamps in UTC at the database's precision,
//! ids and dates in their canonical form), and the version is left out: a version-only update
//! (`stamp_records`) keeps the tail valid. The owner's losing values are not in it; they are
//! spliced in for the owner when a page is built (`wire_json`). A row without a tail (written
//! before tails were kept, or one whose JSON values PostgreSQL may write differently) is decoded
//! from its columns as before.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, TimeZone, Utc};
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr,
    sea_query::{Expr, ExprTrait, Order, Query},
};
use serde_json::Value;
use uuid::Uuid;
use veldwerk_sync_protocol::{
    Change, ConflictReport, Record,
    merge::{DELETED, RecordState, Stamped},
    schema::{CollectionSpec, FieldType},
};

use super::{Audience, StoredRecord, json_column, read_records, record_scope, select_records};

/// The column that holds a record's wire tail.
pub(super) const WIRE_TAIL: &str = "wire_tail";

impl StoredRecord {
    /// The record as a pull sends it: the fields that have a value, the clock of every field
    /// written (and of the deletion); a tombstone carries its id, version and delete clock only.
    /// Losing values only `with_conflicts` (they are the owner's to see and resolve).
    pub fn into_wire(self, with_conflicts: bool) -> Record {
        let mut fields = std::collections::BTreeMap::new();
        let mut clocks = std::collections::BTreeMap::new();
        let mut deleted = false;
        let tombstone = self.is_deleted();
        for (field, stamped) in self.state {
            if field == DELETED {
                deleted = stamped.value == Value::Bool(true);
            } else if tombstone {
                continue;
            } else if !Value::is_null(&stamped.value) && self.spec.field(&field).is_some() {
                fields.insert(field.clone(), stamped.value);
            }
            clocks.insert(field, stamped.clock);
        }
        Record {
            collection: self.spec.name.to_owned(),
            id: self.id,
            version: self.version,
            owner_id: Some(self.owner_id),
            cohort_id: Some(self.cohort_id),
            deleted,
            fields,
            clocks,
            conflicts: if with_conflicts && !tombstone {
                self.conflicts
            } else {
                Vec::new()
            },
        }
    }
}

/// A record's JSON in a pull up to and with its version; the stored tail follows it.
fn wire_head(collection: &str, id: Uuid, version: i64) -> String {
    format!(r#"{{"op":"put","collection":"{collection}","id":"{id}","version":{version}"#)
}

/// The record's JSON in a pull: the head, the stored tail, and the losing values when they are
/// shown (the serialised `Change::Put`, whose last member they are).
pub fn wire_json(
    collection: &str,
    id: Uuid,
    version: i64,
    tail: &str,
    conflicts: &[ConflictReport],
) -> String {
    let mut json = wire_head(collection, id, version);
    match (conflicts.is_empty(), tail.strip_suffix('}')) {
        (false, Some(open)) => {
            json.push_str(open);
            json.push_str(r#","conflicts":"#);
            // Reports hold strings, clocks and JSON values: serialising them cannot fail.
            json.push_str(&serde_json::to_string(conflicts).unwrap_or_else(|_| "[]".into()));
            json.push('}');
        }
        _ => json.push_str(tail),
    }
    json
}

/// The tail to store for `record` on `backend`, or `None` when the row is to be decoded instead.
pub(super) fn wire_tail(record: &StoredRecord, backend: DbBackend) -> Option<String> {
    if backend == DbBackend::Postgres && has_json_float(record) {
        // PostgreSQL rewrites JSON numbers through `numeric` (-0.0 comes back as 0.0): such a
        // row is decoded from what the database returns.
        return None;
    }
    let read_back = as_read_back(record, backend);
    let json = serde_json::to_string(&Change::Put(read_back.into_wire(false))).ok()?;
    json.strip_prefix(&wire_head(record.spec.name, record.id, record.version))
        .map(str::to_owned)
}

fn has_json_float(record: &StoredRecord) -> bool {
    fn float_in(value: &Value) -> bool {
        match value {
            Value::Number(number) => number.is_f64(),
            Value::Array(items) => items.iter().any(float_in),
            Value::Object(members) => members.values().any(float_in),
            _ => false,
        }
    }
    record.spec.fields.iter().any(|field| {
        matches!(field.ty, FieldType::Json { .. }) && float_in(record.value(field.name))
    })
}

/// The record as reading its row back gives it (`read_record`): only the collection's fields and
/// the deletion, each value as its column returns it.
fn as_read_back(record: &StoredRecord, backend: DbBackend) -> StoredRecord {
    let mut state = RecordState::new();
    for field in record.spec.fields {
        if let Some(stamped) = record.state.get(field.name) {
            state.insert(
                field.name.to_owned(),
                Stamped {
                    value: read_back(field.ty, &stamped.value, backend),
                    clock: stamped.clock.clone(),
                },
            );
        }
    }
    if let Some(stamped) = record.state.get(DELETED) {
        state.insert(
            DELETED.to_owned(),
            Stamped {
                value: Value::Bool(record.is_deleted()),
                clock: stamped.clock.clone(),
            },
        );
    }
    StoredRecord {
        spec: record.spec,
        id: record.id,
        owner_id: record.owner_id,
        cohort_id: record.cohort_id,
        version: record.version,
        state,
        conflicts: Vec::new(),
        created_at: record.created_at,
    }
}

/// A value as its column gives it back (`sql_value` on the way in, `read_record` on the way out).
fn read_back(ty: FieldType, value: &Value, backend: DbBackend) -> Value {
    let text = value.as_str();
    let read = match ty {
        FieldType::Text { .. }
        | FieldType::Choice(_)
        | FieldType::Sha256
        | FieldType::LocalTime => text.map(Value::from),
        FieldType::Integer { .. } => value.as_i64().map(Value::from),
        FieldType::Bool => value.as_bool().map(Value::from),
        FieldType::Date => text
            .and_then(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
            .map(|date| Value::from(date.to_string())),
        FieldType::Uuid => text
            .and_then(|text| Uuid::parse_str(text).ok())
            .map(|id| Value::from(id.to_string())),
        FieldType::Timestamp => text
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|at| stored_instant(at.with_timezone(&Utc), backend))
            .map(|at| Value::from(at.to_rfc3339_opts(SecondsFormat::AutoSi, true))),
        FieldType::Json { .. } => (!Value::is_null(value)).then(|| value.clone()),
    };
    read.unwrap_or(Value::Null)
}

/// The instant a timestamp column holds: PostgreSQL keeps whole microseconds, counted from
/// 2000-01-01 as its driver converts them (truncating towards that epoch).
fn stored_instant(at: DateTime<Utc>, backend: DbBackend) -> DateTime<Utc> {
    if backend != DbBackend::Postgres {
        return at;
    }
    let epoch = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
    (at - epoch)
        .num_microseconds()
        .map_or(at, |micros| epoch + Duration::microseconds(micros))
}

/// One record of a pull page: its stored JSON, or its decoded row when it has none.
#[derive(Debug)]
pub struct PageRecord {
    pub spec: &'static CollectionSpec,
    pub id: Uuid,
    pub version: i64,
    pub body: PageBody,
}

#[derive(Debug)]
pub enum PageBody {
    /// The record's JSON as the viewer gets it (`wire_json`).
    Json(String),
    /// A row without a tail, decoded from its columns.
    Decoded(StoredRecord),
    /// A row without a tail that changed again between the page's two reads: it is not sent
    /// here but with its new version, in a later page. It still counts towards the page's size.
    Moved,
}

/// Records of one collection in the audience with `after < version <= upto`, in version order,
/// at most `limit`, as `viewer` gets them in a pull (losing values only for their owner). One
/// statement reads the stored JSON; rows without it are read again whole and decoded.
pub async fn changed_page_records(
    db: &impl ConnectionTrait,
    spec: &'static CollectionSpec,
    audience: &Audience,
    viewer: Uuid,
    after: i64,
    upto: i64,
    limit: u64,
) -> Result<Vec<PageRecord>, DbErr> {
    let backend = db.get_database_backend();
    let statement = Query::select()
        .from(spec.name)
        .columns(["id", "version", "owner_id", "deleted", WIRE_TAIL])
        .expr_as(
            // The losing values are read for the viewer's own records only.
            Expr::case(Expr::col("owner_id").eq(viewer), Expr::col("conflicts"))
                .finally(Expr::cust("NULL")),
            sea_orm::sea_query::Alias::new("own_conflicts"),
        )
        .cond_where(record_scope(spec, audience))
        .and_where(Expr::col("version").gt(after))
        .and_where(Expr::col("version").lte(upto))
        .order_by("version", Order::Asc)
        .order_by("id", Order::Asc)
        .limit(limit)
        .to_owned();
    let mut records = Vec::new();
    let mut undecoded = Vec::new();
    for row in db.query_all(&statement).await? {
        let id: Uuid = row.try_get("", "id")?;
        let version: i64 = row.try_get("", "version")?;
        let body = match row.try_get::<Option<String>>("", WIRE_TAIL)? {
            Some(tail) => {
                let deleted: bool = row.try_get("", "deleted")?;
                let own = row.try_get::<Uuid>("", "owner_id")? == viewer;
                let conflicts: Vec<ConflictReport> = if own && !deleted {
                    json_column(&row, "own_conflicts", backend)?
                } else {
                    Vec::new()
                };
                PageBody::Json(wire_json(spec.name, id, version, &tail, &conflicts))
            }
            None => {
                undecoded.push(id);
                PageBody::Moved
            }
        };
        records.push(PageRecord {
            spec,
            id,
            version,
            body,
        });
    }
    if undecoded.is_empty() {
        return Ok(records);
    }
    // Versions only grow and every later commit takes one above `upto`: a row still at or below
    // `upto` is the one the first read found.
    let statement = select_records(spec)
        .and_where(Expr::col("id").is_in(undecoded))
        .and_where(Expr::col("version").lte(upto))
        .to_owned();
    let mut decoded: HashMap<Uuid, StoredRecord> = read_records(db, spec, &statement)
        .await?
        .into_iter()
        .map(|record| (record.id, record))
        .collect();
    for record in &mut records {
        if matches!(record.body, PageBody::Moved)
            && let Some(stored) = decoded.remove(&record.id)
        {
            record.body = PageBody::Decoded(stored);
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use veldwerk_sync_protocol::{Hlc, merge::Stamped, schema::INTERVIEWS};

    use super::*;

    fn record(conflicts: Vec<ConflictReport>, deleted: bool) -> StoredRecord {
        let clock = Hlc::new(1_733_000_000_000, 2, "phone");
        let mut state = RecordState::new();
        for (field, value) in [
            ("notes", Value::from("regel \"1\"\n\u{1F600}")),
            ("status", Value::from("draft")),
            ("interviewed_on", Value::Null),
        ] {
            state.insert(
                field.into(),
                Stamped {
                    value,
                    clock: clock.clone(),
                },
            );
        }
        if deleted {
            state.insert(
                DELETED.into(),
                Stamped {
                    value: Value::Bool(true),
                    clock: clock.clone(),
                },
            );
        }
        StoredRecord {
            spec: &INTERVIEWS,
            id: Uuid::now_v7(),
            owner_id: Uuid::now_v7(),
            cohort_id: Uuid::now_v7(),
            version: 41,
            state,
            conflicts,
            created_at: Utc::now(),
        }
    }

    fn conflict() -> ConflictReport {
        serde_json::from_value(serde_json::json!({
            "field": "notes",
            "lost_value": "telefoon \"x\"",
            "lost_clock": Hlc::new(1_733_000_000_000, 1, "tablet"),
            "kept_value": "tablet",
            "kept_clock": Hlc::new(1_733_000_000_000, 2, "phone"),
        }))
        .expect("a conflict report")
    }

    /// The head, the stored tail and the spliced losing values are exactly what serialising the
    /// change sends, with and without losing values, for a tombstone too, at another version.
    #[test]
    fn stored_json_is_the_serialised_change() {
        for (conflicts, deleted) in [
            (vec![], false),
            (vec![conflict()], false),
            (vec![conflict(), conflict()], false),
            (vec![conflict()], true),
        ] {
            let mut record = record(conflicts.clone(), deleted);
            let tail = wire_tail(&record, DbBackend::Sqlite).expect("a tail");
            // A version-only update (`stamp_records`) keeps the tail valid.
            record.version = 97;
            for with_conflicts in [false, true] {
                let shown = if with_conflicts && !deleted {
                    conflicts.as_slice()
                } else {
                    &[]
                };
                let expected =
                    serde_json::to_string(&Change::Put(record.clone().into_wire(with_conflicts)))
                        .unwrap();
                assert_eq!(
                    wire_json(INTERVIEWS.name, record.id, record.version, &tail, shown),
                    expected
                );
            }
        }
    }

    #[test]
    fn values_read_back_as_their_columns_give_them() {
        let at = Value::from("2027-01-12T09:00:00.123456789+01:00");
        assert_eq!(
            read_back(FieldType::Timestamp, &at, DbBackend::Sqlite),
            "2027-01-12T08:00:00.123456789Z"
        );
        assert_eq!(
            read_back(FieldType::Timestamp, &at, DbBackend::Postgres),
            "2027-01-12T08:00:00.123456Z"
        );
        assert_eq!(
            read_back(FieldType::Date, &Value::from("2026-3-7"), DbBackend::Sqlite),
            "2026-03-07"
        );
        let id = Uuid::now_v7();
        let braced = Value::from(format!("{{{}}}", id.to_string().to_uppercase()));
        assert_eq!(
            read_back(FieldType::Uuid, &braced, DbBackend::Postgres),
            id.to_string()
        );
    }
}
