//! The audit log table: appended to inside the transaction of the action it records, read by
//! admins, and trimmed only by its own retention.

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DbErr,
    sea_query::{Expr, ExprTrait, Order, Query},
};
use serde_json::Value;
use uuid::Uuid;

/// The table's columns, in the order of [`AuditEntry`].
const COLUMNS: [&str; 9] = [
    "id",
    "provider_id",
    "at",
    "actor_id",
    "actor_role",
    "action",
    "subject_id",
    "cohort_id",
    "details",
];

/// One entry.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: Uuid,
    pub provider_id: Uuid,
    pub at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor_role: Option<String>,
    pub action: String,
    pub subject_id: Option<Uuid>,
    pub cohort_id: Option<Uuid>,
    pub details: Value,
}

pub async fn insert(db: &impl ConnectionTrait, entry: &AuditEntry) -> Result<(), DbErr> {
    let statement = Query::insert()
        .into_table("audit_log")
        .columns(COLUMNS)
        .values_panic([
            entry.id.into(),
            entry.provider_id.into(),
            entry.at.into(),
            entry.actor_id.into(),
            entry.actor_role.clone().into(),
            entry.action.clone().into(),
            entry.subject_id.into(),
            entry.cohort_id.into(),
            entry.details.clone().into(),
        ])
        .to_owned();
    db.execute(&statement).await.map(drop)
}

/// What an admin asks of the log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Entries about this person, or done by them.
    pub person: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Entries older than this one (ids are time-ordered): the next page.
    pub before: Option<Uuid>,
    pub limit: u64,
}

/// A provider's entries, newest first.
pub async fn list(
    db: &impl ConnectionTrait,
    provider_id: Uuid,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, DbErr> {
    let mut statement = Query::select();
    statement
        .columns(COLUMNS)
        .from("audit_log")
        .and_where(Expr::col("provider_id").eq(provider_id));
    if let Some(person) = filter.person {
        statement.and_where(
            Expr::col("subject_id")
                .eq(person)
                .or(Expr::col("actor_id").eq(person)),
        );
    }
    if let Some(from) = filter.from {
        statement.and_where(Expr::col("at").gte(from));
    }
    if let Some(until) = filter.until {
        statement.and_where(Expr::col("at").lt(until));
    }
    if let Some(before) = filter.before {
        statement.and_where(Expr::col("id").lt(before));
    }
    statement.order_by("id", Order::Desc).limit(filter.limit);
    db.query_all(&statement)
        .await?
        .iter()
        .map(|row| {
            Ok(AuditEntry {
                id: row.try_get("", "id")?,
                provider_id: row.try_get("", "provider_id")?,
                at: row.try_get("", "at")?,
                actor_id: row.try_get("", "actor_id")?,
                actor_role: row.try_get("", "actor_role")?,
                action: row.try_get("", "action")?,
                subject_id: row.try_get("", "subject_id")?,
                cohort_id: row.try_get("", "cohort_id")?,
                details: row.try_get("", "details")?,
            })
        })
        .collect()
}

/// Removes entries older than `cutoff`; returns how many.
pub async fn purge_before(db: &impl ConnectionTrait, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
    let statement = Query::delete()
        .from_table("audit_log")
        .and_where(Expr::col("at").lt(cutoff))
        .to_owned();
    Ok(db.execute(&statement).await?.rows_affected())
}
