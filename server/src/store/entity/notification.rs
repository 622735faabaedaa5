//! The `notifications` table: one per recipient and occasion.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub dedupe_key: String,
    pub kind: String,
    pub user_id: Uuid,
    pub cohort_id: Uuid,
    pub assignment_id: Option<Uuid>,
    pub announcement_id: Option<Uuid>,
    pub due_at: DateTimeUtc,
    pub status: String,
    pub status_reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
