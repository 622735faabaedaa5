//! Push: a device's token, and a cohort's reminder rules and plan.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object, OpenApi, param::Path, payload::Json, types::Example};
use uuid::Uuid;

use super::{ApiTags, NoContent, auth::BearerAuth, error::ApiError, types::LocalTime};
use crate::service::{
    Services,
    push::{PushRegistration, ReminderRule, RuleTarget},
};

/// This device's push registration. Send it at every app start: that also tells the server the
/// token is alive (tokens unseen for 30 days get nothing more).
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct PushDeviceRequest {
    /// The FCM registration token.
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub token: String,
    /// `android`, `ios` or `web`.
    #[oai(validator(max_length = 16))]
    pub platform: String,
    /// The device's language, e.g. `nl-NL`; notifications are in English when it starts with `en`.
    #[oai(validator(max_length = 35))]
    pub locale: String,
    /// IANA zone of the device, e.g. `Europe/Amsterdam`: reminders come at local times.
    #[oai(validator(max_length = 64))]
    pub time_zone: String,
    #[oai(validator(max_length = 32))]
    pub app_version: String,
    /// Start of the quiet hours, local `HH:MM` (default 21:00).
    #[oai(validator(max_length = 5))]
    pub quiet_hours_start: Option<String>,
    /// End of the quiet hours, local `HH:MM` (default 08:00).
    #[oai(validator(max_length = 5))]
    pub quiet_hours_end: Option<String>,
}

/// The stored registration.
#[derive(Debug, Object)]
pub struct PushDeviceView {
    pub device_id: Uuid,
    pub platform: String,
    pub locale: String,
    pub time_zone: String,
    pub quiet_hours_start: String,
    pub quiet_hours_end: String,
    pub last_seen_at: DateTime<Utc>,
}

/// What a rule reminds of.
#[derive(Debug, Enum, Clone, Copy)]
#[oai(rename_all = "snake_case")]
pub enum RuleTargetView {
    /// Between-day work: assignment, apply in your work, interview.
    BetweenDay,
    /// The Day 6 harvest presentation.
    Harvest,
}

/// Remind `days_before` days before the day the work is due, at local time `at`.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ReminderRuleView {
    pub applies_to: RuleTargetView,
    #[oai(validator(maximum(value = "60")))]
    pub days_before: u32,
    /// Local time, `HH:MM:SS`.
    pub at: LocalTime,
}

/// The rules in force for a cohort.
#[derive(Debug, Object)]
pub struct ReminderRulesView {
    pub rules: Vec<ReminderRuleView>,
    /// Whether a cohort has its own rules (else its programme's); false for a programme.
    pub overridden: bool,
}

/// A cohort's own reminder rules.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ReminderRulesRequest {
    #[oai(validator(max_items = 20))]
    pub rules: Vec<ReminderRuleView>,
}

/// One planned reminder.
#[derive(Debug, Object)]
pub struct PlannedReminderView {
    pub participant_id: Uuid,
    pub participant_name: String,
    pub assignment_id: Uuid,
    /// When the reminder is sent (at the earliest; each device's own zone and quiet hours may
    /// hold it later, never past `assignment_due_at`).
    pub send_at: DateTime<Utc>,
    /// The assignment's deadline: the start of the day it is due.
    #[oai(skip_serializing_if_is_none)]
    pub assignment_due_at: Option<DateTime<Utc>>,
    /// `pending`, `dispatched` (sent to the devices), `skipped` (e.g. already done) or
    /// `cancelled` (no longer planned).
    pub status: String,
    #[oai(skip_serializing_if_is_none)]
    pub status_reason: Option<String>,
}

fn rules_view((rules, overridden): (Vec<ReminderRule>, bool)) -> ReminderRulesView {
    ReminderRulesView {
        rules: rules
            .into_iter()
            .map(|rule| ReminderRuleView {
                applies_to: match rule.applies_to {
                    RuleTarget::BetweenDay => RuleTargetView::BetweenDay,
                    RuleTarget::Harvest => RuleTargetView::Harvest,
                },
                days_before: rule.days_before,
                at: LocalTime(rule.at),
            })
            .collect(),
        overridden,
    }
}

fn to_rules(request: ReminderRulesRequest) -> Vec<ReminderRule> {
    request
        .rules
        .into_iter()
        .map(|rule| ReminderRule {
            applies_to: match rule.applies_to {
                RuleTargetView::BetweenDay => RuleTarget::BetweenDay,
                RuleTargetView::Harvest => RuleTarget::Harvest,
            },
            days_before: rule.days_before,
            at: rule.at.0,
        })
        .collect()
}

type Result<T> = std::result::Result<T, ApiError>;

/// Push registration and reminders.
pub struct PushApi {
    pub services: Services,
}

#[OpenApi]
impl PushApi {
    /// Register this device for push notifications
    ///
    /// Registering again updates the token, language, zone and quiet hours.
    #[oai(
        path = "/me/push-device",
        method = "put",
        tag = "ApiTags::Push",
        operation_id = "registerPushDevice"
    )]
    async fn register(
        &self,
        auth: BearerAuth,
        body: Json<PushDeviceRequest>,
    ) -> Result<Json<PushDeviceView>> {
        let body = body.0;
        let device = self
            .services
            .register_push_device(
                &auth.0,
                PushRegistration {
                    token: body.token,
                    platform: body.platform,
                    locale: body.locale,
                    time_zone: body.time_zone,
                    app_version: body.app_version,
                    quiet_hours_start: body.quiet_hours_start,
                    quiet_hours_end: body.quiet_hours_end,
                },
            )
            .await?;
        Ok(Json(PushDeviceView {
            device_id: device.device_id,
            platform: device.platform,
            locale: device.locale,
            time_zone: device.time_zone,
            quiet_hours_start: device.quiet_hours_start,
            quiet_hours_end: device.quiet_hours_end,
            last_seen_at: device.last_seen_at,
        }))
    }

    /// Stop push notifications to this device
    ///
    /// Forgets this device's push token; its other registrations (other devices) stay.
    #[oai(
        path = "/me/push-device",
        method = "delete",
        tag = "ApiTags::Push",
        operation_id = "unregisterPushDevice"
    )]
    async fn unregister(&self, auth: BearerAuth) -> Result<NoContent> {
        self.services.unregister_push_device(&auth.0).await?;
        Ok(NoContent::Done)
    }

    /// A cohort's reminder rules
    ///
    /// Its own rules if it has them, else its programme's, and which of the two applies.
    #[oai(
        path = "/cohorts/:id/reminder-rules",
        method = "get",
        tag = "ApiTags::Push",
        operation_id = "getCohortReminderRules"
    )]
    async fn rules(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Json<ReminderRulesView>> {
        Ok(Json(rules_view(
            self.services.reminder_rules(&auth.0, id.0).await?,
        )))
    }

    /// Give a cohort its own reminder rules
    ///
    /// Replaces the programme's rules for this cohort and replans its reminders.
    #[oai(
        path = "/cohorts/:id/reminder-rules",
        method = "put",
        tag = "ApiTags::Push",
        operation_id = "setCohortReminderRules"
    )]
    async fn set_rules(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<ReminderRulesRequest>,
    ) -> Result<Json<ReminderRulesView>> {
        let rules = body
            .0
            .rules
            .into_iter()
            .map(|rule| ReminderRule {
                applies_to: match rule.applies_to {
                    RuleTargetView::BetweenDay => RuleTarget::BetweenDay,
                    RuleTargetView::Harvest => RuleTarget::Harvest,
                },
                days_before: rule.days_before,
                at: rule.at.0,
            })
            .collect();
        let view = self
            .services
            .set_reminder_rules(&auth.0, id.0, Some(rules))
            .await?;
        Ok(Json(rules_view(view)))
    }

    /// Return a cohort to its programme's reminder rules
    ///
    /// Drops the cohort's own rules and replans its reminders by the programme's.
    #[oai(
        path = "/cohorts/:id/reminder-rules",
        method = "delete",
        tag = "ApiTags::Push",
        operation_id = "resetCohortReminderRules"
    )]
    async fn reset_rules(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<Json<ReminderRulesView>> {
        let view = self
            .services
            .set_reminder_rules(&auth.0, id.0, None)
            .await?;
        Ok(Json(rules_view(view)))
    }

    /// A programme's reminder rules
    ///
    /// Its cohorts follow them unless they have their own. Admins and trainers.
    #[oai(
        path = "/programmes/:id/reminder-rules",
        method = "get",
        tag = "ApiTags::Push",
        operation_id = "getProgrammeReminderRules"
    )]
    async fn programme_rules(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<Json<ReminderRulesView>> {
        let rules = self
            .services
            .programme_reminder_rules(&auth.0, id.0)
            .await?;
        Ok(Json(rules_view((rules, false))))
    }

    /// Set a programme's reminder rules
    ///
    /// Admins. Cohorts without their own rules are replanned.
    #[oai(
        path = "/programmes/:id/reminder-rules",
        method = "put",
        tag = "ApiTags::Push",
        operation_id = "setProgrammeReminderRules"
    )]
    async fn set_programme_rules(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<ReminderRulesRequest>,
    ) -> Result<Json<ReminderRulesView>> {
        let rules = self
            .services
            .set_programme_reminder_rules(&auth.0, id.0, to_rules(body.0))
            .await?;
        Ok(Json(rules_view((rules, false))))
    }

    /// A cohort's reminder plan
    ///
    /// Who gets which reminder when, and what became of it.
    #[oai(
        path = "/cohorts/:id/reminder-plan",
        method = "get",
        tag = "ApiTags::Push",
        operation_id = "getReminderPlan"
    )]
    async fn plan(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<Json<Vec<PlannedReminderView>>> {
        let plan = self.services.reminder_plan(&auth.0, id.0).await?;
        Ok(Json(
            plan.into_iter()
                .map(|planned| PlannedReminderView {
                    participant_id: planned.notification.user_id,
                    participant_name: planned.participant_name,
                    assignment_id: planned.notification.assignment_id.unwrap_or_default(),
                    send_at: planned.notification.due_at,
                    assignment_due_at: planned.assignment_due_at,
                    status: planned.notification.status,
                    status_reason: planned.notification.status_reason,
                })
                .collect(),
        ))
    }
}

impl Example for PushDeviceRequest {
    fn example() -> Self {
        Self {
            token: "fcm-registration-token-from-the-app".into(),
            platform: "android".into(),
            locale: "nl-NL".into(),
            time_zone: "Europe/Amsterdam".into(),
            app_version: "1.4.2".into(),
            quiet_hours_start: Some("21:00".into()),
            quiet_hours_end: Some("08:00".into()),
        }
    }
}
