//! The `devices` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "devices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub created_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
    /// Set when the device was reported lost: it is told to wipe its local data.
    pub wipe_requested_at: Option<DateTimeUtc>,
    /// The last successful pull, recorded at most once a minute per server (see
    /// `Services::record_sync_health`).
    pub last_sync_at: Option<DateTimeUtc>,
    /// Changes the device still held back in its outbox at that pull, as it reported them.
    pub outbox_pending: Option<i32>,
    /// When the oldest of those changes was made on the device.
    pub outbox_oldest_at: Option<DateTimeUtc>,
    /// The app version the device last synced with (`Veldwerk-App-Version`).
    pub app_version: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
