//! Retention: a cohort's participant data is kept for its organisation's period after Day 6
//! (the server's default when the organisation sets none); its trainers are told a while
//! before; then every participant's data in the cohort is erased as an erasure would (their
//! account too when that was their last cohort). The audit log has its own, longer period. See
//! `jobs::retention` for the loop.

use chrono::{DateTime, Duration, Months, Utc};
use serde_json::json;
use uuid::Uuid;
use veldwerk_sync_protocol::schema::COLLECTIONS;

use super::super::{
    Actor, Error, Result, Role, Services,
    audit::{self, AuditAction, AuditEvent},
    cohorts::day_start,
};
use super::ErasedBy;
use crate::store::{
    catalog as catalog_store, cohorts as cohort_store,
    entity::{cohort, notification, organisation},
    privacy as store, push as push_store,
};

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Cohorts whose trainers were told.
    pub warned: Vec<Uuid>,
    /// Cohorts whose participant data was purged.
    pub purged: Vec<Uuid>,
    /// Participants erased (wholly or in one cohort).
    pub participants: u64,
    /// Audit entries past their own retention, removed.
    pub audit_entries: u64,
}

/// Most months an organisation may keep data (the AVG wants a reasoned period, not forever).
pub const MAX_RETENTION_MONTHS: u32 = 120;

impl Services {
    /// When a cohort's participant data is purged: the start of its Day 6 plus the retention
    /// period. None for a cohort without a Day 6.
    pub fn purge_at(
        &self,
        cohort: &cohort::Model,
        organisation: &organisation::Model,
        days: &[crate::store::entity::cohort_day::Model],
    ) -> Option<DateTime<Utc>> {
        let last = days.iter().max_by_key(|day| day.day_number)?;
        let months = organisation
            .retention_months
            .and_then(|m| u32::try_from(m).ok())
            .unwrap_or(self.config.privacy.retention_months);
        day_start(cohort, last).checked_add_months(Months::new(months))
    }

    /// When a cohort's participant data will be purged (none without a Day 6).
    pub async fn cohort_purge_at(
        &self,
        parts: &crate::store::cohorts::CohortWithParts,
    ) -> Result<Option<DateTime<Utc>>> {
        let Some(organisation) =
            catalog_store::find_organisation(&self.db, parts.cohort.organisation_id).await?
        else {
            return Ok(None);
        };
        Ok(self.purge_at(&parts.cohort, &organisation, &parts.days))
    }

    /// Sets an organisation's retention period in months (admins only); none returns to the
    /// server's default.
    pub async fn set_retention(
        &self,
        actor: &Actor,
        organisation_id: Uuid,
        months: Option<u32>,
    ) -> Result<organisation::Model> {
        actor.require(&[Role::Admin])?;
        let organisation = catalog_store::find_organisation(&self.db, organisation_id)
            .await?
            .filter(|o| actor.can_see_organisation(o))
            .ok_or(Error::NotFound("organisation"))?;
        if months.is_some_and(|m| m == 0 || m > MAX_RETENTION_MONTHS) {
            return Err(Error::invalid(
                "invalid_retention",
                format!("the retention period is 1 to {MAX_RETENTION_MONTHS} months"),
            ));
        }
        let txn = crate::store::begin_write(&self.db).await?;
        catalog_store::set_retention_months(&txn, organisation_id, months).await?;
        audit::record(
            &txn,
            actor.provider_id,
            Some(actor),
            AuditEvent::new(AuditAction::RetentionChanged).details(json!({
                "organisation_id": organisation_id,
                "months": months,
            })),
        )
        .await?;
        txn.commit().await?;
        Ok(organisation::Model {
            retention_months: months.and_then(|m| i32::try_from(m).ok()),
            ..organisation
        })
    }

    /// One pass of the retention job at `now`: warns the trainers of cohorts whose purge is
    /// near, purges the cohorts whose time has come, and trims the audit log.
    pub async fn enforce_retention(&self, now: DateTime<Utc>) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        let warning = Duration::days(i64::from(self.config.privacy.retention_warning_days));
        let tables: Vec<&'static str> = COLLECTIONS.iter().map(|spec| spec.name).collect();
        for cohort in store::unpurged_cohorts(&self.db).await? {
            let Some(organisation) =
                catalog_store::find_organisation(&self.db, cohort.organisation_id).await?
            else {
                continue;
            };
            let parts = cohort_store::load_parts(&self.db, cohort.clone()).await?;
            let Some(purge_at) = self.purge_at(&cohort, &organisation, &parts.days) else {
                continue;
            };
            if now >= purge_at {
                for user_id in
                    store::participants_with_data_in(&self.db, cohort.id, &tables).await?
                {
                    self.erase_participant_data(
                        organisation.provider_id,
                        None,
                        user_id,
                        Some(cohort.id),
                        ErasedBy::Retention,
                    )
                    .await?;
                    report.participants += 1;
                }
                let txn = crate::store::begin_write(&self.db).await?;
                store::mark_purged(&txn, cohort.id, now).await?;
                audit::record(
                    &txn,
                    organisation.provider_id,
                    None,
                    AuditEvent::new(AuditAction::CohortPurged)
                        .cohort(cohort.id)
                        .details(
                            json!({ "participants": report.participants, "purge_at": purge_at }),
                        ),
                )
                .await?;
                txn.commit().await?;
                report.purged.push(cohort.id);
            } else if now >= purge_at - warning && cohort.retention_warned_at.is_none() {
                self.warn_trainers(&cohort, organisation.provider_id, purge_at, now)
                    .await?;
                report.warned.push(cohort.id);
            }
        }
        let audit_cutoff =
            now - Duration::days(i64::from(self.config.privacy.audit_retention_days));
        report.audit_entries = self.purge_audit_log(audit_cutoff).await?;
        Ok(report)
    }

    /// Tells a cohort's trainers, once, that its participant data will be purged: a push to
    /// their devices and an audit entry (which the console shows).
    async fn warn_trainers(
        &self,
        cohort: &cohort::Model,
        provider_id: Uuid,
        purge_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let trainers: Vec<Uuid> = cohort_store::list_members(&self.db, cohort.id)
            .await?
            .into_iter()
            .filter(|member| member.role == Role::Trainer.as_str())
            .map(|member| member.user_id)
            .collect();
        let txn = crate::store::begin_write(&self.db).await?;
        if !store::mark_retention_warned(&txn, cohort.id, now).await? {
            // Another replica warned them.
            return Ok(());
        }
        let notifications = trainers
            .iter()
            .map(|trainer| notification::Model {
                id: Uuid::now_v7(),
                dedupe_key: format!("retention:{}:{trainer}", cohort.id),
                kind: RETENTION_WARNING.to_owned(),
                user_id: *trainer,
                cohort_id: cohort.id,
                assignment_id: None,
                announcement_id: None,
                due_at: now,
                status: "pending".to_owned(),
                status_reason: None,
                created_at: now,
                updated_at: now,
            })
            .collect();
        push_store::insert_notifications(&txn, notifications).await?;
        audit::record(
            &txn,
            provider_id,
            None,
            AuditEvent::new(AuditAction::RetentionWarned)
                .cohort(cohort.id)
                .details(json!({ "purge_at": purge_at, "trainers": trainers })),
        )
        .await?;
        txn.commit().await?;
        self.wake_push_worker();
        Ok(())
    }
}

/// The push notification kind of a retention warning.
pub const RETENTION_WARNING: &str = "retention_warning";
