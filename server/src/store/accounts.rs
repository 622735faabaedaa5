//! Users, their devices, refresh tokens and device-link codes.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    sea_query::Expr,
};
use uuid::Uuid;

use super::entity::{device, device_link_code, refresh_token, user};

pub async fn find_user(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find_by_id(id).one(db).await
}

pub async fn find_users(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<Vec<user::Model>, DbErr> {
    user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(db)
        .await
}

/// Finds a user by email; emails are stored lower-cased.
pub async fn find_user_by_email(
    db: &impl ConnectionTrait,
    email: &str,
) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(db)
        .await
}

pub async fn insert_user(db: &impl ConnectionTrait, model: user::Model) -> Result<(), DbErr> {
    user::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await
        .map(drop)
}

pub async fn insert_device(db: &impl ConnectionTrait, model: device::Model) -> Result<(), DbErr> {
    device::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await
        .map(drop)
}

pub async fn find_device(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<device::Model>, DbErr> {
    device::Entity::find_by_id(id).one(db).await
}

/// The device if it exists and is not revoked.
pub async fn find_active_device(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<device::Model>, DbErr> {
    device::Entity::find_by_id(id)
        .filter(device::Column::RevokedAt.is_null())
        .one(db)
        .await
}

/// A user's devices, newest first, revoked ones included.
pub async fn list_devices(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> Result<Vec<device::Model>, DbErr> {
    device::Entity::find()
        .filter(device::Column::UserId.eq(user_id))
        .order_by_desc(device::Column::CreatedAt)
        .all(db)
        .await
}

/// Marks one of a user's devices to be wiped (it was reported lost). False when it is not theirs.
pub async fn request_wipe(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    device_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = device::Entity::update_many()
        .col_expr(device::Column::WipeRequestedAt, Expr::value(now))
        .filter(device::Column::Id.eq(device_id))
        .filter(device::Column::UserId.eq(user_id))
        .filter(device::Column::WipeRequestedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Revokes one of a user's devices; returns whether an active device was revoked.
pub async fn revoke_device(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    device_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = device::Entity::update_many()
        .col_expr(device::Column::RevokedAt, Expr::value(now))
        .filter(device::Column::Id.eq(device_id))
        .filter(device::Column::UserId.eq(user_id))
        .filter(device::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

pub async fn touch_device(
    db: &impl ConnectionTrait,
    device_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    device::Entity::update_many()
        .col_expr(device::Column::LastSeenAt, Expr::value(now))
        .filter(device::Column::Id.eq(device_id))
        .exec(db)
        .await
        .map(drop)
}

pub async fn insert_refresh_token(
    db: &impl ConnectionTrait,
    model: refresh_token::Model,
) -> Result<(), DbErr> {
    refresh_token::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await
        .map(drop)
}

pub async fn find_refresh_token(
    db: &impl ConnectionTrait,
    token_hash: &str,
) -> Result<Option<refresh_token::Model>, DbErr> {
    refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(token_hash))
        .one(db)
        .await
}

/// Marks a refresh token used. Returns false if it was already used: of two concurrent refreshes
/// with one token, exactly one wins, and the other is treated as reuse.
pub async fn claim_refresh_token(
    db: &impl ConnectionTrait,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
        .filter(refresh_token::Column::Id.eq(id))
        .filter(refresh_token::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn insert_link_code(
    db: &impl ConnectionTrait,
    model: device_link_code::Model,
) -> Result<(), DbErr> {
    device_link_code::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await
        .map(drop)
}

pub async fn find_link_code(
    db: &impl ConnectionTrait,
    code: &str,
) -> Result<Option<device_link_code::Model>, DbErr> {
    device_link_code::Entity::find()
        .filter(device_link_code::Column::Code.eq(code))
        .one(db)
        .await
}

/// Marks a link code used; false if another request used it first.
/// Ends the unused link codes a device made (its session ended).
pub async fn expire_link_codes_of_device(
    db: &impl ConnectionTrait,
    device_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    device_link_code::Entity::update_many()
        .col_expr(device_link_code::Column::ExpiresAt, Expr::value(now))
        .filter(device_link_code::Column::DeviceId.eq(device_id))
        .filter(device_link_code::Column::UsedAt.is_null())
        .filter(device_link_code::Column::ExpiresAt.gt(now))
        .exec(db)
        .await
        .map(drop)
}

pub async fn claim_link_code(
    db: &impl ConnectionTrait,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = device_link_code::Entity::update_many()
        .col_expr(device_link_code::Column::UsedAt, Expr::value(now))
        .filter(device_link_code::Column::Id.eq(id))
        .filter(device_link_code::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The devices of these users that are not revoked, oldest first.
pub async fn live_devices_of(
    db: &impl ConnectionTrait,
    user_ids: &[Uuid],
) -> Result<Vec<device::Model>, DbErr> {
    device::Entity::find()
        .filter(super::id_in(db.get_database_backend(), "user_id", user_ids))
        .filter(device::Column::RevokedAt.is_null())
        .order_by_asc(device::Column::CreatedAt)
        .all(db)
        .await
}

/// What a device reported with a successful pull: when, its outbox, its app version.
pub async fn record_sync_health(
    db: &impl ConnectionTrait,
    device_id: Uuid,
    at: DateTime<Utc>,
    outbox_pending: Option<i32>,
    outbox_oldest_at: Option<DateTime<Utc>>,
    app_version: Option<String>,
) -> Result<(), DbErr> {
    device::Entity::update_many()
        .col_expr(device::Column::LastSyncAt, Expr::value(at))
        .col_expr(device::Column::OutboxPending, Expr::value(outbox_pending))
        .col_expr(
            device::Column::OutboxOldestAt,
            Expr::value(outbox_oldest_at),
        )
        .col_expr(device::Column::AppVersion, Expr::value(app_version))
        .filter(device::Column::Id.eq(device_id))
        .exec(db)
        .await
        .map(drop)
}

/// A provider's admins and trainers (not erased), by name.
pub async fn staff_of(
    db: &impl ConnectionTrait,
    provider_id: Uuid,
) -> Result<Vec<user::Model>, DbErr> {
    user::Entity::find()
        .filter(user::Column::ProviderId.eq(provider_id))
        .filter(user::Column::Role.is_in(["admin", "trainer"]))
        .filter(user::Column::ErasedAt.is_null())
        .order_by_asc(user::Column::DisplayName)
        .all(db)
        .await
}
