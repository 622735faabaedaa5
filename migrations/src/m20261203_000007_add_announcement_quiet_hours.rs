//! A trainer chooses whether an announcement waits for each device's quiet hours (the default)
//! or goes out at once ("tomorrow's venue changed", sent at 22:00).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("announcements")
                    .add_column(boolean("respect_quiet_hours").default(true))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("announcements")
                    .drop_column("respect_quiet_hours")
                    .to_owned(),
            )
            .await
    }
}
