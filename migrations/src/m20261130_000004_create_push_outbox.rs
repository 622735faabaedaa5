//! Push: registered device tokens, per-programme and per-cohort reminder rules, and the durable
//! outbox of notifications (one per recipient and occasion) and deliveries (one per device).

use sea_orm_migration::{prelude::*, schema::*};

use crate::conventions::{foreign_key, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Table::create()
                .table("push_devices")
                // The session device this token belongs to: one token per device.
                .col(pk_uuid("device_id"))
                .col(uuid("user_id"))
                .col(string_len_uniq("token", 1024))
                .col(string_len("platform", 16))
                .col(string_len("locale", 35))
                .col(string_len("time_zone", 64))
                .col(string_len("app_version", 32))
                // The participant's quiet hours on this device, local `HH:MM`.
                .col(string_len("quiet_hours_start", 5))
                .col(string_len("quiet_hours_end", 5))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("last_seen_at"))
                // Set when FCM says the token is dead; such devices get nothing more.
                .col(timestamp_with_time_zone_null("deactivated_at"))
                .col(string_null("deactivation_reason"))
                .foreign_key(&mut foreign_key("push_devices", "device_id", "devices"))
                .foreign_key(&mut foreign_key("push_devices", "user_id", "users"))
                .to_owned(),
            Table::create()
                .table("notifications")
                .col(pk_uuid("id"))
                // Unique per occasion, e.g. `reminder:<user>:<assignment>:<rule>`: planning twice
                // never makes two notifications.
                .col(string_len_uniq("dedupe_key", 200))
                .col(string_len("kind", 32))
                .col(uuid("user_id"))
                .col(uuid("cohort_id"))
                .col(uuid_null("assignment_id"))
                .col(uuid_null("announcement_id"))
                .col(timestamp_with_time_zone("due_at"))
                // pending -> dispatched | skipped | cancelled
                .col(string_len("status", 16))
                .col(string_null("status_reason"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut foreign_key("notifications", "user_id", "users"))
                .foreign_key(&mut foreign_key("notifications", "cohort_id", "cohorts"))
                .to_owned(),
            Table::create()
                .table("deliveries")
                .col(pk_uuid("id"))
                .col(uuid("notification_id"))
                .col(uuid("device_id"))
                .col(string_len("token", 1024))
                // pending -> sending -> sent | failed | pruned | unknown
                .col(string_len("status", 16))
                .col(string_len("title", 200))
                .col(text("body"))
                .col(json("data"))
                .col(integer("attempts"))
                .col(timestamp_with_time_zone("next_attempt_at"))
                .col(timestamp_with_time_zone_null("lease_until"))
                .col(string_null("leased_by"))
                .col(string_null("error_code"))
                .col(text_null("error_message"))
                .col(string_null("message_id"))
                .col(timestamp_with_time_zone_null("sent_at"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut foreign_key(
                    "deliveries",
                    "notification_id",
                    "notifications",
                ))
                .to_owned(),
        ];
        for table in tables {
            manager.create_table(table).await?;
        }
        for table in ["programmes", "cohorts"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        // Reminder rules as JSON; on a cohort, null means the programme's.
                        .add_column(json_null("reminder_rules"))
                        .to_owned(),
                )
                .await?;
        }
        let indexes = [
            index("push_devices", &["user_id"]),
            index("notifications", &["status", "due_at"]),
            index("notifications", &["cohort_id"]),
            index("notifications", &["announcement_id"]),
            index("deliveries", &["notification_id", "device_id"])
                .unique()
                .to_owned(),
            index("deliveries", &["status", "next_attempt_at"]),
        ];
        for index in indexes {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["programmes", "cohorts"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .drop_column("reminder_rules")
                        .to_owned(),
                )
                .await?;
        }
        for table in ["deliveries", "notifications", "push_devices"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
