//! Push use cases: the device-token registry, reminder rules and the reminder plan of a cohort,
//! and turning due notifications into deliveries (one per reachable device), in the device's
//! language. Sending the deliveries is `jobs::push`.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use veldwerk_sync_protocol::schema::{ASSIGNMENT_WORK, assignment_record_id};

use super::{
    Actor, Error, Result, Role, Services,
    audit::{self, AuditAction, AuditEvent},
    schedule::{local_to_utc, parse_time_zone},
};
use crate::store::{
    announcements as announcement_store, cohorts as cohort_store,
    entity::{cohort, cohort_assignment, cohort_day, delivery, notification, push_device},
    push as store, sync as sync_store,
};

/// A token unseen for this long gets nothing more.
pub const STALE_AFTER_DAYS: i64 = 30;
/// Notifications turned into deliveries per transaction.
const DISPATCH_BATCH: u64 = 2_000;

/// Which assignments a rule reminds of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleTarget {
    /// Between-day work: *opdracht uitvoeren*, *toepassen in je werk*, *interview*.
    BetweenDay,
    /// The Day 6 harvest presentation.
    Harvest,
}

/// "Remind `days_before` days before the day the work is due, at local time `at`."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReminderRule {
    pub applies_to: RuleTarget,
    pub days_before: u32,
    /// Local wall-clock time, `HH:MM`.
    #[serde(with = "hh_mm")]
    pub at: NaiveTime,
}

mod hh_mm {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &NaiveTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&time.format("%H:%M"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NaiveTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        NaiveTime::parse_from_str(&text, "%H:%M").map_err(serde::de::Error::custom)
    }
}

impl ReminderRule {
    fn key(&self) -> String {
        let target = match self.applies_to {
            RuleTarget::BetweenDay => "work",
            RuleTarget::Harvest => "harvest",
        };
        format!("{target}-{}d-{}", self.days_before, self.at.format("%H%M"))
    }

    /// The rule a reminder's key names (`work-3d-0900`), the inverse of `key`.
    fn from_key(key: &str) -> Option<Self> {
        let mut parts = key.splitn(3, '-');
        let applies_to = match parts.next()? {
            "work" => RuleTarget::BetweenDay,
            "harvest" => RuleTarget::Harvest,
            _ => return None,
        };
        let days_before = parts.next()?.strip_suffix('d')?.parse().ok()?;
        let at = NaiveTime::parse_from_str(parts.next()?, "%H%M").ok()?;
        Some(Self {
            applies_to,
            days_before,
            at,
        })
    }
}

/// The rules a programme starts with: between-day work three days before at 09:00 and the
/// evening before at 19:00; the harvest presentation a week, two days and the morning before.
pub fn default_rules() -> Vec<ReminderRule> {
    let at = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default();
    vec![
        ReminderRule {
            applies_to: RuleTarget::BetweenDay,
            days_before: 3,
            at: at(9, 0),
        },
        ReminderRule {
            applies_to: RuleTarget::BetweenDay,
            days_before: 1,
            at: at(19, 0),
        },
        ReminderRule {
            applies_to: RuleTarget::Harvest,
            days_before: 7,
            at: at(9, 0),
        },
        ReminderRule {
            applies_to: RuleTarget::Harvest,
            days_before: 2,
            at: at(9, 0),
        },
        ReminderRule {
            applies_to: RuleTarget::Harvest,
            days_before: 1,
            at: at(8, 30),
        },
    ]
}

fn validate_rules(rules: &[ReminderRule]) -> Result<()> {
    if rules.len() > 20 {
        return Err(Error::invalid(
            "too_many_rules",
            "at most 20 reminder rules",
        ));
    }
    if rules.iter().any(|rule| rule.days_before > 60) {
        return Err(Error::invalid("invalid_rule", "days_before is at most 60"));
    }
    Ok(())
}

/// Local quiet hours: nothing is sent from `start` to `end` (across midnight when start > end).
#[derive(Debug, Clone, Copy)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl QuietHours {
    fn parse(start: &str, end: &str) -> Option<Self> {
        Some(Self {
            start: NaiveTime::parse_from_str(start, "%H:%M").ok()?,
            end: NaiveTime::parse_from_str(end, "%H:%M").ok()?,
        })
    }

    /// The first local moment at or after `(date, time)` outside the quiet hours.
    pub fn defer(&self, date: NaiveDate, time: NaiveTime) -> (NaiveDate, NaiveTime) {
        let quiet = if self.start <= self.end {
            time >= self.start && time < self.end
        } else {
            time >= self.start || time < self.end
        };
        if !quiet {
            return (date, time);
        }
        if self.start > self.end && time >= self.start {
            // Checked: a date at the end of the calendar must not panic (dates are validated
            // on the way in; this keeps planning safe for whatever is already stored).
            (date.succ_opt().unwrap_or(date), self.end)
        } else {
            (date, self.end)
        }
    }
}

/// A device's zone and quiet hours: together they decide when a push may reach it.
#[derive(Debug, Clone, Copy)]
struct DeviceClock {
    zone: Tz,
    quiet: QuietHours,
}

impl DeviceClock {
    /// The device's own zone and quiet hours; the fallbacks for what it does not say clearly.
    fn of(device: &push_device::Model, zone: Tz, quiet: QuietHours) -> Self {
        Self {
            zone: parse_time_zone(&device.time_zone).unwrap_or(zone),
            quiet: QuietHours::parse(&device.quiet_hours_start, &device.quiet_hours_end)
                .unwrap_or(quiet),
        }
    }

    /// The first moment at or after `now` outside the device's quiet hours.
    fn outside_quiet_hours(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let local = now.with_timezone(&self.zone).naive_local();
        let (date, time) = self.quiet.defer(local.date(), local.time());
        if (date, time) == (local.date(), local.time()) {
            return now;
        }
        local_to_utc(self.zone, date, time).max(now)
    }
}

/// When a rule fires for work due on `due_date`, as an instant: local date and time in `zone`,
/// moved out of the quiet hours. Correct across daylight-saving changes because it is computed
/// from local wall-clock time for each date.
pub fn reminder_instant(
    rule: &ReminderRule,
    due_date: NaiveDate,
    zone: Tz,
    quiet: QuietHours,
) -> DateTime<Utc> {
    let date = due_date
        .checked_sub_days(chrono::Days::new(u64::from(rule.days_before)))
        .unwrap_or(NaiveDate::MIN);
    let (date, time) = quiet.defer(date, rule.at);
    local_to_utc(zone, date, time)
}

/// A device's new push registration.
#[derive(Debug)]
pub struct PushRegistration {
    pub token: String,
    /// `android`, `ios` or `web`.
    pub platform: String,
    /// BCP 47, e.g. `nl-NL` or `en-GB`; decides the language of notifications.
    pub locale: String,
    pub time_zone: String,
    pub app_version: String,
    pub quiet_hours_start: Option<String>,
    pub quiet_hours_end: Option<String>,
}

/// One planned reminder, for the trainer's view.
#[derive(Debug)]
pub struct PlannedReminder {
    pub notification: notification::Model,
    pub participant_name: String,
    /// The deadline of the work it reminds of: the start of the assignment's due day.
    pub assignment_due_at: Option<DateTime<Utc>>,
}

impl Services {
    /// Whether sending is paused after a credential failure.
    pub fn push_paused(&self, now: DateTime<Utc>) -> bool {
        let health = self.push_health.lock().unwrap_or_else(|e| e.into_inner());
        health.paused_until.is_some_and(|until| now < until)
    }

    /// Records a credential failure: pauses sending (1 minute, doubling up to 30) and tells ops
    /// once per outage, not once per message. Returns when sending resumes.
    pub fn push_auth_failed(&self, code: &str, message: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        let mut health = self.push_health.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = health.paused_until.filter(|until| now < *until) {
            return until;
        }
        health.auth_failures += 1;
        let minutes = 2i64.pow(health.auth_failures.min(5) - 1).min(30);
        let until = now + Duration::minutes(minutes);
        health.paused_until = Some(until);
        if health.auth_failures == 1 {
            tracing::error!(
                %code, %message,
                "push credentials rejected: sending is paused until they work again; check the FCM service-account key"
            );
        }
        until
    }

    /// Pauses sending until `until` because FCM throttles the whole project (not a credential
    /// failure: nobody is alerted, and the pause does not grow).
    pub fn push_throttled(&self, until: DateTime<Utc>) {
        let mut health = self.push_health.lock().unwrap_or_else(|e| e.into_inner());
        health.paused_until = Some(
            health
                .paused_until
                .map_or(until, |paused| paused.max(until)),
        );
    }

    /// Clears the pause once a message went through.
    /// A quota pause (`push_throttled`) stays: a message in flight when it began says nothing
    /// about the quota.
    pub fn push_recovered(&self) {
        let mut health = self.push_health.lock().unwrap_or_else(|e| e.into_inner());
        if health.auth_failures > 0 {
            tracing::info!("push credentials work again; sending resumed");
            *health = super::PushHealth::default();
        }
    }

    /// Registers the calling device's push token; registering again updates it. Apps register at
    /// every start, which also marks the token as seen.
    pub async fn register_push_device(
        &self,
        actor: &Actor,
        registration: PushRegistration,
    ) -> Result<push_device::Model> {
        let token = registration.token.trim().to_owned();
        if token.is_empty() || token.len() > 1_024 {
            return Err(Error::invalid(
                "invalid_token",
                "the push token must be 1 to 1024 characters",
            ));
        }
        if !["android", "ios", "web"].contains(&registration.platform.as_str()) {
            return Err(Error::invalid(
                "invalid_platform",
                "platform must be android, ios or web",
            ));
        }
        parse_time_zone(&registration.time_zone)?;
        let quiet_start = registration
            .quiet_hours_start
            .unwrap_or_else(|| self.config.push.quiet_hours_start.clone());
        let quiet_end = registration
            .quiet_hours_end
            .unwrap_or_else(|| self.config.push.quiet_hours_end.clone());
        if QuietHours::parse(&quiet_start, &quiet_end).is_none() {
            return Err(Error::invalid(
                "invalid_quiet_hours",
                "quiet hours are local times like 21:00",
            ));
        }
        let now = Utc::now();
        let previous = store::find_push_device(&self.db, actor.device_id).await?;
        let device = push_device::Model {
            device_id: actor.device_id,
            user_id: actor.user_id,
            token,
            platform: registration.platform,
            locale: registration.locale.chars().take(35).collect(),
            time_zone: registration.time_zone,
            app_version: registration.app_version.chars().take(32).collect(),
            quiet_hours_start: quiet_start,
            quiet_hours_end: quiet_end,
            created_at: previous.as_ref().map_or(now, |p| p.created_at),
            last_seen_at: now,
            deactivated_at: None,
            deactivation_reason: None,
        };
        store::upsert_push_device(&self.db, device.clone()).await?;
        let moved = previous.is_none_or(|p| {
            p.time_zone != device.time_zone
                || p.quiet_hours_start != device.quiet_hours_start
                || p.quiet_hours_end != device.quiet_hours_end
        });
        if moved && actor.role == Role::Participant {
            // Reminders follow the participant's zone and quiet hours.
            for membership in sync_store::memberships_of(&self.db, actor.user_id).await? {
                self.plan_participant_reminders(membership.cohort_id, actor.user_id)
                    .await?;
            }
        }
        Ok(device)
    }

    /// Removes the calling device's push token.
    pub async fn unregister_push_device(&self, actor: &Actor) -> Result<()> {
        store::delete_push_device(&self.db, actor.device_id).await?;
        Ok(())
    }

    /// The reminder rules in force for a cohort, and whether they are the cohort's own.
    pub async fn reminder_rules(
        &self,
        actor: &Actor,
        cohort_id: Uuid,
    ) -> Result<(Vec<ReminderRule>, bool)> {
        let cohort = self.managed_cohort(actor, cohort_id).await?;
        self.rules_for(&cohort).await
    }

    /// Sets a cohort's own rules (or, with `None`, goes back to the programme's) and replans.
    pub async fn set_reminder_rules(
        &self,
        actor: &Actor,
        cohort_id: Uuid,
        rules: Option<Vec<ReminderRule>>,
    ) -> Result<(Vec<ReminderRule>, bool)> {
        let cohort = self.managed_cohort(actor, cohort_id).await?;
        if let Some(rules) = &rules {
            validate_rules(rules)?;
        }
        let value = rules
            .map(|rules| serde_json::to_value(rules).map_err(anyhow::Error::from))
            .transpose()?;
        let txn = crate::store::begin_write(&self.db).await?;
        store::set_reminder_rules(&txn, "cohorts", cohort_id, value).await?;
        audit::record(
            &txn,
            actor.provider_id,
            Some(actor),
            AuditEvent::new(AuditAction::ReminderRulesChanged).cohort(cohort_id),
        )
        .await?;
        txn.commit().await?;
        self.plan_reminders(cohort_id).await?;
        self.rules_for(&cohort).await
    }

    /// The reminder rules of a programme (its cohorts use them unless they have their own).
    pub async fn programme_reminder_rules(
        &self,
        actor: &Actor,
        programme_id: Uuid,
    ) -> Result<Vec<ReminderRule>> {
        self.get_programme(actor, programme_id).await?;
        self.programme_rules(programme_id).await
    }

    /// Sets a programme's reminder rules (admins) and replans the cohorts that follow them.
    pub async fn set_programme_reminder_rules(
        &self,
        actor: &Actor,
        programme_id: Uuid,
        rules: Vec<ReminderRule>,
    ) -> Result<Vec<ReminderRule>> {
        actor.require(&[Role::Admin])?;
        self.get_programme(actor, programme_id).await?;
        validate_rules(&rules)?;
        let value = serde_json::to_value(&rules).map_err(anyhow::Error::from)?;
        let txn = crate::store::begin_write(&self.db).await?;
        store::set_reminder_rules(&txn, "programmes", programme_id, Some(value)).await?;
        audit::record(
            &txn,
            actor.provider_id,
            Some(actor),
            AuditEvent::new(AuditAction::ReminderRulesChanged)
                .details(serde_json::json!({ "programme_id": programme_id })),
        )
        .await?;
        txn.commit().await?;
        for cohort in cohort_store::cohorts_of_programme(&self.db, programme_id).await? {
            self.plan_reminders(cohort.id).await?;
        }
        Ok(rules)
    }

    async fn programme_rules(&self, programme_id: Uuid) -> Result<Vec<ReminderRule>> {
        Ok(
            match store::reminder_rules(&self.db, "programmes", programme_id).await? {
                Some(rules) => serde_json::from_value(rules).map_err(anyhow::Error::from)?,
                None => default_rules(),
            },
        )
    }

    async fn rules_for(&self, cohort: &cohort::Model) -> Result<(Vec<ReminderRule>, bool)> {
        if let Some(rules) = store::reminder_rules(&self.db, "cohorts", cohort.id).await? {
            return Ok((
                serde_json::from_value(rules).map_err(anyhow::Error::from)?,
                true,
            ));
        }
        Ok((self.programme_rules(cohort.programme_id).await?, false))
    }

    /// Brings a cohort's planned reminders in line with its schedule, rules and participants:
    /// new ones are added, moved ones rescheduled, ones no longer wanted cancelled. Reminders that
    /// went out stay as they are, so nobody is reminded twice. Idempotent.
    pub async fn plan_reminders(&self, cohort_id: Uuid) -> Result<usize> {
        self.plan_cohort_reminders(cohort_id, None).await
    }

    /// Replans one participant's reminders in a cohort (they enrolled, left, or their devices
    /// changed): the rest of the cohort is untouched, so the cost does not grow with its size.
    pub async fn plan_participant_reminders(
        &self,
        cohort_id: Uuid,
        user_id: Uuid,
    ) -> Result<usize> {
        self.plan_cohort_reminders(cohort_id, Some(user_id)).await
    }

    fn default_quiet_hours(&self) -> Result<QuietHours> {
        Ok(QuietHours::parse(
            &self.config.push.quiet_hours_start,
            &self.config.push.quiet_hours_end,
        )
        .ok_or_else(|| anyhow::anyhow!("invalid default quiet hours"))?)
    }

    async fn plan_cohort_reminders(&self, cohort_id: Uuid, only: Option<Uuid>) -> Result<usize> {
        let Some(cohort) = cohort_store::find_cohort(&self.db, cohort_id).await? else {
            return Ok(0);
        };
        let (rules, _) = self.rules_for(&cohort).await?;
        let parts = cohort_store::load_parts(&self.db, cohort.clone()).await?;
        let cohort_zone = parse_time_zone(&cohort.time_zone)?;
        let participants: Vec<Uuid> = cohort_store::list_members(&self.db, cohort_id)
            .await?
            .into_iter()
            .filter(|member| member.role == Role::Participant.as_str())
            .map(|member| member.user_id)
            .filter(|user_id| only.is_none_or(|only| only == *user_id))
            .collect();
        let now = Utc::now();
        let devices = store::reachable_devices(
            &self.db,
            &participants,
            now - Duration::days(STALE_AFTER_DAYS),
        )
        .await?;
        let default_quiet = self.default_quiet_hours()?;
        let days: HashMap<i32, &cohort_day::Model> =
            parts.days.iter().map(|d| (d.day_number, d)).collect();

        let mut wanted: BTreeMap<String, notification::Model> = BTreeMap::new();
        for participant in &participants {
            // Each device's own zone and quiet hours decide its moment (`dispatch_due` holds
            // each delivery until then); the notification falls due at the earliest of them.
            // Without a device, the cohort's zone and the default quiet hours stand in.
            let mut clocks: Vec<DeviceClock> = devices
                .iter()
                .filter(|device| device.user_id == *participant)
                .map(|device| DeviceClock::of(device, cohort_zone, default_quiet))
                .collect();
            if clocks.is_empty() {
                clocks.push(DeviceClock {
                    zone: cohort_zone,
                    quiet: default_quiet,
                });
            }
            for assignment in &parts.assignments {
                let Some(due_day) = days.get(&assignment.due_day) else {
                    continue;
                };
                let deadline = local_to_utc(cohort_zone, due_day.date, due_day.starts_at);
                let target = if assignment.kind == "harvest_presentation" {
                    RuleTarget::Harvest
                } else {
                    RuleTarget::BetweenDay
                };
                for rule in rules.iter().filter(|rule| rule.applies_to == target) {
                    // Pointless once the day has started; not worth a flood when already past.
                    let Some(due_at) = clocks
                        .iter()
                        .map(|clock| reminder_instant(rule, due_day.date, clock.zone, clock.quiet))
                        .filter(|at| *at < deadline && *at > now)
                        .min()
                    else {
                        continue;
                    };
                    let key = format!("reminder:{participant}:{}:{}", assignment.id, rule.key());
                    wanted.insert(
                        key.clone(),
                        notification::Model {
                            id: Uuid::now_v7(),
                            dedupe_key: key,
                            kind: "reminder".into(),
                            user_id: *participant,
                            cohort_id,
                            assignment_id: Some(assignment.id),
                            announcement_id: None,
                            due_at,
                            status: "pending".into(),
                            status_reason: None,
                            created_at: now,
                            updated_at: now,
                        },
                    );
                }
            }
        }

        let existing = store::cohort_notifications(&self.db, cohort_id, "reminder", only).await?;
        let txn = crate::store::begin_write(&self.db).await?;
        let mut cancelled = Vec::new();
        for old in existing
            .iter()
            .filter(|old| only.is_none_or(|only| only == old.user_id))
        {
            match wanted.remove(&old.dedupe_key) {
                Some(new) if old.status == "pending" && new.due_at != old.due_at => {
                    store::reschedule_notification(&txn, old.id, new.due_at, now).await?;
                }
                // Wanted again after a change undid it (rules back, zone changed back).
                Some(new) if old.status == "cancelled" => {
                    store::revive_notification(&txn, old.id, new.due_at, now).await?;
                }
                Some(_) => {}
                None if old.status == "pending" => cancelled.push(old.id),
                None => {}
            }
        }
        store::finish_notifications(
            &txn,
            &cancelled,
            "cancelled",
            Some("no longer planned"),
            now,
        )
        .await?;
        let added = wanted.len();
        store::insert_notifications(&txn, wanted.into_values().collect()).await?;
        txn.commit().await?;
        Ok(added)
    }

    /// A cohort's reminders with their participant, by due time (admins and its trainers).
    pub async fn reminder_plan(
        &self,
        actor: &Actor,
        cohort_id: Uuid,
    ) -> Result<Vec<PlannedReminder>> {
        let cohort = self.managed_cohort(actor, cohort_id).await?;
        let parts = cohort_store::load_parts(&self.db, cohort).await?;
        let deadlines: HashMap<Uuid, DateTime<Utc>> = parts
            .assignments
            .iter()
            .filter_map(|assignment| {
                let day = parts
                    .days
                    .iter()
                    .find(|d| d.day_number == assignment.due_day)?;
                Some((assignment.id, super::cohorts::day_start(&parts.cohort, day)))
            })
            .collect();
        let reminders = store::cohort_notifications(&self.db, cohort_id, "reminder", None).await?;
        let users: HashSet<Uuid> = reminders.iter().map(|r| r.user_id).collect();
        let names: HashMap<Uuid, String> = crate::store::accounts::find_users(&self.db, users)
            .await?
            .into_iter()
            .map(|user| (user.id, user.display_name))
            .collect();
        Ok(reminders
            .into_iter()
            .map(|notification| PlannedReminder {
                participant_name: names
                    .get(&notification.user_id)
                    .cloned()
                    .unwrap_or_default(),
                assignment_due_at: notification
                    .assignment_id
                    .and_then(|id| deadlines.get(&id).copied()),
                notification,
            })
            .collect())
    }

    /// Turns due notifications into deliveries, one per reachable device, rendered in the
    /// device's language; skips reminders whose work is done or whose day has started. Returns
    /// how many notifications it handled.
    pub async fn dispatch_due(&self, now: DateTime<Utc>) -> Result<usize> {
        let txn = crate::store::begin_write(&self.db).await?;
        let due = store::claim_due_notifications(&txn, now, DISPATCH_BATCH).await?;
        if due.is_empty() {
            txn.commit().await?;
            return Ok(0);
        }
        let users: Vec<Uuid> = due
            .iter()
            .map(|n| n.user_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut devices: HashMap<Uuid, Vec<push_device::Model>> = HashMap::new();
        for device in
            store::reachable_devices(&txn, &users, now - Duration::days(STALE_AFTER_DAYS)).await?
        {
            devices.entry(device.user_id).or_default().push(device);
        }
        let context = DispatchContext::load(&txn, &due).await?;
        let default_quiet = self.default_quiet_hours()?;

        let mut deliveries = Vec::new();
        let (mut dispatched, mut skipped): (Vec<Uuid>, Vec<(Uuid, &'static str)>) =
            (Vec::new(), Vec::new());
        for notification in &due {
            if let Some(reason) = context.skip_reason(notification, now) {
                skipped.push((notification.id, reason));
                continue;
            }
            for device in devices.get(&notification.user_id).into_iter().flatten() {
                // Held back until the device's own moment; none when that is too late.
                let Some(send_at) = context.send_at(notification, device, default_quiet, now)
                else {
                    continue;
                };
                let Some((title, body, data)) = context.render(notification, &device.locale) else {
                    continue;
                };
                deliveries.push(delivery::Model {
                    id: Uuid::now_v7(),
                    notification_id: notification.id,
                    device_id: device.device_id,
                    token: device.token.clone(),
                    status: "pending".into(),
                    title,
                    body,
                    data: serde_json::to_value(data).map_err(anyhow::Error::from)?,
                    attempts: 0,
                    next_attempt_at: send_at,
                    lease_until: None,
                    leased_by: None,
                    error_code: None,
                    error_message: None,
                    message_id: None,
                    sent_at: None,
                    created_at: now,
                });
            }
            dispatched.push(notification.id);
        }
        store::insert_deliveries(&txn, deliveries).await?;
        store::finish_notifications(&txn, &dispatched, "dispatched", None, now).await?;
        for (id, reason) in &skipped {
            store::finish_notifications(&txn, &[*id], "skipped", Some(reason), now).await?;
        }
        txn.commit().await?;
        Ok(due.len())
    }
}

impl Services {
    /// Deliveries of reminders that should no longer go out: their work was marked done, their
    /// assignment removed, or their day has started since they were dispatched. The worker asks
    /// before every attempt, retries included, so a reminder never arrives after the work.
    pub async fn unwanted_deliveries(
        &self,
        deliveries: &[delivery::Model],
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, &'static str)>> {
        let reminders: Vec<Uuid> = deliveries
            .iter()
            .filter(|d| d.data["kind"] == "reminder")
            .map(|d| d.notification_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if reminders.is_empty() {
            return Ok(Vec::new());
        }
        let notifications = store::find_notifications(&self.db, &reminders).await?;
        let context = DispatchContext::load(&self.db, &notifications).await?;
        let reasons: HashMap<Uuid, &'static str> = notifications
            .iter()
            .filter_map(|n| Some((n.id, context.skip_reason(n, now)?)))
            .collect();
        Ok(deliveries
            .iter()
            .filter_map(|d| Some((d.id, *reasons.get(&d.notification_id)?)))
            .collect())
    }
}

/// What rendering and skipping a batch of notifications needs, loaded once per batch.
struct DispatchContext {
    assignments: HashMap<Uuid, cohort_assignment::Model>,
    day_starts: HashMap<(Uuid, i32), (DateTime<Utc>, NaiveDate)>,
    /// Each cohort's zone, for devices that do not name theirs.
    zones: HashMap<Uuid, Tz>,
    done: HashSet<(Uuid, Uuid)>,
    announcements: HashMap<Uuid, crate::store::entity::announcement::Model>,
}

impl DispatchContext {
    async fn load(db: &impl sea_orm::ConnectionTrait, due: &[notification::Model]) -> Result<Self> {
        let cohort_ids: Vec<Uuid> = due
            .iter()
            .map(|n| n.cohort_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let assignments: HashMap<Uuid, cohort_assignment::Model> =
            sync_store::assignments_of(db, &cohort_ids)
                .await?
                .into_iter()
                .map(|a| (a.id, a))
                .collect();
        let mut day_starts = HashMap::new();
        let mut zones = HashMap::new();
        for cohort_id in &cohort_ids {
            let Some(cohort) = cohort_store::find_cohort(db, *cohort_id).await? else {
                continue;
            };
            let zone = parse_time_zone(&cohort.time_zone)?;
            zones.insert(*cohort_id, zone);
            for day in cohort_store::load_parts(db, cohort).await?.days {
                day_starts.insert(
                    (*cohort_id, day.day_number),
                    (local_to_utc(zone, day.date, day.starts_at), day.date),
                );
            }
        }
        // Work already marked done, from the participants' synced assignment work.
        let work_ids: Vec<Uuid> = due
            .iter()
            .filter_map(|n| n.assignment_id.map(|a| assignment_record_id(n.user_id, a)))
            .collect();
        let done = sync_store::find_records(db, &ASSIGNMENT_WORK, &work_ids)
            .await?
            .into_iter()
            .filter(|work| {
                !work.is_deleted() && work.value("done") == &serde_json::Value::Bool(true)
            })
            .filter_map(|work| {
                let assignment = work.value("assignment_id").as_str()?.parse().ok()?;
                Some((work.owner_id, assignment))
            })
            .collect();
        let announcement_ids: Vec<Uuid> = due
            .iter()
            .filter_map(|n| n.announcement_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let announcements = announcement_store::find_announcements(db, &announcement_ids)
            .await?
            .into_iter()
            .map(|a| (a.id, a))
            .collect();
        Ok(Self {
            assignments,
            day_starts,
            zones,
            done,
            announcements,
        })
    }

    fn skip_reason(
        &self,
        notification: &notification::Model,
        now: DateTime<Utc>,
    ) -> Option<&'static str> {
        let assignment_id = notification.assignment_id?;
        let Some(assignment) = self.assignments.get(&assignment_id) else {
            return Some("assignment removed");
        };
        if self.done.contains(&(notification.user_id, assignment_id)) {
            return Some("already done");
        }
        match self
            .day_starts
            .get(&(notification.cohort_id, assignment.due_day))
        {
            Some((start, _)) if *start <= now => Some("the day has started"),
            _ => None,
        }
    }

    /// When a notification may reach a device, or `None` when its moment comes too late: a
    /// reminder at the rule's local time in the device's zone, out of its quiet hours, before the
    /// day starts; an announcement now, or when the device's quiet hours end if the trainer
    /// chose to respect them.
    fn send_at(
        &self,
        notification: &notification::Model,
        device: &push_device::Model,
        default_quiet: QuietHours,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let zone = self
            .zones
            .get(&notification.cohort_id)
            .copied()
            .unwrap_or(chrono_tz::UTC);
        let clock = DeviceClock::of(device, zone, default_quiet);
        if notification.kind == super::privacy::retention::RETENTION_WARNING
            || notification.kind == super::progress::NUDGE
        {
            return Some(clock.outside_quiet_hours(now));
        }
        if let Some(announcement_id) = notification.announcement_id {
            let respect = self
                .announcements
                .get(&announcement_id)
                .is_none_or(|a| a.respect_quiet_hours);
            return Some(if respect {
                clock.outside_quiet_hours(now)
            } else {
                now
            });
        }
        let assignment = notification
            .assignment_id
            .and_then(|id| self.assignments.get(&id));
        let rule = notification
            .dedupe_key
            .rsplit(':')
            .next()
            .and_then(ReminderRule::from_key);
        let (Some(assignment), Some(rule)) = (assignment, rule) else {
            return Some(now);
        };
        let (deadline, due_date) = *self
            .day_starts
            .get(&(notification.cohort_id, assignment.due_day))?;
        let at = reminder_instant(&rule, due_date, clock.zone, clock.quiet);
        (at < deadline).then_some(at.max(now))
    }

    /// Title, body and data of a notification in the device's language (Dutch unless the device
    /// asks for English).
    fn render(
        &self,
        notification: &notification::Model,
        locale: &str,
    ) -> Option<(String, String, BTreeMap<String, String>)> {
        let english = locale.to_lowercase().starts_with("en");
        let mut data = BTreeMap::from([
            ("kind".to_owned(), notification.kind.clone()),
            ("cohort_id".to_owned(), notification.cohort_id.to_string()),
        ]);
        if notification.kind == super::privacy::retention::RETENTION_WARNING {
            let (title, body) = if english {
                (
                    "Retention period ends soon",
                    "The participants' data of this cohort will be deleted soon. Export what must be kept.",
                )
            } else {
                (
                    "Bewaartermijn loopt af",
                    "De gegevens van de deelnemers van deze groep worden binnenkort verwijderd. Exporteer wat bewaard moet blijven.",
                )
            };
            return Some((title.to_owned(), body.to_owned(), data));
        }
        if notification.kind == super::progress::NUDGE {
            let (title, body) = if english {
                (
                    "Open Veldwerk",
                    "Your trainer asks you to open the app, so what you recorded reaches the group.",
                )
            } else {
                (
                    "Open Veldwerk",
                    "Je trainer vraagt je de app te openen, zodat wat je vastlegde de groep bereikt.",
                )
            };
            return Some((title.to_owned(), body.to_owned(), data));
        }
        if let Some(announcement_id) = notification.announcement_id {
            let announcement = self.announcements.get(&announcement_id)?;
            data.insert("announcement_id".into(), announcement_id.to_string());
            let body: String = announcement.body.chars().take(240).collect();
            return Some((announcement.title.clone(), body, data));
        }
        let assignment = self.assignments.get(&notification.assignment_id?)?;
        data.insert("assignment_id".into(), assignment.id.to_string());
        let (_, due_date) = self
            .day_starts
            .get(&(notification.cohort_id, assignment.due_day))?;
        let days_left = (*due_date - notification.due_at.date_naive())
            .num_days()
            .max(0);
        let date = due_date.format("%d-%m-%Y");
        let (title, body) = match (assignment.kind == "harvest_presentation", english) {
            (true, false) => (
                "Je oogst voor dag 6".to_owned(),
                format!(
                    "Over {days_left} dag(en), op {date}, presenteer je je persoonlijke oogst. Bereid je presentatie voor."
                ),
            ),
            (true, true) => (
                "Your harvest for day 6".to_owned(),
                format!(
                    "In {days_left} day(s), on {date}, you present your personal harvest. Prepare your presentation."
                ),
            ),
            (false, false) => (
                format!("Herinnering: {}", assignment.title),
                format!(
                    "{} staat nog open; dag {} is op {date}.",
                    assignment.title, assignment.due_day
                ),
            ),
            (false, true) => (
                format!("Reminder: {}", assignment.title),
                format!(
                    "{} is still open; day {} is on {date}.",
                    assignment.title, assignment.due_day
                ),
            ),
        };
        Some((title, body, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> QuietHours {
        QuietHours::parse("21:00", "08:00").unwrap()
    }

    fn rule(days_before: u32, at: &str) -> ReminderRule {
        ReminderRule {
            applies_to: RuleTarget::BetweenDay,
            days_before,
            at: NaiveTime::parse_from_str(at, "%H:%M").unwrap(),
        }
    }

    #[test]
    fn reminders_keep_their_local_time_across_both_dst_changes() {
        let amsterdam: Tz = "Europe/Amsterdam".parse().unwrap();
        // 2027: summer time starts 28 March, ends 31 October.
        let before_spring = reminder_instant(
            &rule(1, "09:00"),
            "2027-03-28".parse().unwrap(),
            amsterdam,
            quiet(),
        );
        let after_spring = reminder_instant(
            &rule(1, "09:00"),
            "2027-03-30".parse().unwrap(),
            amsterdam,
            quiet(),
        );
        assert_eq!(before_spring.to_rfc3339(), "2027-03-27T08:00:00+00:00");
        assert_eq!(after_spring.to_rfc3339(), "2027-03-29T07:00:00+00:00");
        let before_autumn = reminder_instant(
            &rule(1, "19:00"),
            "2027-10-31".parse().unwrap(),
            amsterdam,
            quiet(),
        );
        let after_autumn = reminder_instant(
            &rule(1, "19:00"),
            "2027-11-01".parse().unwrap(),
            amsterdam,
            quiet(),
        );
        assert_eq!(before_autumn.to_rfc3339(), "2027-10-30T17:00:00+00:00");
        assert_eq!(after_autumn.to_rfc3339(), "2027-10-31T18:00:00+00:00");
    }

    #[test]
    fn quiet_hours_defer_to_the_morning() {
        let q = quiet();
        let date: NaiveDate = "2027-01-10".parse().unwrap();
        let t = |s: &str| NaiveTime::parse_from_str(s, "%H:%M").unwrap();
        assert_eq!(
            q.defer(date, t("22:30")),
            (date + Duration::days(1), t("08:00"))
        );
        assert_eq!(q.defer(date, t("06:00")), (date, t("08:00")));
        assert_eq!(q.defer(date, t("20:59")), (date, t("20:59")));
        assert_eq!(q.defer(date, t("08:00")), (date, t("08:00")));
    }

    #[test]
    fn rules_round_trip_as_json() {
        let json = serde_json::to_value(default_rules()).unwrap();
        assert_eq!(
            json[0],
            serde_json::json!({ "applies_to": "between_day", "days_before": 3, "at": "09:00" })
        );
        let back: Vec<ReminderRule> = serde_json::from_value(json).unwrap();
        assert_eq!(back, default_rules());
    }
}
