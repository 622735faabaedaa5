//! Sync health per device, for the trainer's progress view: when the device last pulled
//! successfully, how many changes it still held back in its outbox then (and since when), and
//! which app version it runs. Devices report the outbox with each pull (PROTOCOL.md, "Sync
//! health").

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one column at a time.
        let columns = [
            timestamp_with_time_zone_null("last_sync_at"),
            integer_null("outbox_pending"),
            timestamp_with_time_zone_null("outbox_oldest_at"),
            string_len_null("app_version", 40),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table("devices")
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            "app_version",
            "outbox_oldest_at",
            "outbox_pending",
            "last_sync_at",
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table("devices")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
