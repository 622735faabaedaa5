//! Settings: for admins, the provider's municipalities, staff, programme templates (texts and
//! reminder rules) and new cohorts; for a cohort, its own texts and trainers (admins) and its
//! reminder rules (admins and its trainers). Every form goes through the same service functions,
//! and so the same rules, as the API.

use chrono::{NaiveDate, NaiveTime};
use maud::{Markup, html};
use poem::{
    Body, IntoResponse, Request, Response, handler,
    web::{Data, Html, Path},
};
use uuid::Uuid;

use super::{Context, Fields, error_page, layout, parse_id, see_other, signed_in};
use crate::service::{
    Error, Role, Services,
    accounts::NewStaff,
    cohorts::{DayPlan, NewCohort},
    push::{ReminderRule, RuleTarget},
    texts::{AssignmentText, DayText, TextsChange},
};

/// Empty rows offered under the existing reminder rules, to add new ones.
const NEW_RULE_ROWS: usize = 2;

/// A form field that did not read as what it should be: a 422 page naming it.
fn invalid(ctx: &Context, field: &str) -> Response {
    error_page(
        ctx.lang,
        Error::Invalid {
            code: "invalid_field",
            message: format!(
                "{} {field}",
                ctx.t("Ongeldige waarde voor", "Invalid value for")
            ),
            details: Some(serde_json::json!({ "field": field })),
        },
    )
}

#[handler]
pub async fn admin_page(req: &Request, Data(services): Data<&Services>) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    if let Err(err) = ctx.actor.require(&[Role::Admin]) {
        return error_page(ctx.lang, err);
    }
    let organisations = service!(ctx, services.list_organisations(&ctx.actor));
    let staff = service!(ctx, services.list_staff(&ctx.actor));
    let programmes = service!(ctx, services.list_programmes(&ctx.actor));
    let csrf = ctx.csrf.as_str();
    let body = html! {
        nav aria-label=(ctx.t("Op deze pagina", "On this page")) class="toc" {
            a href="#organisations" { (ctx.t("Gemeenten", "Municipalities")) }
            a href="#staff" { (ctx.t("Medewerkers", "Staff")) }
            a href="#programmes" { (ctx.t("Programma's", "Programmes")) }
            a href="#new-cohort" { (ctx.t("Nieuwe groep", "New cohort")) }
        }
        section aria-labelledby="organisations" {
            h2 id="organisations" { (ctx.t("Gemeenten", "Municipalities")) }
            ul id="organisation-list" { @for organisation in &organisations { li { (organisation.name) } } }
            form method="post" action="/console/admin/organisations" class="row" {
                input type="hidden" name="csrf" value=(csrf);
                label for="organisation-name" { (ctx.t("Naam", "Name")) }
                input type="text" id="organisation-name" name="name" required maxlength="200";
                button type="submit" { (ctx.t("Gemeente toevoegen", "Add municipality")) }
            }
        }
        section aria-labelledby="staff" {
            h2 id="staff" { (ctx.t("Medewerkers", "Staff")) }
            table id="staff-table" {
                thead { tr {
                    th scope="col" { (ctx.t("Naam", "Name")) }
                    th scope="col" { (ctx.t("E-mail", "E-mail")) }
                    th scope="col" { (ctx.t("Rol", "Role")) }
                } }
                tbody {
                    @for user in &staff {
                        tr {
                            td { (user.display_name) }
                            td { (user.email.as_deref().unwrap_or("")) }
                            td { @if user.role == "admin" { (ctx.t("beheerder", "admin")) } @else { (ctx.t("trainer", "trainer")) } }
                        }
                    }
                }
            }
            form method="post" action="/console/admin/users" class="stack" id="new-staff" {
                input type="hidden" name="csrf" value=(csrf);
                label for="staff-name" { (ctx.t("Naam", "Name")) }
                input type="text" id="staff-name" name="display_name" required maxlength="200";
                label for="staff-email" { (ctx.t("E-mail", "E-mail")) }
                input type="email" id="staff-email" name="email" required autocomplete="off";
                label for="staff-password" { (ctx.t("Eerste wachtwoord (minstens 12 tekens)", "First password (at least 12 characters)")) }
                input type="password" id="staff-password" name="password" required minlength="12" autocomplete="new-password";
                label for="staff-role" { (ctx.t("Rol", "Role")) }
                select id="staff-role" name="role" {
                    option value="trainer" { (ctx.t("trainer", "trainer")) }
                    option value="admin" { (ctx.t("beheerder", "admin")) }
                }
                button type="submit" { (ctx.t("Account maken", "Create account")) }
            }
        }
        section aria-labelledby="programmes" {
            h2 id="programmes" { (ctx.t("Programma's", "Programmes")) }
            ul {
                @for programme in &programmes {
                    li { a href={ "/console/admin/programmes/" (programme.id) } { (programme.name) } }
                }
            }
        }
        section aria-labelledby="new-cohort" {
            h2 id="new-cohort" { (ctx.t("Nieuwe groep", "New cohort")) }
            form method="post" action="/console/admin/cohorts" class="stack" id="cohort-form" {
                input type="hidden" name="csrf" value=(csrf);
                label for="cohort-name" { (ctx.t("Naam", "Name")) }
                input type="text" id="cohort-name" name="name" required maxlength="200";
                label for="cohort-organisation" { (ctx.t("Gemeente", "Municipality")) }
                select id="cohort-organisation" name="organisation_id" required {
                    @for organisation in &organisations { option value=(organisation.id) { (organisation.name) } }
                }
                label for="cohort-programme" { (ctx.t("Programma", "Programme")) }
                select id="cohort-programme" name="programme_id" required {
                    @for programme in &programmes { option value=(programme.id) { (programme.name) } }
                }
                label for="cohort-zone" { (ctx.t("Tijdzone", "Time zone")) }
                input type="text" id="cohort-zone" name="time_zone" value="Europe/Amsterdam" required;
                @for day in 1..=6 {
                    label for={ "cohort-day-" (day) } { (ctx.t("Datum dag ", "Date of day ")) (day) }
                    input type="date" id={ "cohort-day-" (day) } name={ "date_" (day) } required;
                }
                label for="cohort-starts" { (ctx.t("Begin (elke dag)", "Starts (every day)")) }
                input type="time" id="cohort-starts" name="starts_at" value="09:30" required;
                label for="cohort-ends" { (ctx.t("Einde (elke dag)", "Ends (every day)")) }
                input type="time" id="cohort-ends" name="ends_at" value="16:30" required;
                label for="cohort-location" { (ctx.t("Locatie (later per dag te wijzigen)", "Location (change per day later)")) }
                input type="text" id="cohort-location" name="location" required maxlength="200";
                button type="submit" { (ctx.t("Groep maken", "Create cohort")) }
            }
        }
    };
    Html(
        layout::page(
            &ctx,
            ctx.t("Beheer", "Administration"),
            "/console/admin",
            body,
        )
        .into_string(),
    )
    .into_response()
}

#[handler]
pub async fn create_organisation(
    req: &Request,
    body: Body,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let fields = attempt!(Fields::posted(&ctx, req, body).await);
    service!(
        ctx,
        services.create_organisation(&ctx.actor, fields.get("name").unwrap_or_default())
    );
    see_other("/console/admin#organisations")
}

#[handler]
pub async fn create_user(req: &Request, body: Body, Data(services): Data<&Services>) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let fields = attempt!(Fields::posted(&ctx, req, body).await);
    let role = match fields.get("role") {
        Some("admin") => Role::Admin,
        Some("trainer") => Role::Trainer,
        _ => return invalid(&ctx, "role"),
    };
    let text = |name: &str| fields.get(name).unwrap_or_default().to_owned();
    service!(
        ctx,
        services.create_staff(
            &ctx.actor,
            NewStaff {
                role,
                email: text("email"),
                display_name: text("display_name"),
                password: text("password"),
            },
        )
    );
    see_other("/console/admin#staff")
}

#[handler]
pub async fn create_cohort(req: &Request, body: Body, Data(services): Data<&Services>) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let fields = attempt!(Fields::posted(&ctx, req, body).await);
    let id = |name: &'static str| -> Result<Uuid, Response> {
        fields
            .get(name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| invalid(&ctx, name))
    };
    let time = |name: &'static str| -> Result<NaiveTime, Response> {
        fields
            .get(name)
            .and_then(|v| NaiveTime::parse_from_str(v, "%H:%M").ok())
            .ok_or_else(|| invalid(&ctx, name))
    };
    let (starts_at, ends_at) = (attempt!(time("starts_at")), attempt!(time("ends_at")));
    let location = fields.get("location").unwrap_or_default().to_owned();
    let mut days = Vec::new();
    for day_number in 1..=6 {
        let name = format!("date_{day_number}");
        let Some(date) = fields
            .get(&name)
            .and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
        else {
            return invalid(&ctx, &name);
        };
        days.push(DayPlan {
            day_number,
            date,
            starts_at,
            ends_at,
            location: location.clone(),
        });
    }
    let created = service!(
        ctx,
        services.create_cohort(
            &ctx.actor,
            NewCohort {
                organisation_id: attempt!(id("organisation_id")),
                programme_id: attempt!(id("programme_id")),
                name: fields.get("name").unwrap_or_default().to_owned(),
                time_zone: fields.get("time_zone").map(str::to_owned),
                days,
                trainer_ids: Vec::new(),
            },
        )
    );
    see_other(&format!("/console/cohorts/{}", created.cohort.id))
}

#[handler]
pub async fn programme_page(
    req: &Request,
    Path(id): Path<String>,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    if let Err(err) = ctx.actor.require(&[Role::Admin]) {
        return error_page(ctx.lang, err);
    }
    let programme = service!(ctx, services.get_programme(&ctx.actor, id));
    let rules = service!(ctx, services.programme_reminder_rules(&ctx.actor, id));
    let here = format!("/console/admin/programmes/{id}");
    let days: Vec<_> = programme
        .days
        .iter()
        .map(|d| (d.day_number, d.title.as_str(), d.description.as_str()))
        .collect();
    let assignments: Vec<_> = programme
        .assignments
        .iter()
        .map(|a| (a.id, a.after_day, a.title.as_str(), a.description.as_str()))
        .collect();
    let body = html! {
        p {
            a href="/console/admin#programmes" { (ctx.t("Terug naar beheer", "Back to administration")) }
            " · " (ctx.t("Nieuwe groepen nemen deze teksten over; bestaande groepen houden hun eigen.",
                         "New cohorts copy these texts; existing cohorts keep their own."))
        }
        (texts_form(&ctx, &format!("{here}/texts"), &days, &assignments))
        (rules_form(&ctx, &format!("{here}/reminder-rules"), &rules, None))
    };
    Html(layout::page(&ctx, &programme.programme.name, &here, body).into_string()).into_response()
}

#[handler]
pub async fn change_programme_texts(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let fields = attempt!(Fields::posted(&ctx, req, body).await);
    let change = attempt!(texts_from(&ctx, &fields));
    service!(ctx, services.change_programme_texts(&ctx.actor, id, change));
    see_other(&format!("/console/admin/programmes/{id}#texts"))
}

#[handler]
pub async fn change_programme_rules(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let fields = attempt!(Fields::posted(&ctx, req, body).await);
    let rules = attempt!(rules_from(&ctx, &fields));
    service!(
        ctx,
        services.set_programme_reminder_rules(&ctx.actor, id, rules)
    );
    see_other(&format!("/console/admin/programmes/{id}#rules"))
}

/// A cohort's settings: its reminder rules (its trainers and admins), and for admins its own
/// texts and its trainers.
#[handler]
pub async fn cohort_settings(
    req: &Request,
    Path(id): Path<String>,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let parts = service!(ctx, services.get_cohort(&ctx.actor, id));
    let (rules, own) = service!(ctx, services.reminder_rules(&ctx.actor, id));
    let admin = ctx.actor.role == Role::Admin;
    let members = service!(ctx, services.list_members(&ctx.actor, id));
    let staff = if admin {
        service!(ctx, services.list_staff(&ctx.actor))
    } else {
        Vec::new()
    };
    let here = format!("/console/cohorts/{id}/settings");
    let days: Vec<_> = parts
        .days
        .iter()
        .map(|d| (d.day_number, d.title.as_str(), d.description.as_str()))
        .collect();
    let assignments: Vec<_> = parts
        .assignments
        .iter()
        .map(|a| (a.id, a.after_day, a.title.as_str(), a.description.as_str()))
        .collect();
    let trainers: Vec<_> = members.iter().filter(|m| m.role == Role::Trainer).collect();
    let body = html! {
        p { a href={ "/console/cohorts/" (id) } { (ctx.t("Terug naar de groep", "Back to the cohort")) } }
        (rules_form(&ctx, &format!("{here}/reminder-rules"), &rules, Some(own)))
        section aria-labelledby="trainers" {
            h2 id="trainers" { (ctx.t("Trainers", "Trainers")) }
            ul id="trainer-list" { @for trainer in &trainers { li { (trainer.user.display_name) } } }
            @if admin {
                form method="post" action={ (here) "/trainers" } class="row" {
                    input type="hidden" name="csrf" value=(ctx.csrf);
                    label for="add-trainer" { (ctx.t("Trainer toevoegen", "Add trainer")) }
                    select id="add-trainer" name="trainer_id" {
                        @for user in staff.iter().filter(|u| u.role == "trainer" && !trainers.iter().any(|t| t.user.id == u.id)) {
                            option value=(user.id) { (user.display_name) }
                        }
                    }
                    button type="submit" { (ctx.t("Toevoegen", "Add")) }
                }
            }
        }
        @if admin {
            p class="hint" { (ctx.t("De teksten van deze groep: de variant van de gemeente. De app van de deelnemers krijgt ze bij de volgende synchronisatie.",
                                    "This cohort's texts: the municipality's variant. The participants' apps get them at their next sync.")) }
            (texts_form(&ctx, &format!("{here}/texts"), &days, &assignments))
        }
    };
    let title = format!(
        "{} · {}",
        ctx.t("Instellingen", "Settings"),
        parts.cohort.name
    );
    Html(layout::page(&ctx, &title, &here, body).into_string()).into_response()
}

#[handler]
pub async fn change_cohort_texts(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let fields = attempt!(Fields::posted(&ctx, req, body).await);
    let change = attempt!(texts_from(&ctx, &fields));
    service!(ctx, services.change_cohort_texts(&ctx.actor, id, change));
    see_other(&format!("/console/cohorts/{id}/settings#texts"))
}

#[handler]
pub async fn change_cohort_rules(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let fields = attempt!(Fields::posted(&ctx, req, body).await);
    // "Follow the programme" removes the cohort's own rules.
    let rules = if fields.get("follow_programme").is_some() {
        None
    } else {
        Some(attempt!(rules_from(&ctx, &fields)))
    };
    service!(ctx, services.set_reminder_rules(&ctx.actor, id, rules));
    see_other(&format!("/console/cohorts/{id}/settings#rules"))
}

#[handler]
pub async fn add_trainer(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
    Data(services): Data<&Services>,
) -> Response {
    let ctx = attempt!(signed_in(req, services).await);
    let id = attempt!(parse_id(ctx.lang, &id));
    let fields = attempt!(Fields::posted(&ctx, req, body).await);
    let trainer = attempt!(parse_id(
        ctx.lang,
        fields.get("trainer_id").unwrap_or_default()
    ));
    service!(ctx, services.add_trainer(&ctx.actor, id, trainer));
    see_other(&format!("/console/cohorts/{id}/settings#trainers"))
}

/// The form for the titles and descriptions of days and assignments.
fn texts_form(
    ctx: &Context,
    action: &str,
    days: &[(i32, &str, &str)],
    assignments: &[(Uuid, i32, &str, &str)],
) -> Markup {
    html! {
        section aria-labelledby="texts" {
            h2 id="texts" { (ctx.t("Teksten", "Texts")) }
            form method="post" action=(action) class="stack wide" id="texts-form" {
                input type="hidden" name="csrf" value=(ctx.csrf);
                @for (number, title, description) in days {
                    fieldset {
                        legend { (ctx.t("Dag ", "Day ")) (number) }
                        label for={ "day-title-" (number) } { (ctx.t("Titel", "Title")) }
                        input type="text" id={ "day-title-" (number) } name={ "day_title_" (number) } value=(title) required maxlength="200";
                        label for={ "day-description-" (number) } { (ctx.t("Beschrijving", "Description")) }
                        textarea id={ "day-description-" (number) } name={ "day_description_" (number) } rows="3" maxlength="5000" { (description) }
                    }
                }
                @for (id, after_day, title, description) in assignments {
                    fieldset {
                        legend { (ctx.t("Opdracht na dag ", "Assignment after day ")) (after_day) }
                        label for={ "assignment-title-" (id) } { (ctx.t("Titel", "Title")) }
                        input type="text" id={ "assignment-title-" (id) } name={ "assignment_title_" (id) } value=(title) required maxlength="200";
                        label for={ "assignment-description-" (id) } { (ctx.t("Beschrijving", "Description")) }
                        textarea id={ "assignment-description-" (id) } name={ "assignment_description_" (id) } rows="3" maxlength="5000" { (description) }
                    }
                }
                button type="submit" { (ctx.t("Teksten opslaan", "Save texts")) }
            }
        }
    }
}

/// Reads [`texts_form`]: every day and assignment field that was posted.
fn texts_from(ctx: &Context, fields: &Fields) -> Result<TextsChange, Response> {
    let mut change = TextsChange::default();
    for (name, value) in fields.iter() {
        if let Some(number) = name.strip_prefix("day_title_") {
            let day_number = number.parse().map_err(|_| invalid(ctx, name))?;
            change.days.push(DayText {
                day_number,
                title: Some(value.to_owned()),
                description: fields
                    .get(&format!("day_description_{number}"))
                    .map(str::to_owned),
            });
        } else if let Some(id) = name.strip_prefix("assignment_title_") {
            let assignment_id = id.parse().map_err(|_| invalid(ctx, name))?;
            change.assignments.push(AssignmentText {
                assignment_id,
                title: Some(value.to_owned()),
                description: fields
                    .get(&format!("assignment_description_{id}"))
                    .map(str::to_owned),
            });
        }
    }
    Ok(change)
}

/// The form for reminder rules: one row per rule, and empty rows to add one. `own` says, for a
/// cohort, whether the rules are its own or the programme's.
fn rules_form(ctx: &Context, action: &str, rules: &[ReminderRule], own: Option<bool>) -> Markup {
    let rows = rules.len() + NEW_RULE_ROWS;
    html! {
        section aria-labelledby="rules" {
            h2 id="rules" { (ctx.t("Herinneringsregels", "Reminder rules")) }
            @match own {
                Some(true) => p id="rules-source" { (ctx.t("Deze groep heeft eigen regels.", "This cohort has its own rules.")) },
                Some(false) => p id="rules-source" { (ctx.t("Deze groep volgt de regels van het programma.", "This cohort follows the programme's rules.")) },
                None => p { (ctx.t("Groepen volgen deze regels, tenzij ze eigen regels hebben.", "Cohorts follow these rules unless they have their own.")) },
            }
            p class="hint" { (ctx.t("Een regel: zoveel dagen vóór de dag waarop het werk af moet zijn, om deze lokale tijd. Laat ‘dagen ervoor’ leeg om een regel te verwijderen.",
                                    "A rule: this many days before the day the work is due, at this local time. Leave ‘days before’ empty to remove a rule.")) }
            form method="post" action=(action) id="rules-form" {
                input type="hidden" name="csrf" value=(ctx.csrf);
                table {
                    thead { tr {
                        th scope="col" { (ctx.t("Voor", "For")) }
                        th scope="col" { (ctx.t("Dagen ervoor", "Days before")) }
                        th scope="col" { (ctx.t("Tijd", "Time")) }
                    } }
                    tbody {
                        @for row in 0..rows {
                            @let rule = rules.get(row);
                            tr {
                                td {
                                    select name={ "applies_to_" (row) } aria-label={ (ctx.t("Voor, regel ", "For, rule ")) (row + 1) } {
                                        option value="between_day" selected[rule.is_some_and(|r| r.applies_to == RuleTarget::BetweenDay)] { (ctx.t("opdrachten tussen de dagen", "between-day assignments")) }
                                        option value="harvest" selected[rule.is_some_and(|r| r.applies_to == RuleTarget::Harvest)] { (ctx.t("oogst (dag 6)", "harvest (day 6)")) }
                                    }
                                }
                                td { input type="number" min="0" max="60" name={ "days_before_" (row) } value=[rule.map(|r| r.days_before)] aria-label={ (ctx.t("Dagen ervoor, regel ", "Days before, rule ")) (row + 1) }; }
                                td { input type="time" name={ "at_" (row) } value=[rule.map(|r| r.at.format("%H:%M").to_string())] aria-label={ (ctx.t("Tijd, regel ", "Time, rule ")) (row + 1) }; }
                            }
                        }
                    }
                }
                button type="submit" name="save" value="rules" { (ctx.t("Regels opslaan", "Save rules")) }
                @if own == Some(true) {
                    " "
                    button type="submit" name="follow_programme" value="yes" { (ctx.t("Volg weer het programma", "Follow the programme again")) }
                }
            }
        }
    }
}

/// Reads [`rules_form`]: each row with days before filled in is a rule.
fn rules_from(ctx: &Context, fields: &Fields) -> Result<Vec<ReminderRule>, Response> {
    let mut rules = Vec::new();
    for row in 0.. {
        let Some(target) = fields.get(&format!("applies_to_{row}")) else {
            break;
        };
        let days_before = fields
            .get(&format!("days_before_{row}"))
            .filter(|v| !v.trim().is_empty());
        let Some(days_before) = days_before else {
            continue;
        };
        let field = |name: &str| format!("{name}_{row}");
        let applies_to = match target {
            "between_day" => RuleTarget::BetweenDay,
            "harvest" => RuleTarget::Harvest,
            _ => return Err(invalid(ctx, &field("applies_to"))),
        };
        let days_before = days_before
            .trim()
            .parse()
            .map_err(|_| invalid(ctx, &field("days_before")))?;
        let at = fields
            .get(&format!("at_{row}"))
            .and_then(|v| NaiveTime::parse_from_str(v, "%H:%M").ok())
            .ok_or_else(|| invalid(ctx, &field("at")))?;
        rules.push(ReminderRule {
            applies_to,
            days_before,
            at,
        });
    }
    Ok(rules)
}
