//! The foundation: providers, organisations (municipalities), users and their devices, programme
//! templates, cohorts with their schedule, assignments and members, and invites.

use sea_orm_migration::{prelude::*, schema::*};

use crate::conventions::{foreign_key, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Tables in creation order; `down` drops them in reverse.
const TABLES: &[&str] = &[
    "providers",
    "organisations",
    "users",
    "programmes",
    "programme_days",
    "programme_assignments",
    "cohorts",
    "cohort_days",
    "cohort_assignments",
    "cohort_members",
    "invites",
    "devices",
    "refresh_tokens",
    "device_link_codes",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Table::create()
                .table("providers")
                .col(pk_uuid("id"))
                .col(string("name"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
            Table::create()
                .table("organisations")
                .col(pk_uuid("id"))
                .col(uuid("provider_id"))
                .col(string("name"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut foreign_key(
                    "organisations",
                    "provider_id",
                    "providers",
                ))
                .to_owned(),
            Table::create()
                .table("users")
                .col(pk_uuid("id"))
                .col(uuid("provider_id"))
                .col(uuid_null("organisation_id"))
                .col(string_len("role", 16))
                // Stored lower-cased; participants have none (they enrol with an invite code).
                .col(string_null("email").unique_key())
                .col(string_null("password_hash"))
                .col(string("display_name"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut foreign_key("users", "provider_id", "providers"))
                .foreign_key(&mut foreign_key(
                    "users",
                    "organisation_id",
                    "organisations",
                ))
                .to_owned(),
            Table::create()
                .table("programmes")
                .col(pk_uuid("id"))
                .col(uuid("provider_id"))
                .col(string("name"))
                .col(text("description"))
                .col(json("learning_goals"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut foreign_key("programmes", "provider_id", "providers"))
                .to_owned(),
            Table::create()
                .table("programme_days")
                .col(pk_uuid("id"))
                .col(uuid("programme_id"))
                .col(integer("day_number"))
                .col(string("title"))
                .col(text("description"))
                .foreign_key(&mut foreign_key(
                    "programme_days",
                    "programme_id",
                    "programmes",
                ))
                .to_owned(),
            Table::create()
                .table("programme_assignments")
                .col(pk_uuid("id"))
                .col(uuid("programme_id"))
                .col(integer("after_day"))
                .col(integer("position"))
                .col(string_len("kind", 32))
                .col(string("title"))
                .col(text("description"))
                .foreign_key(&mut foreign_key(
                    "programme_assignments",
                    "programme_id",
                    "programmes",
                ))
                .to_owned(),
            Table::create()
                .table("cohorts")
                .col(pk_uuid("id"))
                .col(uuid("organisation_id"))
                .col(uuid("programme_id"))
                .col(string("name"))
                .col(string_len("time_zone", 64))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut foreign_key(
                    "cohorts",
                    "organisation_id",
                    "organisations",
                ))
                .foreign_key(&mut foreign_key("cohorts", "programme_id", "programmes"))
                .to_owned(),
            Table::create()
                .table("cohort_days")
                .col(pk_uuid("id"))
                .col(uuid("cohort_id"))
                .col(integer("day_number"))
                .col(string("title"))
                .col(text("description"))
                // Local wall-clock date and times in the cohort's time zone: a training day at
                // 09:00 stays at 09:00 whatever the offset to UTC is on that date.
                .col(date("date"))
                .col(time("starts_at"))
                .col(time("ends_at"))
                .col(string("location"))
                .foreign_key(&mut foreign_key("cohort_days", "cohort_id", "cohorts"))
                .to_owned(),
            Table::create()
                .table("cohort_assignments")
                .col(pk_uuid("id"))
                .col(uuid("cohort_id"))
                .col(integer("after_day"))
                .col(integer("due_day"))
                .col(integer("position"))
                .col(string_len("kind", 32))
                .col(string("title"))
                .col(text("description"))
                .foreign_key(&mut foreign_key(
                    "cohort_assignments",
                    "cohort_id",
                    "cohorts",
                ))
                .to_owned(),
            Table::create()
                .table("cohort_members")
                .col(uuid("cohort_id"))
                .col(uuid("user_id"))
                .col(string_len("role", 16))
                .col(timestamp_with_time_zone("created_at"))
                .primary_key(Index::create().col("cohort_id").col("user_id"))
                .foreign_key(&mut foreign_key("cohort_members", "cohort_id", "cohorts"))
                .foreign_key(&mut foreign_key("cohort_members", "user_id", "users"))
                .to_owned(),
            Table::create()
                .table("invites")
                .col(pk_uuid("id"))
                .col(uuid("cohort_id"))
                .col(string_len_uniq("code", 16))
                .col(string_null("label"))
                .col(uuid("created_by"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(timestamp_with_time_zone_null("redeemed_at"))
                .col(uuid_null("redeemed_by"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .foreign_key(&mut foreign_key("invites", "cohort_id", "cohorts"))
                .foreign_key(&mut foreign_key("invites", "created_by", "users"))
                .foreign_key(&mut foreign_key("invites", "redeemed_by", "users"))
                .to_owned(),
            Table::create()
                .table("devices")
                .col(pk_uuid("id"))
                .col(uuid("user_id"))
                .col(string("name"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("last_seen_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .foreign_key(&mut foreign_key("devices", "user_id", "users"))
                .to_owned(),
            Table::create()
                .table("refresh_tokens")
                .col(pk_uuid("id"))
                .col(uuid("device_id"))
                // SHA-256 of the token: a leaked database does not leak usable tokens.
                .col(string_len_uniq("token_hash", 64))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(timestamp_with_time_zone_null("used_at"))
                .foreign_key(&mut foreign_key("refresh_tokens", "device_id", "devices"))
                .to_owned(),
            Table::create()
                .table("device_link_codes")
                .col(pk_uuid("id"))
                .col(uuid("user_id"))
                .col(string_len_uniq("code", 16))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(timestamp_with_time_zone_null("used_at"))
                .foreign_key(&mut foreign_key("device_link_codes", "user_id", "users"))
                .to_owned(),
        ];
        for table in tables {
            manager.create_table(table).await?;
        }

        let indexes = [
            index("organisations", &["provider_id"]),
            index("users", &["organisation_id"]),
            index("programme_days", &["programme_id", "day_number"])
                .unique()
                .to_owned(),
            index("programme_assignments", &["programme_id"]),
            index("cohorts", &["organisation_id"]),
            index("cohort_days", &["cohort_id", "day_number"])
                .unique()
                .to_owned(),
            index("cohort_assignments", &["cohort_id"]),
            index("cohort_members", &["user_id"]),
            index("invites", &["cohort_id"]),
            index("devices", &["user_id"]),
            index("refresh_tokens", &["device_id"]),
        ];
        for index in indexes {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES.iter().rev() {
            manager
                .drop_table(Table::drop().table(*table).to_owned())
                .await?;
        }
        Ok(())
    }
}
