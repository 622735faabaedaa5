//! Attachments: the synced `attachments` records (photos, recordings, PDFs belonging to an
//! interview, a feedback exercise or a harvest) and the state of their uploads. The bytes live in
//! object storage, not in the database: the tables say which chunks arrived and where they are.

use sea_orm_migration::{prelude::*, schema::*};

use crate::conventions::{foreign_key, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("attachments")
                    .col(pk_uuid("id"))
                    .col(uuid("owner_id"))
                    .col(uuid("cohort_id"))
                    .col(big_integer("version"))
                    .col(boolean("deleted").default(false))
                    .col(json("clocks"))
                    .col(json("conflicts"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .col(string_len_null("parent_collection", 32))
                    .col(uuid_null("parent_id"))
                    .col(text_null("file_name"))
                    .col(text_null("content_type"))
                    .col(big_integer_null("size"))
                    .col(string_len_null("sha256", 64))
                    .col(string_len_null("state", 16))
                    .foreign_key(&mut foreign_key("attachments", "owner_id", "users"))
                    .foreign_key(&mut foreign_key("attachments", "cohort_id", "cohorts"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("attachment_uploads")
                    // No foreign key: the upload outlives its record's tombstone until the
                    // collector has removed the bytes.
                    .col(pk_uuid("attachment_id"))
                    // Bytes received so far, from the start: where the next chunk goes.
                    .col(big_integer("received"))
                    // A finish in progress (hashing and assembling), so two do not overlap.
                    .col(timestamp_with_time_zone_null("finishing_at"))
                    .col(timestamp_with_time_zone_null("stored_at"))
                    // Bytes removed by the collector after the record was deleted.
                    .col(timestamp_with_time_zone_null("collected_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("attachment_parts")
                    .col(uuid("attachment_id"))
                    // Offset of the part's first byte in the file.
                    .col(big_integer("first_byte"))
                    .col(big_integer("length"))
                    .col(string_len("object_key", 200))
                    .primary_key(Index::create().col("attachment_id").col("first_byte"))
                    .to_owned(),
            )
            .await?;
        for index in [
            index("attachments", &["owner_id", "version"]),
            index("attachments", &["cohort_id", "version"]),
            index("attachments", &["parent_id"]),
        ] {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["attachment_parts", "attachment_uploads", "attachments"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
