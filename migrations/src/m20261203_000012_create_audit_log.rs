//! The audit log: an append-only record of staff access to participants' data, admin actions and
//! security events, per provider. No foreign keys: an entry outlives the accounts and cohorts it
//! names (it holds their ids, never their content), and is removed only by its own retention.

use sea_orm_migration::{prelude::*, schema::*};

use crate::conventions::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("audit_log")
                    .col(pk_uuid("id"))
                    .col(uuid("provider_id"))
                    .col(timestamp_with_time_zone("at"))
                    // Who did it; none for the server's own jobs (retention).
                    .col(uuid_null("actor_id"))
                    .col(string_len_null("actor_role", 16))
                    .col(string_len("action", 48))
                    // The person whose data or account it concerns.
                    .col(uuid_null("subject_id"))
                    .col(uuid_null("cohort_id"))
                    // Ids and counts only: never a record's content or a person's name.
                    .col(json("details"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("audit_log", &["provider_id", "at"]))
            .await?;
        manager
            .create_index(index("audit_log", &["subject_id", "at"]))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("audit_log").to_owned())
            .await
    }
}
