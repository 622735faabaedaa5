//! Console sessions: the trainer console's cookies, by the hash of their value.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter};
use uuid::Uuid;

use super::entity::console_session;

pub async fn insert_session(
    db: &impl ConnectionTrait,
    session: console_session::Model,
) -> Result<(), DbErr> {
    console_session::Entity::insert(session.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The session whose cookie hashes to this, if it has not expired.
pub async fn find_live_session(
    db: &impl ConnectionTrait,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<console_session::Model>, DbErr> {
    console_session::Entity::find()
        .filter(console_session::Column::TokenHash.eq(token_hash))
        .filter(console_session::Column::ExpiresAt.gt(now))
        .one(db)
        .await
}

pub async fn delete_sessions_of_device(
    db: &impl ConnectionTrait,
    device_id: Uuid,
) -> Result<(), DbErr> {
    console_session::Entity::delete_many()
        .filter(console_session::Column::DeviceId.eq(device_id))
        .exec(db)
        .await?;
    Ok(())
}
