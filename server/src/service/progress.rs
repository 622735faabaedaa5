//! What trainers follow between the days: each participant's progress on the between-day
//! assignments and the harvest, the health of their devices' sync, a nudge to open the app, and
//! (read-only) the work itself. Only admins and the cohort's trainers see any of it; every read
//! of a participant's work is written to the audit log.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::Value;
use uuid::Uuid;
use veldwerk_sync_protocol::schema::{
    ASSIGNMENT_FIELD, ASSIGNMENT_WORK, ATTACHMENTS, CollectionSpec, FEEDBACK_EXERCISES, HARVESTS,
    INTERVIEWS, PARENT_ID_FIELD,
};

use super::{
    Actor, Error, Result, Role, Services,
    audit::{self, AuditAction, AuditEvent},
    push::STALE_AFTER_DAYS,
    schedule::parse_time_zone,
};
use crate::store::{
    accounts as account_store, cohorts as cohort_store,
    entity::{cohort, cohort_assignment, cohort_day, delivery, device, notification, user},
    push as push_store,
    sync::{self as sync_store, StoredRecord, UNLIMITED},
};

/// The notification kind of a nudge.
pub const NUDGE: &str = "nudge";

/// A device's sync health is written at most this often per server process, unless what it
/// reports changes: the up-to-date pull stays one read.
const SYNC_HEALTH_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Most devices whose last report this process remembers (to skip unchanged writes).
const SYNC_HEALTH_REMEMBERED: usize = 100_000;

/// What a device reports with a pull about the changes it still holds back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxReport {
    /// Mutations in the outbox, not yet acknowledged by a push.
    pub pending: Option<u32>,
    /// When the oldest of them was made on the device.
    pub oldest_at: Option<DateTime<Utc>>,
    /// The app's version (`Veldwerk-App-Version`).
    pub app_version: Option<String>,
}

/// The last report written per device by this process, and when.
#[derive(Debug, Default)]
pub struct SyncHealthCache(std::sync::Mutex<HashMap<Uuid, (std::time::Instant, OutboxReport)>>);

/// A between-day assignment and the stretch of days it belongs to.
#[derive(Debug)]
pub struct Stretch {
    pub assignment: cohort_assignment::Model,
    /// The date of the day it is given (interviews from then count for it).
    pub from: Option<NaiveDate>,
    /// The date of the day it is due (interviews before then count for it).
    pub until: Option<NaiveDate>,
}

/// A cohort's progress: its assignments and each participant's state on them.
#[derive(Debug)]
pub struct CohortProgress {
    pub cohort: cohort::Model,
    pub days: Vec<cohort_day::Model>,
    /// Between-day assignments in programme order (the harvest presentation is `harvest`).
    pub stretches: Vec<Stretch>,
    pub participants: Vec<ParticipantProgress>,
}

/// One participant's progress.
#[derive(Debug)]
pub struct ParticipantProgress {
    pub user: user::Model,
    pub joined_at: DateTime<Utc>,
    /// In the order of [`CohortProgress::stretches`].
    pub assignments: Vec<AssignmentProgress>,
    pub harvest: HarvestProgress,
    pub devices: Vec<DeviceHealth>,
    /// The latest nudge, if any.
    pub last_nudge: Option<Nudge>,
}

/// Where a participant stands on one assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssignmentProgress {
    pub assignment_id: Uuid,
    pub done: bool,
    /// Whether "what I applied" is written.
    pub applied: bool,
    pub reflection: bool,
    /// Interviews recorded for this assignment's stretch (from the day it is given to the next
    /// day): linked to an assignment of that stretch, or held in it.
    pub interviews: u32,
}

/// The harvest presentation's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HarvestProgress {
    /// `draft` or `ready`; `None` before the participant started it.
    pub status: Option<String>,
    pub outline_written: bool,
    pub attachments: u32,
}

/// A device's sync as it last reported it.
#[derive(Debug, Clone)]
pub struct DeviceHealth {
    pub device: device::Model,
    /// Whether a push can reach it: a live token, seen within the last 30 days.
    pub push_reachable: bool,
    /// The version from the push registration when the device has not synced since it was
    /// recorded.
    pub app_version: Option<String>,
}

/// A nudge and its deliveries.
#[derive(Debug, Clone)]
pub struct Nudge {
    pub notification: notification::Model,
    pub deliveries: Vec<delivery::Model>,
}

/// A participant's work in a cohort, read-only; deleted records left out.
#[derive(Debug)]
pub struct ParticipantWork {
    pub user: user::Model,
    pub cohort: cohort::Model,
    pub assignments: Vec<cohort_assignment::Model>,
    pub interviews: Vec<StoredRecord>,
    pub assignment_work: Vec<StoredRecord>,
    pub feedback_exercises: Vec<StoredRecord>,
    pub harvest: Option<StoredRecord>,
    pub attachments: Vec<StoredRecord>,
}

impl Services {
    /// Records what a device reported with a successful pull. Unchanged reports are written at
    /// most once a minute per process, so "last sync" is exact to a minute.
    pub async fn record_sync_health(&self, actor: &Actor, report: OutboxReport) -> Result<()> {
        let now = std::time::Instant::now();
        {
            let mut seen = self.sync_health.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, last)) = seen.get(&actor.device_id)
                && *last == report
                && now.duration_since(*at) < SYNC_HEALTH_EVERY
            {
                return Ok(());
            }
            if seen.len() >= SYNC_HEALTH_REMEMBERED {
                seen.clear();
            }
            seen.insert(actor.device_id, (now, report.clone()));
        }
        account_store::record_sync_health(
            &self.db,
            actor.device_id,
            Utc::now(),
            report.pending.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            report.oldest_at,
            report.app_version,
        )
        .await?;
        Ok(())
    }

    /// Each participant's progress on the cohort's assignments and harvest, and their devices'
    /// sync health (admins and the cohort's trainers).
    pub async fn cohort_progress(&self, actor: &Actor, cohort_id: Uuid) -> Result<CohortProgress> {
        let cohort = self.managed_cohort(actor, cohort_id).await?;
        let parts = cohort_store::load_parts(&self.db, cohort).await?;
        let zone = parse_time_zone(&parts.cohort.time_zone)?;
        let date_of: HashMap<i32, NaiveDate> =
            parts.days.iter().map(|d| (d.day_number, d.date)).collect();
        let stretches: Vec<Stretch> = parts
            .assignments
            .iter()
            .filter(|a| a.kind != "harvest_presentation")
            .map(|a| Stretch {
                assignment: a.clone(),
                from: date_of.get(&a.after_day).copied(),
                until: date_of.get(&a.due_day).copied(),
            })
            .collect();

        let given_on: HashMap<String, i32> = parts
            .assignments
            .iter()
            .map(|a| (a.id.to_string(), a.after_day))
            .collect();
        let members = self.participants_of(cohort_id).await?;
        let user_ids: Vec<Uuid> = members.iter().map(|(user, _)| user.id).collect();
        let records = |spec: &'static CollectionSpec| async move {
            let live: Vec<StoredRecord> =
                sync_store::cohort_records_upto(&self.db, spec, cohort_id, i64::MAX)
                    .await?
                    .into_iter()
                    .filter(|r| !r.is_deleted())
                    .collect();
            Ok::<_, Error>(live)
        };
        let work = records(&ASSIGNMENT_WORK).await?;
        let interviews = records(&INTERVIEWS).await?;
        let harvests = records(&HARVESTS).await?;
        let attachments = records(&ATTACHMENTS).await?;

        let devices = account_store::live_devices_of(&self.db, &user_ids).await?;
        let now = Utc::now();
        let push: HashMap<Uuid, String> = push_store::reachable_devices(
            &self.db,
            &user_ids,
            now - Duration::days(STALE_AFTER_DAYS),
        )
        .await?
        .into_iter()
        .map(|p| (p.device_id, p.app_version))
        .collect();
        let nudges = self.last_nudges(cohort_id).await?;

        let participants = members
            .into_iter()
            .map(|(user, joined_at)| {
                let mine = |r: &&StoredRecord| r.owner_id == user.id;
                let assignments = stretches
                    .iter()
                    .map(|stretch| {
                        let id = stretch.assignment.id;
                        let work = work
                            .iter()
                            .filter(mine)
                            .find(|w| w.value(ASSIGNMENT_FIELD).as_str() == Some(&id.to_string()));
                        let written = |field: &str| {
                            work.is_some_and(|w| {
                                w.value(field)
                                    .as_str()
                                    .is_some_and(|t| !t.trim().is_empty())
                            })
                        };
                        let held = interviews
                            .iter()
                            .filter(mine)
                            .filter(|i| {
                                stretch_of(i, &given_on, &parts.days, zone)
                                    == Some(stretch.assignment.after_day)
                            })
                            .count();
                        AssignmentProgress {
                            assignment_id: id,
                            done: work.is_some_and(|w| w.value("done") == &Value::Bool(true)),
                            applied: written("applied"),
                            reflection: written("reflection"),
                            interviews: u32::try_from(held).unwrap_or(u32::MAX),
                        }
                    })
                    .collect();
                let harvest = harvests.iter().find(mine);
                let harvest = HarvestProgress {
                    status: harvest.and_then(|h| h.value("status").as_str().map(str::to_owned)),
                    outline_written: harvest.is_some_and(|h| {
                        h.value("outline")
                            .as_str()
                            .is_some_and(|t| !t.trim().is_empty())
                    }),
                    attachments: harvest.map_or(0, |h| {
                        let parent = h.id.to_string();
                        let n = attachments
                            .iter()
                            .filter(|a| a.value(PARENT_ID_FIELD).as_str() == Some(&parent))
                            .count();
                        u32::try_from(n).unwrap_or(u32::MAX)
                    }),
                };
                let devices = devices
                    .iter()
                    .filter(|d| d.user_id == user.id)
                    .map(|d| DeviceHealth {
                        device: d.clone(),
                        push_reachable: push.contains_key(&d.id),
                        app_version: d.app_version.clone().or_else(|| push.get(&d.id).cloned()),
                    })
                    .collect();
                ParticipantProgress {
                    last_nudge: nudges.get(&user.id).cloned(),
                    assignments,
                    harvest,
                    devices,
                    joined_at,
                    user,
                }
            })
            .collect();
        Ok(CohortProgress {
            cohort: parts.cohort,
            days: parts.days,
            stretches,
            participants,
        })
    }

    /// A participant's interviews, assignment work, feedback exercises, harvest and attachments
    /// in a cohort (admins and the cohort's trainers, who see every record of the cohort through
    /// sync as well). Each read is audited.
    pub async fn participant_work(
        &self,
        actor: &Actor,
        cohort_id: Uuid,
        user_id: Uuid,
    ) -> Result<ParticipantWork> {
        let cohort = self.managed_cohort(actor, cohort_id).await?;
        let user = self.cohort_participant(cohort_id, user_id).await?;
        let owned = |spec: &'static CollectionSpec| async move {
            let live: Vec<StoredRecord> = sync_store::records_owned_by(
                &self.db,
                spec,
                user_id,
                Some(cohort_id),
                None,
                UNLIMITED,
            )
            .await?
            .into_iter()
            .filter(|r| !r.is_deleted())
            .collect();
            Ok::<_, Error>(live)
        };
        let mut interviews = owned(&INTERVIEWS).await?;
        interviews.sort_by(|a, b| {
            (a.value("interviewed_on").as_str(), a.created_at)
                .cmp(&(b.value("interviewed_on").as_str(), b.created_at))
        });
        let assignment_work = owned(&ASSIGNMENT_WORK).await?;
        let mut feedback_exercises = owned(&FEEDBACK_EXERCISES).await?;
        feedback_exercises.sort_by_key(|r| r.created_at);
        let harvest = owned(&HARVESTS).await?.into_iter().next();
        let attachments = owned(&ATTACHMENTS).await?;
        let assignments = cohort_store::load_parts(&self.db, cohort.clone())
            .await?
            .assignments;
        audit::record(
            &self.db,
            actor.provider_id,
            Some(actor),
            AuditEvent::new(AuditAction::ParticipantWorkRead)
                .subject(user_id)
                .cohort(cohort_id)
                .details(serde_json::json!({
                    "interviews": interviews.len(),
                    "assignment_work": assignment_work.len(),
                    "feedback_exercises": feedback_exercises.len(),
                    "attachments": attachments.len(),
                })),
        )
        .await?;
        Ok(ParticipantWork {
            user,
            cohort,
            assignments,
            interviews,
            assignment_work,
            feedback_exercises,
            harvest,
            attachments,
        })
    }

    /// Sends a participant a push to open the app (so what waits on the phone reaches the
    /// group): to each of their reachable devices, outside that device's quiet hours, at most
    /// once per participant per day of the cohort's calendar.
    pub async fn nudge(&self, actor: &Actor, cohort_id: Uuid, user_id: Uuid) -> Result<Nudge> {
        let cohort = self.managed_cohort(actor, cohort_id).await?;
        let user = self.cohort_participant(cohort_id, user_id).await?;
        let zone = parse_time_zone(&cohort.time_zone)?;
        let now = Utc::now();
        let today = now.with_timezone(&zone).date_naive();
        let key = format!("{NUDGE}:{cohort_id}:{}:{today}", user.id);
        let notification = notification::Model {
            id: Uuid::now_v7(),
            dedupe_key: key.clone(),
            kind: NUDGE.into(),
            user_id: user.id,
            cohort_id,
            assignment_id: None,
            announcement_id: None,
            due_at: now,
            status: "pending".into(),
            status_reason: None,
            created_at: now,
            updated_at: now,
        };
        let txn = crate::store::begin_write(&self.db).await?;
        push_store::insert_notifications(&txn, vec![notification.clone()]).await?;
        let stored = push_store::notifications_by_key(&txn, vec![key]).await?;
        txn.commit().await?;
        // The dedupe key is unique: another nudge today (from any trainer, on any replica) won.
        if stored.first().map(|n| n.id) != Some(notification.id) {
            return Err(Error::conflict(
                "already_nudged",
                format!(
                    "{} was already nudged today ({today}); a participant gets at most one nudge a day",
                    user.display_name
                ),
            ));
        }
        self.wake_push_worker();
        Ok(Nudge {
            notification,
            deliveries: Vec::new(),
        })
    }

    /// The latest nudge of each participant of a cohort, with its deliveries.
    async fn last_nudges(&self, cohort_id: Uuid) -> Result<HashMap<Uuid, Nudge>> {
        let mut latest: HashMap<Uuid, notification::Model> = HashMap::new();
        for n in push_store::cohort_notifications(&self.db, cohort_id, NUDGE, None).await? {
            // Ordered by due time: the last one seen is the latest.
            latest.insert(n.user_id, n);
        }
        let ids: Vec<Uuid> = latest.values().map(|n| n.id).collect();
        let mut deliveries: HashMap<Uuid, Vec<delivery::Model>> = HashMap::new();
        for d in push_store::deliveries_of(&self.db, &ids).await? {
            deliveries.entry(d.notification_id).or_default().push(d);
        }
        Ok(latest
            .into_iter()
            .map(|(user, notification)| {
                let deliveries = deliveries.remove(&notification.id).unwrap_or_default();
                (
                    user,
                    Nudge {
                        notification,
                        deliveries,
                    },
                )
            })
            .collect())
    }

    /// The cohort's participants (not erased) with when they joined, by name.
    async fn participants_of(&self, cohort_id: Uuid) -> Result<Vec<(user::Model, DateTime<Utc>)>> {
        let memberships: Vec<_> = cohort_store::list_members(&self.db, cohort_id)
            .await?
            .into_iter()
            .filter(|m| m.role == Role::Participant.as_str())
            .collect();
        let joined: HashMap<Uuid, DateTime<Utc>> = memberships
            .iter()
            .map(|m| (m.user_id, m.created_at))
            .collect();
        let mut users: Vec<(user::Model, DateTime<Utc>)> =
            account_store::find_users(&self.db, memberships.iter().map(|m| m.user_id))
                .await?
                .into_iter()
                .filter(|u| u.erased_at.is_none())
                .filter_map(|u| Some((joined.get(&u.id).copied()?, u)))
                .map(|(at, u)| (u, at))
                .collect();
        users.sort_by(|a, b| a.0.display_name.cmp(&b.0.display_name));
        Ok(users)
    }

    /// A participant of the cohort, or "not found" for anyone else.
    async fn cohort_participant(&self, cohort_id: Uuid, user_id: Uuid) -> Result<user::Model> {
        let is_participant: HashSet<Uuid> = cohort_store::list_members(&self.db, cohort_id)
            .await?
            .into_iter()
            .filter(|m| m.role == Role::Participant.as_str())
            .map(|m| m.user_id)
            .collect();
        if !is_participant.contains(&user_id) {
            return Err(Error::NotFound("participant"));
        }
        account_store::find_user(&self.db, user_id)
            .await?
            .filter(|u| u.erased_at.is_none())
            .ok_or(Error::NotFound("participant"))
    }
}

/// The stretch an interview belongs to, as the day it starts after: its assignment's, when it
/// names one; else the stretch in which it was held (or, without a date, recorded), from one
/// programme day up to the next. `None` before Day 1 or from Day 6 on.
fn stretch_of(
    interview: &StoredRecord,
    given_on: &HashMap<String, i32>,
    days: &[cohort_day::Model],
    zone: chrono_tz::Tz,
) -> Option<i32> {
    if let Some(named) = interview.value(ASSIGNMENT_FIELD).as_str() {
        return given_on.get(named).copied();
    }
    let held = interview
        .value("interviewed_on")
        .as_str()
        .and_then(|d| d.parse::<NaiveDate>().ok())
        .unwrap_or_else(|| interview.created_at.with_timezone(&zone).date_naive());
    let mut by_date: Vec<&cohort_day::Model> = days.iter().collect();
    by_date.sort_by_key(|d| d.date);
    by_date
        .windows(2)
        .find(|pair| pair[0].date <= held && held < pair[1].date)
        .map(|pair| pair[0].day_number)
}
