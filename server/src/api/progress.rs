//! What trainers follow between the days: a cohort's progress and sync health, a participant's
//! work (read-only), and a nudge. The console shows the same through the same services.

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use serde_json::Value;
use uuid::Uuid;

use super::{ApiTags, auth::BearerAuth, error::ApiError, types::LocalDate};
use crate::service::{
    Services,
    progress::{CohortProgress, Nudge, ParticipantWork},
};
use crate::store::sync::StoredRecord;

/// A between-day assignment and the dates of its stretch.
#[derive(Debug, Object)]
pub struct StretchView {
    pub assignment_id: Uuid,
    pub title: String,
    /// `opdracht_uitvoeren`, `toepassen_in_werk`, `interview` or another kind of the programme.
    pub kind: String,
    /// Given on this day...
    pub after_day: i32,
    /// ...and due on this one.
    pub due_day: i32,
    /// The date of `after_day`.
    #[oai(skip_serializing_if_is_none)]
    pub from: Option<LocalDate>,
    /// The date of `due_day`.
    #[oai(skip_serializing_if_is_none)]
    pub until: Option<LocalDate>,
}

/// Where a participant stands on one assignment.
#[derive(Debug, Object)]
pub struct AssignmentProgressView {
    pub assignment_id: Uuid,
    /// Marked done in the app (`assignment_work.done`).
    pub done: bool,
    /// "What I applied" is written.
    pub applied: bool,
    /// The reflection is written.
    pub reflection: bool,
    /// Interviews of this assignment's stretch: linked to an assignment given on the same day, or
    /// (linked to none) held from that day up to the next programme day.
    pub interviews: u32,
}

/// The Day 6 harvest presentation.
#[derive(Debug, Object)]
pub struct HarvestProgressView {
    /// `draft` or `ready`; absent before the participant started it.
    #[oai(skip_serializing_if_is_none)]
    pub status: Option<String>,
    pub outline_written: bool,
    /// Files attached to the harvest.
    pub attachments: u32,
}

/// A device's sync health, as it last reported it (PROTOCOL.md, "Sync health").
#[derive(Debug, Object)]
pub struct DeviceHealthView {
    pub user_device_id: Uuid,
    pub name: String,
    /// The last successful pull (exact to a minute).
    #[oai(skip_serializing_if_is_none)]
    pub last_sync_at: Option<DateTime<Utc>>,
    /// Changes still waiting on the device at that pull; absent when the app does not report it.
    #[oai(skip_serializing_if_is_none)]
    pub outbox_pending: Option<i32>,
    /// When the oldest of them was made on the device.
    #[oai(skip_serializing_if_is_none)]
    pub outbox_oldest_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub app_version: Option<String>,
    /// A push can reach it: a live token, seen in the last 30 days.
    pub push_reachable: bool,
}

/// A nudge and where its push stands on each device.
#[derive(Debug, Object)]
pub struct NudgeView {
    pub id: Uuid,
    pub user_id: Uuid,
    /// When the trainer sent it.
    pub created_at: DateTime<Utc>,
    /// `pending` until the push worker takes it, then `dispatched`.
    pub status: String,
    /// One per reachable device; each waits for its device's quiet hours.
    pub deliveries: Vec<super::announcements::DeliveryView>,
}

impl From<Nudge> for NudgeView {
    fn from(nudge: Nudge) -> Self {
        Self {
            id: nudge.notification.id,
            user_id: nudge.notification.user_id,
            created_at: nudge.notification.created_at,
            status: nudge.notification.status,
            deliveries: nudge
                .deliveries
                .into_iter()
                .map(super::announcements::DeliveryView::from)
                .collect(),
        }
    }
}

/// One participant's progress.
#[derive(Debug, Object)]
pub struct ParticipantProgressView {
    pub user_id: Uuid,
    pub display_name: String,
    pub joined_at: DateTime<Utc>,
    /// In the order of the cohort's `stretches`.
    pub assignments: Vec<AssignmentProgressView>,
    pub harvest: HarvestProgressView,
    /// Devices not revoked, oldest first.
    pub devices: Vec<DeviceHealthView>,
    /// At least one device can be reached by push.
    pub push_reachable: bool,
    #[oai(skip_serializing_if_is_none)]
    pub last_nudge: Option<NudgeView>,
}

/// A cohort's progress.
#[derive(Debug, Object)]
pub struct CohortProgressView {
    pub cohort_id: Uuid,
    /// The zone the dates are in.
    pub time_zone: String,
    pub stretches: Vec<StretchView>,
    /// By name.
    pub participants: Vec<ParticipantProgressView>,
}

impl From<CohortProgress> for CohortProgressView {
    fn from(progress: CohortProgress) -> Self {
        Self {
            cohort_id: progress.cohort.id,
            time_zone: progress.cohort.time_zone,
            stretches: progress
                .stretches
                .into_iter()
                .map(|s| StretchView {
                    assignment_id: s.assignment.id,
                    title: s.assignment.title,
                    kind: s.assignment.kind,
                    after_day: s.assignment.after_day,
                    due_day: s.assignment.due_day,
                    from: s.from.map(LocalDate),
                    until: s.until.map(LocalDate),
                })
                .collect(),
            participants: progress
                .participants
                .into_iter()
                .map(|p| ParticipantProgressView {
                    user_id: p.user.id,
                    display_name: p.user.display_name,
                    joined_at: p.joined_at,
                    assignments: p
                        .assignments
                        .into_iter()
                        .map(|a| AssignmentProgressView {
                            assignment_id: a.assignment_id,
                            done: a.done,
                            applied: a.applied,
                            reflection: a.reflection,
                            interviews: a.interviews,
                        })
                        .collect(),
                    harvest: HarvestProgressView {
                        status: p.harvest.status,
                        outline_written: p.harvest.outline_written,
                        attachments: p.harvest.attachments,
                    },
                    push_reachable: p.devices.iter().any(|d| d.push_reachable),
                    devices: p
                        .devices
                        .into_iter()
                        .map(|d| DeviceHealthView {
                            user_device_id: d.device.id,
                            name: d.device.name,
                            last_sync_at: d.device.last_sync_at,
                            outbox_pending: d.device.outbox_pending,
                            outbox_oldest_at: d.device.outbox_oldest_at,
                            app_version: d.app_version,
                            push_reachable: d.push_reachable,
                        })
                        .collect(),
                    last_nudge: p.last_nudge.map(Into::into),
                })
                .collect(),
        }
    }
}

/// A record of a participant as the sync protocol has it: its fields by name (see PROTOCOL.md
/// for each collection's fields).
#[derive(Debug, Object)]
pub struct WorkRecordView {
    pub id: Uuid,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    /// Every field that has a value.
    pub fields: Value,
}

impl From<&StoredRecord> for WorkRecordView {
    fn from(record: &StoredRecord) -> Self {
        let fields = record
            .spec
            .fields
            .iter()
            .filter_map(|field| {
                let value = record.value(field.name);
                (!value.is_null()).then(|| (field.name.to_owned(), value.clone()))
            })
            .collect::<serde_json::Map<_, _>>();
        Self {
            id: record.id,
            version: record.version,
            created_at: record.created_at,
            fields: Value::Object(fields),
        }
    }
}

/// A participant's work in a cohort.
#[derive(Debug, Object)]
pub struct ParticipantWorkView {
    pub user_id: Uuid,
    pub display_name: String,
    pub cohort_id: Uuid,
    /// By the date held.
    pub interviews: Vec<WorkRecordView>,
    pub assignment_work: Vec<WorkRecordView>,
    /// Given and received, oldest first.
    pub feedback_exercises: Vec<WorkRecordView>,
    #[oai(skip_serializing_if_is_none)]
    pub harvest: Option<WorkRecordView>,
    /// Download each with `GET /v1/attachments/{id}/content` (Range supported).
    pub attachments: Vec<WorkRecordView>,
}

impl From<ParticipantWork> for ParticipantWorkView {
    fn from(work: ParticipantWork) -> Self {
        let all = |records: &[StoredRecord]| records.iter().map(Into::into).collect();
        Self {
            user_id: work.user.id,
            display_name: work.user.display_name,
            cohort_id: work.cohort.id,
            interviews: all(&work.interviews),
            assignment_work: all(&work.assignment_work),
            feedback_exercises: all(&work.feedback_exercises),
            harvest: work.harvest.as_ref().map(Into::into),
            attachments: all(&work.attachments),
        }
    }
}

#[derive(ApiResponse)]
pub enum NudgeSent {
    /// Queued: each of the participant's reachable devices gets it, outside its quiet hours.
    #[oai(status = 202)]
    Accepted(Json<NudgeView>),
}

type Result<T> = std::result::Result<T, ApiError>;

/// Progress, participants' work and nudges.
pub struct ProgressApi {
    pub services: Services,
}

#[OpenApi]
impl ProgressApi {
    /// A cohort's progress
    ///
    /// Each participant by between-day assignment (done, applied, reflection, interviews in that
    /// stretch), their harvest, the sync health of each device and their last nudge. Admins and
    /// the cohort's trainers.
    #[oai(
        path = "/cohorts/:id/progress",
        method = "get",
        tag = "ApiTags::Progress",
        operation_id = "getCohortProgress"
    )]
    async fn progress(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Json<CohortProgressView>> {
        let progress = self.services.cohort_progress(&auth.0, id.0).await?;
        Ok(Json(progress.into()))
    }

    /// A participant's work
    ///
    /// Interviews, assignment work, feedback exercises, the harvest and attachments of one
    /// participant in the cohort, read-only. Admins and the cohort's trainers; every read is in
    /// the audit log (`participant.work_read`).
    #[oai(
        path = "/cohorts/:id/participants/:user_id/work",
        method = "get",
        tag = "ApiTags::Progress",
        operation_id = "getParticipantWork"
    )]
    async fn work(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        user_id: Path<Uuid>,
    ) -> Result<Json<ParticipantWorkView>> {
        let work = self
            .services
            .participant_work(&auth.0, id.0, user_id.0)
            .await?;
        Ok(Json(work.into()))
    }

    /// Nudge a participant
    ///
    /// A push asking the participant to open the app, so that what waits on their phone reaches
    /// the group. At most one per participant per day (409 `already_nudged`); each device gets
    /// it outside its quiet hours. Admins and the cohort's trainers.
    #[oai(
        path = "/cohorts/:id/participants/:user_id/nudge",
        method = "post",
        tag = "ApiTags::Progress",
        operation_id = "nudgeParticipant"
    )]
    async fn nudge(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        user_id: Path<Uuid>,
    ) -> Result<NudgeSent> {
        let nudge = self.services.nudge(&auth.0, id.0, user_id.0).await?;
        Ok(NudgeSent::Accepted(Json(nudge.into())))
    }
}
