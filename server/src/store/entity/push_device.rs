//! The `push_devices` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "push_devices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub device_id: Uuid,
    pub user_id: Uuid,
    pub token: String,
    pub platform: String,
    pub locale: String,
    pub time_zone: String,
    pub app_version: String,
    pub quiet_hours_start: String,
    pub quiet_hours_end: String,
    pub created_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
    pub deactivated_at: Option<DateTimeUtc>,
    pub deactivation_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
