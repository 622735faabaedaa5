//! Each record row keeps the JSON a pull sends for it, from the version on: a page is built by
//! concatenating these texts instead of decoding every column and encoding it again. The server
//! writes it with every version of a record; rows written before this migration have none and
//! are decoded from their columns as before.

use sea_orm_migration::{prelude::*, schema::*};

/// Every table that holds a sync collection's records.
const RECORD_TABLES: [&str; 7] = [
    "interviews",
    "feedback_exercises",
    "assignment_work",
    "harvests",
    "profiles",
    "announcement_reads",
    "attachments",
];

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in RECORD_TABLES {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(text_null("wire_tail"))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in RECORD_TABLES {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .drop_column("wire_tail")
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
