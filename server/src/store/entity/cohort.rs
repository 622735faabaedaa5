//! The `cohorts` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "cohorts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organisation_id: Uuid,
    pub programme_id: Uuid,
    pub name: String,
    pub time_zone: String,
    pub created_at: DateTimeUtc,
    /// Sync version of the last change (devices receive this row read-only).
    pub version: i64,
    /// When the trainers were told the participant data will be purged.
    pub retention_warned_at: Option<DateTimeUtc>,
    /// When the participant data was purged at the end of its retention.
    pub purged_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
