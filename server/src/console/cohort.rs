//! The cohort pages: the list of cohorts, a cohort's overview (schedule, participants, invites,
//! announcements, reminder plan) and its printable invite sheet, with the forms that change them.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use maud::{PreEscaped, html};
use poem::{
    Body, IntoResponse, Request, Response, handler,
    web::{Data, Html, Path},
};
use uuid::Uuid;

use super::{Context, Fields, error_page, layout, local, parse_id, see_other, signed_in, zone};
use crate::service::{
    Role, Services,
    announcements::{AnnouncementView, NewAnnouncement},
    cohorts::{DayChange, ScheduleChange},
};

#[handler]
pub async fn cohorts(req: &Request, Data(services): Data<&Services>) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let cohorts = service!(ctx, services.list_cohorts(&ctx.actor, None));
    let organisations: HashMap<Uuid, String> =
        service!(ctx, services.list_organisations(&ctx.actor))
            .into_iter()
            .map(|organisation| (organisation.id, organisation.name))
            .collect();
    let mut rows = Vec::new();
    for cohort in cohorts {
        let parts = service!(ctx, services.get_cohort(&ctx.actor, cohort.id));
        let first = parts.days.iter().map(|day| day.date).min();
        let last = parts.days.iter().map(|day| day.date).max();
        rows.push((cohort, first, last));
    }
    let title = ctx.t("Groepen", "Cohorts");
    let body = html! {
        @if rows.is_empty() {
            p { (ctx.t("U hebt nog geen groepen.", "You have no cohorts yet.")) }
        } @else {
            table {
                caption { (ctx.t("Uw groepen", "Your cohorts")) }
                thead { tr {
                    th scope="col" { (ctx.t("Groep", "Cohort")) }
                    th scope="col" { (ctx.t("Gemeente", "Municipality")) }
                    th scope="col" { (ctx.t("Dag 1", "Day 1")) }
                    th scope="col" { (ctx.t("Dag 6", "Day 6")) }
                } }
                tbody {
                    @for (cohort, first, last) in &rows {
                        tr {
                            td { a href={ "/console/cohorts/" (cohort.id) } { (cohort.name) } }
                            td { (organisations.get(&cohort.organisation_id).map(String::as_str).unwrap_or("")) }
                            td { (first.map(|d| d.to_string()).unwrap_or_default()) }
                            td { (last.map(|d| d.to_string()).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    };
    Html(layout::page(&ctx, title, "/console", body).into_string()).into_response()
}

#[handler]
pub async fn overview(
    req: &Request,
    Path(id): Path<String>,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let parts = service!(ctx, services.get_cohort(&ctx.actor, id));
    // Trainers and admins only past this point: the same rule the API applies.
    let invites = service!(ctx, services.list_invites(&ctx.actor, id));
    let members = service!(ctx, services.list_members(&ctx.actor, id));
    let announcements = service!(ctx, services.list_announcements(&ctx.actor, id));
    let reminders = service!(ctx, services.reminder_plan(&ctx.actor, id));
    let tz = zone(&parts.cohort.time_zone);
    let participants: Vec<_> = members
        .iter()
        .filter(|member| member.role == Role::Participant)
        .collect();
    let names: HashMap<Uuid, &str> = members
        .iter()
        .map(|member| (member.user.id, member.user.display_name.as_str()))
        .collect();
    let assignment_titles: HashMap<Uuid, &str> = parts
        .assignments
        .iter()
        .map(|assignment| (assignment.id, assignment.title.as_str()))
        .collect();
    let open_invites: Vec<_> = invites
        .iter()
        .filter(|invite| {
            invite.redeemed_at.is_none()
                && invite.revoked_at.is_none()
                && invite.expires_at > Utc::now()
        })
        .collect();
    let here = format!("/console/cohorts/{id}");
    let csrf = ctx.csrf.as_str();

    let schedule = html! {
        section aria-labelledby="schedule" {
            h2 id="schedule" { (ctx.t("Rooster", "Schedule")) }
            p { (ctx.t("Tijden in de tijdzone van de groep:", "Times in the cohort's time zone:")) " " (parts.cohort.time_zone) }
            table {
                thead { tr {
                    th scope="col" { (ctx.t("Dag", "Day")) }
                    th scope="col" { (ctx.t("Datum", "Date")) }
                    th scope="col" { (ctx.t("Tijd", "Time")) }
                    th scope="col" { (ctx.t("Locatie", "Location")) }
                    th scope="col" { (ctx.t("Wijzigen", "Change")) }
                } }
                tbody {
                    @for day in &parts.days {
                        tr id={ "day-" (day.day_number) } {
                            th scope="row" { (day.day_number) ". " (day.title) }
                            td class="date" { (day.date) }
                            td { (day.starts_at.format("%H:%M")) "–" (day.ends_at.format("%H:%M")) }
                            td class="location" { (day.location) }
                            td {
                                details {
                                    summary { (ctx.t("Wijzig dag ", "Change day ")) (day.day_number) }
                                    form method="post" action={ (here) "/schedule" } class="stack" {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="day_number" value=(day.day_number);
                                        label for={ "date-" (day.day_number) } { (ctx.t("Datum", "Date")) }
                                        input type="date" id={ "date-" (day.day_number) } name="date" value=(day.date) required;
                                        label for={ "starts-" (day.day_number) } { (ctx.t("Begin", "Starts")) }
                                        input type="time" id={ "starts-" (day.day_number) } name="starts_at" value=(day.starts_at.format("%H:%M")) required;
                                        label for={ "ends-" (day.day_number) } { (ctx.t("Einde", "Ends")) }
                                        input type="time" id={ "ends-" (day.day_number) } name="ends_at" value=(day.ends_at.format("%H:%M")) required;
                                        label for={ "location-" (day.day_number) } { (ctx.t("Locatie", "Location")) }
                                        input type="text" id={ "location-" (day.day_number) } name="location" value=(day.location) required;
                                        button type="submit" { (ctx.t("Opslaan", "Save")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };

    let people = html! {
        section aria-labelledby="participants" {
            h2 id="participants" { (ctx.t("Deelnemers", "Participants")) " (" (participants.len()) ")" }
            @if participants.is_empty() {
                p { (ctx.t("Nog niemand is ingeschreven.", "Nobody has enrolled yet.")) }
            } @else {
                table id="participant-table" {
                    thead { tr {
                        th scope="col" { (ctx.t("Naam", "Name")) }
                        th scope="col" { (ctx.t("Ingeschreven", "Enrolled")) }
                    } }
                    tbody {
                        @for member in &participants {
                            tr {
                                td { a href={ (here) "/participants/" (member.user.id) } { (member.user.display_name) } }
                                td { (local(member.joined_at, tz)) }
                            }
                        }
                    }
                }
            }
        }
    };

    let invite_section = html! {
        section aria-labelledby="invites" {
            h2 id="invites" { (ctx.t("Uitnodigingen", "Invites")) }
            form method="post" action={ (here) "/invites" } class="row" {
                input type="hidden" name="csrf" value=(csrf);
                label for="invite-count" { (ctx.t("Aantal", "How many")) }
                input type="number" id="invite-count" name="count" min="1" max="200" value="1" required;
                label for="invite-label" { (ctx.t("Label (optioneel)", "Label (optional)")) }
                input type="text" id="invite-label" name="label";
                button type="submit" { (ctx.t("Maak uitnodigingen", "Create invites")) }
            }
            p { (open_invites.len()) " " (ctx.t("open uitnodigingen", "open invites")) " · "
                a href={ (here) "/invites/sheet" } { (ctx.t("Uitnodigingsblad om te printen", "Printable invite sheet")) } }
            @if !open_invites.is_empty() {
                table id="invite-table" {
                    thead { tr {
                        th scope="col" { (ctx.t("Code", "Code")) }
                        th scope="col" { (ctx.t("Label", "Label")) }
                        th scope="col" { (ctx.t("Geldig tot", "Valid until")) }
                    } }
                    tbody {
                        @for invite in &open_invites {
                            tr {
                                td class="code" { (invite.code) }
                                td { (invite.label.as_deref().unwrap_or("")) }
                                td { (local(invite.expires_at, tz)) }
                            }
                        }
                    }
                }
            }
        }
    };

    let announcement_section = html! {
        section aria-labelledby="announcements" {
            h2 id="announcements" { (ctx.t("Berichten", "Announcements")) }
            form method="post" action={ (here) "/announcements" } class="stack" id="compose" {
                input type="hidden" name="csrf" value=(csrf);
                label for="announcement-title" { (ctx.t("Titel", "Title")) }
                input type="text" id="announcement-title" name="title" required maxlength="200";
                label for="announcement-body" { (ctx.t("Bericht", "Message")) }
                textarea id="announcement-body" name="body" rows="4" required maxlength="5000" {}
                label for="announcement-to" { (ctx.t("Aan", "To")) }
                select id="announcement-to" name="recipient" {
                    option value="" { (ctx.t("De hele groep", "The whole cohort")) }
                    @for member in &participants {
                        option value=(member.user.id) { (member.user.display_name) }
                    }
                }
                label for="announcement-at" { (ctx.t("Versturen op (leeg: nu)", "Send at (empty: now)")) }
                input type="datetime-local" id="announcement-at" name="publish_at";
                div class="check" {
                    input type="checkbox" id="announcement-quiet" name="respect_quiet_hours" value="on" checked;
                    label for="announcement-quiet" { (ctx.t("Wacht op de stille uren van elk toestel", "Wait for each device's quiet hours")) }
                }
                button type="submit" { (ctx.t("Versturen", "Send")) }
            }
            @if !announcements.is_empty() {
                table id="announcement-table" {
                    thead { tr {
                        th scope="col" { (ctx.t("Titel", "Title")) }
                        th scope="col" { (ctx.t("Status", "Status")) }
                        th scope="col" { (ctx.t("Moment", "When")) }
                        th scope="col" { (ctx.t("Bezorgd", "Delivered")) }
                        th scope="col" { (ctx.t("Gelezen", "Read")) }
                    } }
                    tbody {
                        @for view in &announcements {
                            @let delivered: Vec<Uuid> = view.recipients.iter().copied().filter(|user| delivered_to(view, *user)).collect();
                            tr data-announcement=(view.announcement.id) {
                                th scope="row" {
                                    (view.announcement.title)
                                    details {
                                        summary { (ctx.t("Per deelnemer", "Per participant")) }
                                        ul {
                                            @for user in &view.recipients {
                                                li {
                                                    (names.get(user).copied().unwrap_or("?")) ": "
                                                    (delivery_words(&ctx, view, *user)) ", "
                                                    @if view.read_by.contains(user) { (ctx.t("gelezen", "read")) } @else { (ctx.t("niet gelezen", "not read")) }
                                                }
                                            }
                                        }
                                    }
                                }
                                td class="status" {
                                    span class="state" { (announcement_status(&ctx, &view.announcement.status)) }
                                    @if view.announcement.status == "scheduled" {
                                        form method="post" action={ (here) "/announcements/" (view.announcement.id) "/cancel" } class="inline" {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button type="submit" { (ctx.t("Annuleren", "Cancel")) }
                                        }
                                    }
                                }
                                td { (local(view.announcement.publish_at, tz)) }
                                td class="delivered" { (delivered.len()) " / " (view.recipients.len()) }
                                td class="read" { (view.read_by.len()) " / " (view.recipients.len()) }
                            }
                        }
                    }
                }
            }
        }
    };

    let reminder_section = html! {
        section aria-labelledby="reminders" {
            h2 id="reminders" { (ctx.t("Herinneringen", "Reminders")) }
            @if reminders.is_empty() {
                p { (ctx.t("Er zijn geen herinneringen gepland.", "No reminders are planned.")) }
            } @else {
                table id="reminder-table" {
                    thead { tr {
                        th scope="col" { (ctx.t("Deelnemer", "Participant")) }
                        th scope="col" { (ctx.t("Opdracht", "Assignment")) }
                        th scope="col" { (ctx.t("Verstuurmoment", "Send time")) }
                        th scope="col" { (ctx.t("Status", "Status")) }
                    } }
                    tbody {
                        @for reminder in &reminders {
                            tr {
                                td { (reminder.participant_name) }
                                td { (reminder.notification.assignment_id.and_then(|a| assignment_titles.get(&a).copied()).unwrap_or("")) }
                                td class="send-at" { (local(reminder.notification.due_at, tz)) }
                                td { (reminder_status(&ctx, &reminder.notification.status, reminder.notification.status_reason.as_deref())) }
                            }
                        }
                    }
                }
            }
        }
    };

    let body = html! {
        nav aria-label=(ctx.t("Op deze pagina", "On this page")) class="toc" {
            a href={ (here) "/progress" } { (ctx.t("Voortgang", "Progress")) }
            a href="#schedule" { (ctx.t("Rooster", "Schedule")) }
            a href="#participants" { (ctx.t("Deelnemers", "Participants")) }
            a href="#invites" { (ctx.t("Uitnodigingen", "Invites")) }
            a href="#announcements" { (ctx.t("Berichten", "Announcements")) }
            a href="#reminders" { (ctx.t("Herinneringen", "Reminders")) }
            a href={ (here) "/settings" } { (ctx.t("Instellingen", "Settings")) }
        }
        (schedule) (people) (invite_section) (announcement_section) (reminder_section)
    };
    Html(layout::page(&ctx, &parts.cohort.name, &here, body).into_string()).into_response()
}

/// Whether a participant's device got the announcement (sent, or logged when push is log-only).
fn delivered_to(view: &AnnouncementView, user: Uuid) -> bool {
    view.deliveries_of(user)
        .any(|delivery| matches!(delivery.status.as_str(), "sent" | "logged"))
}

fn delivery_words(ctx: &Context, view: &AnnouncementView, user: Uuid) -> String {
    let states: Vec<&str> = view
        .deliveries_of(user)
        .map(|delivery| delivery_status(ctx, &delivery.status))
        .collect();
    if states.is_empty() {
        return ctx
            .t("geen toestel met push", "no device with push")
            .to_owned();
    }
    states.join(", ")
}

fn delivery_status(ctx: &Context, status: &str) -> &'static str {
    match status {
        "sent" => ctx.t("bezorgd", "delivered"),
        "logged" => ctx.t("gelogd (push staat uit)", "logged (push is off)"),
        "pending" | "sending" => ctx.t("onderweg", "on its way"),
        "failed" => ctx.t("mislukt", "failed"),
        "cancelled" => ctx.t("geannuleerd", "cancelled"),
        _ => ctx.t("onbekend", "unknown"),
    }
}

fn announcement_status(ctx: &Context, status: &str) -> &'static str {
    match status {
        "scheduled" => ctx.t("gepland", "scheduled"),
        "published" => ctx.t("verstuurd", "sent"),
        "cancelled" => ctx.t("geannuleerd", "cancelled"),
        _ => ctx.t("onbekend", "unknown"),
    }
}

fn reminder_status(ctx: &Context, status: &str, reason: Option<&str>) -> String {
    match (status, reason) {
        ("pending", _) => ctx.t("gepland", "planned").to_owned(),
        ("dispatched", _) => ctx.t("verstuurd", "sent").to_owned(),
        ("skipped", Some("already done")) => ctx
            .t("overgeslagen: al gedaan", "skipped: already done")
            .to_owned(),
        ("skipped", Some("the day has started")) => ctx
            .t(
                "overgeslagen: de dag was al begonnen",
                "skipped: the day had started",
            )
            .to_owned(),
        ("skipped", Some(reason)) => format!("{} ({reason})", ctx.t("overgeslagen", "skipped")),
        ("skipped", None) => ctx.t("overgeslagen", "skipped").to_owned(),
        ("cancelled", _) => ctx.t("geannuleerd", "cancelled").to_owned(),
        (other, _) => other.to_owned(),
    }
}

#[handler]
pub async fn create_invites(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let fields = attempt!(Fields::posted(&ctx, req, body).await);
    // An unreadable count is the service's own "invalid_count".
    let count = fields
        .get("count")
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0);
    let label = fields.get("label").map(str::to_owned);
    service!(ctx, services.create_invites(&ctx.actor, id, count, label));
    see_other(&format!("/console/cohorts/{id}#invites"))
}

/// One page per eight open invites: the code in large type and a QR code of the app's enrol
/// link, `veldwerk://enrol?code=...`, to cut out and hand out on Day 1.
#[handler]
pub async fn invite_sheet(
    req: &Request,
    Path(id): Path<String>,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let parts = service!(ctx, services.get_cohort(&ctx.actor, id));
    let invites = service!(ctx, services.list_invites(&ctx.actor, id));
    let now = Utc::now();
    let open: Vec<_> = invites
        .into_iter()
        .filter(|invite| {
            invite.redeemed_at.is_none() && invite.revoked_at.is_none() && invite.expires_at > now
        })
        .collect();
    let mut cards = Vec::new();
    for invite in &open {
        let link = format!("veldwerk://enrol?code={}", invite.code);
        let svg = match qrcode::QrCode::new(link.as_bytes()) {
            Ok(code) => code
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(160, 160)
                .quiet_zone(true)
                .build(),
            Err(err) => {
                return error_page(ctx.lang, crate::service::Error::Internal(err.into()));
            }
        };
        cards.push((invite, link, svg));
    }
    let title = format!(
        "{} · {}",
        ctx.t("Uitnodigingen", "Invites"),
        parts.cohort.name
    );
    let body = html! {
        p class="no-print" {
            (ctx.t("Knip de kaartjes uit en geef ze uit op Dag 1. Elke code werkt één keer.",
                   "Cut out the cards and hand them out on Day 1. Each code works once."))
            " " a href={ "/console/cohorts/" (id) "#invites" } { (ctx.t("Terug naar de groep", "Back to the cohort")) }
        }
        @if cards.is_empty() {
            p { (ctx.t("Er zijn geen open uitnodigingen.", "There are no open invites.")) }
        }
        ul class="sheet" {
            @for (invite, link, svg) in &cards {
                li class="card" {
                    // The QR code is decoration for the eye; the code beside it says the same.
                    div class="qr" role="img" aria-label={ (ctx.t("QR-code voor code ", "QR code for code ")) (invite.code) } {
                        (PreEscaped(svg))
                    }
                    div {
                        p class="app" { (ctx.t("Installeer de Veldwerk-app en voer deze code in:", "Install the Veldwerk app and enter this code:")) }
                        p class="code" data-link=(link) { (invite.code) }
                        @if let Some(label) = &invite.label { p { (label) } }
                        p class="group" { (parts.cohort.name) }
                    }
                }
            }
        }
    };
    let here = format!("/console/cohorts/{id}/invites/sheet");
    Html(layout::page(&ctx, &title, &here, body).into_string()).into_response()
}

#[handler]
pub async fn publish_announcement(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let fields = attempt!(Fields::posted(&ctx, req, body).await);
    let parts = service!(ctx, services.get_cohort(&ctx.actor, id));
    let tz = zone(&parts.cohort.time_zone);
    let recipient_ids = match fields.get("recipient").filter(|value| !value.is_empty()) {
        None => Vec::new(),
        Some(value) => vec![attempt!(parse_id(ctx.lang, value))],
    };
    let publish_at = match fields.get("publish_at").filter(|value| !value.is_empty()) {
        None => None,
        Some(value) => match local_moment(value, tz) {
            Some(at) => Some(at),
            None => {
                return error_page(
                    ctx.lang,
                    crate::service::Error::invalid(
                        "invalid_publish_at",
                        ctx.t(
                            "Het verstuurmoment is geen geldige datum en tijd.",
                            "The send time is not a valid date and time.",
                        ),
                    ),
                );
            }
        },
    };
    service!(
        ctx,
        services.publish_announcement(
            &ctx.actor,
            id,
            NewAnnouncement {
                title: fields.get("title").unwrap_or_default().to_owned(),
                body: fields.get("body").unwrap_or_default().to_owned(),
                recipient_ids,
                publish_at,
                respect_quiet_hours: fields.get("respect_quiet_hours").is_some(),
            },
        )
    );
    see_other(&format!("/console/cohorts/{id}#announcements"))
}

/// A `datetime-local` value (`2026-12-03T14:05`) in the cohort's zone.
fn local_moment(value: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|at| at.with_timezone(&Utc))
}

#[handler]
pub async fn cancel_announcement(
    req: &Request,
    Path((id, announcement)): Path<(String, String)>,
    body: Body,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let announcement = attempt!(parse_id(ctx.lang, &announcement));
    attempt!(Fields::posted(&ctx, req, body).await);
    service!(
        ctx,
        services.cancel_announcement(&ctx.actor, id, announcement)
    );
    see_other(&format!("/console/cohorts/{id}#announcements"))
}

#[handler]
pub async fn change_schedule(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let fields = attempt!(Fields::posted(&ctx, req, body).await);
    let invalid = |field: &'static str| {
        error_page(
            ctx.lang,
            crate::service::Error::Invalid {
                code: "invalid_field",
                message: format!(
                    "{} {field}",
                    ctx.t("Ongeldige waarde voor", "Invalid value for")
                ),
                details: Some(serde_json::json!({ "field": field })),
            },
        )
    };
    let Some(day_number) = fields.get("day_number").and_then(|v| v.parse().ok()) else {
        return invalid("day_number");
    };
    let time = |field: &'static str| -> Result<Option<NaiveTime>, Response> {
        match fields.get(field).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(value) => NaiveTime::parse_from_str(value, "%H:%M")
                .or_else(|_| NaiveTime::parse_from_str(value, "%H:%M:%S"))
                .map(Some)
                .map_err(|_| invalid(field)),
        }
    };
    let date = match fields.get("date").filter(|v| !v.is_empty()) {
        None => None,
        Some(value) => match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            Ok(date) => Some(date),
            Err(_) => return invalid("date"),
        },
    };
    let change = ScheduleChange {
        time_zone: None,
        days: vec![DayChange {
            day_number,
            date,
            starts_at: attempt!(time("starts_at")),
            ends_at: attempt!(time("ends_at")),
            location: fields.get("location").map(str::to_owned),
        }],
    };
    service!(ctx, services.change_schedule(&ctx.actor, id, change));
    see_other(&format!("/console/cohorts/{id}#day-{day_number}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_moment_is_read_in_the_cohorts_zone() {
        let tz = chrono_tz::Europe::Amsterdam;
        // Winter time: UTC+1.
        assert_eq!(
            local_moment("2026-12-03T14:05", tz).unwrap().to_rfc3339(),
            "2026-12-03T13:05:00+00:00"
        );
        // Summer time: UTC+2.
        assert_eq!(
            local_moment("2026-07-01T09:00", tz).unwrap().to_rfc3339(),
            "2026-07-01T07:00:00+00:00"
        );
        assert!(local_moment("3 december", tz).is_none());
        assert_eq!(
            local(local_moment("2026-12-03T14:05", tz).unwrap(), tz),
            "2026-12-03 14:05"
        );
    }
}
