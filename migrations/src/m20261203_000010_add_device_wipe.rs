//! A device reported lost is not only signed out but told to wipe: its next contact answers
//! `device_wiped`, and the app deletes its local copy and outbox (PROTOCOL.md, "Remote wipe").

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("devices")
                    .add_column(timestamp_with_time_zone_null("wipe_requested_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("devices")
                    .drop_column("wipe_requested_at")
                    .to_owned(),
            )
            .await
    }
}
