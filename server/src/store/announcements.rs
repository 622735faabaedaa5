//! Announcements, their recipients, and who has read them.

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait, Query},
};
use uuid::Uuid;

use super::entity::{announcement, announcement_recipient};

pub async fn insert_announcement(
    db: &impl ConnectionTrait,
    model: announcement::Model,
    recipients: &[Uuid],
) -> Result<(), DbErr> {
    let id = model.id;
    announcement::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await?;
    if !recipients.is_empty() {
        announcement_recipient::Entity::insert_many(recipients.iter().map(|user_id| {
            announcement_recipient::Model {
                announcement_id: id,
                user_id: *user_id,
            }
            .into_active_model()
        }))
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

pub async fn find_announcements(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<Vec<announcement::Model>, DbErr> {
    announcement::Entity::find()
        .filter(announcement::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await
}

/// Scheduled announcements whose time has come.
pub async fn due_scheduled(
    db: &impl ConnectionTrait,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<announcement::Model>, DbErr> {
    announcement::Entity::find()
        .filter(announcement::Column::Status.eq("scheduled"))
        .filter(announcement::Column::PublishAt.lte(now))
        .all(db)
        .await
}

/// Takes a scheduled announcement for publishing; false if another worker took it first or it
/// was cancelled.
pub async fn claim_scheduled(db: &impl ConnectionTrait, id: Uuid) -> Result<bool, DbErr> {
    let result = announcement::Entity::update_many()
        .col_expr(announcement::Column::Status, Expr::value("publishing"))
        .filter(announcement::Column::Id.eq(id))
        .filter(announcement::Column::Status.eq("scheduled"))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn mark_published(
    db: &impl ConnectionTrait,
    id: Uuid,
    version: i64,
) -> Result<(), DbErr> {
    announcement::Entity::update_many()
        .col_expr(announcement::Column::Status, Expr::value("published"))
        .col_expr(announcement::Column::Version, Expr::value(version))
        .filter(announcement::Column::Id.eq(id))
        .exec(db)
        .await
        .map(drop)
}

/// Cancels a scheduled announcement; false if it is no longer scheduled.
pub async fn cancel_scheduled(db: &impl ConnectionTrait, id: Uuid) -> Result<bool, DbErr> {
    let result = announcement::Entity::update_many()
        .col_expr(announcement::Column::Status, Expr::value("cancelled"))
        .filter(announcement::Column::Id.eq(id))
        .filter(announcement::Column::Status.eq("scheduled"))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// A cohort's announcements, newest first.
pub async fn list_announcements(
    db: &impl ConnectionTrait,
    cohort_id: Uuid,
) -> Result<Vec<announcement::Model>, DbErr> {
    announcement::Entity::find()
        .filter(announcement::Column::CohortId.eq(cohort_id))
        .order_by_desc(announcement::Column::CreatedAt)
        .all(db)
        .await
}

/// Recipients of targeted announcements, by announcement.
pub async fn recipients_of(
    db: &impl ConnectionTrait,
    announcement_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Uuid>>, DbErr> {
    let rows = announcement_recipient::Entity::find()
        .filter(
            announcement_recipient::Column::AnnouncementId.is_in(announcement_ids.iter().copied()),
        )
        .all(db)
        .await?;
    let mut recipients: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for row in rows {
        recipients
            .entry(row.announcement_id)
            .or_default()
            .push(row.user_id);
    }
    Ok(recipients)
}

/// Who has read each announcement (from the synced read receipts).
pub async fn readers_of(
    db: &impl ConnectionTrait,
    announcement_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Uuid>>, DbErr> {
    let statement = Query::select()
        .column("announcement_id")
        .column("owner_id")
        .from("announcement_reads")
        .and_where(Expr::col("announcement_id").is_in(announcement_ids.iter().copied()))
        .and_where(Expr::col("deleted").eq(false))
        .and_where(Expr::col("read_at").is_not_null())
        .to_owned();
    let mut readers: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for row in db.query_all(&statement).await? {
        let announcement: Uuid = row.try_get("", "announcement_id")?;
        readers
            .entry(announcement)
            .or_default()
            .push(row.try_get("", "owner_id")?);
    }
    Ok(readers)
}
