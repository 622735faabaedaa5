//! What erasing a participant removes outside their sync records: their place in cohorts, the
//! messages to them, their sessions and push registrations, and finally the account's content.
//! Records become tombstones through `store::sync`; bytes go through `store::blobs`.

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DbErr,
    sea_query::{Expr, ExprTrait, Query},
};
use uuid::Uuid;

/// Removes a participant from a cohort (or from every cohort): the membership, the
/// announcements addressed to them there, and their reminders and pushes there.
pub async fn leave_cohorts(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    cohort_id: Option<Uuid>,
) -> Result<(), DbErr> {
    let in_cohort = |mut statement: sea_orm::sea_query::DeleteStatement, column: &str| {
        if let Some(cohort_id) = cohort_id {
            statement.and_where(Expr::col(column.to_owned()).eq(cohort_id));
        }
        statement
    };
    let notifications = {
        let mut select = Query::select();
        select
            .column("id")
            .from("notifications")
            .and_where(Expr::col("user_id").eq(user_id));
        if let Some(cohort_id) = cohort_id {
            select.and_where(Expr::col("cohort_id").eq(cohort_id));
        }
        select.to_owned()
    };
    db.execute(
        &Query::delete()
            .from_table("deliveries")
            .and_where(Expr::col("notification_id").in_subquery(notifications))
            .to_owned(),
    )
    .await?;
    let mut deletes = vec![
        in_cohort(
            Query::delete()
                .from_table("notifications")
                .and_where(Expr::col("user_id").eq(user_id))
                .to_owned(),
            "cohort_id",
        ),
        in_cohort(
            Query::delete()
                .from_table("cohort_members")
                .and_where(Expr::col("user_id").eq(user_id))
                .to_owned(),
            "cohort_id",
        ),
    ];
    let mut recipients = Query::delete();
    recipients
        .from_table("announcement_recipients")
        .and_where(Expr::col("user_id").eq(user_id));
    if let Some(cohort_id) = cohort_id {
        recipients.and_where(
            Expr::col("announcement_id").in_subquery(
                Query::select()
                    .column("id")
                    .from("announcements")
                    .and_where(Expr::col("cohort_id").eq(cohort_id))
                    .to_owned(),
            ),
        );
    }
    deletes.push(recipients.to_owned());
    for statement in deletes {
        db.execute(&statement).await?;
    }
    Ok(())
}

/// Cohorts the user is still a member of.
pub async fn remaining_cohorts(db: &impl ConnectionTrait, user_id: Uuid) -> Result<u64, DbErr> {
    let statement = Query::select()
        .expr_as(Expr::col("cohort_id").count(), "remaining")
        .from("cohort_members")
        .and_where(Expr::col("user_id").eq(user_id))
        .to_owned();
    let remaining: Option<i64> = db
        .query_one(&statement)
        .await?
        .map(|row| row.try_get("", "remaining"))
        .transpose()?;
    Ok(u64::try_from(remaining.unwrap_or(0)).unwrap_or(0))
}

/// Ends everything that lets the user's devices in and reach them, and empties the account:
/// devices are revoked and told to wipe (and lose their names; their refresh tokens, hashes
/// only, stay so that a refresh too answers `device_wiped`), link codes, push registrations,
/// replayed push answers and sync bookkeeping are deleted, the label of the
/// invite they redeemed (a trainer often writes the name there) is cleared, and the account
/// keeps only its id, role and provider, marked erased. Returns the ids of their devices.
pub async fn empty_account(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, DbErr> {
    let devices: Vec<Uuid> = db
        .query_all(
            &Query::select()
                .column("id")
                .from("devices")
                .and_where(Expr::col("user_id").eq(user_id))
                .to_owned(),
        )
        .await?
        .iter()
        .map(|row| row.try_get("", "id"))
        .collect::<Result<_, _>>()?;
    db.execute(
        &Query::update()
            .table("devices")
            .value("name", "")
            .value("revoked_at", Expr::col("revoked_at").if_null(now))
            .value(
                "wipe_requested_at",
                Expr::col("wipe_requested_at").if_null(now),
            )
            .and_where(Expr::col("user_id").eq(user_id))
            .to_owned(),
    )
    .await?;
    for table in [
        "device_link_codes",
        "push_devices",
        "sync_user_mutations",
        "sync_evictions",
        "sync_grants",
    ] {
        db.execute(
            &Query::delete()
                .from_table(table)
                .and_where(Expr::col("user_id").eq(user_id))
                .to_owned(),
        )
        .await?;
    }
    db.execute(
        &Query::update()
            .table("invites")
            .value("label", Option::<String>::None)
            .and_where(Expr::col("redeemed_by").eq(user_id))
            .to_owned(),
    )
    .await?;
    db.execute(
        &Query::update()
            .table("users")
            .value("display_name", "")
            .value("email", Option::<String>::None)
            .value("password_hash", Option::<String>::None)
            .value("erased_at", now)
            .and_where(Expr::col("id").eq(user_id))
            .to_owned(),
    )
    .await?;
    Ok(devices)
}

/// The refresh tokens (sessions) of a user's devices, oldest first: for their export.
pub async fn sessions_of(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> Result<Vec<super::entity::refresh_token::Model>, DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

    use super::entity::refresh_token;
    refresh_token::Entity::find()
        .filter(
            refresh_token::Column::DeviceId.in_subquery(
                Query::select()
                    .column("id")
                    .from("devices")
                    .and_where(Expr::col("user_id").eq(user_id))
                    .to_owned(),
            ),
        )
        .order_by_asc(refresh_token::Column::CreatedAt)
        .all(db)
        .await
}

/// Cohorts whose participant data has not been purged yet.
pub async fn unpurged_cohorts(
    db: &impl ConnectionTrait,
) -> Result<Vec<super::entity::cohort::Model>, DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    use super::entity::cohort;
    cohort::Entity::find()
        .filter(cohort::Column::PurgedAt.is_null())
        .all(db)
        .await
}

/// Marks a cohort's trainers as warned; false when another replica already did.
pub async fn mark_retention_warned(
    db: &impl ConnectionTrait,
    cohort_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let statement = Query::update()
        .table("cohorts")
        .value("retention_warned_at", now)
        .and_where(Expr::col("id").eq(cohort_id))
        .and_where(Expr::col("retention_warned_at").is_null())
        .to_owned();
    Ok(db.execute(&statement).await?.rows_affected() > 0)
}

/// Marks a cohort's participant data as purged, and clears its invites' labels (a trainer
/// often writes a participant's name there).
pub async fn mark_purged(
    db: &impl ConnectionTrait,
    cohort_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    db.execute(
        &Query::update()
            .table("invites")
            .value("label", Option::<String>::None)
            .and_where(Expr::col("cohort_id").eq(cohort_id))
            .to_owned(),
    )
    .await?;
    db.execute(
        &Query::update()
            .table("cohorts")
            .value("purged_at", now)
            .and_where(Expr::col("id").eq(cohort_id))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Participants with data in a cohort: its participant members, and anyone who owns a record
/// there (a participant removed from the cohort keeps their records).
pub async fn participants_with_data_in(
    db: &impl ConnectionTrait,
    cohort_id: Uuid,
    tables: &[&'static str],
) -> Result<Vec<Uuid>, DbErr> {
    let mut owners = std::collections::BTreeSet::new();
    let members = Query::select()
        .column("user_id")
        .from("cohort_members")
        .and_where(Expr::col("cohort_id").eq(cohort_id))
        .to_owned();
    for row in db.query_all(&members).await? {
        owners.insert(row.try_get::<Uuid>("", "user_id")?);
    }
    for table in tables {
        let statement = Query::select()
            .distinct()
            .column("owner_id")
            .from(*table)
            .and_where(Expr::col("cohort_id").eq(cohort_id))
            .to_owned();
        for row in db.query_all(&statement).await? {
            owners.insert(row.try_get::<Uuid>("", "owner_id")?);
        }
    }
    let owners: Vec<Uuid> = owners.into_iter().collect();
    if owners.is_empty() {
        return Ok(owners);
    }
    let participants = Query::select()
        .column("id")
        .from("users")
        .and_where(Expr::col("id").is_in(owners))
        .and_where(Expr::col("role").eq("participant"))
        .to_owned();
    db.query_all(&participants)
        .await?
        .iter()
        .map(|row| row.try_get("", "id"))
        .collect()
}
