//! The `cohort_days` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "cohort_days")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub cohort_id: Uuid,
    pub day_number: i32,
    pub title: String,
    pub description: String,
    pub date: Date,
    pub starts_at: Time,
    pub ends_at: Time,
    pub location: String,
    /// Sync version of the last change (devices receive this row read-only).
    pub version: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
