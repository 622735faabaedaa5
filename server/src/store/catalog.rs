//! Providers, organisations (municipalities) and programme templates.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, sea_query::Expr,
};
use uuid::Uuid;

use super::entity::{organisation, programme, programme_assignment, programme_day, provider};

/// A programme template with its days and between-day assignments, in order.
#[derive(Debug, Clone)]
pub struct ProgrammeWithParts {
    pub programme: programme::Model,
    pub days: Vec<programme_day::Model>,
    pub assignments: Vec<programme_assignment::Model>,
}

pub async fn count_providers(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    provider::Entity::find().count(db).await
}

pub async fn find_provider_by_name(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<provider::Model>, DbErr> {
    provider::Entity::find()
        .filter(provider::Column::Name.eq(name))
        .one(db)
        .await
}

pub async fn insert_provider(
    db: &impl ConnectionTrait,
    model: provider::Model,
) -> Result<(), DbErr> {
    provider::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await
        .map(drop)
}

pub async fn insert_organisation(
    db: &impl ConnectionTrait,
    model: organisation::Model,
) -> Result<(), DbErr> {
    organisation::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await
        .map(drop)
}

pub async fn find_organisation(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<organisation::Model>, DbErr> {
    organisation::Entity::find_by_id(id).one(db).await
}

pub async fn list_organisations(
    db: &impl ConnectionTrait,
    provider_id: Uuid,
) -> Result<Vec<organisation::Model>, DbErr> {
    organisation::Entity::find()
        .filter(organisation::Column::ProviderId.eq(provider_id))
        .order_by_asc(organisation::Column::Name)
        .all(db)
        .await
}

pub async fn insert_programme(
    db: &impl ConnectionTrait,
    programme: ProgrammeWithParts,
) -> Result<(), DbErr> {
    programme::Entity::insert(programme.programme.into_active_model())
        .exec_without_returning(db)
        .await?;
    programme_day::Entity::insert_many(
        programme
            .days
            .into_iter()
            .map(IntoActiveModel::into_active_model),
    )
    .exec_without_returning(db)
    .await?;
    if !programme.assignments.is_empty() {
        programme_assignment::Entity::insert_many(
            programme
                .assignments
                .into_iter()
                .map(IntoActiveModel::into_active_model),
        )
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

pub async fn list_programmes(
    db: &impl ConnectionTrait,
    provider_id: Uuid,
) -> Result<Vec<programme::Model>, DbErr> {
    programme::Entity::find()
        .filter(programme::Column::ProviderId.eq(provider_id))
        .order_by_asc(programme::Column::Name)
        .all(db)
        .await
}

pub async fn find_programme(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<ProgrammeWithParts>, DbErr> {
    let Some(programme) = programme::Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    let days = programme_day::Entity::find()
        .filter(programme_day::Column::ProgrammeId.eq(id))
        .order_by_asc(programme_day::Column::DayNumber)
        .all(db)
        .await?;
    let assignments = programme_assignment::Entity::find()
        .filter(programme_assignment::Column::ProgrammeId.eq(id))
        .order_by_asc(programme_assignment::Column::AfterDay)
        .order_by_asc(programme_assignment::Column::Position)
        .all(db)
        .await?;
    Ok(Some(ProgrammeWithParts {
        programme,
        days,
        assignments,
    }))
}

/// Sets (or clears) an organisation's own retention period.
pub async fn set_retention_months(
    db: &impl ConnectionTrait,
    organisation_id: Uuid,
    months: Option<u32>,
) -> Result<(), DbErr> {
    organisation::Entity::update_many()
        .col_expr(
            organisation::Column::RetentionMonths,
            sea_orm::sea_query::Expr::value(months.and_then(|m| i32::try_from(m).ok())),
        )
        .filter(organisation::Column::Id.eq(organisation_id))
        .exec(db)
        .await
        .map(drop)
}

/// Writes the titles and descriptions of a programme template's days and assignments.
pub async fn update_texts(
    db: &impl ConnectionTrait,
    days: &[programme_day::Model],
    assignments: &[programme_assignment::Model],
) -> Result<(), DbErr> {
    for day in days {
        programme_day::Entity::update_many()
            .col_expr(programme_day::Column::Title, Expr::value(day.title.clone()))
            .col_expr(
                programme_day::Column::Description,
                Expr::value(day.description.clone()),
            )
            .filter(programme_day::Column::Id.eq(day.id))
            .exec(db)
            .await?;
    }
    for assignment in assignments {
        programme_assignment::Entity::update_many()
            .col_expr(
                programme_assignment::Column::Title,
                Expr::value(assignment.title.clone()),
            )
            .col_expr(
                programme_assignment::Column::Description,
                Expr::value(assignment.description.clone()),
            )
            .filter(programme_assignment::Column::Id.eq(assignment.id))
            .exec(db)
            .await?;
    }
    Ok(())
}
