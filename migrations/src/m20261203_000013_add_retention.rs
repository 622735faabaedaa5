//! Retention: each organisation keeps its cohorts' participant data a number of months after Day
//! 6 (none: the server's default); a cohort remembers when its trainers were warned and when its
//! participant data was purged.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("organisations")
                    .add_column(integer_null("retention_months"))
                    .to_owned(),
            )
            .await?;
        for column in ["retention_warned_at", "purged_at"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("cohorts")
                        .add_column(timestamp_with_time_zone_null(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["retention_warned_at", "purged_at"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("cohorts")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table("organisations")
                    .drop_column("retention_months")
                    .to_owned(),
            )
            .await
    }
}
