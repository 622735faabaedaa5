//! On PostgreSQL, long texts of records (notes, reflections, documents and each row's stored pull
//! text, `wire_tail`) are compressed with lz4 instead of pglz. A push writes them while it holds
//! the version, so their compression is paid one push at a time: for a batch of 100 interviews
//! of 2,000 characters the insert took 13.2 ms with pglz and 7.7 ms with lz4 (BENCHMARKS.md).
//! Rows written before keep their pglz values, which PostgreSQL still reads. A PostgreSQL built
//! without lz4 keeps pglz (the block below reports it and goes on). SQLite: nothing to do.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

/// Each record table's long text columns, `wire_tail` included.
const LONG_TEXTS: [(&str, &[&str]); 7] = [
    (
        "interviews",
        &["questions", "notes", "insights", "wire_tail"],
    ),
    ("feedback_exercises", &["wire_tail"]),
    ("assignment_work", &["applied", "reflection", "wire_tail"]),
    ("harvests", &["outline", "material", "wire_tail"]),
    ("profiles", &["wire_tail"]),
    ("announcement_reads", &["wire_tail"]),
    ("attachments", &["wire_tail"]),
];

#[derive(DeriveMigrationName)]
pub struct Migration;

fn set_compression(method: &str) -> String {
    let mut statements = String::new();
    for (table, columns) in LONG_TEXTS {
        for column in columns {
            statements.push_str(&format!(
                "ALTER TABLE \"{table}\" ALTER COLUMN \"{column}\" SET COMPRESSION {method};\n"
            ));
        }
    }
    format!(
        "DO $$ BEGIN\n{statements}EXCEPTION WHEN feature_not_supported THEN RAISE NOTICE \
         'long texts keep the default compression: %', SQLERRM;\nEND $$;"
    )
}

/// Sets the compression of the long texts on PostgreSQL.
async fn compress_with(manager: &SchemaManager<'_>, method: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    manager
        .get_connection()
        .execute_unprepared(&set_compression(method))
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        compress_with(manager, "lz4").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        compress_with(manager, "default").await
    }
}
