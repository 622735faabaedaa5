//! Replanning one participant's reminders (they enrolled, or registered a phone) reads their
//! notifications in the cohort. With only a `cohort_id` index that read, and so every enrolment,
//! grew with the cohort (BENCHMARKS.md, "Enrolment as a cohort grows").

use sea_orm_migration::prelude::*;

use crate::conventions::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(index("notifications", &["user_id", "cohort_id"]))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx-notifications-user_id-cohort_id")
                    .table("notifications")
                    .to_owned(),
            )
            .await
    }
}
