//! The audit log: who looked at or changed what about whom, for the provider's admins (AVG
//! accountability). Entries are written in the transaction of the action they record, so an
//! action that happened is always logged and a logged action always happened. They hold ids and
//! counts, never a record's content or a person's name, so an erasure need not touch them.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use serde_json::Value;
use uuid::Uuid;

use super::{Actor, Result, Role, Services};
use crate::store::audit::{self as store, AuditEntry, AuditFilter};

/// Most entries one read returns.
pub const MAX_AUDIT_PAGE: u64 = 500;

/// What happened. The stored names are stable: admins' tools filter on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// A participant's data was exported (by themselves or an admin).
    DataExported,
    /// A participant was erased (by themselves, an admin, or retention).
    ParticipantErased,
    /// A trainer's or admin's device synced a cohort's participant records for the first time.
    CohortRecordsSynced,
    /// A staff account was created (with its role).
    StaffCreated,
    /// Someone joined or left a cohort.
    MemberAdded,
    MemberRemoved,
    /// A cohort was created, or its schedule changed.
    CohortCreated,
    ScheduleChanged,
    /// A cohort's or the programme's reminder rules changed.
    ReminderRulesChanged,
    /// An organisation's retention period changed.
    RetentionChanged,
    /// Trainers were told a cohort's participant data will be purged.
    RetentionWarned,
    /// A cohort's participant data was purged at the end of its retention.
    CohortPurged,
    /// A device was revoked (or reported lost), or logged out.
    DeviceRevoked,
    /// A refresh token was used twice: the device was revoked.
    RefreshTokenReused,
    /// A trainer or admin read a participant's work (interviews, assignment work, feedback,
    /// harvest) in the console or through the API.
    ParticipantWorkRead,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DataExported => "data.exported",
            Self::ParticipantErased => "participant.erased",
            Self::CohortRecordsSynced => "cohort.records_synced",
            Self::StaffCreated => "staff.created",
            Self::MemberAdded => "cohort.member_added",
            Self::MemberRemoved => "cohort.member_removed",
            Self::CohortCreated => "cohort.created",
            Self::ScheduleChanged => "cohort.schedule_changed",
            Self::ReminderRulesChanged => "reminders.rules_changed",
            Self::RetentionChanged => "retention.changed",
            Self::RetentionWarned => "retention.warned",
            Self::CohortPurged => "retention.cohort_purged",
            Self::DeviceRevoked => "security.device_revoked",
            Self::RefreshTokenReused => "security.refresh_token_reused",
            Self::ParticipantWorkRead => "participant.work_read",
        }
    }
}

/// One thing to log: what, about whom, in which cohort, with ids and counts as details.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub action: AuditAction,
    pub subject: Option<Uuid>,
    pub cohort: Option<Uuid>,
    pub details: Value,
}

impl AuditEvent {
    pub fn new(action: AuditAction) -> Self {
        Self {
            action,
            subject: None,
            cohort: None,
            details: Value::Object(Default::default()),
        }
    }

    pub fn subject(mut self, user: Uuid) -> Self {
        self.subject = Some(user);
        self
    }

    pub fn cohort(mut self, cohort: Uuid) -> Self {
        self.cohort = Some(cohort);
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Appends an entry done by `actor` (none: the server's own jobs) in `provider_id`.
pub async fn record(
    db: &impl ConnectionTrait,
    provider_id: Uuid,
    actor: Option<&Actor>,
    event: AuditEvent,
) -> Result<()> {
    let now = Utc::now();
    store::insert(
        db,
        &AuditEntry {
            id: Uuid::now_v7(),
            provider_id,
            at: now,
            actor_id: actor.map(|a| a.user_id),
            actor_role: actor.map(|a| a.role.as_str().to_owned()),
            action: event.action.as_str().to_owned(),
            subject_id: event.subject,
            cohort_id: event.cohort,
            details: event.details,
        },
    )
    .await?;
    Ok(())
}

impl Services {
    /// The caller's provider's audit log, newest first (admins only).
    pub async fn audit_log(
        &self,
        actor: &Actor,
        person: Option<Uuid>,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        before: Option<Uuid>,
        limit: Option<u64>,
    ) -> Result<Vec<AuditEntry>> {
        actor.require(&[Role::Admin])?;
        let filter = AuditFilter {
            person,
            from,
            until,
            before,
            limit: limit.unwrap_or(100).clamp(1, MAX_AUDIT_PAGE),
        };
        Ok(store::list(&self.db, actor.provider_id, &filter).await?)
    }

    /// Removes entries older than `cutoff` (the audit log's own retention); returns how many.
    pub async fn purge_audit_log(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        Ok(store::purge_before(&self.db, cutoff).await?)
    }
}
