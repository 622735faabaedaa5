//! Organisations (municipalities) and programme templates.

use chrono::Utc;
use uuid::Uuid;

use super::{
    Actor, Error, Result, Role, Services,
    accounts::{NewStaff, required_text},
};
use crate::store::{
    catalog::{self as store, ProgrammeWithParts},
    entity::{organisation, programme, programme_assignment, programme_day, provider, user},
};

/// A programme as written in a seed file (see `server/seed/`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgrammeTemplate {
    pub name: String,
    pub description: String,
    pub learning_goals: Vec<String>,
    pub days: Vec<DayTemplate>,
    pub assignments: Vec<AssignmentTemplate>,
}

/// One training day of a programme template.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayTemplate {
    pub number: i32,
    pub title: String,
    pub description: String,
}

/// Between-day work of a programme template.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentTemplate {
    pub after_day: i32,
    pub kind: String,
    pub title: String,
    pub description: String,
}

/// The kinds of between-day work apps know how to show.
pub const ASSIGNMENT_KINDS: &[&str] = &[
    "assignment",
    "apply_in_work",
    "interview",
    "harvest_presentation",
];

impl ProgrammeTemplate {
    /// The Urban Professional programme as the customer describes it.
    pub fn urban_professional() -> Self {
        toml::from_str(include_str!("../../seed/urban-professional.toml"))
            .expect("the bundled programme seed is valid TOML; a unit test checks it")
    }
}

impl Services {
    /// Organisations the caller may see.
    pub async fn list_organisations(&self, actor: &Actor) -> Result<Vec<organisation::Model>> {
        let organisations = store::list_organisations(&self.db, actor.provider_id).await?;
        Ok(organisations
            .into_iter()
            .filter(|organisation| actor.can_see_organisation(organisation))
            .collect())
    }

    /// Creates a municipality in the caller's provider (admins only).
    pub async fn create_organisation(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<organisation::Model> {
        actor.require(&[Role::Admin])?;
        let organisation = organisation::Model {
            id: Uuid::now_v7(),
            provider_id: actor.provider_id,
            name: required_text("name", name)?,
            created_at: Utc::now(),
            retention_months: None,
        };
        store::insert_organisation(&self.db, organisation.clone()).await?;
        Ok(organisation)
    }

    /// One organisation, if the caller may see it.
    pub async fn get_organisation(&self, actor: &Actor, id: Uuid) -> Result<organisation::Model> {
        store::find_organisation(&self.db, id)
            .await?
            .filter(|organisation| actor.can_see_organisation(organisation))
            .ok_or(Error::NotFound("organisation"))
    }

    /// The provider's programme templates (admins and trainers).
    pub async fn list_programmes(&self, actor: &Actor) -> Result<Vec<programme::Model>> {
        actor.require(&[Role::Admin, Role::Trainer])?;
        Ok(store::list_programmes(&self.db, actor.provider_id).await?)
    }

    /// One programme template with its days and assignments (admins and trainers).
    pub async fn get_programme(&self, actor: &Actor, id: Uuid) -> Result<ProgrammeWithParts> {
        actor.require(&[Role::Admin, Role::Trainer])?;
        store::find_programme(&self.db, id)
            .await?
            .filter(|programme| programme.programme.provider_id == actor.provider_id)
            .ok_or(Error::NotFound("programme"))
    }

    /// Creates a provider with its first admin and the Urban Professional programme: how a new
    /// installation (or a second provider on one installation) starts. Used by
    /// `veldwerk bootstrap` and the demo.
    pub async fn bootstrap_provider(
        &self,
        name: &str,
        admin: NewStaff,
    ) -> Result<(provider::Model, user::Model)> {
        let name = required_text("provider", name)?;
        if store::find_provider_by_name(&self.db, &name)
            .await?
            .is_some()
        {
            return Err(Error::conflict(
                "provider_exists",
                format!("a provider named {name:?} already exists"),
            ));
        }
        let provider = provider::Model {
            id: Uuid::now_v7(),
            name,
            created_at: Utc::now(),
        };
        store::insert_provider(&self.db, provider.clone()).await?;
        self.install_programme(provider.id, &ProgrammeTemplate::urban_professional())
            .await?;
        let admin = self.insert_staff(provider.id, admin).await?;
        Ok((provider, admin))
    }

    /// Stores a programme template for a provider.
    pub async fn install_programme(
        &self,
        provider_id: Uuid,
        template: &ProgrammeTemplate,
    ) -> Result<ProgrammeWithParts> {
        let programme_id = Uuid::now_v7();
        let programme = ProgrammeWithParts {
            programme: programme::Model {
                id: programme_id,
                provider_id,
                name: template.name.clone(),
                description: template.description.clone(),
                learning_goals: serde_json::json!(template.learning_goals),
                created_at: Utc::now(),
            },
            days: template
                .days
                .iter()
                .map(|day| programme_day::Model {
                    id: Uuid::now_v7(),
                    programme_id,
                    day_number: day.number,
                    title: day.title.clone(),
                    description: day.description.clone(),
                })
                .collect(),
            assignments: template
                .assignments
                .iter()
                .enumerate()
                .map(|(position, assignment)| programme_assignment::Model {
                    id: Uuid::now_v7(),
                    programme_id,
                    after_day: assignment.after_day,
                    position: i32::try_from(position).unwrap_or(i32::MAX),
                    kind: assignment.kind.clone(),
                    title: assignment.title.clone(),
                    description: assignment.description.clone(),
                })
                .collect(),
        };
        store::insert_programme(&self.db, programme.clone()).await?;
        Ok(programme)
    }
}

/// The learning goals of a stored programme.
pub fn learning_goals(programme: &programme::Model) -> Vec<String> {
    serde_json::from_value(programme.learning_goals.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_programme_has_six_days_and_work_between_each() {
        let programme = ProgrammeTemplate::urban_professional();
        assert_eq!(programme.days.len(), 6);
        assert_eq!(programme.days[5].title, "Oogsten in het nieuwe werken");
        assert_eq!(programme.learning_goals.len(), 3);
        for after_day in 1..=5 {
            assert!(
                programme
                    .assignments
                    .iter()
                    .any(|a| a.after_day == after_day),
                "no work after day {after_day}"
            );
        }
        assert!(
            programme
                .assignments
                .iter()
                .all(|a| ASSIGNMENT_KINDS.contains(&a.kind.as_str()))
        );
        assert!(
            programme
                .assignments
                .iter()
                .any(|a| a.kind == "harvest_presentation" && a.after_day == 5)
        );
    }
}
