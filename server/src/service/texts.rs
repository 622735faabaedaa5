//! The words of a programme: each day's title and description and each between-day assignment's
//! title and description, in the provider's template and in a cohort's own copy (a
//! municipality's variant, such as what the Day 1 assignment actually is). Admins only. A
//! cohort's texts sync to its participants' apps; the template's apply to cohorts created after.

use uuid::Uuid;

use super::{Actor, Error, Result, Role, Services, accounts::required_text};
use crate::store::{catalog as catalog_store, cohorts as cohort_store, sync};

/// Most characters of a title.
pub const MAX_TITLE_CHARS: usize = 200;
/// Most characters of a description.
pub const MAX_DESCRIPTION_CHARS: usize = 5_000;

/// New words for some days and assignments; what is left out stays.
#[derive(Debug, Default)]
pub struct TextsChange {
    pub days: Vec<DayText>,
    pub assignments: Vec<AssignmentText>,
}

#[derive(Debug)]
pub struct DayText {
    pub day_number: i32,
    pub title: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug)]
pub struct AssignmentText {
    pub assignment_id: Uuid,
    pub title: Option<String>,
    pub description: Option<String>,
}

/// A checked title and description, or the reason they cannot be stored.
fn checked(
    title: Option<&str>,
    description: Option<&str>,
) -> Result<(Option<String>, Option<String>)> {
    let title = title.map(|t| required_text("title", t)).transpose()?;
    if title
        .as_ref()
        .is_some_and(|t| t.chars().count() > MAX_TITLE_CHARS)
    {
        return Err(Error::invalid(
            "title_too_long",
            format!("a title has at most {MAX_TITLE_CHARS} characters"),
        ));
    }
    let description = description.map(|d| d.trim().to_owned());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Err(Error::invalid(
            "description_too_long",
            format!("a description has at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok((title, description))
}

fn unknown_day(day_number: i32) -> Error {
    Error::Invalid {
        code: "unknown_day",
        message: format!("day {day_number} is not a day of this programme"),
        details: Some(serde_json::json!({ "day_number": day_number })),
    }
}

fn unknown_assignment(id: Uuid) -> Error {
    Error::Invalid {
        code: "unknown_assignment",
        message: format!("{id} is not an assignment of this programme"),
        details: Some(serde_json::json!({ "assignment_id": id })),
    }
}

/// A day's or an assignment's key and its two texts, to change in place.
type Texts<'a, K> = (K, &'a mut String, &'a mut String);

/// Applies a change to days and assignments (of a template or a cohort): all or nothing.
fn apply<D, A>(
    change: &TextsChange,
    days: &mut [D],
    day_texts: impl Fn(&mut D) -> Texts<'_, i32>,
    assignments: &mut [A],
    assignment_texts: impl Fn(&mut A) -> Texts<'_, Uuid>,
) -> Result<()> {
    for text in &change.days {
        let (title, description) = checked(text.title.as_deref(), text.description.as_deref())?;
        let (_, old_title, old_description) = days
            .iter_mut()
            .map(&day_texts)
            .find(|(number, _, _)| *number == text.day_number)
            .ok_or_else(|| unknown_day(text.day_number))?;
        replace(old_title, old_description, title, description);
    }
    for text in &change.assignments {
        let (title, description) = checked(text.title.as_deref(), text.description.as_deref())?;
        let (_, old_title, old_description) = assignments
            .iter_mut()
            .map(&assignment_texts)
            .find(|(id, _, _)| *id == text.assignment_id)
            .ok_or_else(|| unknown_assignment(text.assignment_id))?;
        replace(old_title, old_description, title, description);
    }
    Ok(())
}

fn replace(
    title: &mut String,
    description: &mut String,
    new_title: Option<String>,
    new_description: Option<String>,
) {
    if let Some(new_title) = new_title {
        *title = new_title;
    }
    if let Some(new_description) = new_description {
        *description = new_description;
    }
}

impl Services {
    /// Changes a cohort's own texts (admins of its provider). The participants' apps get them at
    /// their next sync; reminders use the new assignment titles.
    #[tracing::instrument(skip_all, fields(user.id = %actor.user_id, cohort.id = %id))]
    pub async fn change_cohort_texts(
        &self,
        actor: &Actor,
        id: Uuid,
        change: TextsChange,
    ) -> Result<cohort_store::CohortWithParts> {
        let cohort = self.managed_cohort(actor, id).await?;
        actor.require(&[Role::Admin])?;
        let mut parts = cohort_store::load_parts(&self.db, cohort).await?;
        apply(
            &change,
            &mut parts.days,
            |d| (d.day_number, &mut d.title, &mut d.description),
            &mut parts.assignments,
            |a| (a.id, &mut a.title, &mut a.description),
        )?;
        let txn = crate::store::begin_write(&self.db).await?;
        cohort_store::update_texts(&txn, &parts.days, &parts.assignments).await?;
        let version = sync::next_version(&txn).await?;
        sync::stamp_cohort(&txn, id, version).await?;
        txn.commit().await?;
        self.notify_change(&[id], &[]);
        Ok(parts)
    }

    /// Changes the words of a programme template (admins); cohorts created afterwards copy them,
    /// existing cohorts keep their own.
    pub async fn change_programme_texts(
        &self,
        actor: &Actor,
        id: Uuid,
        change: TextsChange,
    ) -> Result<catalog_store::ProgrammeWithParts> {
        let mut programme = self.get_programme(actor, id).await?;
        actor.require(&[Role::Admin])?;
        apply(
            &change,
            &mut programme.days,
            |d| (d.day_number, &mut d.title, &mut d.description),
            &mut programme.assignments,
            |a| (a.id, &mut a.title, &mut a.description),
        )?;
        let txn = crate::store::begin_write(&self.db).await?;
        catalog_store::update_texts(&txn, &programme.days, &programme.assignments).await?;
        txn.commit().await?;
        Ok(programme)
    }
}
