//! Organisations (municipalities) and programme templates.

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json, types::Example};
use uuid::Uuid;

use super::{ApiTags, auth::BearerAuth, error::ApiError};
use crate::{
    service::{
        Services,
        catalog::learning_goals,
        texts::{AssignmentText, DayText, TextsChange},
    },
    store::{
        catalog::ProgrammeWithParts,
        entity::{organisation, programme},
    },
};

/// A municipality the provider runs the trajectory for.
#[derive(Debug, Object)]
pub struct OrganisationView {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<organisation::Model> for OrganisationView {
    fn from(organisation: organisation::Model) -> Self {
        Self {
            id: organisation.id,
            name: organisation.name,
            created_at: organisation.created_at,
        }
    }
}

/// A new municipality.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct CreateOrganisationRequest {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
}

impl Example for CreateOrganisationRequest {
    fn example() -> Self {
        Self {
            name: "Gemeente Voorbeeldstad".into(),
        }
    }
}

/// A programme template, without its days.
#[derive(Debug, Object)]
pub struct ProgrammeSummary {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// The learning goals that run through the whole trajectory.
    pub learning_goals: Vec<String>,
}

impl From<programme::Model> for ProgrammeSummary {
    fn from(programme: programme::Model) -> Self {
        Self {
            learning_goals: learning_goals(&programme),
            id: programme.id,
            name: programme.name,
            description: programme.description,
        }
    }
}

/// A training day of a programme.
#[derive(Debug, Object)]
pub struct ProgrammeDayView {
    pub day_number: i32,
    pub title: String,
    pub description: String,
}

/// Between-day work of a programme, due at the start of the next day.
#[derive(Debug, Object)]
pub struct ProgrammeAssignmentView {
    /// The day after which this work is done.
    pub after_day: i32,
    pub kind: super::AssignmentKindView,
    pub title: String,
    pub description: String,
}

/// A programme template with its days and between-day work.
#[derive(Debug, Object)]
pub struct ProgrammeView {
    #[oai(flatten)]
    pub summary: ProgrammeSummary,
    pub days: Vec<ProgrammeDayView>,
    pub assignments: Vec<ProgrammeAssignmentView>,
}

impl From<ProgrammeWithParts> for ProgrammeView {
    fn from(programme: ProgrammeWithParts) -> Self {
        Self {
            summary: programme.programme.into(),
            days: programme
                .days
                .into_iter()
                .map(|day| ProgrammeDayView {
                    day_number: day.day_number,
                    title: day.title,
                    description: day.description,
                })
                .collect(),
            assignments: programme
                .assignments
                .into_iter()
                .map(|assignment| ProgrammeAssignmentView {
                    after_day: assignment.after_day,
                    kind: super::AssignmentKindView::from_stored(&assignment.kind),
                    title: assignment.title,
                    description: assignment.description,
                })
                .collect(),
        }
    }
}

#[derive(ApiResponse)]
pub enum OrganisationCreated {
    /// The new organisation.
    #[oai(status = 201)]
    Created(Json<OrganisationView>),
}

type Result<T> = std::result::Result<T, ApiError>;

/// Organisations and programmes.
/// New words for one day; leave a field out to keep it.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct DayTextRequest {
    #[oai(validator(minimum(value = "1"), maximum(value = "6")))]
    pub day_number: i32,
    #[oai(validator(min_length = 1, max_length = 200))]
    pub title: Option<String>,
    #[oai(validator(max_length = 5000))]
    pub description: Option<String>,
}

/// New words for one between-day assignment; leave a field out to keep it.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct AssignmentTextRequest {
    pub assignment_id: Uuid,
    #[oai(validator(min_length = 1, max_length = 200))]
    pub title: Option<String>,
    #[oai(validator(max_length = 5000))]
    pub description: Option<String>,
}

/// Titles and descriptions to change, all or nothing.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct TextsChangeRequest {
    #[oai(default, validator(max_items = 6))]
    pub days: Vec<DayTextRequest>,
    #[oai(default, validator(max_items = 100))]
    pub assignments: Vec<AssignmentTextRequest>,
}

impl From<TextsChangeRequest> for TextsChange {
    fn from(request: TextsChangeRequest) -> Self {
        Self {
            days: request
                .days
                .into_iter()
                .map(|d| DayText {
                    day_number: d.day_number,
                    title: d.title,
                    description: d.description,
                })
                .collect(),
            assignments: request
                .assignments
                .into_iter()
                .map(|a| AssignmentText {
                    assignment_id: a.assignment_id,
                    title: a.title,
                    description: a.description,
                })
                .collect(),
        }
    }
}

impl Example for TextsChangeRequest {
    fn example() -> Self {
        Self {
            days: vec![DayTextRequest {
                day_number: 1,
                title: Some("Samen op pad".into()),
                description: Some("We lopen door de wijk en spreken bewoners en collega's.".into()),
            }],
            assignments: Vec::new(),
        }
    }
}

pub struct CatalogApi {
    pub services: Services,
}

#[OpenApi]
impl CatalogApi {
    /// List organisations
    ///
    /// Admins and trainers see their provider's organisations; a participant sees their own.
    #[oai(
        path = "/organisations",
        method = "get",
        tag = "ApiTags::Organisations",
        operation_id = "listOrganisations"
    )]
    async fn list_organisations(&self, auth: BearerAuth) -> Result<Json<Vec<OrganisationView>>> {
        let organisations = self.services.list_organisations(&auth.0).await?;
        Ok(Json(organisations.into_iter().map(Into::into).collect()))
    }

    /// Create an organisation
    ///
    /// Admins only.
    #[oai(
        path = "/organisations",
        method = "post",
        tag = "ApiTags::Organisations",
        operation_id = "createOrganisation"
    )]
    async fn create_organisation(
        &self,
        auth: BearerAuth,
        body: Json<CreateOrganisationRequest>,
    ) -> Result<OrganisationCreated> {
        let organisation = self
            .services
            .create_organisation(&auth.0, &body.name)
            .await?;
        Ok(OrganisationCreated::Created(Json(organisation.into())))
    }

    /// Read an organisation
    ///
    /// A municipality the caller may see.
    #[oai(
        path = "/organisations/:id",
        method = "get",
        tag = "ApiTags::Organisations",
        operation_id = "getOrganisation"
    )]
    async fn get_organisation(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<Json<OrganisationView>> {
        let organisation = self.services.get_organisation(&auth.0, id.0).await?;
        Ok(Json(organisation.into()))
    }

    /// List programme templates
    ///
    /// Admins and trainers.
    #[oai(
        path = "/programmes",
        method = "get",
        tag = "ApiTags::Programmes",
        operation_id = "listProgrammes"
    )]
    async fn list_programmes(&self, auth: BearerAuth) -> Result<Json<Vec<ProgrammeSummary>>> {
        let programmes = self.services.list_programmes(&auth.0).await?;
        Ok(Json(programmes.into_iter().map(Into::into).collect()))
    }

    /// Read a programme template with its days and between-day work
    ///
    /// Admins and trainers.
    #[oai(
        path = "/programmes/:id",
        method = "get",
        tag = "ApiTags::Programmes",
        operation_id = "getProgramme"
    )]
    async fn get_programme(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Json<ProgrammeView>> {
        let programme = self.services.get_programme(&auth.0, id.0).await?;
        Ok(Json(programme.into()))
    }

    /// Change a programme template's texts
    ///
    /// Titles and descriptions of its days and between-day assignments. Cohorts created
    /// afterwards copy them; existing cohorts keep their own (change those with
    /// `changeCohortTexts`). Admins only; an unknown day or assignment answers 422
    /// (`unknown_day`, `unknown_assignment`) and changes nothing.
    #[oai(
        path = "/programmes/:id/texts",
        method = "patch",
        tag = "ApiTags::Programmes",
        operation_id = "changeProgrammeTexts"
    )]
    async fn change_programme_texts(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<TextsChangeRequest>,
    ) -> Result<Json<ProgrammeView>> {
        let programme = self
            .services
            .change_programme_texts(&auth.0, id.0, body.0.into())
            .await?;
        Ok(Json(programme.into()))
    }
}
