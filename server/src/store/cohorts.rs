//! Cohorts with their schedule, assignments, members and invites.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, sea_query::Expr,
};
use uuid::Uuid;

use super::entity::{cohort, cohort_assignment, cohort_day, cohort_member, invite};

/// A cohort with its days and assignments, in order.
#[derive(Debug, Clone)]
pub struct CohortWithParts {
    pub cohort: cohort::Model,
    pub days: Vec<cohort_day::Model>,
    pub assignments: Vec<cohort_assignment::Model>,
}

/// Inserts a cohort with its schedule, assignments and first members.
pub async fn insert_cohort(
    db: &impl ConnectionTrait,
    cohort: CohortWithParts,
    members: Vec<cohort_member::Model>,
) -> Result<(), DbErr> {
    cohort::Entity::insert(cohort.cohort.into_active_model())
        .exec_without_returning(db)
        .await?;
    cohort_day::Entity::insert_many(
        cohort
            .days
            .into_iter()
            .map(IntoActiveModel::into_active_model),
    )
    .exec_without_returning(db)
    .await?;
    if !cohort.assignments.is_empty() {
        cohort_assignment::Entity::insert_many(
            cohort
                .assignments
                .into_iter()
                .map(IntoActiveModel::into_active_model),
        )
        .exec_without_returning(db)
        .await?;
    }
    if !members.is_empty() {
        cohort_member::Entity::insert_many(
            members.into_iter().map(IntoActiveModel::into_active_model),
        )
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

pub async fn find_cohort(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<cohort::Model>, DbErr> {
    cohort::Entity::find_by_id(id).one(db).await
}

/// The cohort's days and assignments.
pub async fn load_parts(
    db: &impl ConnectionTrait,
    cohort: cohort::Model,
) -> Result<CohortWithParts, DbErr> {
    let days = cohort_day::Entity::find()
        .filter(cohort_day::Column::CohortId.eq(cohort.id))
        .order_by_asc(cohort_day::Column::DayNumber)
        .all(db)
        .await?;
    let assignments = cohort_assignment::Entity::find()
        .filter(cohort_assignment::Column::CohortId.eq(cohort.id))
        .order_by_asc(cohort_assignment::Column::AfterDay)
        .order_by_asc(cohort_assignment::Column::Position)
        .all(db)
        .await?;
    Ok(CohortWithParts {
        cohort,
        days,
        assignments,
    })
}

/// Writes the date, times and place of each given day, and the cohort's time zone.
pub async fn update_schedule(
    db: &impl ConnectionTrait,
    cohort_id: Uuid,
    time_zone: &str,
    days: &[cohort_day::Model],
) -> Result<(), DbErr> {
    cohort::Entity::update_many()
        .col_expr(cohort::Column::TimeZone, Expr::value(time_zone))
        .filter(cohort::Column::Id.eq(cohort_id))
        .exec(db)
        .await?;
    for day in days {
        let mut active = day.clone().into_active_model();
        active.date = ActiveValue::Set(day.date);
        active.starts_at = ActiveValue::Set(day.starts_at);
        active.ends_at = ActiveValue::Set(day.ends_at);
        active.location = ActiveValue::Set(day.location.clone());
        cohort_day::Entity::update(active).exec(db).await?;
    }
    Ok(())
}

/// Cohorts of the given organisations, newest first.
pub async fn list_cohorts_of_organisations(
    db: &impl ConnectionTrait,
    organisation_ids: impl IntoIterator<Item = Uuid>,
) -> Result<Vec<cohort::Model>, DbErr> {
    cohort::Entity::find()
        .filter(cohort::Column::OrganisationId.is_in(organisation_ids))
        .order_by_desc(cohort::Column::CreatedAt)
        .all(db)
        .await
}

/// Cohorts run from a programme.
pub async fn cohorts_of_programme(
    db: &impl ConnectionTrait,
    programme_id: Uuid,
) -> Result<Vec<cohort::Model>, DbErr> {
    cohort::Entity::find()
        .filter(cohort::Column::ProgrammeId.eq(programme_id))
        .all(db)
        .await
}

/// Cohorts a user is a member of (as trainer or participant), newest first.
pub async fn list_cohorts_of_member(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> Result<Vec<cohort::Model>, DbErr> {
    let cohort_ids: Vec<Uuid> = cohort_member::Entity::find()
        .filter(cohort_member::Column::UserId.eq(user_id))
        .all(db)
        .await?
        .into_iter()
        .map(|member| member.cohort_id)
        .collect();
    cohort::Entity::find()
        .filter(cohort::Column::Id.is_in(cohort_ids))
        .order_by_desc(cohort::Column::CreatedAt)
        .all(db)
        .await
}

pub async fn find_membership(
    db: &impl ConnectionTrait,
    cohort_id: Uuid,
    user_id: Uuid,
) -> Result<Option<cohort_member::Model>, DbErr> {
    cohort_member::Entity::find_by_id((cohort_id, user_id))
        .one(db)
        .await
}

pub async fn list_members(
    db: &impl ConnectionTrait,
    cohort_id: Uuid,
) -> Result<Vec<cohort_member::Model>, DbErr> {
    cohort_member::Entity::find()
        .filter(cohort_member::Column::CohortId.eq(cohort_id))
        .order_by_asc(cohort_member::Column::CreatedAt)
        .all(db)
        .await
}

/// Removes a member; false if they were not one.
pub async fn delete_member(
    db: &impl ConnectionTrait,
    cohort_id: Uuid,
    user_id: Uuid,
) -> Result<bool, DbErr> {
    let result = cohort_member::Entity::delete_by_id((cohort_id, user_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn insert_member(
    db: &impl ConnectionTrait,
    model: cohort_member::Model,
) -> Result<(), DbErr> {
    cohort_member::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await
        .map(drop)
}

pub async fn insert_invites(
    db: &impl ConnectionTrait,
    invites: Vec<invite::Model>,
) -> Result<(), DbErr> {
    if invites.is_empty() {
        return Ok(());
    }
    invite::Entity::insert_many(invites.into_iter().map(IntoActiveModel::into_active_model))
        .exec_without_returning(db)
        .await
        .map(drop)
}

pub async fn list_invites(
    db: &impl ConnectionTrait,
    cohort_id: Uuid,
) -> Result<Vec<invite::Model>, DbErr> {
    invite::Entity::find()
        .filter(invite::Column::CohortId.eq(cohort_id))
        .order_by_desc(invite::Column::CreatedAt)
        .all(db)
        .await
}

pub async fn find_invite(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<invite::Model>, DbErr> {
    invite::Entity::find_by_id(id).one(db).await
}

pub async fn find_invite_by_code(
    db: &impl ConnectionTrait,
    code: &str,
) -> Result<Option<invite::Model>, DbErr> {
    invite::Entity::find()
        .filter(invite::Column::Code.eq(code))
        .one(db)
        .await
}

/// Marks an invite redeemed by a user; false if it was redeemed or revoked meanwhile.
pub async fn claim_invite(
    db: &impl ConnectionTrait,
    id: Uuid,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = invite::Entity::update_many()
        .col_expr(invite::Column::RedeemedAt, Expr::value(now))
        .col_expr(invite::Column::RedeemedBy, Expr::value(user_id))
        .filter(invite::Column::Id.eq(id))
        .filter(invite::Column::RedeemedAt.is_null())
        .filter(invite::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Revokes an unredeemed invite; false if it was already redeemed or revoked.
pub async fn revoke_invite(
    db: &impl ConnectionTrait,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = invite::Entity::update_many()
        .col_expr(invite::Column::RevokedAt, Expr::value(now))
        .filter(invite::Column::Id.eq(id))
        .filter(invite::Column::RedeemedAt.is_null())
        .filter(invite::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Writes the titles and descriptions of a cohort's days and assignments.
pub async fn update_texts(
    db: &impl ConnectionTrait,
    days: &[cohort_day::Model],
    assignments: &[cohort_assignment::Model],
) -> Result<(), DbErr> {
    for day in days {
        cohort_day::Entity::update_many()
            .col_expr(cohort_day::Column::Title, Expr::value(day.title.clone()))
            .col_expr(
                cohort_day::Column::Description,
                Expr::value(day.description.clone()),
            )
            .filter(cohort_day::Column::Id.eq(day.id))
            .exec(db)
            .await?;
    }
    for assignment in assignments {
        cohort_assignment::Entity::update_many()
            .col_expr(
                cohort_assignment::Column::Title,
                Expr::value(assignment.title.clone()),
            )
            .col_expr(
                cohort_assignment::Column::Description,
                Expr::value(assignment.description.clone()),
            )
            .filter(cohort_assignment::Column::Id.eq(assignment.id))
            .exec(db)
            .await?;
    }
    Ok(())
}
