//! Sync persistence: the version counter, the typed record tables (driven by the collection
//! specs of `veldwerk-sync-protocol`, so one set of queries serves every collection), applied
//! mutations, evictions and scope grants.

mod wire;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QueryResult, QuerySelect,
    sea_query::{
        Alias, Condition, Expr, ExprTrait, OnConflict, Order, Query, SelectStatement, SimpleExpr,
        Value as SqlValue,
    },
};
use serde_json::Value;
use uuid::Uuid;

use super::entity::{cohort, cohort_assignment, cohort_day, cohort_member};
use veldwerk_sync_protocol::{
    ConflictReport, Hlc,
    merge::{DELETED, RecordState, Stamped},
    schema::{
        ATTACHMENTS, COUNTERPART_FIELD, CollectionSpec, FEEDBACK_EXERCISES, FieldType,
        PARENT_ID_FIELD, SHARED_FIELD,
    },
};
pub use wire::{PageBody, PageRecord, changed_page_records, wire_json};

/// Common columns of every record table.
const META_COLUMNS: &[&str] = &[
    "id",
    "owner_id",
    "cohort_id",
    "version",
    "deleted",
    "clocks",
    "conflicts",
    "created_at",
    "updated_at",
];

/// A limit that does not limit (SQLite takes limits as signed 64-bit integers).
pub const UNLIMITED: u64 = i64::MAX as u64;

/// Most losing values kept per record; older ones are dropped first.
pub const MAX_KEPT_CONFLICTS: usize = 20;

/// A record as stored, with its fields and their clocks.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub spec: &'static CollectionSpec,
    pub id: Uuid,
    pub owner_id: Uuid,
    pub cohort_id: Uuid,
    pub version: i64,
    /// Every field that has been written, with its clock; `deleted` included once set.
    pub state: RecordState,
    pub conflicts: Vec<ConflictReport>,
    pub created_at: DateTime<Utc>,
}

impl StoredRecord {
    /// Whether the record is a tombstone.
    pub fn is_deleted(&self) -> bool {
        self.state
            .get(DELETED)
            .is_some_and(|stamped| stamped.value == Value::Bool(true))
    }

    /// The current value of a field (`null` when never set).
    pub fn value(&self, field: &str) -> &Value {
        self.state
            .get(field)
            .map_or(&Value::Null, |stamped| &stamped.value)
    }
}

/// Takes the next sync version. The row lock this takes is held until the transaction ends, so
/// write transactions get versions in the order they commit: a pull that has seen version `v`
/// can never later find a change with a lower version. Call it inside the write transaction.
pub async fn next_version(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    let statement = Query::update()
        .table("sync_state")
        .value("version", Expr::col("version").add(1))
        .and_where(Expr::col("id").eq(1))
        .returning_col("version")
        .to_owned();
    let row = db
        .query_one(&statement)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("sync_state".into()))?;
    row.try_get("", "version")
}

/// The latest committed version and the lowest version a cursor may still start from.
pub async fn head(db: &impl ConnectionTrait) -> Result<(i64, i64), DbErr> {
    let statement = Query::select()
        .columns(["version", "purged_below"])
        .from("sync_state")
        .and_where(Expr::col("id").eq(1))
        .to_owned();
    let row = db
        .query_one(&statement)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("sync_state".into()))?;
    Ok((
        row.try_get("", "version")?,
        row.try_get("", "purged_below")?,
    ))
}

/// Stamps a cohort and its days and assignments with a version, so devices pull them again.
pub async fn stamp_cohort(
    db: &impl ConnectionTrait,
    cohort_id: Uuid,
    version: i64,
) -> Result<(), DbErr> {
    for (table, column) in [
        ("cohorts", "id"),
        ("cohort_days", "cohort_id"),
        ("cohort_assignments", "cohort_id"),
    ] {
        let statement = Query::update()
            .table(table)
            .value("version", version)
            .and_where(Expr::col(column).eq(cohort_id))
            .to_owned();
        db.execute(&statement).await?;
    }
    Ok(())
}

/// Loads records of one collection by id.
pub async fn find_records(
    db: &impl ConnectionTrait,
    spec: &'static CollectionSpec,
    ids: &[Uuid],
) -> Result<Vec<StoredRecord>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let statement = select_records(spec)
        .and_where(Expr::col("id").is_in(ids.iter().copied()))
        .to_owned();
    read_records(db, spec, &statement).await
}

/// Who the caller is, for a pull.
#[derive(Debug, Clone)]
pub enum Audience {
    /// A participant: their own records, and feedback shared with them by members of the cohorts
    /// they are still in.
    Participant { user: Uuid, cohorts: Vec<Uuid> },
    /// A trainer or admin: every record of these cohorts.
    Cohorts(Vec<Uuid>),
}

/// The rows of one collection the audience may pull.
fn record_scope(spec: &CollectionSpec, audience: &Audience) -> Condition {
    match audience {
        Audience::Participant {
            user: user_id,
            cohorts,
        } => {
            let mut scope = Condition::any().add(Expr::col("owner_id").eq(*user_id));
            if spec.field(COUNTERPART_FIELD).is_some() {
                scope = scope.add(
                    Expr::col(COUNTERPART_FIELD)
                        .eq(*user_id)
                        .and(Expr::col(SHARED_FIELD).eq(true))
                        .and(Expr::col("cohort_id").is_in(cohorts.iter().copied())),
                );
            }
            if spec.name == ATTACHMENTS.name {
                // The files of feedback exercises shared with the caller (deleted ones too: their
                // files' tombstones must reach the caller as well).
                scope = scope.add(
                    Expr::col(PARENT_ID_FIELD).in_subquery(
                        Query::select()
                            .column("id")
                            .from(FEEDBACK_EXERCISES.name)
                            .and_where(Expr::col(COUNTERPART_FIELD).eq(*user_id))
                            .and_where(Expr::col(SHARED_FIELD).eq(true))
                            .and_where(Expr::col("cohort_id").is_in(cohorts.iter().copied()))
                            .to_owned(),
                    ),
                );
            }
            scope
        }
        Audience::Cohorts(cohorts) => {
            Condition::all().add(Expr::col("cohort_id").is_in(cohorts.iter().copied()))
        }
    }
}

/// Where a pull looks for changes besides the record tables: the cohorts whose rows, days,
/// assignments and announcements it sends, and the user whose evictions and grants it reads.
#[derive(Debug, Clone, Copy)]
pub struct PullSources<'a> {
    pub collections: &'a [CollectionSpec],
    pub audience: &'a Audience,
    pub cohort_ids: &'a [Uuid],
    pub user_id: Uuid,
}

/// Whether a pull with these sources could find anything in `(after, upto]`: one statement of
/// `EXISTS` tests instead of the pull's fifteen queries, for the common case of a device that is
/// up to date while others write. Each test is the pull's own filter or a broader one
/// (announcements of any status and recipient), so `false` means the pull would find nothing;
/// `true` only means the pull must look.
pub async fn anything_changed(
    db: &impl ConnectionTrait,
    sources: PullSources<'_>,
    after: i64,
    upto: i64,
) -> Result<bool, DbErr> {
    let in_range = |select: &mut SelectStatement| {
        select
            .expr(Expr::val(1))
            .and_where(Expr::col("version").gt(after))
            .and_where(Expr::col("version").lte(upto))
            .to_owned()
    };
    let mut any = Condition::any();
    for spec in sources.collections {
        let select = in_range(
            Query::select()
                .from(spec.name)
                .cond_where(record_scope(spec, sources.audience)),
        );
        any = any.add(Expr::exists(select));
    }
    let cohorts = sources.cohort_ids.iter().copied();
    any = any.add(Expr::exists(in_range(
        Query::select()
            .from("cohorts")
            .and_where(Expr::col("id").is_in(cohorts.clone())),
    )));
    for table in ["cohort_days", "cohort_assignments", "announcements"] {
        any = any.add(Expr::exists(in_range(
            Query::select()
                .from(table)
                .and_where(Expr::col("cohort_id").is_in(cohorts.clone())),
        )));
    }
    for table in ["sync_evictions", "sync_grants"] {
        any = any.add(Expr::exists(in_range(
            Query::select()
                .from(table)
                .and_where(Expr::col("user_id").eq(sources.user_id)),
        )));
    }
    let statement = Query::select()
        .expr(Expr::val(1))
        .cond_where(any)
        .to_owned();
    Ok(db.query_one(&statement).await?.is_some())
}

/// Gives records a new version without changing them, so the devices that may now see them
/// pull them.
pub async fn stamp_records(
    db: &impl ConnectionTrait,
    spec: &CollectionSpec,
    ids: &[Uuid],
    version: i64,
) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let statement = Query::update()
        .table(spec.name)
        .value("version", version)
        .and_where(Expr::col("id").is_in(ids.iter().copied()))
        .to_owned();
    db.execute(&statement).await?;
    Ok(())
}

/// Feedback exercises of other members in a cohort that name `user_id` as counterpart, and their
/// attachments: what a participant removed from the cohort must lose.
pub async fn shared_with_in_cohort(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    cohort_id: Uuid,
) -> Result<Vec<(&'static str, Uuid)>, DbErr> {
    let feedback = Query::select()
        .column("id")
        .from(FEEDBACK_EXERCISES.name)
        .and_where(Expr::col(COUNTERPART_FIELD).eq(user_id))
        .and_where(Expr::col("cohort_id").eq(cohort_id))
        .and_where(Expr::col("owner_id").ne(user_id))
        .to_owned();
    let mut gone = Vec::new();
    for row in db.query_all(&feedback).await? {
        gone.push((FEEDBACK_EXERCISES.name, row.try_get::<Uuid>("", "id")?));
    }
    let files = Query::select()
        .column("id")
        .from(ATTACHMENTS.name)
        .and_where(Expr::col(PARENT_ID_FIELD).in_subquery(feedback))
        .to_owned();
    for row in db.query_all(&files).await? {
        gone.push((ATTACHMENTS.name, row.try_get::<Uuid>("", "id")?));
    }
    Ok(gone)
}

/// Records of one collection a user owns (in one cohort, if given), tombstones included, in id
/// order after `after`, at most `limit`: what an erasure reduces to tombstones, and what an
/// export reads page by page.
pub async fn records_owned_by(
    db: &impl ConnectionTrait,
    spec: &'static CollectionSpec,
    owner_id: Uuid,
    cohort_id: Option<Uuid>,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<StoredRecord>, DbErr> {
    let mut statement = select_records(spec);
    statement.and_where(Expr::col("owner_id").eq(owner_id));
    if let Some(cohort_id) = cohort_id {
        statement.and_where(Expr::col("cohort_id").eq(cohort_id));
    }
    if let Some(after) = after {
        statement.and_where(Expr::col("id").gt(after));
    }
    statement.order_by("id", Order::Asc).limit(limit);
    read_records(db, spec, &statement).await
}

/// Feedback exercises of other members that name `user_id` as their counterpart (in one cohort,
/// if given): where an erased person's name shows in others' records.
pub async fn feedback_naming(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    cohort_id: Option<Uuid>,
) -> Result<Vec<StoredRecord>, DbErr> {
    let mut statement = select_records(&FEEDBACK_EXERCISES);
    statement
        .and_where(Expr::col(COUNTERPART_FIELD).eq(user_id))
        .and_where(Expr::col("owner_id").ne(user_id));
    if let Some(cohort_id) = cohort_id {
        statement.and_where(Expr::col("cohort_id").eq(cohort_id));
    }
    read_records(db, &FEEDBACK_EXERCISES, &statement).await
}

/// Every record of one collection in a cohort up to a version (for a grown scope).
pub async fn cohort_records_upto(
    db: &impl ConnectionTrait,
    spec: &'static CollectionSpec,
    cohort_id: Uuid,
    upto: i64,
) -> Result<Vec<StoredRecord>, DbErr> {
    let statement = select_records(spec)
        .and_where(Expr::col("cohort_id").eq(cohort_id))
        .and_where(Expr::col("version").lte(upto))
        .order_by("version", Order::Asc)
        .to_owned();
    read_records(db, spec, &statement).await
}

fn select_records(spec: &CollectionSpec) -> SelectStatement {
    let mut select = Query::select();
    select.from(spec.name).columns(META_COLUMNS.iter().copied());
    for field in spec.fields {
        select.column(field.name);
    }
    select
}

async fn read_records(
    db: &impl ConnectionTrait,
    spec: &'static CollectionSpec,
    statement: &SelectStatement,
) -> Result<Vec<StoredRecord>, DbErr> {
    let backend = db.get_database_backend();
    // Each raw row is dropped once decoded: a page of thousands is not held twice.
    db.query_all(statement)
        .await?
        .into_iter()
        .map(|row| read_record(spec, &row, backend))
        .collect()
}

fn read_record(
    spec: &'static CollectionSpec,
    row: &QueryResult,
    backend: DbBackend,
) -> Result<StoredRecord, DbErr> {
    let clocks: BTreeMap<String, Hlc> = json_column(row, "clocks", backend)?;
    let conflicts: Vec<ConflictReport> = json_column(row, "conflicts", backend)?;
    let mut state = RecordState::new();
    for field in spec.fields {
        let Some(clock) = clocks.get(field.name) else {
            continue;
        };
        let value = match field.ty {
            FieldType::Text { .. }
            | FieldType::Choice(_)
            | FieldType::Sha256
            | FieldType::LocalTime => row
                .try_get::<Option<String>>("", field.name)?
                .map(Value::from),
            FieldType::Bool => row
                .try_get::<Option<bool>>("", field.name)?
                .map(Value::from),
            FieldType::Date => row
                .try_get::<Option<NaiveDate>>("", field.name)?
                .map(|date| Value::from(date.to_string())),
            FieldType::Uuid => row
                .try_get::<Option<Uuid>>("", field.name)?
                .map(|id| Value::from(id.to_string())),
            FieldType::Timestamp => row
                .try_get::<Option<DateTime<Utc>>>("", field.name)?
                .map(|at| Value::from(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))),
            FieldType::Json { .. } => row.try_get::<Option<Value>>("", field.name)?,
            FieldType::Integer { .. } => {
                row.try_get::<Option<i64>>("", field.name)?.map(Value::from)
            }
        };
        state.insert(
            field.name.to_owned(),
            Stamped {
                value: value.unwrap_or(Value::Null),
                clock: clock.clone(),
            },
        );
    }
    if let Some(clock) = clocks.get(DELETED) {
        state.insert(
            DELETED.to_owned(),
            Stamped {
                value: Value::Bool(row.try_get("", "deleted")?),
                clock: clock.clone(),
            },
        );
    }
    Ok(StoredRecord {
        spec,
        id: row.try_get("", "id")?,
        owner_id: row.try_get("", "owner_id")?,
        cohort_id: row.try_get("", "cohort_id")?,
        version: row.try_get("", "version")?,
        state,
        conflicts,
        created_at: row.try_get("", "created_at")?,
    })
}

fn json_column<T: serde::de::DeserializeOwned>(
    row: &QueryResult,
    column: &str,
    backend: DbBackend,
) -> Result<T, DbErr> {
    // SQLite keeps JSON as text: parse it straight into `T` rather than through a `Value` tree
    // (every record of a pull page has two such columns). PostgreSQL's driver hands over a tree.
    if backend == DbBackend::Sqlite {
        let text: String = row.try_get("", column)?;
        return serde_json::from_str(&text).map_err(|err| DbErr::Json(err.to_string()));
    }
    let value: Value = row.try_get("", column)?;
    serde_json::from_value(value).map_err(|err| DbErr::Json(err.to_string()))
}

/// Writes records (new or changed) of one collection in one statement.
pub async fn upsert_records(
    db: &impl ConnectionTrait,
    spec: &'static CollectionSpec,
    records: &[&StoredRecord],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if records.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let mut columns: Vec<&str> = META_COLUMNS.to_vec();
    columns.extend(spec.fields.iter().map(|field| field.name));
    columns.push(wire::WIRE_TAIL);
    let mut insert = Query::insert();
    insert
        .into_table(spec.name)
        .columns(columns.iter().copied());
    for record in records {
        let clocks: BTreeMap<&str, &Hlc> = record
            .state
            .iter()
            .map(|(field, stamped)| (field.as_str(), &stamped.clock))
            .collect();
        let mut values: Vec<SimpleExpr> = vec![
            record.id.into(),
            record.owner_id.into(),
            record.cohort_id.into(),
            record.version.into(),
            record.is_deleted().into(),
            to_json(&clocks)?.into(),
            to_json(&record.conflicts)?.into(),
            record.created_at.into(),
            now.into(),
        ];
        for field in spec.fields {
            values.push(sql_value(field.ty, record.value(field.name)).into());
        }
        values.push(wire::wire_tail(record, backend).into());
        insert
            .values(values)
            .map_err(|err| DbErr::Custom(err.to_string()))?;
    }
    let updated: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|column| !["id", "created_at"].contains(column))
        .collect();
    insert.on_conflict(OnConflict::column("id").update_columns(updated).to_owned());
    db.execute(&insert).await?;
    Ok(())
}

fn to_json(value: &impl serde::Serialize) -> Result<Value, DbErr> {
    serde_json::to_value(value).map_err(|err| DbErr::Json(err.to_string()))
}

/// A validated JSON field value as the column's SQL type.
fn sql_value(ty: FieldType, value: &Value) -> SqlValue {
    match ty {
        FieldType::Text { .. }
        | FieldType::Choice(_)
        | FieldType::Sha256
        | FieldType::LocalTime => value.as_str().map(str::to_owned).into(),
        FieldType::Integer { .. } => value.as_i64().into(),
        FieldType::Bool => value.as_bool().into(),
        FieldType::Date => value
            .as_str()
            .and_then(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
            .into(),
        FieldType::Uuid => value
            .as_str()
            .and_then(|text| Uuid::parse_str(text).ok())
            .into(),
        FieldType::Timestamp => value
            .as_str()
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|at| at.with_timezone(&Utc))
            .into(),
        FieldType::Json { .. } => (!value.is_null()).then(|| value.clone()).into(),
    }
}

/// Results of this user's mutations already applied, by mutation id. Another user's mutation
/// with the same id is not this user's: exactly-once is per user.
pub async fn find_mutation_results(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Value>, DbErr> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let statement = Query::select()
        .columns(["id", "result"])
        .from("sync_user_mutations")
        .and_where(Expr::col("user_id").eq(user_id))
        .and_where(super::id_in(db.get_database_backend(), "id", ids))
        .to_owned();
    db.query_all(&statement)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("", "id")?, row.try_get("", "result")?)))
        .collect()
}

/// Remembers mutation results so that a replay answers the same.
pub async fn insert_mutation_results(
    db: &impl ConnectionTrait,
    device_id: Uuid,
    user_id: Uuid,
    results: &[(Uuid, Value)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    // Chunked: PostgreSQL allows 65,535 bind parameters per statement.
    for chunk in results.chunks(1_000) {
        let mut insert = Query::insert();
        insert.into_table("sync_user_mutations").columns([
            "id",
            "device_id",
            "user_id",
            "result",
            "created_at",
        ]);
        for (id, result) in chunk {
            insert.values_panic([
                (*id).into(),
                device_id.into(),
                user_id.into(),
                result.clone().into(),
                now.into(),
            ]);
        }
        db.execute(&insert).await?;
    }
    Ok(())
}

/// Ids of the records of one table in a cohort (for evicting them all from someone).
pub async fn ids_in_cohort(
    db: &impl ConnectionTrait,
    table: &'static str,
    cohort_column: &'static str,
    cohort_id: Uuid,
) -> Result<Vec<Uuid>, DbErr> {
    let statement = Query::select()
        .column("id")
        .from(table)
        .and_where(Expr::col(cohort_column).eq(cohort_id))
        .to_owned();
    db.query_all(&statement)
        .await?
        .iter()
        .map(|row| row.try_get("", "id"))
        .collect()
}

/// Records that many records left a user's scope at a version.
pub async fn insert_evictions(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    records: &[(&str, Uuid)],
    version: i64,
) -> Result<(), DbErr> {
    for chunk in records.chunks(1_000) {
        let mut insert = Query::insert();
        insert.into_table("sync_evictions").columns([
            "id",
            "user_id",
            "collection",
            "record_id",
            "version",
        ]);
        for (collection, record_id) in chunk {
            insert.values_panic([
                Uuid::now_v7().into(),
                user_id.into(),
                (*collection).into(),
                (*record_id).into(),
                version.into(),
            ]);
        }
        db.execute(&insert).await?;
    }
    Ok(())
}

/// An eviction to deliver.
#[derive(Debug, Clone)]
pub struct Eviction {
    pub collection: String,
    pub record_id: Uuid,
    pub version: i64,
}

pub async fn evictions_since(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    after: i64,
    upto: i64,
    limit: u64,
) -> Result<Vec<Eviction>, DbErr> {
    let statement = Query::select()
        .columns(["collection", "record_id", "version"])
        .from("sync_evictions")
        .and_where(Expr::col("user_id").eq(user_id))
        .and_where(Expr::col("version").gt(after))
        .and_where(Expr::col("version").lte(upto))
        .order_by("version", Order::Asc)
        .limit(limit)
        .to_owned();
    db.query_all(&statement)
        .await?
        .iter()
        .map(|row| {
            Ok(Eviction {
                collection: row.try_get("", "collection")?,
                record_id: row.try_get("", "record_id")?,
                version: row.try_get("", "version")?,
            })
        })
        .collect()
}

/// Records that a user can see a cohort's records from a version on (a trainer added later).
pub async fn insert_grant(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    cohort_id: Uuid,
    version: i64,
) -> Result<(), DbErr> {
    let insert = Query::insert()
        .into_table("sync_grants")
        .columns(["id", "user_id", "cohort_id", "version"])
        .values_panic([
            Uuid::now_v7().into(),
            user_id.into(),
            cohort_id.into(),
            version.into(),
        ])
        .to_owned();
    db.execute(&insert).await.map(drop)
}

/// Grants of a user with `after < version <= upto`: (cohort, version).
pub async fn grants_between(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    after: i64,
    upto: i64,
) -> Result<Vec<(Uuid, i64)>, DbErr> {
    let statement = Query::select()
        .columns(["cohort_id", "version"])
        .from("sync_grants")
        .and_where(Expr::col("user_id").eq(user_id))
        .and_where(Expr::col("version").gt(after))
        .and_where(Expr::col("version").lte(upto))
        .to_owned();
    db.query_all(&statement)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("", "cohort_id")?, row.try_get("", "version")?)))
        .collect()
}

/// Deletes tombstones and evictions last changed before `cutoff`, and raises the lowest version
/// a cursor may start from past them. Returns how many tombstones were removed.
pub async fn purge_tombstones(
    db: &impl ConnectionTrait,
    collections: &[CollectionSpec],
    cutoff: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let mut newest_purged: Option<i64> = None;
    let mut removed = 0;
    for spec in collections {
        let newest = Query::select()
            .expr_as(Expr::col("version").max(), Alias::new("newest"))
            .from(spec.name)
            .and_where(Expr::col("deleted").eq(true))
            .and_where(Expr::col("updated_at").lt(cutoff))
            .to_owned();
        let newest: Option<i64> = db
            .query_one(&newest)
            .await?
            .map(|row| row.try_get("", "newest"))
            .transpose()?
            .flatten();
        let Some(newest) = newest else { continue };
        let delete = Query::delete()
            .from_table(spec.name)
            .and_where(Expr::col("deleted").eq(true))
            .and_where(Expr::col("version").lte(newest))
            .to_owned();
        removed += db.execute(&delete).await?.rows_affected();
        newest_purged = Ord::max(newest_purged, Some(newest));
    }
    if let Some(newest) = newest_purged {
        let delete = Query::delete()
            .from_table("sync_evictions")
            .and_where(Expr::col("version").lte(newest))
            .to_owned();
        db.execute(&delete).await?;
        // GREATEST and MAX(a, b) differ between the dialects: read, then write (the purge job
        // runs on one worker at a time).
        let (_, purged_below) = head(db).await?;
        let update = Query::update()
            .table("sync_state")
            .value("purged_below", Ord::max(purged_below, newest + 1))
            .and_where(Expr::col("id").eq(1))
            .to_owned();
        db.execute(&update).await?;
    }
    Ok(removed)
}

/// Cohorts among `cohort_ids` changed in `(after, upto]`, in version order.
pub async fn changed_cohorts(
    db: &impl ConnectionTrait,
    cohort_ids: &[Uuid],
    after: i64,
    upto: i64,
    limit: u64,
) -> Result<Vec<cohort::Model>, DbErr> {
    cohort::Entity::find()
        .filter(cohort::Column::Id.is_in(cohort_ids.iter().copied()))
        .filter(cohort::Column::Version.gt(after))
        .filter(cohort::Column::Version.lte(upto))
        .order_by_asc(cohort::Column::Version)
        .limit(limit)
        .all(db)
        .await
}

/// Days of `cohort_ids` changed in `(after, upto]`, in version order.
pub async fn changed_days(
    db: &impl ConnectionTrait,
    cohort_ids: &[Uuid],
    after: i64,
    upto: i64,
    limit: u64,
) -> Result<Vec<cohort_day::Model>, DbErr> {
    cohort_day::Entity::find()
        .filter(cohort_day::Column::CohortId.is_in(cohort_ids.iter().copied()))
        .filter(cohort_day::Column::Version.gt(after))
        .filter(cohort_day::Column::Version.lte(upto))
        .order_by_asc(cohort_day::Column::Version)
        .limit(limit)
        .all(db)
        .await
}

/// Assignments of `cohort_ids` changed in `(after, upto]`, in version order.
pub async fn changed_assignments(
    db: &impl ConnectionTrait,
    cohort_ids: &[Uuid],
    after: i64,
    upto: i64,
    limit: u64,
) -> Result<Vec<cohort_assignment::Model>, DbErr> {
    cohort_assignment::Entity::find()
        .filter(cohort_assignment::Column::CohortId.is_in(cohort_ids.iter().copied()))
        .filter(cohort_assignment::Column::Version.gt(after))
        .filter(cohort_assignment::Column::Version.lte(upto))
        .order_by_asc(cohort_assignment::Column::Version)
        .limit(limit)
        .all(db)
        .await
}

/// Published announcements of `cohort_ids` changed in `(after, upto]` that reach `recipient`
/// (or anyone, for staff), in version order.
pub async fn changed_announcements(
    db: &impl ConnectionTrait,
    cohort_ids: &[Uuid],
    recipient: Option<Uuid>,
    after: i64,
    upto: i64,
    limit: u64,
) -> Result<Vec<QueryResult>, DbErr> {
    let mut select = Query::select();
    select
        .columns([
            "id",
            "cohort_id",
            "author_id",
            "title",
            "body",
            "publish_at",
            "to_whole_cohort",
            "version",
        ])
        .from("announcements")
        .and_where(Expr::col("cohort_id").is_in(cohort_ids.iter().copied()))
        .and_where(Expr::col("status").eq("published"))
        .and_where(Expr::col("version").gt(after))
        .and_where(Expr::col("version").lte(upto))
        .order_by("version", Order::Asc)
        .limit(limit);
    if let Some(user_id) = recipient {
        select.cond_where(
            Condition::any()
                .add(Expr::col("to_whole_cohort").eq(true))
                .add(
                    Expr::col("id").in_subquery(
                        Query::select()
                            .column("announcement_id")
                            .from("announcement_recipients")
                            .and_where(Expr::col("user_id").eq(user_id))
                            .to_owned(),
                    ),
                ),
        );
    }
    db.query_all(&select).await
}

/// Assignments of some cohorts (to check the links of pushed records).
pub async fn assignments_of(
    db: &impl ConnectionTrait,
    cohort_ids: &[Uuid],
) -> Result<Vec<cohort_assignment::Model>, DbErr> {
    cohort_assignment::Entity::find()
        .filter(cohort_assignment::Column::CohortId.is_in(cohort_ids.iter().copied()))
        .all(db)
        .await
}

/// Memberships of some cohorts (to check feedback counterparts).
pub async fn members_of(
    db: &impl ConnectionTrait,
    cohort_ids: &[Uuid],
) -> Result<Vec<cohort_member::Model>, DbErr> {
    cohort_member::Entity::find()
        .filter(cohort_member::Column::CohortId.is_in(cohort_ids.iter().copied()))
        .all(db)
        .await
}

/// A user's memberships.
pub async fn memberships_of(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> Result<Vec<cohort_member::Model>, DbErr> {
    cohort_member::Entity::find()
        .filter(cohort_member::Column::UserId.eq(user_id))
        .all(db)
        .await
}
