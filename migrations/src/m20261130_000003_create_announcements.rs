//! Announcements from trainers to a cohort (or chosen participants), synced read-only to their
//! inbox, and the participants' read receipts, synced like their other records.

use sea_orm_migration::{prelude::*, schema::*};

use crate::conventions::foreign_key;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("announcements")
                    .col(pk_uuid("id"))
                    .col(uuid("cohort_id"))
                    .col(uuid("author_id"))
                    .col(string("title"))
                    .col(text("body"))
                    // True: every member of the cohort; false: the rows in announcement_recipients.
                    .col(boolean("to_whole_cohort"))
                    // `published` ones are in inboxes; `scheduled` wait; `cancelled` never went out.
                    .col(string_len("status", 16))
                    .col(timestamp_with_time_zone("publish_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(big_integer("version"))
                    .foreign_key(&mut foreign_key("announcements", "cohort_id", "cohorts"))
                    .foreign_key(&mut foreign_key("announcements", "author_id", "users"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("announcement_recipients")
                    .col(uuid("announcement_id"))
                    .col(uuid("user_id"))
                    .primary_key(Index::create().col("announcement_id").col("user_id"))
                    .foreign_key(&mut foreign_key(
                        "announcement_recipients",
                        "announcement_id",
                        "announcements",
                    ))
                    .foreign_key(&mut foreign_key(
                        "announcement_recipients",
                        "user_id",
                        "users",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("announcement_reads")
                    .col(pk_uuid("id"))
                    .col(uuid("owner_id"))
                    .col(uuid("cohort_id"))
                    .col(big_integer("version"))
                    .col(boolean("deleted").default(false))
                    .col(json("clocks"))
                    .col(json("conflicts"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .col(uuid_null("announcement_id"))
                    .col(timestamp_with_time_zone_null("read_at"))
                    .foreign_key(&mut foreign_key("announcement_reads", "owner_id", "users"))
                    .foreign_key(&mut foreign_key(
                        "announcement_reads",
                        "cohort_id",
                        "cohorts",
                    ))
                    .to_owned(),
            )
            .await?;
        for (table, columns) in [
            ("announcements", vec!["cohort_id", "version"]),
            ("announcement_recipients", vec!["user_id"]),
            ("announcement_reads", vec!["owner_id", "version"]),
            ("announcement_reads", vec!["cohort_id", "version"]),
        ] {
            let mut index = Index::create();
            index
                .name(format!("idx-{table}-{}", columns.join("-")))
                .table(table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "announcement_reads",
            "announcement_recipients",
            "announcements",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
