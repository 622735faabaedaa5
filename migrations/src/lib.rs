//! Veldwerk's database schema as a sequence of sea-orm migrations.
//!
//! One migration per change, named `mYYYYMMDD_HHMMSS_verb_noun`, each with a `down`. Every
//! migration must run on both SQLite (the embedded default) and PostgreSQL, so they use the
//! portable schema builder and avoid dialect-specific SQL unless a backend check guards it.

pub use sea_orm_migration::prelude::*;

mod conventions;
mod m20261130_000001_create_foundation;
mod m20261130_000002_create_sync_tables;
mod m20261130_000003_create_announcements;
mod m20261130_000004_create_push_outbox;
mod m20261130_000005_create_attachments;
mod m20261203_000006_key_mutations_by_user;
mod m20261203_000007_add_announcement_quiet_hours;
mod m20261203_000008_add_link_code_device;
mod m20261203_000009_index_notifications_by_participant;
mod m20261203_000010_add_device_wipe;
mod m20261203_000011_add_user_erasure;
mod m20261203_000012_create_audit_log;
mod m20261203_000013_add_retention;
mod m20261203_000014_create_console_sessions;
mod m20261204_000015_add_device_sync_health;
mod m20261204_000016_add_record_wire_tail;
mod m20261205_000017_compress_long_texts_with_lz4;

/// The ordered list of every migration; `veldwerk migrate` and server start-up apply it.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261130_000001_create_foundation::Migration),
            Box::new(m20261130_000002_create_sync_tables::Migration),
            Box::new(m20261130_000003_create_announcements::Migration),
            Box::new(m20261130_000004_create_push_outbox::Migration),
            Box::new(m20261130_000005_create_attachments::Migration),
            Box::new(m20261203_000006_key_mutations_by_user::Migration),
            Box::new(m20261203_000007_add_announcement_quiet_hours::Migration),
            Box::new(m20261203_000008_add_link_code_device::Migration),
            Box::new(m20261203_000009_index_notifications_by_participant::Migration),
            Box::new(m20261203_000010_add_device_wipe::Migration),
            Box::new(m20261203_000011_add_user_erasure::Migration),
            Box::new(m20261203_000012_create_audit_log::Migration),
            Box::new(m20261203_000013_add_retention::Migration),
            Box::new(m20261203_000014_create_console_sessions::Migration),
            Box::new(m20261204_000015_add_device_sync_health::Migration),
            Box::new(m20261204_000016_add_record_wire_tail::Migration),
            Box::new(m20261205_000017_compress_long_texts_with_lz4::Migration),
        ]
    }
}
