//! Between the days: the cohort's progress view (assignments, harvest, sync health, nudges), a
//! participant's work read-only, and the attachments it holds.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{Markup, html};
use poem::{
    Body, IntoResponse, Request, Response, handler,
    http::header,
    web::{Data, Html, Path},
};
use serde_json::Value;
use uuid::Uuid;

use super::{Context, Fields, error_page, layout, local, parse_id, see_other, signed_in, zone};
use crate::service::{
    Services,
    progress::{AssignmentProgress, DeviceHealth, HarvestProgress, Nudge, Stretch},
};
use crate::store::sync::StoredRecord;

/// A device that has not synced for this long is shown as a concern.
const QUIET_AFTER: chrono::Duration = chrono::Duration::days(3);

#[handler]
pub async fn progress_page(
    req: &Request,
    Path(id): Path<String>,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let progress = service!(ctx, services.cohort_progress(&ctx.actor, id));
    let tz = zone(&progress.cohort.time_zone);
    let here = format!("/console/cohorts/{id}/progress");
    let now = Utc::now();
    let groups = stretch_groups(&progress.stretches);
    let titles: Vec<&str> = progress
        .stretches
        .iter()
        .map(|s| s.assignment.title.as_str())
        .collect();
    let body = html! {
        p {
            a href={ "/console/cohorts/" (id) } { (ctx.t("Terug naar de groep", "Back to the cohort")) }
            " · " (ctx.t("Tijden in de tijdzone van de groep:", "Times in the cohort's time zone:")) " " (progress.cohort.time_zone)
        }
        @if progress.participants.is_empty() {
            p { (ctx.t("Nog niemand is ingeschreven.", "Nobody has enrolled yet.")) }
        } @else {
            // Wide on a tablet: the region scrolls sideways and can be reached with the keyboard.
            div class="scroll" role="region" aria-labelledby="progress-caption" tabindex="0" {
                table id="progress-table" {
                    caption id="progress-caption" { (ctx.t("Opdrachten tussen de dagen, oogst en synchronisatie per deelnemer",
                        "Between-day assignments, harvest and sync per participant")) }
                    thead { tr {
                        th scope="col" { (ctx.t("Deelnemer", "Participant")) }
                        @for group in &groups {
                            th scope="col" {
                                (ctx.t("Dag ", "Day ")) (group.after_day) " → " (group.due_day)
                                @if let (Some(from), Some(until)) = (group.from, group.until) {
                                    br; span class="small nowrap" { (from.format("%d-%m")) " – " (until.format("%d-%m")) }
                                }
                            }
                        }
                        th scope="col" { (ctx.t("Oogst (dag 6)", "Harvest (day 6)")) }
                        th scope="col" { (ctx.t("Toestellen en synchronisatie", "Devices and sync")) }
                        th scope="col" { (ctx.t("Seintje", "Nudge")) }
                    } }
                    tbody {
                        @for participant in &progress.participants {
                            tr data-participant=(participant.user.id) {
                                th scope="row" {
                                    a href={ "/console/cohorts/" (id) "/participants/" (participant.user.id) } { (participant.user.display_name) }
                                }
                                @for group in &groups {
                                    (stretch_cell(&ctx, group, &participant.assignments, &titles))
                                }
                                (harvest_cell(&ctx, &participant.harvest))
                                td class="sync" {
                                    @if participant.devices.is_empty() {
                                        (ctx.t("geen toestel", "no device"))
                                    }
                                    ul class="plain" {
                                        @for device in &participant.devices {
                                            (device_item(&ctx, device, tz, now))
                                        }
                                    }
                                }
                                td class="nudge" {
                                    @if let Some(nudge) = &participant.last_nudge {
                                        p class="last-nudge" { (nudge_words(&ctx, nudge, tz)) }
                                    }
                                    form method="post" action={ "/console/cohorts/" (id) "/participants/" (participant.user.id) "/nudge" } class="inline" {
                                        input type="hidden" name="csrf" value=(ctx.csrf);
                                        button type="submit" aria-label={ (ctx.t("Stuur een seintje aan ", "Nudge ")) (participant.user.display_name) } {
                                            (ctx.t("Stuur seintje", "Nudge"))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p class="hint" {
                (ctx.t("Een seintje is een pushbericht: ‘open de app, zodat je werk de groep bereikt’. Eén per deelnemer per dag, buiten de stille uren van elk toestel.",
                       "A nudge is a push message: ‘open the app so your work reaches the group’. One per participant per day, outside each device's quiet hours."))
            }
        }
    };
    let title = format!(
        "{} · {}",
        ctx.t("Voortgang", "Progress"),
        progress.cohort.name
    );
    Html(layout::page(&ctx, &title, &here, body).into_string()).into_response()
}

/// The assignments given on one day, due on the next: one column of the progress view.
struct StretchGroup {
    after_day: i32,
    due_day: i32,
    from: Option<chrono::NaiveDate>,
    until: Option<chrono::NaiveDate>,
    /// Positions in the cohort's (and each participant's) list of assignments.
    positions: Vec<usize>,
}

fn stretch_groups(stretches: &[Stretch]) -> Vec<StretchGroup> {
    let mut groups: Vec<StretchGroup> = Vec::new();
    for (position, stretch) in stretches.iter().enumerate() {
        let a = &stretch.assignment;
        match groups
            .iter_mut()
            .find(|g| g.after_day == a.after_day && g.due_day == a.due_day)
        {
            Some(group) => group.positions.push(position),
            None => groups.push(StretchGroup {
                after_day: a.after_day,
                due_day: a.due_day,
                from: stretch.from,
                until: stretch.until,
                positions: vec![position],
            }),
        }
    }
    groups
}

fn stretch_cell(
    ctx: &Context,
    group: &StretchGroup,
    work: &[AssignmentProgress],
    titles: &[&str],
) -> Markup {
    // Every assignment of a stretch counts the same interviews: the stretch's.
    let interviews = group
        .positions
        .first()
        .and_then(|p| work.get(*p))
        .map_or(0, |w| w.interviews);
    html! {
        td class="stretch" data-after-day=(group.after_day) {
            ul class="plain" {
                @for position in &group.positions {
                    @if let Some(work) = work.get(*position) {
                        li class="assignment" data-assignment=(work.assignment_id) data-done=(work.done) {
                            span class={ "state " @if work.done { "good" } @else { "open" } } {
                                @if work.done { (ctx.t("gedaan", "done")) } @else { (ctx.t("open", "open")) }
                            }
                            ": " (titles.get(*position).copied().unwrap_or_default())
                            @if work.applied || work.reflection {
                                br;
                                span class="small" {
                                    @if work.applied { (ctx.t("toepassing", "application")) }
                                    @if work.applied && work.reflection { " · " }
                                    @if work.reflection { (ctx.t("reflectie", "reflection")) }
                                    " " (ctx.t("geschreven", "written"))
                                }
                            }
                        }
                    }
                }
            }
            p class="small interviews" {
                (interviews) " " @if interviews == 1 { "interview" } @else { "interviews" }
            }
        }
    }
}

fn harvest_cell(ctx: &Context, harvest: &HarvestProgress) -> Markup {
    let status = match harvest.status.as_deref() {
        Some("ready") => ctx.t("klaar", "ready"),
        Some(_) => ctx.t("in voorbereiding", "in preparation"),
        None => ctx.t("nog niet begonnen", "not started"),
    };
    html! {
        td class="harvest" data-status=(harvest.status.as_deref().unwrap_or("none")) {
            span class={ "state " @if harvest.status.as_deref() == Some("ready") { "good" } @else { "open" } } { (status) }
            ul class="plain small" {
                li { @if harvest.outline_written { (ctx.t("opzet geschreven", "outline written")) } @else { (ctx.t("geen opzet", "no outline")) } }
                li { (harvest.attachments) " " @if harvest.attachments == 1 { (ctx.t("bijlage", "attachment")) } @else { (ctx.t("bijlagen", "attachments")) } }
            }
        }
    }
}

fn device_item(ctx: &Context, health: &DeviceHealth, tz: Tz, now: DateTime<Utc>) -> Markup {
    let device = &health.device;
    let pending = device.outbox_pending.unwrap_or(0);
    let quiet = device.last_sync_at.is_none_or(|at| now - at > QUIET_AFTER);
    html! {
        li class={ "device" @if pending > 0 || quiet { " concern" } } data-device=(device.id) data-pending=(pending) {
            strong { (device.name) } ": "
            @match device.last_sync_at {
                Some(at) => { (ctx.t("laatste synchronisatie ", "last sync ")) span class="last-sync" { (local(at, tz)) } }
                None => { (ctx.t("nog nooit gesynchroniseerd", "never synced")) }
            }
            @if pending > 0 {
                ", " span class="pending" { (pending) " " (ctx.t("wijzigingen wachten op het toestel", "changes waiting on the device")) }
                @if let Some(oldest) = device.outbox_oldest_at {
                    " " (ctx.t("sinds", "since")) " " (local(oldest, tz))
                }
            }
            @if let Some(version) = &health.app_version { ", app " (version) }
            ", "
            @if health.push_reachable { (ctx.t("push werkt", "push works")) } @else { span class="push-off" { (ctx.t("geen push", "no push")) } }
        }
    }
}

fn nudge_words(ctx: &Context, nudge: &Nudge, tz: Tz) -> String {
    let sent = nudge
        .deliveries
        .iter()
        .filter(|d| matches!(d.status.as_str(), "sent" | "logged"))
        .count();
    let state = if nudge.notification.status == "pending" {
        ctx.t("wacht op verzending", "waiting to be sent")
            .to_owned()
    } else if nudge.deliveries.is_empty() {
        ctx.t("geen toestel met push", "no device with push")
            .to_owned()
    } else {
        format!(
            "{} {sent} / {}",
            ctx.t("bezorgd", "delivered"),
            nudge.deliveries.len()
        )
    };
    format!(
        "{} {}: {state}",
        ctx.t("Laatste seintje", "Last nudge"),
        local(nudge.notification.created_at, tz)
    )
}

#[handler]
pub async fn send_nudge(
    req: &Request,
    Path((id, user)): Path<(String, String)>,
    body: Body,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let user = attempt!(parse_id(ctx.lang, &user));
    attempt!(Fields::posted(&ctx, req, body).await);
    service!(ctx, services.nudge(&ctx.actor, id, user));
    see_other(&format!("/console/cohorts/{id}/progress"))
}

#[handler]
pub async fn work_page(
    req: &Request,
    Path((id, user)): Path<(String, String)>,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let user = attempt!(parse_id(ctx.lang, &user));
    let work = service!(ctx, services.participant_work(&ctx.actor, id, user));
    let tz = zone(&work.cohort.time_zone);
    let titles: HashMap<String, &str> = work
        .assignments
        .iter()
        .map(|a| (a.id.to_string(), a.title.as_str()))
        .collect();
    let attachments_of = |parent: Uuid| -> Vec<&StoredRecord> {
        let parent = parent.to_string();
        work.attachments
            .iter()
            .filter(|a| a.value("parent_id").as_str() == Some(parent.as_str()))
            .collect()
    };
    let text = |record: &StoredRecord, field: &str| -> String {
        record.value(field).as_str().unwrap_or_default().to_owned()
    };
    let here = format!("/console/cohorts/{id}/participants/{user}");
    let body = html! {
        p {
            a href={ "/console/cohorts/" (id) "/progress" } { (ctx.t("Terug naar de voortgang", "Back to progress")) }
            " · " (work.cohort.name)
        }
        p class="hint" { (ctx.t("Alleen lezen. Dat u dit werk opende, staat in het auditlog.",
                               "Read-only. That you opened this work is recorded in the audit log.")) }

        section aria-labelledby="work-assignments" {
            h2 id="work-assignments" { (ctx.t("Opdrachten", "Assignments")) }
            @if work.assignment_work.is_empty() {
                p { (ctx.t("Nog niets vastgelegd.", "Nothing recorded yet.")) }
            }
            @for record in &work.assignment_work {
                article class="record" data-record=(record.id) {
                    h3 { (titles.get(record.value("assignment_id").as_str().unwrap_or_default()).copied().unwrap_or("?")) }
                    dl {
                        dt { (ctx.t("Gedaan", "Done")) }
                        dd { @if record.value("done") == &Value::Bool(true) { (ctx.t("ja", "yes")) } @else { (ctx.t("nee", "no")) } }
                        (text_field(ctx.t("Toegepast", "Applied"), &text(record, "applied")))
                        (text_field(ctx.t("Reflectie", "Reflection"), &text(record, "reflection")))
                    }
                }
            }
        }

        section aria-labelledby="work-interviews" {
            h2 id="work-interviews" { (ctx.t("Interviews", "Interviews")) " (" (work.interviews.len()) ")" }
            @for record in &work.interviews {
                article class="record interview" data-record=(record.id) {
                    h3 {
                        (non_empty(&text(record, "interviewee_role"), ctx.t("Interview", "Interview")))
                        @let organisation = text(record, "interviewee_organisation");
                        @if !organisation.is_empty() { ", " (organisation) }
                    }
                    dl {
                        (text_field(ctx.t("Naam (met toestemming)", "Name (with consent)"), &text(record, "interviewee_name")))
                        (text_field(ctx.t("Datum", "Date"), &text(record, "interviewed_on")))
                        (text_field(ctx.t("Plaats", "Place"), &text(record, "place")))
                        @if !record.value("questions").is_null() {
                            dt { (ctx.t("Vragen en antwoorden", "Questions and answers")) }
                            dd { (document(record.value("questions"))) }
                        }
                        (text_field(ctx.t("Aantekeningen", "Notes"), &text(record, "notes")))
                        (text_field(ctx.t("Inzichten", "Insights"), &text(record, "insights")))
                        dt { (ctx.t("Status", "Status")) }
                        dd { @if text(record, "status") == "done" { (ctx.t("af", "done")) } @else { (ctx.t("concept", "draft")) } }
                    }
                    (attachment_list(&ctx, &attachments_of(record.id)))
                }
            }
        }

        section aria-labelledby="work-feedback" {
            h2 id="work-feedback" { (ctx.t("Feedbackoefeningen", "Feedback exercises")) " (" (work.feedback_exercises.len()) ")" }
            @for record in &work.feedback_exercises {
                article class="record" data-record=(record.id) {
                    h3 {
                        @if text(record, "direction") == "given" { (ctx.t("Gegeven aan ", "Given to ")) } @else { (ctx.t("Ontvangen van ", "Received from ")) }
                        (non_empty(&text(record, "counterpart_name"), "?"))
                        @let on = text(record, "happened_on");
                        @if !on.is_empty() { " (" (on) ")" }
                    }
                    dl {
                        (text_field(ctx.t("Waarneming", "Observation"), &text(record, "observation")))
                        (text_field(ctx.t("Effect", "Effect"), &text(record, "effect")))
                        (text_field(ctx.t("Wens", "Wish"), &text(record, "wish")))
                        (text_field(ctx.t("Reactie", "Reaction"), &text(record, "reaction")))
                    }
                    (attachment_list(&ctx, &attachments_of(record.id)))
                }
            }
        }

        section aria-labelledby="work-harvest" {
            h2 id="work-harvest" { (ctx.t("Oogst voor dag 6", "Harvest for day 6")) }
            @match &work.harvest {
                None => p { (ctx.t("Nog niet begonnen.", "Not started yet.")) },
                Some(record) => article class="record harvest" data-record=(record.id) {
                    dl {
                        dt { (ctx.t("Status", "Status")) }
                        dd { @if text(record, "status") == "ready" { (ctx.t("klaar", "ready")) } @else { (ctx.t("in voorbereiding", "in preparation")) } }
                        (text_field(ctx.t("Opzet", "Outline"), &text(record, "outline")))
                        @if !record.value("material").is_null() {
                            dt { (ctx.t("Materiaal", "Material")) }
                            dd { (document(record.value("material"))) }
                        }
                    }
                    (attachment_list(&ctx, &attachments_of(record.id)))
                },
            }
        }
        p class="hint" { (ctx.t("Gelezen op", "Read on")) " " (local(Utc::now(), tz)) }
    };
    Html(layout::page(&ctx, &work.user.display_name, &here, body).into_string()).into_response()
}

fn non_empty<'a>(value: &'a str, otherwise: &'a str) -> &'a str {
    if value.trim().is_empty() {
        otherwise
    } else {
        value
    }
}

/// A term and its text, left out when there is no text; line breaks kept.
fn text_field(term: &str, value: &str) -> Markup {
    html! {
        @if !value.trim().is_empty() {
            dt { (term) }
            dd class="text" { (value) }
        }
    }
}

/// A structured field (questions and answers, harvest material) as nested lists; the app decides
/// its shape, so any JSON is shown as what it is.
fn document(value: &Value) -> Markup {
    html! {
        @match value {
            Value::Array(items) => ol { @for item in items { li { (document(item)) } } },
            Value::Object(fields) => dl class="nested" {
                @for (key, item) in fields { dt { (key) } dd { (document(item)) } }
            },
            Value::String(text) => span class="text" { (text) },
            Value::Null => "",
            other => (other.to_string()),
        }
    }
}

fn attachment_list(ctx: &Context, attachments: &[&StoredRecord]) -> Markup {
    html! {
        @if !attachments.is_empty() {
            ul class="attachments" {
                @for attachment in attachments {
                    @let name = attachment.value("file_name").as_str().unwrap_or("bestand");
                    @let kind = attachment.value("content_type").as_str().unwrap_or_default();
                    @let stored = attachment.value("state").as_str() == Some("stored");
                    @let src = format!("/console/attachments/{}", attachment.id);
                    li data-attachment=(attachment.id) {
                        @if !stored {
                            (name) " (" (ctx.t("nog niet geüpload", "not uploaded yet")) ")"
                        } @else if kind.starts_with("image/") {
                            figure {
                                img src=(src) alt=(name) loading="lazy";
                                figcaption { a href=(src) download=(name) { (name) } }
                            }
                        } @else if kind.starts_with("audio/") {
                            figure {
                                audio controls preload="none" src=(src) { a href=(src) { (name) } }
                                figcaption { a href=(src) download=(name) { (name) } }
                            }
                        } @else {
                            a href=(src) download=(name) { (name) }
                        }
                    }
                }
            }
        }
    }
}

/// An attachment's bytes for the console (images shown, audio played, files downloaded), with
/// `Range`, through the same access rules as the API's download.
#[handler]
pub async fn attachment_bytes(
    req: &Request,
    Path(id): Path<String>,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let range = req.header(header::RANGE).map(str::to_owned);
    match crate::api::attachments::download_response(services, &ctx.actor, id, range).await {
        Ok(response) => response,
        Err(err) => error_page(ctx.lang, err),
    }
}
