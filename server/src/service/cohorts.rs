//! Cohorts: a programme run for one organisation, with its schedule, members and invites.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc};
use uuid::Uuid;

use super::{
    Actor, Error, Result, Role, Services,
    accounts::required_text,
    audit::{self, AuditAction, AuditEvent},
    schedule::{DEFAULT_TIME_ZONE, local_to_utc, parse_time_zone},
    tokens::random_code,
};
use crate::store::{
    accounts, catalog,
    cohorts::{self as store, CohortWithParts},
    entity::{cohort, cohort_assignment, cohort_day, cohort_member, invite, user},
    sync,
};

/// Most invites created in one request.
pub const MAX_INVITES_PER_REQUEST: u32 = 200;
/// Length of an invite code (about 40 bits from a 31-letter alphabet).
const INVITE_CODE_LEN: usize = 8;

/// The date, times and place of one training day.
#[derive(Debug, Clone)]
pub struct DayPlan {
    pub day_number: i32,
    pub date: NaiveDate,
    pub starts_at: NaiveTime,
    pub ends_at: NaiveTime,
    pub location: String,
}

/// A cohort to create from a programme.
#[derive(Debug)]
pub struct NewCohort {
    pub organisation_id: Uuid,
    pub programme_id: Uuid,
    pub name: String,
    pub time_zone: Option<String>,
    pub days: Vec<DayPlan>,
    pub trainer_ids: Vec<Uuid>,
}

/// A change to some days of a schedule; fields left out stay as they are.
#[derive(Debug, Default)]
pub struct DayChange {
    pub day_number: i32,
    pub date: Option<NaiveDate>,
    pub starts_at: Option<NaiveTime>,
    pub ends_at: Option<NaiveTime>,
    pub location: Option<String>,
}

/// A change to a cohort's schedule.
#[derive(Debug, Default)]
pub struct ScheduleChange {
    pub time_zone: Option<String>,
    pub days: Vec<DayChange>,
}

/// A member of a cohort with their account.
#[derive(Debug)]
pub struct Member {
    pub user: user::Model,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

impl Services {
    /// Creates a cohort from a programme template: copies its days and assignments and sets the
    /// dates. Admins of the provider and trainers may do this; a trainer who creates a cohort
    /// trains it.
    #[tracing::instrument(skip_all, fields(user.id = %actor.user_id))]
    pub async fn create_cohort(&self, actor: &Actor, new: NewCohort) -> Result<CohortWithParts> {
        actor.require(&[Role::Admin, Role::Trainer])?;
        let organisation = self.get_organisation(actor, new.organisation_id).await?;
        let programme = self.get_programme(actor, new.programme_id).await?;
        let name = required_text("name", &new.name)?;
        let time_zone = new
            .time_zone
            .unwrap_or_else(|| DEFAULT_TIME_ZONE.to_owned());
        parse_time_zone(&time_zone)?;

        let mut plans: BTreeMap<i32, DayPlan> = BTreeMap::new();
        for plan in new.days {
            let number = plan.day_number;
            if plans.insert(number, plan).is_some() {
                return Err(invalid_day(number, "appears twice"));
            }
        }
        let cohort_id = Uuid::now_v7();
        let mut days = Vec::with_capacity(programme.days.len());
        for template in &programme.days {
            let plan = plans.remove(&template.day_number).ok_or_else(|| {
                invalid_day(
                    template.day_number,
                    "has no date; every programme day needs one",
                )
            })?;
            days.push(cohort_day::Model {
                id: Uuid::now_v7(),
                cohort_id,
                day_number: template.day_number,
                title: template.title.clone(),
                description: template.description.clone(),
                date: plan.date,
                starts_at: plan.starts_at,
                ends_at: plan.ends_at,
                location: plan.location.trim().to_owned(),
                version: 0,
            });
        }
        if let Some(extra) = plans.keys().next() {
            return Err(invalid_day(*extra, "is not a day of this programme"));
        }
        validate_days(&days)?;

        let last_day = days.last().map_or(0, |day| day.day_number);
        let assignments = programme
            .assignments
            .iter()
            .map(|template| cohort_assignment::Model {
                id: Uuid::now_v7(),
                cohort_id,
                after_day: template.after_day,
                // Between-day work is due when the next day starts.
                due_day: (template.after_day + 1).min(last_day),
                position: template.position,
                kind: template.kind.clone(),
                title: template.title.clone(),
                description: template.description.clone(),
                version: 0,
            })
            .collect();

        let now = Utc::now();
        let mut trainer_ids = new.trainer_ids;
        if actor.role == Role::Trainer && !trainer_ids.contains(&actor.user_id) {
            trainer_ids.push(actor.user_id);
        }
        trainer_ids.sort();
        trainer_ids.dedup();
        let mut members = Vec::with_capacity(trainer_ids.len());
        for trainer_id in trainer_ids {
            self.require_trainer_of_provider(actor, trainer_id).await?;
            members.push(cohort_member::Model {
                cohort_id,
                user_id: trainer_id,
                role: Role::Trainer.as_str().to_owned(),
                created_at: now,
            });
        }

        let cohort = CohortWithParts {
            cohort: cohort::Model {
                id: cohort_id,
                organisation_id: organisation.id,
                programme_id: programme.programme.id,
                name,
                time_zone,
                created_at: now,
                version: 0,
                retention_warned_at: None,
                purged_at: None,
            },
            days,
            assignments,
        };
        let txn = crate::store::begin_write(&self.db).await?;
        let trainers: Vec<Uuid> = members.iter().map(|member| member.user_id).collect();
        store::insert_cohort(&txn, cohort.clone(), members).await?;
        // Devices receive the cohort, its days and assignments read-only through sync.
        let version = sync::next_version(&txn).await?;
        sync::stamp_cohort(&txn, cohort_id, version).await?;
        audit::record(
            &txn,
            actor.provider_id,
            Some(actor),
            AuditEvent::new(AuditAction::CohortCreated).cohort(cohort_id),
        )
        .await?;
        txn.commit().await?;
        self.notify_change(&[cohort_id], &trainers);
        self.plan_reminders(cohort_id).await?;
        Ok(cohort)
    }

    /// Cohorts the caller may see, optionally of one organisation.
    pub async fn list_cohorts(
        &self,
        actor: &Actor,
        organisation_id: Option<Uuid>,
    ) -> Result<Vec<cohort::Model>> {
        let cohorts = match actor.role {
            Role::Admin => {
                let organisations = catalog::list_organisations(&self.db, actor.provider_id)
                    .await?
                    .into_iter()
                    .map(|organisation| organisation.id);
                store::list_cohorts_of_organisations(&self.db, organisations).await?
            }
            Role::Trainer | Role::Participant => {
                store::list_cohorts_of_member(&self.db, actor.user_id).await?
            }
        };
        Ok(cohorts
            .into_iter()
            .filter(|cohort| organisation_id.is_none_or(|id| cohort.organisation_id == id))
            .collect())
    }

    /// A cohort with its schedule and assignments.
    pub async fn get_cohort(&self, actor: &Actor, id: Uuid) -> Result<CohortWithParts> {
        let cohort = self.visible_cohort(actor, id).await?;
        Ok(store::load_parts(&self.db, cohort).await?)
    }

    /// Changes dates, times or places of some days, or the time zone (admins and the cohort's
    /// trainers).
    #[tracing::instrument(skip_all, fields(user.id = %actor.user_id, cohort.id = %id))]
    pub async fn change_schedule(
        &self,
        actor: &Actor,
        id: Uuid,
        change: ScheduleChange,
    ) -> Result<CohortWithParts> {
        let cohort = self.managed_cohort(actor, id).await?;
        let mut current = store::load_parts(&self.db, cohort).await?;
        if let Some(time_zone) = change.time_zone {
            parse_time_zone(&time_zone)?;
            current.cohort.time_zone = time_zone;
        }
        for day_change in change.days {
            let day = current
                .days
                .iter_mut()
                .find(|day| day.day_number == day_change.day_number)
                .ok_or_else(|| invalid_day(day_change.day_number, "is not a day of this cohort"))?;
            if let Some(date) = day_change.date {
                day.date = date;
            }
            if let Some(starts_at) = day_change.starts_at {
                day.starts_at = starts_at;
            }
            if let Some(ends_at) = day_change.ends_at {
                day.ends_at = ends_at;
            }
            if let Some(location) = day_change.location {
                day.location = location.trim().to_owned();
            }
        }
        validate_days(&current.days)?;
        let txn = crate::store::begin_write(&self.db).await?;
        store::update_schedule(&txn, id, &current.cohort.time_zone, &current.days).await?;
        let version = sync::next_version(&txn).await?;
        sync::stamp_cohort(&txn, id, version).await?;
        audit::record(
            &txn,
            actor.provider_id,
            Some(actor),
            AuditEvent::new(AuditAction::ScheduleChanged).cohort(id),
        )
        .await?;
        txn.commit().await?;
        self.notify_change(&[id], &[]);
        // Reminders follow the schedule.
        self.plan_reminders(id).await?;
        Ok(current)
    }

    /// The cohort's trainers and participants. Participants see their fellow members too (feedback
    /// exercises are done with them), but e-mail addresses only reach admins and trainers.
    pub async fn list_members(&self, actor: &Actor, id: Uuid) -> Result<Vec<Member>> {
        self.visible_cohort(actor, id).await?;
        let memberships = store::list_members(&self.db, id).await?;
        let mut users: BTreeMap<Uuid, user::Model> =
            accounts::find_users(&self.db, memberships.iter().map(|m| m.user_id))
                .await?
                .into_iter()
                .map(|user| (user.id, user))
                .collect();
        Ok(memberships
            .into_iter()
            .filter_map(|membership| {
                let mut user = users.remove(&membership.user_id)?;
                if actor.role == Role::Participant {
                    user.email = None;
                }
                Some(Member {
                    role: Role::parse(&membership.role)?,
                    joined_at: membership.created_at,
                    user,
                })
            })
            .collect())
    }

    /// Adds a trainer of the provider to a cohort (admins and the cohort's trainers).
    pub async fn add_trainer(&self, actor: &Actor, id: Uuid, trainer_id: Uuid) -> Result<()> {
        self.managed_cohort(actor, id).await?;
        self.require_trainer_of_provider(actor, trainer_id).await?;
        if store::find_membership(&self.db, id, trainer_id)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let txn = crate::store::begin_write(&self.db).await?;
        store::insert_member(
            &txn,
            cohort_member::Model {
                cohort_id: id,
                user_id: trainer_id,
                role: Role::Trainer.as_str().to_owned(),
                created_at: Utc::now(),
            },
        )
        .await?;
        // The trainer's devices are past this cohort's older records; the grant makes their
        // next pull bring them.
        let version = sync::next_version(&txn).await?;
        sync::insert_grant(&txn, trainer_id, id, version).await?;
        audit::record(
            &txn,
            actor.provider_id,
            Some(actor),
            AuditEvent::new(AuditAction::MemberAdded)
                .subject(trainer_id)
                .cohort(id)
                .details(serde_json::json!({ "role": "trainer" })),
        )
        .await?;
        txn.commit().await?;
        self.notify_change(&[], &[trainer_id]);
        Ok(())
    }

    /// Removes a participant or trainer from a cohort (admins and the cohort's trainers). Their
    /// devices drop what they only saw through the cohort at their next pull: its schedule,
    /// assignments and announcements, and for a trainer its participants' records. A
    /// participant keeps their own records.
    #[tracing::instrument(skip_all, fields(user.id = %actor.user_id, cohort.id = %id))]
    pub async fn remove_member(&self, actor: &Actor, id: Uuid, user_id: Uuid) -> Result<()> {
        self.managed_cohort(actor, id).await?;
        let membership = store::find_membership(&self.db, id, user_id)
            .await?
            .ok_or(Error::NotFound("member"))?;
        let mut gone: Vec<(&'static str, Uuid)> = vec![("cohorts", id)];
        for (collection, table) in [
            ("cohort_days", "cohort_days"),
            ("assignments", "cohort_assignments"),
            ("announcements", "announcements"),
        ] {
            for record in sync::ids_in_cohort(&self.db, table, "cohort_id", id).await? {
                gone.push((collection, record));
            }
        }
        if membership.role == Role::Trainer.as_str() {
            for spec in veldwerk_sync_protocol::schema::COLLECTIONS {
                for record in sync::ids_in_cohort(&self.db, spec.name, "cohort_id", id).await? {
                    gone.push((spec.name, record));
                }
            }
        } else {
            // Feedback fellow members shared with them, and its files.
            gone.extend(sync::shared_with_in_cohort(&self.db, user_id, id).await?);
        }
        let txn = crate::store::begin_write(&self.db).await?;
        store::delete_member(&txn, id, user_id).await?;
        let version = sync::next_version(&txn).await?;
        sync::insert_evictions(&txn, user_id, &gone, version).await?;
        audit::record(
            &txn,
            actor.provider_id,
            Some(actor),
            AuditEvent::new(AuditAction::MemberRemoved)
                .subject(user_id)
                .cohort(id)
                .details(serde_json::json!({ "role": membership.role })),
        )
        .await?;
        txn.commit().await?;
        self.notify_change(&[], &[user_id]);
        // Their reminders are no longer planned.
        self.plan_participant_reminders(id, user_id).await?;
        Ok(())
    }

    /// Creates single-use invite codes for a cohort (admins and the cohort's trainers).
    pub async fn create_invites(
        &self,
        actor: &Actor,
        id: Uuid,
        count: u32,
        label: Option<String>,
    ) -> Result<Vec<invite::Model>> {
        self.managed_cohort(actor, id).await?;
        if count == 0 || count > MAX_INVITES_PER_REQUEST {
            return Err(Error::invalid(
                "invalid_count",
                format!("count must be between 1 and {MAX_INVITES_PER_REQUEST}"),
            ));
        }
        let now = Utc::now();
        let ttl = i64::try_from(self.config.invite_ttl_days).unwrap_or(365);
        let label = label.map(|l| l.trim().to_owned()).filter(|l| !l.is_empty());
        let invites = (0..count)
            .map(|_| {
                Ok(invite::Model {
                    id: Uuid::now_v7(),
                    cohort_id: id,
                    code: random_code(INVITE_CODE_LEN)?,
                    label: label.clone(),
                    created_by: actor.user_id,
                    created_at: now,
                    expires_at: now + Duration::days(ttl),
                    redeemed_at: None,
                    redeemed_by: None,
                    revoked_at: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        store::insert_invites(&self.db, invites.clone()).await?;
        Ok(invites)
    }

    /// A cohort's invites, newest first (admins and the cohort's trainers).
    pub async fn list_invites(&self, actor: &Actor, id: Uuid) -> Result<Vec<invite::Model>> {
        self.managed_cohort(actor, id).await?;
        Ok(store::list_invites(&self.db, id).await?)
    }

    /// Revokes an unused invite (admins and the cohort's trainers).
    pub async fn revoke_invite(&self, actor: &Actor, id: Uuid, invite_id: Uuid) -> Result<()> {
        self.managed_cohort(actor, id).await?;
        let invite = store::find_invite(&self.db, invite_id)
            .await?
            .filter(|invite| invite.cohort_id == id)
            .ok_or(Error::NotFound("invite"))?;
        if invite.revoked_at.is_some() {
            return Ok(());
        }
        if !store::revoke_invite(&self.db, invite.id, Utc::now()).await? {
            return Err(Error::conflict(
                "invite_already_used",
                "this invite was already redeemed and cannot be revoked",
            ));
        }
        Ok(())
    }

    /// The cohort if the caller may see it; otherwise "not found".
    async fn visible_cohort(&self, actor: &Actor, id: Uuid) -> Result<cohort::Model> {
        let not_found = || Error::NotFound("cohort");
        let cohort = store::find_cohort(&self.db, id)
            .await?
            .ok_or_else(not_found)?;
        let organisation = catalog::find_organisation(&self.db, cohort.organisation_id)
            .await?
            .ok_or_else(not_found)?;
        let membership = match actor.role {
            Role::Admin => None,
            Role::Trainer | Role::Participant => {
                store::find_membership(&self.db, id, actor.user_id).await?
            }
        };
        if actor.can_see_cohort(&organisation, membership.as_ref()) {
            Ok(cohort)
        } else {
            Err(not_found())
        }
    }

    /// The cohort if the caller may see it and manage it.
    pub(crate) async fn managed_cohort(&self, actor: &Actor, id: Uuid) -> Result<cohort::Model> {
        let cohort = self.visible_cohort(actor, id).await?;
        actor.require(&[Role::Admin, Role::Trainer])?;
        Ok(cohort)
    }

    async fn require_trainer_of_provider(&self, actor: &Actor, user_id: Uuid) -> Result<()> {
        let trainer = accounts::find_user(&self.db, user_id)
            .await?
            .filter(|user| user.provider_id == actor.provider_id)
            .ok_or(Error::NotFound("trainer"))?;
        if trainer.role != Role::Trainer.as_str() {
            return Err(Error::invalid(
                "not_a_trainer",
                format!("user {user_id} is not a trainer"),
            ));
        }
        Ok(())
    }
}

/// When a cohort day starts, as an instant.
pub fn day_start(cohort: &cohort::Model, day: &cohort_day::Model) -> DateTime<Utc> {
    let zone = parse_time_zone(&cohort.time_zone).unwrap_or(chrono_tz::Europe::Amsterdam);
    local_to_utc(zone, day.date, day.starts_at)
}

/// The years a cohort's days may fall in.
pub const PROGRAMME_YEARS: std::ops::RangeInclusive<i32> = 2000..=2100;

/// Days must run in order on distinct dates, each ending after it starts.
fn validate_days(days: &[cohort_day::Model]) -> Result<()> {
    for day in days {
        // A programme runs in this century; dates far outside it are typing errors or probes, and
        // near the ends of the calendar date arithmetic (reminders days before) would overflow.
        if !PROGRAMME_YEARS.contains(&day.date.year()) {
            return Err(invalid_day(
                day.day_number,
                &format!(
                    "must be in the years {} to {}",
                    PROGRAMME_YEARS.start(),
                    PROGRAMME_YEARS.end()
                ),
            ));
        }
        if day.ends_at <= day.starts_at {
            return Err(invalid_day(day.day_number, "must end after it starts"));
        }
        if day.location.chars().count() > 200 {
            return Err(invalid_day(
                day.day_number,
                "has a location longer than 200 characters",
            ));
        }
    }
    for pair in days.windows(2) {
        if pair[1].date <= pair[0].date {
            return Err(invalid_day(
                pair[1].day_number,
                &format!("must be on a later date than day {}", pair[0].day_number),
            ));
        }
    }
    Ok(())
}

fn invalid_day(day_number: i32, problem: &str) -> Error {
    Error::Invalid {
        code: "invalid_schedule",
        message: format!("day {day_number} {problem}"),
        details: Some(serde_json::json!({ "day_number": day_number })),
    }
}
