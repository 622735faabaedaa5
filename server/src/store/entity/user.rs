//! The `users` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub provider_id: Uuid,
    pub organisation_id: Option<Uuid>,
    pub role: String,
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub display_name: String,
    pub created_at: DateTimeUtc,
    /// Set when the participant was erased: the row keeps only its id (see `service::privacy`).
    pub erased_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
