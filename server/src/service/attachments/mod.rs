//! Attachments: resumable upload of their bytes, download, and collecting the bytes of deleted
//! ones. The attachment record itself is created and deleted through sync (see
//! `veldwerk_sync_protocol::schema::ATTACHMENTS`); this module handles what sync does not carry.
//!
//! Upload ([`upload`]): the app asks for the offset the server has (`received`) and sends bytes
//! from there, in as many requests as it likes (tus 1.0 core). Finishing, which happens by itself
//! when the last byte arrives, assembles the parts into one object while hashing them and
//! compares size and SHA-256 with the record: a match makes the record `stored` (a synced
//! change), a mismatch discards the bytes so the app can upload again. Collecting ([`collect`])
//! removes the bytes of deleted attachments and parts that no upload needs any more.
//!
//! Access follows the record the attachment belongs to: its owner (who alone uploads), the
//! counterpart of a shared feedback exercise, and the cohort's trainers and admins. Anyone else
//! gets "not found", whatever the id.

mod collect;
mod upload;

use std::{collections::BTreeMap, ops::Range};

use bytes::Bytes;
use futures_util::Stream;
use serde::Serialize;
use serde_json::Value;
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

pub use self::upload::{Chunk, ChunkOutcome};

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
