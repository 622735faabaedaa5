//! A link code remembers the device that made it, so that it dies with that device's session:
//! revoking a lost tablet, or logging it out, must not leave a way back in.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("device_link_codes")
                    // Null only for codes made before this change (they expire within minutes).
                    .add_column(uuid_null("device_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("device_link_codes")
                    .drop_column("device_id")
                    .to_owned(),
            )
            .await
    }
}
