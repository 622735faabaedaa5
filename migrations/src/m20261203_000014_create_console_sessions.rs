//! Sessions of the trainer console: a browser's cookie, separate from the app's bearer tokens.
//! Each belongs to a device row (the browser), so that logging out or revoking that device ends
//! the session at once, through the same check as every API call.

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
                    .table("console_sessions")
                    .col(pk_uuid("id"))
                    .col(uuid("device_id"))
                    // SHA-256 of the cookie's value: a leaked database holds no usable session.
                    .col(string_len_uniq("token_hash", 64))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .foreign_key(&mut foreign_key("console_sessions", "device_id", "devices"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("console_sessions").to_owned())
            .await
    }
}
