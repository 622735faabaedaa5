//! Cohorts: schedule, assignments, members and invites.

use chrono::{DateTime, NaiveTime, Utc};
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::Example,
};
use uuid::Uuid;

use super::{
    ApiTags, NoContent,
    auth::BearerAuth,
    error::ApiError,
    types::{LocalDate, LocalTime},
};
use crate::{
    service::{
        Services,
        cohorts::{DayChange, DayPlan, Member, NewCohort, ScheduleChange, day_start},
    },
    store::{
        cohorts::CohortWithParts,
        entity::{cohort, invite},
    },
};

/// A cohort, without its schedule.
#[derive(Debug, Object)]
pub struct CohortSummary {
    pub id: Uuid,
    pub organisation_id: Uuid,
    pub programme_id: Uuid,
    pub name: String,
    /// IANA time zone of the schedule's local times.
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
}

impl From<cohort::Model> for CohortSummary {
    fn from(cohort: cohort::Model) -> Self {
        Self {
            id: cohort.id,
            organisation_id: cohort.organisation_id,
            programme_id: cohort.programme_id,
            name: cohort.name,
            time_zone: cohort.time_zone,
            created_at: cohort.created_at,
        }
    }
}

/// A training day of a cohort, in local time of the cohort's zone.
#[derive(Debug, Object)]
pub struct CohortDayView {
    pub day_number: i32,
    pub title: String,
    pub description: String,
    pub date: LocalDate,
    /// Local start time.
    pub starts_at: LocalTime,
    /// Local end time.
    pub ends_at: LocalTime,
    pub location: String,
    /// The start as an instant.
    pub starts_at_utc: DateTime<Utc>,
}

/// Between-day work of a cohort.
#[derive(Debug, Object)]
pub struct CohortAssignmentView {
    pub id: Uuid,
    /// The day after which this work is done.
    pub after_day: i32,
    /// The day at whose start it is due.
    pub due_day: i32,
    pub kind: super::AssignmentKindView,
    pub title: String,
    pub description: String,
    /// When it is due: the start of `due_day`.
    pub due_at: DateTime<Utc>,
}

/// A cohort with its schedule and between-day work.
#[derive(Debug, Object)]
pub struct CohortView {
    #[oai(flatten)]
    pub summary: CohortSummary,
    pub days: Vec<CohortDayView>,
    pub assignments: Vec<CohortAssignmentView>,
    /// When the participants' data will be purged (retention after Day 6), and whether the
    /// trainers were told; in `GET /v1/cohorts/{id}` only.
    #[oai(skip_serializing_if_is_none)]
    pub retention: Option<CohortRetentionView>,
}

/// A cohort's retention: when its participant data goes (README, "Privacy").
#[derive(Debug, Object)]
pub struct CohortRetentionView {
    /// The start of Day 6 plus the organisation's retention period.
    pub purge_at: DateTime<Utc>,
    /// When the trainers were told the purge is near.
    #[oai(skip_serializing_if_is_none)]
    pub warned_at: Option<DateTime<Utc>>,
    /// When the participant data was purged.
    #[oai(skip_serializing_if_is_none)]
    pub purged_at: Option<DateTime<Utc>>,
}

impl From<CohortWithParts> for CohortView {
    fn from(parts: CohortWithParts) -> Self {
        let starts: Vec<(i32, DateTime<Utc>)> = parts
            .days
            .iter()
            .map(|day| (day.day_number, day_start(&parts.cohort, day)))
            .collect();
        let start_of = |number: i32| {
            starts
                .iter()
                .find(|(day, _)| *day == number)
                .map(|(_, at)| *at)
                .unwrap_or_default()
        };
        Self {
            days: parts
                .days
                .into_iter()
                .map(|day| CohortDayView {
                    starts_at_utc: start_of(day.day_number),
                    day_number: day.day_number,
                    title: day.title,
                    description: day.description,
                    date: LocalDate(day.date),
                    starts_at: LocalTime(day.starts_at),
                    ends_at: LocalTime(day.ends_at),
                    location: day.location,
                })
                .collect(),
            assignments: parts
                .assignments
                .into_iter()
                .map(|assignment| CohortAssignmentView {
                    due_at: start_of(assignment.due_day),
                    id: assignment.id,
                    after_day: assignment.after_day,
                    due_day: assignment.due_day,
                    kind: super::AssignmentKindView::from_stored(&assignment.kind),
                    title: assignment.title,
                    description: assignment.description,
                })
                .collect(),
            summary: parts.cohort.into(),
            retention: None,
        }
    }
}

/// The date, local times and place of one training day.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct DayPlanInput {
    #[oai(validator(minimum(value = "1"), maximum(value = "50")))]
    pub day_number: i32,
    /// `YYYY-MM-DD`.
    pub date: LocalDate,
    /// Local time, `HH:MM:SS`.
    pub starts_at: LocalTime,
    /// Local time, `HH:MM:SS`; after `starts_at`.
    pub ends_at: LocalTime,
    #[oai(validator(max_length = 200))]
    pub location: String,
}

/// A new cohort from a programme template.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct CreateCohortRequest {
    pub organisation_id: Uuid,
    pub programme_id: Uuid,
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    /// IANA time zone; `Europe/Amsterdam` when left out.
    #[oai(validator(max_length = 64))]
    pub time_zone: Option<String>,
    /// One entry per programme day, in date order.
    #[oai(validator(max_items = 50))]
    pub days: Vec<DayPlanInput>,
    /// Trainers of the provider who run this cohort. A trainer creating a cohort is added.
    #[oai(default, validator(max_items = 20))]
    pub trainer_ids: Vec<Uuid>,
}

/// Changes to one day; fields left out stay as they are.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct DayChangeInput {
    #[oai(validator(minimum(value = "1"), maximum(value = "50")))]
    pub day_number: i32,
    pub date: Option<LocalDate>,
    pub starts_at: Option<LocalTime>,
    pub ends_at: Option<LocalTime>,
    #[oai(validator(max_length = 200))]
    pub location: Option<String>,
}

/// Changes to a cohort's schedule.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct ScheduleChangeRequest {
    /// A new IANA time zone for all local times.
    #[oai(validator(max_length = 64))]
    pub time_zone: Option<String>,
    #[oai(default, validator(max_items = 50))]
    pub days: Vec<DayChangeInput>,
}

/// A trainer or participant of a cohort.
#[derive(Debug, Object)]
pub struct MemberView {
    pub user_id: Uuid,
    pub display_name: String,
    /// `trainer` or `participant`.
    pub role: super::RoleView,
    /// Shown to admins and trainers only, and only for staff accounts.
    #[oai(skip_serializing_if_is_none)]
    pub email: Option<String>,
    pub joined_at: DateTime<Utc>,
}

impl From<Member> for MemberView {
    fn from(member: Member) -> Self {
        Self {
            user_id: member.user.id,
            display_name: member.user.display_name,
            role: super::RoleView::from_stored(member.role.as_str()),
            email: member.user.email,
            joined_at: member.joined_at,
        }
    }
}

/// A trainer to add to a cohort.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct AddTrainerRequest {
    pub user_id: Uuid,
}

/// Invites to create.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct CreateInvitesRequest {
    /// How many single-use codes, 1 to 200.
    #[oai(default = "one")]
    pub count: u32,
    /// A note for the trainer, e.g. the participant the code is meant for.
    #[oai(validator(max_length = 200))]
    pub label: Option<String>,
}

fn one() -> u32 {
    1
}

/// Where an invite stands.
#[derive(Debug, Enum, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum InviteStatus {
    /// Can still be redeemed.
    Pending,
    Redeemed,
    Revoked,
    Expired,
}

/// A single-use invite code for a cohort.
#[derive(Debug, Object)]
pub struct InviteView {
    pub id: Uuid,
    /// The code to give the participant, e.g. `K7QM3XPA`.
    pub code: String,
    #[oai(skip_serializing_if_is_none)]
    pub label: Option<String>,
    pub status: InviteStatus,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub redeemed_at: Option<DateTime<Utc>>,
    /// The participant who redeemed it.
    #[oai(skip_serializing_if_is_none)]
    pub redeemed_by: Option<Uuid>,
}

impl InviteView {
    fn new(invite: invite::Model, now: DateTime<Utc>) -> Self {
        let status = if invite.redeemed_at.is_some() {
            InviteStatus::Redeemed
        } else if invite.revoked_at.is_some() {
            InviteStatus::Revoked
        } else if invite.expires_at <= now {
            InviteStatus::Expired
        } else {
            InviteStatus::Pending
        };
        Self {
            id: invite.id,
            code: invite.code,
            label: invite.label,
            status,
            created_at: invite.created_at,
            expires_at: invite.expires_at,
            redeemed_at: invite.redeemed_at,
            redeemed_by: invite.redeemed_by,
        }
    }
}

#[derive(ApiResponse)]
pub enum CohortCreated {
    /// The new cohort with its schedule and assignments.
    #[oai(status = 201)]
    Created(Json<CohortView>),
}

#[derive(ApiResponse)]
pub enum InvitesCreated {
    /// The new invite codes.
    #[oai(status = 201)]
    Created(Json<Vec<InviteView>>),
}

type Result<T> = std::result::Result<T, ApiError>;

/// Cohorts and their invites.
pub struct CohortsApi {
    pub services: Services,
}

#[OpenApi]
impl CohortsApi {
    /// List cohorts
    ///
    /// Admins see every cohort of their provider, trainers the cohorts they train, participants
    /// their own.
    #[oai(
        path = "/cohorts",
        method = "get",
        tag = "ApiTags::Cohorts",
        operation_id = "listCohorts"
    )]
    async fn list_cohorts(
        &self,
        auth: BearerAuth,
        /// Only the cohorts of this organisation.
        organisation_id: Query<Option<Uuid>>,
    ) -> Result<Json<Vec<CohortSummary>>> {
        let cohorts = self
            .services
            .list_cohorts(&auth.0, organisation_id.0)
            .await?;
        Ok(Json(cohorts.into_iter().map(Into::into).collect()))
    }

    /// Create a cohort from a programme
    ///
    /// Copies the programme's days and between-day work and sets one date per day. Admins and
    /// trainers.
    #[oai(
        path = "/cohorts",
        method = "post",
        tag = "ApiTags::Cohorts",
        operation_id = "createCohort"
    )]
    async fn create_cohort(
        &self,
        auth: BearerAuth,
        body: Json<CreateCohortRequest>,
    ) -> Result<CohortCreated> {
        let body = body.0;
        let cohort = self
            .services
            .create_cohort(
                &auth.0,
                NewCohort {
                    organisation_id: body.organisation_id,
                    programme_id: body.programme_id,
                    name: body.name,
                    time_zone: body.time_zone,
                    days: body
                        .days
                        .into_iter()
                        .map(|day| DayPlan {
                            day_number: day.day_number,
                            date: day.date.0,
                            starts_at: day.starts_at.0,
                            ends_at: day.ends_at.0,
                            location: day.location,
                        })
                        .collect(),
                    trainer_ids: body.trainer_ids,
                },
            )
            .await?;
        Ok(CohortCreated::Created(Json(cohort.into())))
    }

    /// Read a cohort's schedule and between-day work
    ///
    /// Its six days (date, local times, place, texts) and its between-day assignments with their
    /// deadlines, for anyone who may see the cohort (its members, its trainers, admins).
    #[oai(
        path = "/cohorts/:id",
        method = "get",
        tag = "ApiTags::Cohorts",
        operation_id = "getCohort"
    )]
    async fn get_cohort(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Json<CohortView>> {
        let parts = self.services.get_cohort(&auth.0, id.0).await?;
        let purge_at = self.services.cohort_purge_at(&parts).await?;
        let (warned_at, purged_at) = (parts.cohort.retention_warned_at, parts.cohort.purged_at);
        let mut view = CohortView::from(parts);
        view.retention = purge_at.map(|purge_at| CohortRetentionView {
            purge_at,
            warned_at,
            purged_at,
        });
        Ok(Json(view))
    }

    /// Change a cohort's schedule
    ///
    /// Moves days, changes times or places, or the time zone. Days must stay in date order.
    /// Admins and the cohort's trainers.
    #[oai(
        path = "/cohorts/:id/schedule",
        method = "patch",
        tag = "ApiTags::Cohorts",
        operation_id = "changeSchedule"
    )]
    async fn change_schedule(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<ScheduleChangeRequest>,
    ) -> Result<Json<CohortView>> {
        let body = body.0;
        let change = ScheduleChange {
            time_zone: body.time_zone,
            days: body
                .days
                .into_iter()
                .map(|day| DayChange {
                    day_number: day.day_number,
                    date: day.date.map(|d| d.0),
                    starts_at: day.starts_at.map(|t| t.0),
                    ends_at: day.ends_at.map(|t| t.0),
                    location: day.location,
                })
                .collect(),
        };
        let cohort = self.services.change_schedule(&auth.0, id.0, change).await?;
        Ok(Json(cohort.into()))
    }

    /// Change a cohort's texts
    ///
    /// The cohort's own titles and descriptions of its days and between-day assignments: the
    /// municipality's variant of the programme (what the Day 1 assignment actually is, say).
    /// Participants' apps get them at their next sync; reminders use the new titles. Admins
    /// only; an unknown day or assignment answers 422 (`unknown_day`, `unknown_assignment`) and
    /// changes nothing.
    #[oai(
        path = "/cohorts/:id/texts",
        method = "patch",
        tag = "ApiTags::Cohorts",
        operation_id = "changeCohortTexts"
    )]
    async fn change_texts(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<super::catalog::TextsChangeRequest>,
    ) -> Result<Json<CohortView>> {
        let cohort = self
            .services
            .change_cohort_texts(&auth.0, id.0, body.0.into())
            .await?;
        Ok(Json(cohort.into()))
    }

    /// List a cohort's trainers and participants
    ///
    /// Each member's id, name, role and joining date, for anyone who may see the cohort;
    /// participants do not see email addresses.
    #[oai(
        path = "/cohorts/:id/members",
        method = "get",
        tag = "ApiTags::Cohorts",
        operation_id = "listMembers"
    )]
    async fn list_members(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<Json<Vec<MemberView>>> {
        let members = self.services.list_members(&auth.0, id.0).await?;
        Ok(Json(members.into_iter().map(Into::into).collect()))
    }

    /// Add a trainer to a cohort
    ///
    /// Admins and the cohort's trainers. Adding a trainer twice succeeds.
    #[oai(
        path = "/cohorts/:id/trainers",
        method = "post",
        tag = "ApiTags::Cohorts",
        operation_id = "addTrainer"
    )]
    async fn add_trainer(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<AddTrainerRequest>,
    ) -> Result<NoContent> {
        self.services
            .add_trainer(&auth.0, id.0, body.user_id)
            .await?;
        Ok(NoContent::Done)
    }

    /// Remove a participant or trainer from a cohort
    ///
    /// Admins and the cohort's trainers. Their devices drop the cohort's data at their next sync.
    #[oai(
        path = "/cohorts/:id/members/:user_id",
        method = "delete",
        tag = "ApiTags::Cohorts",
        operation_id = "removeMember"
    )]
    async fn remove_member(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        user_id: Path<Uuid>,
    ) -> Result<NoContent> {
        self.services
            .remove_member(&auth.0, id.0, user_id.0)
            .await?;
        Ok(NoContent::Done)
    }

    /// Create invite codes
    ///
    /// Single-use codes with which participants enrol their phone in this cohort. Admins and the
    /// cohort's trainers.
    #[oai(
        path = "/cohorts/:id/invites",
        method = "post",
        tag = "ApiTags::Invites",
        operation_id = "createInvites"
    )]
    async fn create_invites(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<CreateInvitesRequest>,
    ) -> Result<InvitesCreated> {
        let body = body.0;
        let invites = self
            .services
            .create_invites(&auth.0, id.0, body.count, body.label)
            .await?;
        let now = Utc::now();
        Ok(InvitesCreated::Created(Json(
            invites
                .into_iter()
                .map(|invite| InviteView::new(invite, now))
                .collect(),
        )))
    }

    /// List invite codes
    ///
    /// Newest first, with their status. Admins and the cohort's trainers.
    #[oai(
        path = "/cohorts/:id/invites",
        method = "get",
        tag = "ApiTags::Invites",
        operation_id = "listInvites"
    )]
    async fn list_invites(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<Json<Vec<InviteView>>> {
        let invites = self.services.list_invites(&auth.0, id.0).await?;
        let now = Utc::now();
        Ok(Json(
            invites
                .into_iter()
                .map(|invite| InviteView::new(invite, now))
                .collect(),
        ))
    }

    /// Revoke an invite code
    ///
    /// Only unredeemed codes can be revoked; revoking twice succeeds.
    #[oai(
        path = "/cohorts/:id/invites/:invite_id",
        method = "delete",
        tag = "ApiTags::Invites",
        operation_id = "revokeInvite"
    )]
    async fn revoke_invite(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        invite_id: Path<Uuid>,
    ) -> Result<NoContent> {
        self.services
            .revoke_invite(&auth.0, id.0, invite_id.0)
            .await?;
        Ok(NoContent::Done)
    }
}

impl Example for CreateCohortRequest {
    fn example() -> Self {
        let day = |number: i32, date: &str| DayPlanInput {
            day_number: number,
            date: LocalDate(date.parse().unwrap_or_default()),
            starts_at: LocalTime(NaiveTime::from_hms_opt(9, 30, 0).unwrap_or_default()),
            ends_at: LocalTime(NaiveTime::from_hms_opt(16, 30, 0).unwrap_or_default()),
            location: "Stadskantoor, zaal 3.14".into(),
        };
        Self {
            organisation_id: Uuid::nil(),
            programme_id: Uuid::nil(),
            name: "Urban Professional Voorbeeldstad, groep 2".into(),
            time_zone: Some("Europe/Amsterdam".into()),
            days: vec![
                day(1, "2027-01-12"),
                day(2, "2027-02-02"),
                day(3, "2027-02-23"),
                day(4, "2027-03-16"),
                day(5, "2027-04-06"),
                day(6, "2027-04-27"),
            ],
            trainer_ids: vec![],
        }
    }
}

impl Example for ScheduleChangeRequest {
    fn example() -> Self {
        Self {
            time_zone: Some("Europe/Amsterdam".into()),
            days: vec![DayChangeInput {
                day_number: 3,
                date: "2027-03-02".parse().ok().map(LocalDate),
                starts_at: "10:00:00".parse().ok().map(LocalTime),
                ends_at: "16:30:00".parse().ok().map(LocalTime),
                location: Some("Wijkcentrum De Boog".into()),
            }],
        }
    }
}
