//! Attachment uploads: how many bytes arrived, the parts they are in, finishing and collecting.
//! The attachment records themselves are sync records (`store::sync`); the bytes are in
//! [`super::blobs`].

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr,
    sea_query::{Alias, Expr, ExprTrait, JoinType, OnConflict, Order, Query},
};
use uuid::Uuid;

/// Progress of one attachment's upload.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    /// Bytes received from the start; the next chunk starts here.
    pub received: i64,
    pub finishing_at: Option<DateTime<Utc>>,
    pub stored_at: Option<DateTime<Utc>>,
    /// Set when the bytes of a deleted attachment were removed.
    pub collected_at: Option<DateTime<Utc>>,
}

/// The upload's progress; an upload that never received a byte has none.
pub async fn find_upload(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Upload>, DbErr> {
    let statement = Query::select()
        .columns(["received", "finishing_at", "stored_at", "collected_at"])
        .from("attachment_uploads")
        .and_where(Expr::col("attachment_id").eq(id))
        .to_owned();
    db.query_one(&statement)
        .await?
        .map(|row| {
            Ok(Upload {
                received: row.try_get("", "received")?,
                finishing_at: row.try_get("", "finishing_at")?,
                stored_at: row.try_get("", "stored_at")?,
                collected_at: row.try_get("", "collected_at")?,
            })
        })
        .transpose()
}

/// Creates the upload row at offset 0 unless it exists.
pub async fn ensure_upload(
    db: &impl ConnectionTrait,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let statement = Query::insert()
        .into_table("attachment_uploads")
        .columns(["attachment_id", "received", "updated_at"])
        .values_panic([id.into(), 0i64.into(), now.into()])
        .on_conflict(OnConflict::column("attachment_id").do_nothing().to_owned())
        .to_owned();
    match db.execute(&statement).await {
        Ok(_) | Err(DbErr::RecordNotInserted) => Ok(()),
        Err(err) => Err(err),
    }
}

/// A part object holding the upload's bytes from `first_byte`, `length` long.
#[derive(Debug, Clone)]
pub struct Part {
    pub first_byte: i64,
    pub length: i64,
    pub key: String,
}

/// Records consecutive parts in one transaction if the upload is still at the first part's
/// start: true when they were recorded (and the offset moved past them), false when another
/// request moved the offset first, or the upload is being finished or is stored. The offset and
/// the parts that hold its bytes never disagree, whatever stops the caller.
pub async fn append_parts(
    db: &DatabaseConnection,
    id: Uuid,
    parts: &[Part],
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return Ok(true);
    };
    let txn = super::begin_write(db).await?;
    let advance = Query::update()
        .table("attachment_uploads")
        .value("received", last.first_byte + last.length)
        .value("updated_at", now)
        .and_where(Expr::col("attachment_id").eq(id))
        .and_where(Expr::col("received").eq(first.first_byte))
        .and_where(Expr::col("stored_at").is_null())
        .and_where(Expr::col("finishing_at").is_null())
        .to_owned();
    if txn.execute(&advance).await?.rows_affected() != 1 {
        return Ok(false);
    }
    let mut insert = Query::insert();
    insert.into_table("attachment_parts").columns([
        "attachment_id",
        "first_byte",
        "length",
        "object_key",
    ]);
    for part in parts {
        insert.values_panic([
            id.into(),
            part.first_byte.into(),
            part.length.into(),
            part.key.as_str().into(),
        ]);
    }
    txn.execute(&insert).await?;
    txn.commit().await?;
    Ok(true)
}

/// Keeps a running finish's claim fresh, so no other process takes it over.
pub async fn touch_finish(
    db: &impl ConnectionTrait,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let statement = Query::update()
        .table("attachment_uploads")
        .value("finishing_at", now)
        .and_where(Expr::col("attachment_id").eq(id))
        .and_where(Expr::col("finishing_at").is_not_null())
        .to_owned();
    db.execute(&statement).await?;
    Ok(())
}

/// The parts of an upload in file order: (first byte, object key).
pub async fn parts(db: &impl ConnectionTrait, id: Uuid) -> Result<Vec<(i64, String)>, DbErr> {
    let statement = Query::select()
        .columns(["first_byte", "object_key"])
        .from("attachment_parts")
        .and_where(Expr::col("attachment_id").eq(id))
        .order_by("first_byte", Order::Asc)
        .to_owned();
    db.query_all(&statement)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("", "first_byte")?,
                row.try_get("", "object_key")?,
            ))
        })
        .collect()
}

/// Takes the right to finish: no other finish runs (or the one that did is older than
/// `stale_before`, its process presumably gone) and the upload is not stored yet.
pub async fn claim_finish(
    db: &impl ConnectionTrait,
    id: Uuid,
    now: DateTime<Utc>,
    stale_before: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let statement = Query::update()
        .table("attachment_uploads")
        .value("finishing_at", now)
        .and_where(Expr::col("attachment_id").eq(id))
        .and_where(Expr::col("stored_at").is_null())
        .and_where(
            Expr::col("finishing_at")
                .is_null()
                .or(Expr::col("finishing_at").lt(stale_before)),
        )
        .to_owned();
    Ok(db.execute(&statement).await?.rows_affected() == 1)
}

/// Ends a finish: stored (the parts are no longer needed) or reset to offset 0 after a
/// corrupt result. Forgets the parts; their objects are the caller's to remove.
pub async fn end_finish(
    db: &impl ConnectionTrait,
    id: Uuid,
    stored: bool,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let mut update = Query::update();
    update
        .table("attachment_uploads")
        .value("finishing_at", Option::<DateTime<Utc>>::None)
        .value("updated_at", now)
        .and_where(Expr::col("attachment_id").eq(id));
    if stored {
        update.value("stored_at", now);
    } else {
        update.value("received", 0i64);
    }
    db.execute(&update).await?;
    delete_parts(db, id).await
}

/// Gives up a finish that failed on storage, leaving the upload as it was.
pub async fn release_finish(db: &impl ConnectionTrait, id: Uuid) -> Result<(), DbErr> {
    let statement = Query::update()
        .table("attachment_uploads")
        .value("finishing_at", Option::<DateTime<Utc>>::None)
        .and_where(Expr::col("attachment_id").eq(id))
        .to_owned();
    db.execute(&statement).await?;
    Ok(())
}

async fn delete_parts(db: &impl ConnectionTrait, id: Uuid) -> Result<(), DbErr> {
    let statement = Query::delete()
        .from_table("attachment_parts")
        .and_where(Expr::col("attachment_id").eq(id))
        .to_owned();
    db.execute(&statement).await?;
    Ok(())
}

/// Total declared size of a participant's attachments that are not deleted.
pub async fn usage(db: &impl ConnectionTrait, owner_id: Uuid) -> Result<i64, DbErr> {
    let statement = Query::select()
        .expr_as(
            Expr::col("size").sum().cast_as(Alias::new("bigint")),
            Alias::new("total"),
        )
        .from("attachments")
        .and_where(Expr::col("owner_id").eq(owner_id))
        .and_where(Expr::col("deleted").eq(false))
        .to_owned();
    let total: Option<i64> = db
        .query_one(&statement)
        .await?
        .map(|row| row.try_get("", "total"))
        .transpose()?
        .flatten();
    Ok(total.unwrap_or(0))
}

/// Uploads whose bytes may go: their attachment was deleted before `cutoff`, or its record is
/// gone altogether (tombstone purged).
pub async fn collectable(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Uuid>, DbErr> {
    let statement = Query::select()
        .column((Alias::new("u"), Alias::new("attachment_id")))
        .from_as("attachment_uploads", Alias::new("u"))
        .join_as(
            JoinType::LeftJoin,
            "attachments",
            Alias::new("a"),
            Expr::col((Alias::new("a"), Alias::new("id")))
                .equals((Alias::new("u"), Alias::new("attachment_id"))),
        )
        .and_where(Expr::col((Alias::new("u"), Alias::new("collected_at"))).is_null())
        .and_where(
            Expr::col((Alias::new("a"), Alias::new("id")))
                .is_null()
                .or(Expr::col((Alias::new("a"), Alias::new("deleted")))
                    .eq(true)
                    .and(Expr::col((Alias::new("a"), Alias::new("updated_at"))).lt(cutoff))),
        )
        .limit(limit)
        .to_owned();
    db.query_all(&statement)
        .await?
        .iter()
        .map(|row| row.try_get("", "attachment_id"))
        .collect()
}

/// Marks an upload's bytes as removed and forgets its parts.
pub async fn mark_collected(
    db: &impl ConnectionTrait,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let statement = Query::update()
        .table("attachment_uploads")
        .value("collected_at", now)
        .value("updated_at", now)
        .and_where(Expr::col("attachment_id").eq(id))
        .to_owned();
    db.execute(&statement).await?;
    delete_parts(db, id).await
}

/// Attachments (not deleted) of these parent records.
pub async fn live_attachments_of(
    db: &impl ConnectionTrait,
    parent_ids: &[Uuid],
) -> Result<Vec<Uuid>, DbErr> {
    if parent_ids.is_empty() {
        return Ok(Vec::new());
    }
    let statement = Query::select()
        .column("id")
        .from("attachments")
        .and_where(Expr::col("parent_id").is_in(parent_ids.iter().copied()))
        .and_where(Expr::col("deleted").eq(false))
        .to_owned();
    db.query_all(&statement)
        .await?
        .iter()
        .map(|row| row.try_get("", "id"))
        .collect()
}
