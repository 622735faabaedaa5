//! The push outbox: device tokens, reminder rules, notifications and deliveries.
//!
//! Claims use `FOR UPDATE SKIP LOCKED` on PostgreSQL, so workers on several replicas never claim
//! the same row; SQLite has one writer at a time, where the clause is left out.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    sea_query::{CaseStatement, Expr, ExprTrait, LockBehavior, LockType, OnConflict, Query},
};
use serde_json::Value;
use uuid::Uuid;

use super::entity::{delivery, notification, push_device};

/// Registers (or re-registers) a device's token. A token moves with its app: any other device
/// row holding it is removed first.
pub async fn upsert_push_device(
    db: &impl ConnectionTrait,
    model: push_device::Model,
) -> Result<(), DbErr> {
    push_device::Entity::delete_many()
        .filter(push_device::Column::Token.eq(model.token.clone()))
        .filter(push_device::Column::DeviceId.ne(model.device_id))
        .exec(db)
        .await?;
    push_device::Entity::insert(model.into_active_model())
        .on_conflict(
            OnConflict::column(push_device::Column::DeviceId)
                .update_columns([
                    push_device::Column::Token,
                    push_device::Column::Platform,
                    push_device::Column::Locale,
                    push_device::Column::TimeZone,
                    push_device::Column::AppVersion,
                    push_device::Column::QuietHoursStart,
                    push_device::Column::QuietHoursEnd,
                    push_device::Column::LastSeenAt,
                    push_device::Column::DeactivatedAt,
                    push_device::Column::DeactivationReason,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await
        .map(drop)
}

pub async fn find_push_device(
    db: &impl ConnectionTrait,
    device_id: Uuid,
) -> Result<Option<push_device::Model>, DbErr> {
    push_device::Entity::find_by_id(device_id).one(db).await
}

pub async fn delete_push_device(db: &impl ConnectionTrait, device_id: Uuid) -> Result<(), DbErr> {
    push_device::Entity::delete_by_id(device_id)
        .exec(db)
        .await
        .map(drop)
}

/// Devices of these users that may still receive pushes: not deactivated, seen since `since`.
pub async fn reachable_devices(
    db: &impl ConnectionTrait,
    user_ids: &[Uuid],
    since: DateTime<Utc>,
) -> Result<Vec<push_device::Model>, DbErr> {
    push_device::Entity::find()
        .filter(super::id_in(db.get_database_backend(), "user_id", user_ids))
        .filter(push_device::Column::DeactivatedAt.is_null())
        .filter(push_device::Column::LastSeenAt.gte(since))
        .order_by_desc(push_device::Column::LastSeenAt)
        .all(db)
        .await
}

/// Marks a token dead (FCM said so); it gets nothing more.
pub async fn deactivate_token(
    db: &impl ConnectionTrait,
    token: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    push_device::Entity::update_many()
        .col_expr(push_device::Column::DeactivatedAt, Expr::value(now))
        .col_expr(push_device::Column::DeactivationReason, Expr::value(reason))
        .filter(push_device::Column::Token.eq(token))
        .exec(db)
        .await?;
    Ok(())
}

/// The reminder rules stored on a table row (`programmes` or `cohorts`), if any.
pub async fn reminder_rules(
    db: &impl ConnectionTrait,
    table: &'static str,
    id: Uuid,
) -> Result<Option<Value>, DbErr> {
    let statement = Query::select()
        .column("reminder_rules")
        .from(table)
        .and_where(Expr::col("id").eq(id))
        .to_owned();
    match db.query_one(&statement).await? {
        Some(row) => row.try_get::<Option<Value>>("", "reminder_rules"),
        None => Ok(None),
    }
}

pub async fn set_reminder_rules(
    db: &impl ConnectionTrait,
    table: &'static str,
    id: Uuid,
    rules: Option<Value>,
) -> Result<(), DbErr> {
    let statement = Query::update()
        .table(table)
        .value("reminder_rules", rules)
        .and_where(Expr::col("id").eq(id))
        .to_owned();
    db.execute(&statement).await.map(drop)
}

/// Notifications by their dedupe keys.
pub async fn notifications_by_key(
    db: &impl ConnectionTrait,
    keys: Vec<String>,
) -> Result<Vec<notification::Model>, DbErr> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    // Bounded IN lists: PostgreSQL takes at most 65,535 parameters.
    for chunk in keys.chunks(1_000) {
        found.extend(
            notification::Entity::find()
                .filter(notification::Column::DedupeKey.is_in(chunk.iter().cloned()))
                .all(db)
                .await?,
        );
    }
    Ok(found)
}

/// A cohort's notifications of one kind, by due time; only one participant's when `only` names
/// them (read through the participant's index, so it does not grow with the cohort).
pub async fn cohort_notifications(
    db: &impl ConnectionTrait,
    cohort_id: Uuid,
    kind: &str,
    only: Option<Uuid>,
) -> Result<Vec<notification::Model>, DbErr> {
    notification::Entity::find()
        .filter(notification::Column::CohortId.eq(cohort_id))
        .filter(notification::Column::Kind.eq(kind))
        .apply_if(only, |query, user_id| {
            query.filter(notification::Column::UserId.eq(user_id))
        })
        .order_by_asc(notification::Column::DueAt)
        .all(db)
        .await
}

/// Inserts notifications; an existing dedupe key is left as it is.
pub async fn insert_notifications(
    db: &impl ConnectionTrait,
    models: Vec<notification::Model>,
) -> Result<(), DbErr> {
    for chunk in models.chunks(500) {
        notification::Entity::insert_many(
            chunk
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model),
        )
        .on_conflict(
            OnConflict::column(notification::Column::DedupeKey)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

/// Moves a pending notification to a new time.
pub async fn reschedule_notification(
    db: &impl ConnectionTrait,
    id: Uuid,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    notification::Entity::update_many()
        .col_expr(notification::Column::DueAt, Expr::value(due_at))
        .col_expr(notification::Column::UpdatedAt, Expr::value(now))
        .filter(notification::Column::Id.eq(id))
        .filter(notification::Column::Status.eq("pending"))
        .exec(db)
        .await
        .map(drop)
}

/// Plans a cancelled notification again.
pub async fn revive_notification(
    db: &impl ConnectionTrait,
    id: Uuid,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    notification::Entity::update_many()
        .col_expr(notification::Column::Status, Expr::value("pending"))
        .col_expr(
            notification::Column::StatusReason,
            Expr::value(Option::<String>::None),
        )
        .col_expr(notification::Column::DueAt, Expr::value(due_at))
        .col_expr(notification::Column::UpdatedAt, Expr::value(now))
        .filter(notification::Column::Id.eq(id))
        .filter(notification::Column::Status.eq("cancelled"))
        .exec(db)
        .await
        .map(drop)
}

/// Sets the status of notifications that are still pending.
pub async fn finish_notifications(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
    status: &str,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    if ids.is_empty() {
        return Ok(0);
    }
    let result = notification::Entity::update_many()
        .col_expr(notification::Column::Status, Expr::value(status))
        .col_expr(notification::Column::StatusReason, Expr::value(reason))
        .col_expr(notification::Column::UpdatedAt, Expr::value(now))
        .filter(super::id_in(db.get_database_backend(), "id", ids))
        .filter(notification::Column::Status.eq("pending"))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Locks up to `limit` pending notifications due by `now` for this transaction.
pub async fn claim_due_notifications(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<notification::Model>, DbErr> {
    notification::Entity::find()
        .filter(notification::Column::Status.eq("pending"))
        .filter(notification::Column::DueAt.lte(now))
        .order_by_asc(notification::Column::DueAt)
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(db)
        .await
}

/// Inserts new deliveries (pending, unattempted, unleased); one per notification and device,
/// whatever happens twice.
pub async fn insert_deliveries(
    db: &impl ConnectionTrait,
    models: Vec<delivery::Model>,
) -> Result<(), DbErr> {
    if models.is_empty() {
        return Ok(());
    }
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        return insert_deliveries_unnest(db, &models).await;
    }
    // 1,000 rows of 17 columns stay under PostgreSQL's 65,535 parameters.
    for chunk in models.chunks(1_000) {
        delivery::Entity::insert_many(
            chunk
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model),
        )
        .on_conflict(
            OnConflict::columns([delivery::Column::NotificationId, delivery::Column::DeviceId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

/// [`insert_deliveries`] on PostgreSQL: one statement with an array per varying column, so a
/// batch of thousands is one short statement text (parsed and planned once) instead of a
/// `VALUES` list with 17 parameters a row (BENCHMARKS.md, "Push fan-out"). The columns every new
/// delivery shares are literals. The data goes as text, one JSON document each.
async fn insert_deliveries_unnest(
    db: &impl ConnectionTrait,
    models: &[delivery::Model],
) -> Result<(), DbErr> {
    let created_at = models[0].created_at;
    let mut ids = Vec::with_capacity(models.len());
    let mut notification_ids = Vec::with_capacity(models.len());
    let mut device_ids = Vec::with_capacity(models.len());
    let mut tokens = Vec::with_capacity(models.len());
    let mut titles = Vec::with_capacity(models.len());
    let mut bodies = Vec::with_capacity(models.len());
    let mut data = Vec::with_capacity(models.len());
    let mut next_attempts = Vec::with_capacity(models.len());
    for model in models {
        // What the statement writes as literals, and the one creation time it binds.
        debug_assert!(
            model.status == "pending"
                && model.attempts == 0
                && model.lease_until.is_none()
                && model.leased_by.is_none()
                && model.error_code.is_none()
                && model.error_message.is_none()
                && model.message_id.is_none()
                && model.sent_at.is_none()
                && model.created_at == created_at
        );
        ids.push(model.id);
        notification_ids.push(model.notification_id);
        device_ids.push(model.device_id);
        tokens.push(model.token.clone());
        titles.push(model.title.clone());
        bodies.push(model.body.clone());
        data.push(model.data.to_string());
        next_attempts.push(model.next_attempt_at);
    }
    let statement = sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "INSERT INTO deliveries (id, notification_id, device_id, token, status, title, body, \
         data, attempts, next_attempt_at, created_at) \
         SELECT id, notification_id, device_id, token, 'pending', title, body, data::json, 0, \
         next_attempt_at, $9 \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::timestamptz[]) \
         AS batch(id, notification_id, device_id, token, title, body, data, next_attempt_at) \
         ON CONFLICT (notification_id, device_id) DO NOTHING",
        [
            ids.into(),
            notification_ids.into(),
            device_ids.into(),
            tokens.into(),
            titles.into(),
            bodies.into(),
            data.into(),
            next_attempts.into(),
            created_at.into(),
        ],
    );
    db.execute_raw(statement).await.map(drop)
}

/// Leases up to `limit` deliveries that are due and not leased by a live worker.
pub async fn claim_deliveries(
    db: &impl ConnectionTrait,
    worker: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<delivery::Model>, DbErr> {
    let due = Query::select()
        .column("id")
        .from("deliveries")
        .and_where(Expr::col("status").eq("pending"))
        .and_where(Expr::col("next_attempt_at").lte(now))
        .and_where(
            Expr::col("lease_until")
                .is_null()
                .or(Expr::col("lease_until").lt(now)),
        )
        // A device whose earlier message waits for its retry (FCM said how long, or we back
        // off) gets nothing else before it: the wait holds for the device.
        .and_where(
            Expr::col("token").not_in_subquery(
                Query::select()
                    .column("token")
                    .from("deliveries")
                    .and_where(Expr::col("status").eq("pending"))
                    .and_where(Expr::col("next_attempt_at").gt(now))
                    .and_where(Expr::col("error_code").is_not_null())
                    .to_owned(),
            ),
        )
        .order_by("next_attempt_at", sea_orm::sea_query::Order::Asc)
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .to_owned();
    let claim = Query::update()
        .table("deliveries")
        .value("leased_by", worker)
        .value("lease_until", lease_until)
        .and_where(Expr::col("id").in_subquery(due))
        .returning_all()
        .to_owned();
    db.query_all(&claim)
        .await?
        .iter()
        .map(|row| delivery::Model::from_query_result(row, ""))
        .collect()
}

/// Marks leased deliveries as being sent now. From here a crash leaves them `unknown`, never
/// sent twice.
pub async fn mark_sending(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
    worker: &str,
) -> Result<(), DbErr> {
    delivery::Entity::update_many()
        .col_expr(delivery::Column::Status, Expr::value("sending"))
        .filter(super::id_in(db.get_database_backend(), "id", ids))
        .filter(delivery::Column::LeasedBy.eq(worker))
        .exec(db)
        .await
        .map(drop)
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    pub id: Uuid,
    pub status: &'static str,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub message_id: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

pub async fn record_delivery(
    db: &impl ConnectionTrait,
    update: &DeliveryUpdate,
) -> Result<(), DbErr> {
    delivery::Entity::update_many()
        .col_expr(delivery::Column::Status, Expr::value(update.status))
        .col_expr(delivery::Column::Attempts, Expr::value(update.attempts))
        .col_expr(
            delivery::Column::NextAttemptAt,
            Expr::value(update.next_attempt_at),
        )
        .col_expr(
            delivery::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            delivery::Column::LeasedBy,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            delivery::Column::ErrorCode,
            Expr::value(update.error_code.clone()),
        )
        .col_expr(
            delivery::Column::ErrorMessage,
            Expr::value(update.error_message.clone()),
        )
        .col_expr(
            delivery::Column::MessageId,
            Expr::value(update.message_id.clone()),
        )
        .col_expr(delivery::Column::SentAt, Expr::value(update.sent_at))
        .filter(delivery::Column::Id.eq(update.id))
        .exec(db)
        .await
        .map(drop)
}

/// Records many successful sends in one statement (each with its own FCM message id): a fan-out
/// to thousands of devices must not cost a round trip per device.
pub async fn record_sent(
    db: &impl ConnectionTrait,
    sent: &[(Uuid, String)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if sent.is_empty() {
        return Ok(());
    }
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        // Two array parameters and one statement text, whatever the batch size: planned once.
        let ids: Vec<Uuid> = sent.iter().map(|(id, _)| *id).collect();
        let message_ids: Vec<String> = sent
            .iter()
            .map(|(_, message_id)| message_id.clone())
            .collect();
        let statement = sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, sent_at = $1, \
             next_attempt_at = $1, lease_until = NULL, leased_by = NULL, error_code = NULL, \
             error_message = NULL, message_id = batch.message_id \
             FROM UNNEST($2::uuid[], $3::text[]) AS batch(id, message_id) \
             WHERE deliveries.id = batch.id",
            [now.into(), ids.into(), message_ids.into()],
        );
        db.execute_raw(statement).await?;
        return Ok(());
    }
    for chunk in sent.chunks(500) {
        let mut message_ids = CaseStatement::new();
        for (id, message_id) in chunk {
            message_ids = message_ids.case(Expr::col("id").eq(*id), Expr::val(message_id.as_str()));
        }
        let statement = Query::update()
            .table("deliveries")
            .value("status", "sent")
            .value("attempts", Expr::col("attempts").add(1))
            .value("sent_at", now)
            .value("next_attempt_at", now)
            .value("lease_until", Option::<DateTime<Utc>>::None)
            .value("leased_by", Option::<String>::None)
            .value("error_code", Option::<String>::None)
            .value("error_message", Option::<String>::None)
            .value("message_id", message_ids)
            .and_where(Expr::col("id").is_in(chunk.iter().map(|(id, _)| *id)))
            .to_owned();
        db.execute(&statement).await?;
    }
    Ok(())
}

/// Deliveries left `sending` by a worker that died: they may have gone out, so they are marked
/// `unknown` rather than sent again.
pub async fn reap_interrupted(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let result = delivery::Entity::update_many()
        .col_expr(delivery::Column::Status, Expr::value("unknown"))
        .col_expr(
            delivery::Column::ErrorMessage,
            Expr::value("the sending worker stopped mid-send; not resent, to avoid a duplicate"),
        )
        .filter(delivery::Column::Status.eq("sending"))
        .filter(delivery::Column::LeaseUntil.lt(now))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Other pending deliveries to a dead token are pruned too.
pub async fn prune_token_deliveries(
    db: &impl ConnectionTrait,
    token: &str,
    code: &str,
) -> Result<(), DbErr> {
    delivery::Entity::update_many()
        .col_expr(delivery::Column::Status, Expr::value("pruned"))
        .col_expr(delivery::Column::ErrorCode, Expr::value(code))
        .filter(delivery::Column::Token.eq(token))
        .filter(delivery::Column::Status.eq("pending"))
        .exec(db)
        .await
        .map(drop)
}

/// Pending deliveries, and how long the most overdue one has waited, in seconds.
pub async fn outbox_backlog(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> Result<(u64, f64), DbErr> {
    use sea_orm::PaginatorTrait;
    let pending = delivery::Entity::find()
        .filter(delivery::Column::Status.eq("pending"))
        .count(db)
        .await?;
    let oldest = delivery::Entity::find()
        .filter(delivery::Column::Status.eq("pending"))
        .filter(delivery::Column::NextAttemptAt.lte(now))
        .order_by_asc(delivery::Column::NextAttemptAt)
        .one(db)
        .await?;
    let lag = oldest.map_or(0.0, |d| {
        Ord::max((now - d.next_attempt_at).num_milliseconds(), 0) as f64 / 1000.0
    });
    Ok((pending, lag))
}

/// Deliveries of some notifications.
pub async fn deliveries_of(
    db: &impl ConnectionTrait,
    notification_ids: &[Uuid],
) -> Result<Vec<delivery::Model>, DbErr> {
    let mut found = Vec::new();
    for chunk in notification_ids.chunks(1_000) {
        found.extend(
            delivery::Entity::find()
                .filter(delivery::Column::NotificationId.is_in(chunk.iter().copied()))
                .all(db)
                .await?,
        );
    }
    Ok(found)
}

/// Notifications by id.
pub async fn find_notifications(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<Vec<notification::Model>, DbErr> {
    notification::Entity::find()
        .filter(super::id_in(db.get_database_backend(), "id", ids))
        .all(db)
        .await
}

/// Notifications made for an announcement.
pub async fn announcement_notifications(
    db: &impl ConnectionTrait,
    announcement_ids: &[Uuid],
) -> Result<Vec<notification::Model>, DbErr> {
    notification::Entity::find()
        .filter(notification::Column::AnnouncementId.is_in(announcement_ids.iter().copied()))
        .all(db)
        .await
}
