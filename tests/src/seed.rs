//! Bulk seeding straight into the store, for scenarios and benchmarks that need thousands of
//! participants (enrolling them through the API would take minutes).

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr, EntityTrait, IntoActiveModel};
use uuid::Uuid;
use veldwerk_server::store::entity::{cohort_member, device, push_device, user};

/// Adds `count` participants to a cohort, each with one phone registered for push (token
/// `{token_prefix}-{device id}`, Dutch, Amsterdam, quiet 21:00-08:00). Returns their user ids.
pub async fn participants_with_phones(
    db: &DatabaseConnection,
    provider_id: Uuid,
    organisation_id: Uuid,
    cohort_id: Uuid,
    count: usize,
    token_prefix: &str,
) -> Result<Vec<Uuid>, DbErr> {
    let now = Utc::now();
    let mut users = Vec::with_capacity(count);
    for chunk_start in (0..count).step_by(1_000) {
        let chunk = (count - chunk_start).min(1_000);
        let ids: Vec<(Uuid, Uuid)> = (0..chunk)
            .map(|_| (Uuid::now_v7(), Uuid::now_v7()))
            .collect();
        user::Entity::insert_many(ids.iter().map(|(user_id, _)| {
            user::Model {
                id: *user_id,
                provider_id,
                organisation_id: Some(organisation_id),
                role: "participant".into(),
                email: None,
                password_hash: None,
                display_name: "Deelnemer".into(),
                created_at: now,
                erased_at: None,
            }
            .into_active_model()
        }))
        .exec_without_returning(db)
        .await?;
        cohort_member::Entity::insert_many(ids.iter().map(|(user_id, _)| {
            cohort_member::Model {
                cohort_id,
                user_id: *user_id,
                role: "participant".into(),
                created_at: now,
            }
            .into_active_model()
        }))
        .exec_without_returning(db)
        .await?;
        device::Entity::insert_many(ids.iter().map(|(user_id, device_id)| {
            device::Model {
                id: *device_id,
                user_id: *user_id,
                name: "phone".into(),
                created_at: now,
                last_seen_at: now,
                revoked_at: None,
                wipe_requested_at: None,
                last_sync_at: None,
                outbox_pending: None,
                outbox_oldest_at: None,
                app_version: None,
            }
            .into_active_model()
        }))
        .exec_without_returning(db)
        .await?;
        push_device::Entity::insert_many(ids.iter().map(|(user_id, device_id)| {
            push_device::Model {
                device_id: *device_id,
                user_id: *user_id,
                token: format!("{token_prefix}-{}", device_id.simple()),
                platform: "android".into(),
                locale: "nl-NL".into(),
                time_zone: "Europe/Amsterdam".into(),
                app_version: "1.0.0".into(),
                quiet_hours_start: "21:00".into(),
                quiet_hours_end: "08:00".into(),
                created_at: now,
                last_seen_at: now,
                deactivated_at: None,
                deactivation_reason: None,
            }
            .into_active_model()
        }))
        .exec_without_returning(db)
        .await?;
        users.extend(ids.iter().map(|(user_id, _)| *user_id));
    }
    Ok(users)
}
