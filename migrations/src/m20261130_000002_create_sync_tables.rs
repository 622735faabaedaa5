//! Sync: the participants' records (interviews, feedback exercises, assignment work, harvests,
//! profiles) as typed tables with sync metadata, the global version counter, the applied
//! mutations (for exactly-once), evictions and scope grants; and versions on the cohort tables
//! that devices receive read-only.

use sea_orm_migration::{prelude::*, schema::*};

use crate::conventions::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The typed columns of each synced table, besides the common sync columns.
fn record_table(name: &'static str, columns: Vec<ColumnDef>) -> TableCreateStatement {
    let mut table = Table::create();
    table
        .table(name)
        .col(pk_uuid("id"))
        .col(uuid("owner_id"))
        .col(uuid("cohort_id"))
        // The sync version of the last change; pulls read `version > cursor`.
        .col(big_integer("version"))
        .col(boolean("deleted").default(false))
        // Per field, the hybrid logical clock of its current value.
        .col(json("clocks"))
        // Values that lost a concurrent edit, kept for the owner.
        .col(json("conflicts"))
        .col(timestamp_with_time_zone("created_at"))
        .col(timestamp_with_time_zone("updated_at"))
        .foreign_key(
            ForeignKey::create()
                .name(format!("fk-{name}-owner_id"))
                .from(name, "owner_id")
                .to("users", "id")
                .on_delete(ForeignKeyAction::Cascade),
        )
        .foreign_key(
            ForeignKey::create()
                .name(format!("fk-{name}-cohort_id"))
                .from(name, "cohort_id")
                .to("cohorts", "id")
                .on_delete(ForeignKeyAction::Cascade),
        );
    for mut column in columns {
        table.col(&mut column);
    }
    table.to_owned()
}

const RECORD_TABLES: &[&str] = &[
    "interviews",
    "feedback_exercises",
    "assignment_work",
    "harvests",
    "profiles",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("sync_state")
                    .col(integer("id").primary_key())
                    // Incremented once per write transaction, under its row lock, so versions
                    // become visible in commit order.
                    .col(big_integer("version"))
                    // Tombstones below this version are gone; older cursors must reset.
                    .col(big_integer("purged_below"))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table("sync_state")
                    .columns(["id", "version", "purged_below"])
                    .values_panic([1.into(), 0i64.into(), 0i64.into()])
                    .to_owned(),
            )
            .await?;

        let tables = [
            record_table(
                "interviews",
                vec![
                    uuid_null("assignment_id"),
                    text_null("interviewee_role"),
                    text_null("interviewee_organisation"),
                    text_null("interviewee_name"),
                    boolean_null("name_consent"),
                    date_null("interviewed_on"),
                    text_null("place"),
                    json_null("questions"),
                    text_null("notes"),
                    text_null("insights"),
                    string_len_null("status", 16),
                ],
            ),
            record_table(
                "feedback_exercises",
                vec![
                    string_len_null("direction", 16),
                    uuid_null("counterpart_user_id"),
                    text_null("counterpart_name"),
                    boolean_null("shared"),
                    date_null("happened_on"),
                    text_null("observation"),
                    text_null("effect"),
                    text_null("wish"),
                    text_null("reaction"),
                ],
            ),
            record_table(
                "assignment_work",
                vec![
                    uuid_null("assignment_id"),
                    boolean_null("done"),
                    text_null("applied"),
                    text_null("reflection"),
                ],
            ),
            record_table(
                "harvests",
                vec![
                    text_null("outline"),
                    json_null("material"),
                    string_len_null("status", 16),
                ],
            ),
            record_table(
                "profiles",
                vec![
                    string_len_null("insights_primary", 16),
                    string_len_null("insights_secondary", 16),
                    json_null("insights_scores"),
                    text_null("about"),
                ],
            ),
            Table::create()
                .table("sync_mutations")
                .col(pk_uuid("id"))
                .col(uuid("device_id"))
                .col(uuid("user_id"))
                // The result returned the first time, returned again on a replay.
                .col(json("result"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
            Table::create()
                .table("sync_evictions")
                .col(pk_uuid("id"))
                .col(uuid("user_id"))
                .col(string_len("collection", 32))
                .col(uuid("record_id"))
                .col(big_integer("version"))
                .to_owned(),
            Table::create()
                .table("sync_grants")
                .col(pk_uuid("id"))
                .col(uuid("user_id"))
                .col(uuid("cohort_id"))
                .col(big_integer("version"))
                .to_owned(),
        ];
        for table in tables {
            manager.create_table(table).await?;
        }

        for table in ["cohorts", "cohort_days", "cohort_assignments"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(big_integer("version").default(0))
                        .to_owned(),
                )
                .await?;
        }

        let mut indexes = vec![
            index("sync_evictions", &["user_id", "version"]),
            index("sync_grants", &["user_id", "version"]),
            index("feedback_exercises", &["counterpart_user_id", "version"]),
            index("cohorts", &["version"]),
            index("cohort_days", &["cohort_id", "version"]),
            index("cohort_assignments", &["cohort_id", "version"]),
        ];
        for table in RECORD_TABLES {
            // The participant's pull and the trainer's pull, each in version order.
            indexes.push(index(table, &["owner_id", "version"]));
            indexes.push(index(table, &["cohort_id", "version"]));
        }
        for index in indexes {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, index) in [
            ("cohorts", "idx-cohorts-version"),
            ("cohort_days", "idx-cohort_days-cohort_id-version"),
            (
                "cohort_assignments",
                "idx-cohort_assignments-cohort_id-version",
            ),
        ] {
            manager
                .drop_index(Index::drop().name(index).table(table).to_owned())
                .await?;
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .drop_column("version")
                        .to_owned(),
                )
                .await?;
        }
        for table in RECORD_TABLES.iter().chain(&[
            "sync_mutations",
            "sync_evictions",
            "sync_grants",
            "sync_state",
        ]) {
            manager
                .drop_table(Table::drop().table(*table).to_owned())
                .await?;
        }
        Ok(())
    }
}
