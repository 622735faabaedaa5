//! Exactly-once per user: a mutation id is remembered together with the user who pushed it, so
//! another user's mutation with the same id (a client library that counts from 1, a copied
//! outbox, or malice) is applied as their own instead of being answered with someone else's
//! stored result.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The columns both tables share, in one order for copying.
const COLUMNS: &str = "id, user_id, device_id, result, created_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("sync_user_mutations")
                    .col(uuid("user_id"))
                    .col(uuid("id"))
                    .col(uuid("device_id"))
                    // The result returned the first time, returned again on a replay.
                    .col(json("result"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("user_id").col("id"))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "INSERT INTO sync_user_mutations ({COLUMNS}) SELECT {COLUMNS} FROM sync_mutations"
            ))
            .await?;
        manager
            .drop_table(Table::drop().table("sync_mutations").to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("sync_mutations")
                    .col(pk_uuid("id"))
                    .col(uuid("device_id"))
                    .col(uuid("user_id"))
                    .col(json("result"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        // Ids that several users used cannot all go back: the first one stays.
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "INSERT INTO sync_mutations ({COLUMNS}) SELECT {COLUMNS} FROM sync_user_mutations \
                 ON CONFLICT (id) DO NOTHING"
            ))
            .await?;
        manager
            .drop_table(Table::drop().table("sync_user_mutations").to_owned())
            .await
    }
}
