//! The data's life (AVG/GDPR): export, erasure, retention and the audit log.

use chrono::{DateTime, Utc};
use poem::Body;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::{Binary, Json},
    types::Example,
};
use uuid::Uuid;

use super::{ApiTags, NoContent, accounts::DeviceView, auth::BearerAuth, error::ApiError};
use crate::{
    service::{Services, privacy::retention::MAX_RETENTION_MONTHS},
    store::audit::AuditEntry,
};

type Result<T> = std::result::Result<T, ApiError>;

// The request's validator repeats the service's limit (attributes take literals).
const _: () = assert!(MAX_RETENTION_MONTHS == 120);

/// An export archive.
#[derive(ApiResponse)]
pub enum ExportResponse {
    /// A tar archive (format `veldwerk-export`, version 1), streamed. Its layout is in
    /// `veldwerk-export/manifest.json` and the README ("Privacy"). A body that ends without
    /// tar's two closing blocks was cut short by a server failure: start again.
    #[oai(status = 200, content_type = "application/x-tar")]
    Archive(
        Binary<Body>,
        /// `attachment; filename="veldwerk-export-<id>.tar"`.
        #[oai(header = "Content-Disposition")]
        String,
    ),
}

/// One audit entry: what happened, who did it, about whom; ids and counts, never content.
#[derive(Debug, Object)]
pub struct AuditEntryView {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// Who did it; absent for the server's own jobs (retention).
    #[oai(skip_serializing_if_is_none)]
    pub actor_id: Option<Uuid>,
    #[oai(skip_serializing_if_is_none)]
    pub actor_role: Option<String>,
    /// `data.exported`, `participant.erased`, `cohort.records_synced`, `staff.created`,
    /// `cohort.member_added`, `cohort.member_removed`, `cohort.created`,
    /// `cohort.schedule_changed`, `reminders.rules_changed`, `retention.changed`,
    /// `retention.warned`, `retention.cohort_purged`, `security.device_revoked`,
    /// `security.refresh_token_reused`, `participant.work_read`.
    pub action: String,
    /// The person whose data or account it concerns.
    #[oai(skip_serializing_if_is_none)]
    pub subject_id: Option<Uuid>,
    #[oai(skip_serializing_if_is_none)]
    pub cohort_id: Option<Uuid>,
    /// Ids and counts about the action.
    pub details: serde_json::Value,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(entry: AuditEntry) -> Self {
        Self {
            id: entry.id,
            at: entry.at,
            actor_id: entry.actor_id,
            actor_role: entry.actor_role,
            action: entry.action,
            subject_id: entry.subject_id,
            cohort_id: entry.cohort_id,
            details: entry.details,
        }
    }
}

/// An organisation's retention period.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct RetentionRequest {
    /// Months after Day 6 that its cohorts' participant data is kept; `null` returns to the
    /// server's default.
    #[oai(validator(minimum(value = "1"), maximum(value = "120")))]
    pub months: Option<u32>,
}

impl Example for RetentionRequest {
    fn example() -> Self {
        Self { months: Some(18) }
    }
}

/// An organisation's retention period as it applies.
#[derive(Debug, Object)]
pub struct RetentionView {
    pub organisation_id: Uuid,
    /// Months after Day 6 that participant data is kept.
    pub months: u32,
    /// Whether that is the server's default (the organisation set none).
    pub is_default: bool,
}

/// Export, erasure, retention, audit.
pub struct PrivacyApi {
    pub services: Services,
}

fn archive(
    stream: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    subject: Uuid,
) -> ExportResponse {
    ExportResponse::Archive(
        Binary(Body::from_bytes_stream(stream)),
        format!("attachment; filename=\"veldwerk-export-{subject}.tar\""),
    )
}

#[OpenApi]
impl PrivacyApi {
    /// Download everything about the caller
    ///
    /// The caller's account, cohorts, devices and sessions, push registrations, every record
    /// they own, the feedback about them shared with them, the announcements addressed to them,
    /// and the bytes of their attachments, as one streamed tar archive. Logged in the audit log.
    #[oai(
        path = "/me/export",
        method = "get",
        tag = "ApiTags::Privacy",
        operation_id = "exportMe"
    )]
    async fn export_me(&self, auth: BearerAuth) -> Result<ExportResponse> {
        let stream = self.services.export_own_data(&auth.0).await?;
        Ok(archive(stream, auth.0.user_id))
    }

    /// Download everything about a participant
    ///
    /// Admins, for a participant of their provider: the archive the participant would get from
    /// `GET /v1/me/export` (an access request). Logged in the audit log.
    #[oai(
        path = "/participants/:id/export",
        method = "get",
        tag = "ApiTags::Privacy",
        operation_id = "exportParticipant"
    )]
    async fn export_participant(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<ExportResponse> {
        let stream = self.services.export_participant(&auth.0, id.0).await?;
        Ok(archive(stream, id.0))
    }

    /// Erase a participant
    ///
    /// Admins, for a participant of their provider. Every record they own becomes a tombstone
    /// holding nothing they wrote (so every device that held it, trainers' included, drops it at
    /// its next pull); their name is cleared from other members' feedback exercises; their
    /// attachments' bytes are deleted at once; their devices are revoked and told to wipe;
    /// the account keeps only its id. The audit log records the erasure with counts only.
    /// Cannot be undone.
    #[oai(
        path = "/participants/:id",
        method = "delete",
        tag = "ApiTags::Privacy",
        operation_id = "eraseParticipant"
    )]
    async fn erase_participant(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<NoContent> {
        self.services.erase_participant(&auth.0, id.0).await?;
        Ok(NoContent::Done)
    }

    /// A participant's devices
    ///
    /// Admins, for a participant of their provider: to find the phone they reported lost.
    #[oai(
        path = "/participants/:id/devices",
        method = "get",
        tag = "ApiTags::Privacy",
        operation_id = "listParticipantDevices"
    )]
    async fn participant_devices(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<Json<Vec<DeviceView>>> {
        let devices = self.services.participant_devices(&auth.0, id.0).await?;
        Ok(Json(
            devices
                .into_iter()
                .map(|device| DeviceView::of(device, auth.0.device_id))
                .collect(),
        ))
    }

    /// Revoke a participant's device
    ///
    /// Admins, for a participant of their provider (who called to report a lost phone, say):
    /// as `DELETE /v1/me/devices/{id}` would from the participant's other device, with `wipe=true`
    /// telling the device to delete its local data (401 `device_wiped` on every endpoint).
    /// Logged in the audit log.
    #[oai(
        path = "/participants/:id/devices/:device_id",
        method = "delete",
        tag = "ApiTags::Privacy",
        operation_id = "revokeParticipantDevice"
    )]
    async fn revoke_participant_device(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        device_id: Path<Uuid>,
        /// Also tell the device to delete its local copy and outbox.
        wipe: Query<Option<bool>>,
    ) -> Result<NoContent> {
        self.services
            .revoke_participant_device(&auth.0, id.0, device_id.0, wipe.0.unwrap_or(false))
            .await?;
        Ok(NoContent::Done)
    }

    /// Read the audit log
    ///
    /// Admins: their provider's entries, newest first. `person` matches entries about or by
    /// that user; `from` and `until` bound the time (`until` excluded); for the next page pass
    /// the last entry's id as `before`.
    #[oai(
        path = "/audit-log",
        method = "get",
        tag = "ApiTags::Privacy",
        operation_id = "readAuditLog"
    )]
    async fn audit_log(
        &self,
        auth: BearerAuth,
        person: Query<Option<Uuid>>,
        from: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
        before: Query<Option<Uuid>>,
        /// At most this many entries (1 to 500; 100 by default).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u64>>,
    ) -> Result<Json<Vec<AuditEntryView>>> {
        let entries = self
            .services
            .audit_log(&auth.0, person.0, from.0, until.0, before.0, limit.0)
            .await?;
        Ok(Json(entries.into_iter().map(Into::into).collect()))
    }

    /// Set an organisation's retention period
    ///
    /// Admins. Its cohorts' participant data is purged this many months after their Day 6
    /// (their trainers are told ahead); `null` returns to the server's default.
    #[oai(
        path = "/organisations/:id/retention",
        method = "put",
        tag = "ApiTags::Privacy",
        operation_id = "setRetention"
    )]
    async fn set_retention(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<RetentionRequest>,
    ) -> Result<Json<RetentionView>> {
        let organisation = self
            .services
            .set_retention(&auth.0, id.0, body.0.months)
            .await?;
        Ok(Json(RetentionView {
            organisation_id: organisation.id,
            months: organisation
                .retention_months
                .and_then(|m| u32::try_from(m).ok())
                .unwrap_or(self.services.config().privacy.retention_months),
            is_default: organisation.retention_months.is_none(),
        }))
    }
}
