//! Attachments: resumable upload of their bytes, download, and collecting the bytes of deleted
//! ones. The attachment record itself is created and deleted through sync (see
//! `veldwerk_sync_protocol::schema::ATTACHMENTS`); this module handles what sync does not carry.
//!
//! Upload: the app asks for the offset the server has (`received`), sends chunks from there,
//! and finishes. Each chunk becomes a part object; the offset moves only if it still is where the
//! chunk started, so two requests racing for one attachment cannot interleave. Finishing
//! assembles the parts into one object while hashing them and compares size and SHA-256 with the
//! record: a match makes the record `stored` (a synced change), a mismatch discards the bytes so
//! the app can upload again.
//!
//! Access follows the record the attachment belongs to: its owner (who alone uploads), the
//! counterpart of a shared feedback exercise, and the cohort's trainers and admins. Anyone else
//! gets "not found", whatever the id.

use std::{collections::BTreeMap, ops::Range, time::Duration};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_sync_protocol::schema::{
    ATTACHMENT_PENDING, ATTACHMENT_STATE_FIELD, ATTACHMENT_STORED, ATTACHMENTS, FEEDBACK_EXERCISES,
    PARENT_COLLECTION_FIELD, PARENT_ID_FIELD,
};

use super::{Actor, Error, Result, Role, Services};
use crate::store::{
    attachments as store,
    blobs::BlobError,
    sync::{self as records, StoredRecord},
};

/// A finish older than this is presumed abandoned (its process died) and may be taken over.
const FINISH_TAKEOVER: Duration = Duration::from_secs(600);

/// What the API shows of an attachment.
#[derive(Debug, Clone, Serialize)]
pub struct AttachmentView {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub cohort_id: Uuid,
    pub parent_collection: Value,
    pub parent_id: Value,
    pub file_name: Value,
    pub content_type: Value,
    pub size: i64,
    pub sha256: Value,
    /// `pending` until the bytes arrived whole and verified, then `stored`.
    pub state: String,
    /// Bytes the server has: where the next chunk starts.
    pub received: i64,
}

/// What a chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// The server now has this many bytes (the chunk, or the part of it that was new, is kept).
    Received(i64),
    /// The chunk starts after what the server has: send from this offset instead.
    Gap(i64),
}

/// An open download: the bytes of `range` out of `size`.
pub struct Download {
    pub view: AttachmentView,
    pub range: Range<u64>,
    pub size: u64,
    pub body: Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("id", &self.view.id)
            .field("range", &self.range)
            .finish()
    }
}

impl From<BlobError> for Error {
    fn from(err: BlobError) -> Self {
        Error::Internal(anyhow::Error::new(err).context("attachment storage failed"))
    }
}

/// How the caller may use an attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Its owner: may upload.
    Owner,
    /// The counterpart of a shared feedback exercise, or staff of the cohort: may read.
    Reader,
}

impl Services {
    /// The attachment's metadata and upload progress.
    pub async fn attachment(&self, actor: &Actor, id: Uuid) -> Result<AttachmentView> {
        let (record, _) = self.attachment_access(actor, id).await?;
        self.view(&record).await
    }

    /// Stores a chunk of the attachment's bytes that starts at `offset`. A chunk (or the start
    /// of one) the server already has is skipped, so resending is harmless.
    pub async fn upload_chunk(
        &self,
        actor: &Actor,
        id: Uuid,
        offset: i64,
        chunk: Bytes,
    ) -> Result<ChunkOutcome> {
        let (record, access) = self.attachment_access(actor, id).await?;
        if access != Access::Owner {
            return Err(Error::Forbidden(
                "only the attachment's owner uploads it".into(),
            ));
        }
        let size = declared_size(&record);
        let now = Utc::now();
        store::ensure_upload(&self.db, id, now).await?;
        let upload = store::find_upload(&self.db, id).await?.unwrap_or_default();
        if upload.stored_at.is_some() {
            return Ok(ChunkOutcome::Received(size));
        }
        if upload.finishing_at.is_some() {
            return Err(Error::conflict(
                "finish_in_progress",
                "the upload is being finished; ask for its state in a moment",
            ));
        }
        if offset < 0 || offset > upload.received {
            return Ok(ChunkOutcome::Gap(upload.received));
        }
        let already = usize::try_from(upload.received - offset).unwrap_or(usize::MAX);
        let new = chunk.slice(already.min(chunk.len())..);
        if new.is_empty() {
            return Ok(ChunkOutcome::Received(upload.received));
        }
        let end = upload.received + new.len() as i64;
        if end > size {
            return Err(Error::Invalid {
                code: "size_exceeded",
                message: format!(
                    "the attachment was declared with {size} bytes; this chunk would make it {end}"
                ),
                details: Some(json!({ "size": size, "received": upload.received })),
            });
        }
        let key = self.blobs.put_part(id, upload.received, new).await?;
        if store::append_part(&self.db, id, upload.received, end, &key, now).await? {
            return Ok(ChunkOutcome::Received(end));
        }
        // Another request moved the offset first: ours is not needed.
        self.blobs.delete_parts(&[key]).await?;
        let current = store::find_upload(&self.db, id).await?.unwrap_or_default();
        if current.stored_at.is_some() {
            Ok(ChunkOutcome::Received(size))
        } else if offset + chunk.len() as i64 <= current.received {
            Ok(ChunkOutcome::Received(current.received))
        } else {
            Ok(ChunkOutcome::Gap(current.received))
        }
    }

    /// Verifies the uploaded bytes against the record's size and SHA-256 and, when they match,
    /// marks the attachment `stored`. Finishing a stored attachment again answers the same.
    pub async fn finish_upload(&self, actor: &Actor, id: Uuid) -> Result<AttachmentView> {
        let (record, access) = self.attachment_access(actor, id).await?;
        if access != Access::Owner {
            return Err(Error::Forbidden(
                "only the attachment's owner uploads it".into(),
            ));
        }
        let size = declared_size(&record);
        let upload = store::find_upload(&self.db, id).await?.unwrap_or_default();
        if upload.stored_at.is_some() {
            self.mark_stored(&record).await?;
            return self.view(&record).await;
        }
        if upload.received < size {
            return Err(Error::Invalid {
                code: "upload_incomplete",
                message: format!(
                    "the server has {} of {size} bytes; send the rest first",
                    upload.received
                ),
                details: Some(json!({ "size": size, "received": upload.received })),
            });
        }
        let now = Utc::now();
        let stale = now - chrono::Duration::from_std(FINISH_TAKEOVER).unwrap_or_default();
        if !store::claim_finish(&self.db, id, now, stale).await? {
            let current = store::find_upload(&self.db, id).await?.unwrap_or_default();
            if current.stored_at.is_some() {
                return self.view(&record).await;
            }
            return Err(Error::conflict(
                "finish_in_progress",
                "the upload is being finished; ask for its state in a moment",
            ));
        }
        let parts = store::parts(&self.db, id).await?;
        let (length, digest) = match self.blobs.assemble(id, &parts).await {
            Ok(result) => result,
            Err(err) => {
                store::release_finish(&self.db, id).await?;
                return Err(err.into());
            }
        };
        let expected = record.value("sha256").as_str().unwrap_or_default();
        if length != size || digest != expected {
            self.blobs.delete_blob(id).await?;
            let keys = store::end_finish(&self.db, id, false, Utc::now()).await?;
            self.blobs.delete_parts(&keys).await?;
            return Err(Error::Invalid {
                code: "hash_mismatch",
                message: format!(
                    "the uploaded bytes ({length} bytes, SHA-256 {digest}) do not match the \
                     attachment ({size} bytes, SHA-256 {expected}); they were discarded, upload \
                     the file again from offset 0"
                ),
                details: Some(json!({ "received_sha256": digest, "received_size": length })),
            });
        }
        let keys = store::end_finish(&self.db, id, true, Utc::now()).await?;
        self.blobs.delete_parts(&keys).await?;
        self.mark_stored(&record).await?;
        self.view(&record).await
    }

    /// Opens the stored bytes, all or a `range` (already resolved against the size).
    pub async fn download(
        &self,
        actor: &Actor,
        id: Uuid,
        range: impl FnOnce(u64) -> Result<Option<Range<u64>>>,
    ) -> Result<Download> {
        let (record, _) = self.attachment_access(actor, id).await?;
        let view = self.view(&record).await?;
        if view.state != ATTACHMENT_STORED {
            return Err(Error::conflict(
                "not_uploaded",
                "the attachment's bytes have not been uploaded yet",
            ));
        }
        let size = u64::try_from(view.size).unwrap_or(0);
        let range = range(size)?;
        let served = range.clone().unwrap_or(0..size);
        let body = self.blobs.read(id, range).await?;
        Ok(Download {
            view,
            range: served,
            size,
            body: Box::new(Box::pin(body)),
        })
    }

    /// Removes the bytes of attachments deleted before `cutoff` (or whose record is gone);
    /// returns how many were collected. See `jobs::attachments`.
    pub async fn collect_attachments(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        let mut collected = 0;
        loop {
            let batch = store::collectable(&self.db, cutoff, 100).await?;
            if batch.is_empty() {
                return Ok(collected);
            }
            for id in batch {
                let keys: Vec<String> = store::parts(&self.db, id)
                    .await?
                    .into_iter()
                    .map(|(_, key)| key)
                    .collect();
                self.blobs.delete_parts(&keys).await?;
                self.blobs.delete_blob(id).await?;
                store::mark_collected(&self.db, id, Utc::now()).await?;
                collected += 1;
            }
        }
    }

    /// The attachment storage, for tests and audits.
    pub fn blobs(&self) -> &crate::store::blobs::BlobStore {
        &self.blobs
    }

    async fn attachment_access(&self, actor: &Actor, id: Uuid) -> Result<(StoredRecord, Access)> {
        let not_found = Error::NotFound("attachment");
        let record = records::find_records(&self.db, &ATTACHMENTS, &[id])
            .await?
            .pop()
            .filter(|record| !record.is_deleted())
            .ok_or(not_found)?;
        if record.owner_id == actor.user_id {
            return Ok((record, Access::Owner));
        }
        let readable = match actor.role {
            Role::Trainer | Role::Admin => {
                let (_, staff) = self.sync_scope(actor).await?;
                staff.contains(&record.cohort_id)
            }
            Role::Participant => self.shared_with(&record).await? == Some(actor.user_id),
        };
        if readable {
            Ok((record, Access::Reader))
        } else {
            Err(Error::NotFound("attachment"))
        }
    }

    /// The counterpart who sees the attachment's feedback exercise, if it is one and shared.
    async fn shared_with(&self, record: &StoredRecord) -> Result<Option<Uuid>> {
        if record.value(PARENT_COLLECTION_FIELD).as_str() != Some(FEEDBACK_EXERCISES.name) {
            return Ok(None);
        }
        let Some(parent_id) = record
            .value(PARENT_ID_FIELD)
            .as_str()
            .and_then(|id| id.parse().ok())
        else {
            return Ok(None);
        };
        let parent = records::find_records(&self.db, &FEEDBACK_EXERCISES, &[parent_id])
            .await?
            .pop();
        Ok(parent.and_then(|parent| super::sync::shared_counterpart(&parent)))
    }

    async fn mark_stored(&self, record: &StoredRecord) -> Result<()> {
        if record.value(ATTACHMENT_STATE_FIELD).as_str() == Some(ATTACHMENT_STORED) {
            return Ok(());
        }
        let counterpart: Vec<Uuid> = self.shared_with(record).await?.into_iter().collect();
        let fields = BTreeMap::from([(
            ATTACHMENT_STATE_FIELD.to_owned(),
            Value::from(ATTACHMENT_STORED),
        )]);
        self.write_as_server(&ATTACHMENTS, record.id, fields, &counterpart)
            .await
    }

    async fn view(&self, record: &StoredRecord) -> Result<AttachmentView> {
        let upload = store::find_upload(&self.db, record.id).await?;
        let stored = upload.as_ref().is_some_and(|u| u.stored_at.is_some());
        let size = declared_size(record);
        Ok(AttachmentView {
            id: record.id,
            owner_id: record.owner_id,
            cohort_id: record.cohort_id,
            parent_collection: record.value(PARENT_COLLECTION_FIELD).clone(),
            parent_id: record.value(PARENT_ID_FIELD).clone(),
            file_name: record.value("file_name").clone(),
            content_type: record.value("content_type").clone(),
            size,
            sha256: record.value("sha256").clone(),
            state: if stored {
                ATTACHMENT_STORED
            } else {
                ATTACHMENT_PENDING
            }
            .to_owned(),
            received: if stored {
                size
            } else {
                upload.map_or(0, |u| u.received)
            },
        })
    }
}

fn declared_size(record: &StoredRecord) -> i64 {
    record.value("size").as_i64().unwrap_or(0)
}
