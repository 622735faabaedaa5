//! Receiving an attachment's bytes and finishing the upload.
//!
//! A request's body is read as a stream and stored in parts of at most
//! `attachments.part_bytes` (so memory stays bounded however large the request), each part an
//! object of its own. Recording a part and moving the offset past it happen in one transaction,
//! and only if the offset is still where the part starts, so two requests racing for one
//! attachment cannot interleave and the offset never claims bytes that no recorded part holds.
//!
//! The work runs detached from the request: once the client has sent its bytes, what the server
//! does with them does not depend on the client waiting for the answer (a phone on a train closes
//! the connection right after the body more often than one would think). The same holds for
//! finishing, which happens by itself when the last byte arrives, and which a repeated request
//! joins instead of being refused.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use futures_util::{StreamExt, stream::BoxStream};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Access, declared_size};
use crate::{
    service::{Actor, Error, Result, Services},
    store::{
        attachments::{self as store, Part},
        blobs::BlobError,
        sync::StoredRecord,
    },
};

/// A finish whose claim was not refreshed for this long is presumed dead (its process died) and
/// may be taken over.
const FINISH_TAKEOVER: Duration = Duration::from_secs(30);
/// How often a running finish refreshes its claim.
const FINISH_HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a request waits for a finish that another request started, before answering 409.
const FINISH_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting request looks again.
const FINISH_POLL: Duration = Duration::from_millis(100);

/// The bytes one request carries for an attachment.
pub struct Chunk {
    /// Where the body starts in the file (`Upload-Offset`).
    pub offset: i64,
    /// How many bytes the request says it carries (`Content-Length`), when it says.
    pub length: Option<i64>,
    /// The SHA-256 the whole body must have (tus `Upload-Checksum`): then nothing of it is kept
    /// unless it arrives whole and matches.
    pub checksum: Option<[u8; 32]>,
    /// The body; an error item means it was cut short.
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("offset", &self.offset)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

/// What a request's bytes did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// The server now has this many bytes (the body, or the part of it that was new, is kept;
    /// when that completed the file, it was verified and stored).
    Received(i64),
    /// The body starts after what the server has: send from this offset instead.
    Gap(i64),
    /// The body ended before it was complete (the connection broke). What arrived is kept
    /// (unless a checksum was asked for); the server has this many bytes.
    Interrupted(i64),
    /// The body does not match its checksum: none of it was kept; the server has this many bytes.
    ChecksumMismatch(i64),
}

impl Services {
    /// Receives bytes of the attachment starting at `chunk.offset`. Bytes the server already
    /// has are skipped, so resending is harmless. When the last byte arrives the upload is
    /// finished at once (see [`Services::finish_upload`]).
    pub async fn upload_chunk(
        &self,
        actor: &Actor,
        id: Uuid,
        chunk: Chunk,
    ) -> Result<ChunkOutcome> {
        let (record, access) = self.attachment_access(actor, id).await?;
        if access != Access::Owner {
            return Err(Error::Forbidden(
                "only the attachment's owner uploads it".into(),
            ));
        }
        self.detached(move |services| async move { services.receive(&record, chunk).await })
            .await
    }

    /// Verifies the uploaded bytes against the record's size and SHA-256 and, when they match,
    /// marks the attachment `stored`. Finishing a stored attachment again answers the same; a
    /// finish already running (the last chunk's, say) is waited for.
    pub async fn finish_upload(&self, actor: &Actor, id: Uuid) -> Result<super::AttachmentView> {
        let (record, access) = self.attachment_access(actor, id).await?;
        if access != Access::Owner {
            return Err(Error::Forbidden(
                "only the attachment's owner uploads it".into(),
            ));
        }
        self.detached(move |services| async move {
            services.complete(&record).await?;
            services.view(&record).await
        })
        .await
    }

    /// Runs `work` to its end on its own task, even if the request that asked for it goes away.
    async fn detached<T, F>(&self, work: impl FnOnce(Services) -> F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        use tracing::Instrument;
        tokio::spawn(work(self.clone()).in_current_span())
            .await
            .map_err(|err| {
                Error::Internal(anyhow::Error::new(err).context("Failed to run upload work"))
            })?
    }

    async fn receive(&self, record: &StoredRecord, chunk: Chunk) -> Result<ChunkOutcome> {
        let id = record.id;
        let size = declared_size(record);
        let Chunk {
            offset,
            length,
            checksum,
            mut body,
        } = chunk;
        if let Some(length) = length
            && offset.saturating_add(length) > size
        {
            return Err(size_exceeded(size, offset.saturating_add(length)));
        }
        store::ensure_upload(&self.db, id, Utc::now()).await?;
        let upload = store::find_upload(&self.db, id).await?.unwrap_or_default();
        if upload.stored_at.is_some() || upload.finishing_at.is_some() || offset > upload.received {
            // Answered without the body, which is read all the same (up to the file's size): a
            // connection closed under a body still being sent can lose the answer.
            drain(&mut body, size).await;
        }
        if upload.stored_at.is_some() {
            self.mark_stored(record).await?;
            return Ok(ChunkOutcome::Received(size));
        }
        if upload.finishing_at.is_some() {
            // Most likely this request repeats the last chunk, whose answer was lost while its
            // finish ran: the answer is that finish's.
            self.complete(record).await?;
            return Ok(ChunkOutcome::Received(size));
        }
        if offset > upload.received {
            return Ok(ChunkOutcome::Gap(upload.received));
        }

        let part_bytes = self.config.attachments.part_bytes;
        let mut skip = usize::try_from(upload.received - offset).unwrap_or(usize::MAX);
        // Parts stored but not yet recorded, and where the next one starts.
        let mut pending: Vec<Part> = Vec::new();
        let mut next = upload.received;
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut buffered = 0usize;
        let mut hasher = checksum.map(|_| Sha256::new());
        let mut interrupted = false;
        let mut read = 0i64;
        loop {
            let piece = match body.next().await {
                Some(Ok(piece)) => piece,
                Some(Err(_)) => {
                    interrupted = true;
                    break;
                }
                None => break,
            };
            read += piece.len() as i64;
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&piece);
            }
            let skipped = skip.min(piece.len());
            skip -= skipped;
            let piece = piece.slice(skipped..);
            if piece.is_empty() {
                continue;
            }
            let end = next + (buffered + piece.len()) as i64;
            if end > size {
                self.discard_parts(&pending).await?;
                return Err(size_exceeded(size, offset + read));
            }
            buffered += piece.len();
            pieces.push(piece);
            if buffered >= part_bytes {
                let part = self
                    .store_part(id, next, &mut pieces, &mut buffered)
                    .await?;
                next += part.length;
                pending.push(part);
                // Without a checksum every part counts as soon as it is stored; with one, only
                // the whole body does.
                if hasher.is_none() && !self.record_parts(id, &mut pending).await? {
                    return self.lost_race(record, offset, read, body).await;
                }
            }
        }
        if let (Some(expected), Some(hasher)) = (checksum, hasher) {
            let received = store::find_upload(&self.db, id).await?.unwrap_or_default();
            if interrupted || hasher.finalize().as_slice() != expected {
                self.discard_parts(&pending).await?;
                return Ok(if interrupted {
                    ChunkOutcome::Interrupted(received.received)
                } else {
                    ChunkOutcome::ChecksumMismatch(received.received)
                });
            }
        }
        if buffered > 0 {
            let part = self
                .store_part(id, next, &mut pieces, &mut buffered)
                .await?;
            next += part.length;
            pending.push(part);
        }
        if !self.record_parts(id, &mut pending).await? {
            return self.lost_race(record, offset, read, body).await;
        }
        if interrupted {
            return Ok(ChunkOutcome::Interrupted(next));
        }
        if next == size {
            self.complete(record).await?;
        }
        Ok(ChunkOutcome::Received(next))
    }

    /// Stores the buffered pieces as one part starting at `first_byte`.
    async fn store_part(
        &self,
        id: Uuid,
        first_byte: i64,
        pieces: &mut Vec<Bytes>,
        buffered: &mut usize,
    ) -> Result<Part> {
        let length = std::mem::take(buffered) as i64;
        let key = self
            .blobs
            .put_part(id, first_byte, std::mem::take(pieces))
            .await?;
        Ok(Part {
            first_byte,
            length,
            key,
        })
    }

    /// Records the pending parts (and empties the list): false when the offset moved on first,
    /// in which case their objects are removed.
    async fn record_parts(&self, id: Uuid, pending: &mut Vec<Part>) -> Result<bool> {
        if store::append_parts(&self.db, id, pending, Utc::now()).await? {
            pending.clear();
            return Ok(true);
        }
        self.discard_parts(pending).await?;
        pending.clear();
        Ok(false)
    }

    async fn discard_parts(&self, parts: &[Part]) -> Result<()> {
        let keys: Vec<String> = parts.iter().map(|part| part.key.clone()).collect();
        Ok(self.blobs.delete_parts(&keys).await?)
    }

    /// Another request moved the offset while this one was storing its bytes: this request's
    /// bytes are not needed if the other one already brought them. Reads the rest of the body to
    /// know how far it reached.
    async fn lost_race(
        &self,
        record: &StoredRecord,
        offset: i64,
        mut read: i64,
        mut body: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> Result<ChunkOutcome> {
        let size = declared_size(record);
        while let Some(Ok(piece)) = body.next().await {
            read += piece.len() as i64;
            if offset + read > size {
                return Err(size_exceeded(size, offset + read));
            }
        }
        let current = store::find_upload(&self.db, record.id)
            .await?
            .unwrap_or_default();
        if current.stored_at.is_some() || current.finishing_at.is_some() {
            self.complete(record).await?;
            Ok(ChunkOutcome::Received(size))
        } else if offset + read <= current.received {
            Ok(ChunkOutcome::Received(current.received))
        } else {
            Ok(ChunkOutcome::Gap(current.received))
        }
    }

    /// Finishes the upload, or waits for the finish that runs: assembles the parts into one
    /// object while hashing them, and stores the file if size and hash match the record.
    pub(super) async fn complete(&self, record: &StoredRecord) -> Result<()> {
        let id = record.id;
        let size = declared_size(record);
        let started = Instant::now();
        loop {
            let upload = store::find_upload(&self.db, id).await?.unwrap_or_default();
            if upload.stored_at.is_some() {
                return self.mark_stored(record).await;
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
            if store::claim_finish(&self.db, id, now, stale).await? {
                break;
            }
            if started.elapsed() > FINISH_WAIT {
                return Err(Error::conflict(
                    "finish_in_progress",
                    "the upload is being finished; ask for its state in a moment",
                ));
            }
            tokio::time::sleep(FINISH_POLL).await;
        }

        let heartbeat = Heartbeat::start(self.db.clone(), id);
        let parts = store::parts(&self.db, id).await?;
        let assembled = self.blobs.assemble(id, &parts).await;
        drop(heartbeat);
        let expected = record.value("sha256").as_str().unwrap_or_default();
        match assembled {
            Ok((length, digest)) if length == size && digest == expected => {
                store::end_finish(&self.db, id, true, Utc::now()).await?;
                self.blobs.delete_parts_of(id).await?;
                // Deleted (or erased) while it was being finished: the erasure has already
                // removed what was there, so the bytes just written go now, not after a grace.
                let current = crate::store::sync::find_records(
                    &self.db,
                    &veldwerk_sync_protocol::schema::ATTACHMENTS,
                    &[id],
                )
                .await?;
                if current.first().is_none_or(StoredRecord::is_deleted) {
                    self.blobs.delete_blob(id).await?;
                    store::mark_collected(&self.db, id, Utc::now()).await?;
                    return Err(Error::NotFound("attachment"));
                }
                self.mark_stored(record).await
            }
            Ok((length, digest)) => {
                self.discard_upload(id).await?;
                Err(Error::Invalid {
                    code: "hash_mismatch",
                    message: format!(
                        "the uploaded bytes ({length} bytes, SHA-256 {digest}) do not match the \
                         attachment ({size} bytes, SHA-256 {expected}); they were discarded, \
                         upload the file again from offset 0"
                    ),
                    details: Some(json!({ "received_sha256": digest, "received_size": length })),
                })
            }
            Err(BlobError::NotFound) => {
                self.discard_upload(id).await?;
                Err(Error::Invalid {
                    code: "upload_lost",
                    message: "some of the uploaded bytes are missing from storage; they were \
                              discarded, upload the file again from offset 0"
                        .into(),
                    details: None,
                })
            }
            Err(err) => {
                store::release_finish(&self.db, id).await?;
                Err(err.into())
            }
        }
    }

    /// Removes every byte of an upload and sets it back to offset 0. The bytes go first, while
    /// the finish still holds the upload, so no new chunk's part can be removed by mistake.
    async fn discard_upload(&self, id: Uuid) -> Result<()> {
        self.blobs.delete_blob(id).await?;
        self.blobs.delete_parts_of(id).await?;
        store::end_finish(&self.db, id, false, Utc::now()).await?;
        Ok(())
    }
}

/// Reads and drops what is left of a body, stopping after `limit` bytes.
async fn drain(body: &mut BoxStream<'static, std::io::Result<Bytes>>, limit: i64) {
    let mut read = 0i64;
    while let Some(Ok(piece)) = body.next().await {
        read += piece.len() as i64;
        if read > limit {
            return;
        }
    }
}

fn size_exceeded(size: i64, end: i64) -> Error {
    Error::Invalid {
        code: "size_exceeded",
        message: format!(
            "the attachment was declared with {size} bytes; this request would make it {end}"
        ),
        details: Some(json!({ "size": size })),
    }
}

/// Refreshes a finish's claim while it runs; stops when dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(db: sea_orm::DatabaseConnection, id: Uuid) -> Self {
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(FINISH_HEARTBEAT).await;
                if let Err(err) = store::touch_finish(&db, id, Utc::now()).await {
                    tracing::warn!(error = %err, "could not refresh an upload's finish claim");
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}
