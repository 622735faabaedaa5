//! Persistence: the connection, migrations, and the sea-orm queries the services use.
//!
//! Functions take `&impl ConnectionTrait` so that a service can run them on the pool or inside
//! one of its transactions alike.

pub mod accounts;
pub mod announcements;
pub mod attachments;
pub mod audit;
pub mod blobs;
pub mod catalog;
pub mod cohorts;
pub mod console;
pub mod entity;
pub mod privacy;
pub mod push;
pub mod sync;

use std::time::Duration;

use anyhow::Context;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use veldwerk_migrations::{Migrator, MigratorTrait};

/// Opens a pool for `sqlite://...` or `postgres://...`. For SQLite the parent folder of the file
/// is created, and the file is switched to write-ahead logging so readers never wait for writers.
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    if let Some(path) = sqlite_file(url)
        && let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("Failed to create the folder {}", parent.display()))?;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10));
    if url.starts_with("sqlite:") {
        // One SQLite file takes one writer at a time; a small pool avoids lock contention.
        options.max_connections(4).min_connections(1);
        // No memory map (`mmap_size` 0): each pooled connection maps the file on its own, and
        // every page read through a map counts in the process's resident memory once per
        // connection, so a 600 MB file read by four connections took the server to 3.4 GB
        // (BENCHMARKS.md). Pages are read with `pread` into SQLite's own cache (2 MB per
        // connection), a fixed bound.
        options.map_sqlx_sqlite_opts(|sqlite| {
            sqlite.pragma("mmap_size", "0").statement_cache_capacity(16)
        });
    } else {
        options.max_connections(16);
    }
    let db = Database::connect(options)
        .await
        .context("Failed to connect to the database")?;
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
            .await
            .context("Failed to configure SQLite")?;
    }
    Ok(db)
}

/// Starts a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`): a transaction that reads first and writes later cannot be upgraded while
/// another writes, and would fail with "database is locked" instead of waiting its turn.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, sea_orm::DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// `column IN (ids)` written for the backend. PostgreSQL gets one array parameter
/// (`column = ANY($1)`): a list of thousands of ids is then one statement it plans once, not a
/// new statement with thousands of parameters for every list length.
pub fn id_in(
    backend: DbBackend,
    column: &'static str,
    ids: &[uuid::Uuid],
) -> sea_orm::sea_query::SimpleExpr {
    use sea_orm::sea_query::{Expr, ExprTrait, extension::postgres::PgFunc};
    match backend {
        DbBackend::Postgres => Expr::col(column).eq(PgFunc::any(Expr::val(ids.to_vec()))),
        _ => Expr::col(column).is_in(ids.iter().copied()),
    }
}

/// Connections of the pool: (open, idle).
pub fn pool_use(db: &DatabaseConnection) -> (u32, usize) {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
    }
}

/// How many migrations this build knows.
pub fn migrations_count() -> usize {
    Migrator::migrations().len()
}

/// How many migrations this build knows that the database has not applied.
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<usize, sea_orm::DbErr> {
    Ok(Migrator::get_pending_migrations(db).await?.len())
}

/// Applies every pending migration.
///
/// On PostgreSQL the migrations run in one transaction holding an advisory lock, so replicas that
/// start together migrate once: the others wait, then find nothing left to do.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Migrator::up(db, None)
            .await
            .context("Failed to apply the database migrations");
    }
    let txn = db.begin().await.context("Failed to start the migration")?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await
        .context("Failed to take the migration lock")?;
    Migrator::up(&txn, None)
        .await
        .context("Failed to apply the database migrations")?;
    txn.commit()
        .await
        .context("Failed to commit the migrations")
}

/// The advisory lock key that serialises migrations across replicas ("VELDWERK" in ASCII).
const MIGRATION_LOCK: i64 = 0x5645_4c44_5745_524b;

fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

#[cfg(test)]
mod tests {
    use super::sqlite_file;

    #[test]
    fn sqlite_file_is_read_from_the_url() {
        assert_eq!(
            sqlite_file("sqlite://data/veldwerk.db?mode=rwc"),
            Some("data/veldwerk.db")
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://localhost/test"), None);
    }
}
