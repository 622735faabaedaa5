//! The `announcements` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "announcements")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub cohort_id: Uuid,
    pub author_id: Uuid,
    pub title: String,
    pub body: String,
    pub to_whole_cohort: bool,
    pub status: String,
    pub publish_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub version: i64,
    /// Whether each device's quiet hours hold the push back (the trainer may choose not).
    pub respect_quiet_hours: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
