//! Attachment bytes in object storage: a local directory or an S3-compatible bucket, behind one
//! interface (`object_store`). Uploads arrive as parts (`parts/<attachment>/<offset>-<nonce>`);
//! a finished upload is assembled into one object (`blobs/<attachment>`) while its SHA-256 is
//! computed, streaming, so memory stays bounded whatever the file's size.

use std::{ops::Range, sync::Arc};

use anyhow::Context;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart, aws::AmazonS3Builder,
    local::LocalFileSystem, path::Path,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::{AttachmentConfig, StorageKind};

/// Size of the pieces an assembled object is written in (S3 needs at least 5 MiB but the last).
const ASSEMBLY_PART_BYTES: usize = 8 * 1024 * 1024;

/// Where attachment bytes live.
#[derive(Clone, Debug)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
}

/// A failure of the object store, with whether the object was simply absent.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the object is not there")]
    NotFound,
    #[error("object storage failed: {0}")]
    Storage(#[from] object_store::Error),
}

fn storage_error(err: object_store::Error) -> BlobError {
    match err {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        other => BlobError::Storage(other),
    }
}

impl BlobStore {
    /// The store the configuration asks for. Local storage creates its directory.
    pub fn from_config(
        config: &AttachmentConfig,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let store: Arc<dyn ObjectStore> = match config.storage {
            StorageKind::Local => {
                let dir = config
                    .dir
                    .clone()
                    .unwrap_or_else(|| data_dir.join("attachments"));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("Failed to create the folder {}", dir.display()))?;
                Arc::new(
                    LocalFileSystem::new_with_prefix(&dir)
                        .context("Failed to open the attachment folder")?
                        // Deleting the last part of an upload removes its empty folder too.
                        .with_automatic_cleanup(true),
                )
            }
            StorageKind::S3 => {
                // AWS_* variables (and instance credentials) apply unless configured here.
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&config.s3_bucket)
                    .with_region(&config.s3_region)
                    .with_allow_http(config.s3_allow_http);
                if let Some(endpoint) = &config.s3_endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(key) = &config.s3_access_key_id {
                    builder = builder.with_access_key_id(key.expose());
                }
                if let Some(secret) = &config.s3_secret_access_key {
                    builder = builder.with_secret_access_key(secret.expose());
                }
                Arc::new(builder.build().context("Failed to configure S3 storage")?)
            }
        };
        Ok(Self { store })
    }

    /// Stores received bytes (one or more pieces, in order) as a new part object; returns its
    /// key, `parts/<attachment>/<first byte>-<nonce>`.
    pub async fn put_part(
        &self,
        attachment_id: Uuid,
        first_byte: i64,
        pieces: Vec<Bytes>,
    ) -> Result<String, BlobError> {
        let key = format!(
            "{}/{first_byte:016}-{}",
            parts_prefix(attachment_id),
            Uuid::new_v4().simple()
        );
        self.store
            .put(&Path::from(key.as_str()), pieces.into_iter().collect())
            .await
            .map_err(storage_error)?;
        Ok(key)
    }

    /// Removes every part object of an upload, recorded or not.
    pub async fn delete_parts_of(&self, attachment_id: Uuid) -> Result<(), BlobError> {
        let keys: Vec<String> = self
            .list(&parts_prefix(attachment_id))
            .try_collect()
            .await?;
        self.delete_parts(&keys).await
    }

    /// Every part object in storage: (attachment id, key, when it was written). Keys that are
    /// not ours are skipped.
    pub async fn all_parts(
        &self,
    ) -> Result<Vec<(Uuid, String, chrono::DateTime<chrono::Utc>)>, BlobError> {
        self.store
            .list(Some(&Path::from("parts")))
            .map_err(storage_error)
            .try_filter_map(|meta| async move {
                let key = meta.location.to_string();
                let id = key
                    .split('/')
                    .nth(1)
                    .and_then(|segment| Uuid::try_parse(segment).ok());
                Ok(id.map(|id| (id, key, meta.last_modified)))
            })
            .try_collect()
            .await
    }

    /// Streams the parts, in order, into `blobs/<attachment>`, returning the assembled size and
    /// its SHA-256 (lowercase hex). Skips the bytes of a part that overlap the previous one.
    pub async fn assemble(
        &self,
        attachment_id: Uuid,
        parts: &[(i64, String)],
    ) -> Result<(i64, String), BlobError> {
        let target = blob_path(attachment_id);
        let upload = self
            .store
            .put_multipart(&target)
            .await
            .map_err(storage_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, ASSEMBLY_PART_BYTES);
        let mut hasher = Sha256::new();
        let mut written: i64 = 0;
        let assembled: Result<(), BlobError> = async {
            for (first_byte, key) in parts {
                let mut skip = usize::try_from(written - first_byte).unwrap_or(0);
                let mut chunks = self
                    .store
                    .get(&Path::from(key.as_str()))
                    .await
                    .map_err(storage_error)?
                    .into_stream();
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk.map_err(storage_error)?;
                    let usable = chunk.slice(skip.min(chunk.len())..);
                    skip -= skip.min(chunk.len());
                    if usable.is_empty() {
                        continue;
                    }
                    hasher.update(&usable);
                    written += usable.len() as i64;
                    writer.wait_for_capacity(2).await.map_err(storage_error)?;
                    writer.put(usable);
                }
            }
            Ok(())
        }
        .await;
        match assembled {
            Ok(()) => {
                writer.finish().await.map_err(storage_error)?;
            }
            Err(err) => {
                let _ = writer.abort().await;
                return Err(err);
            }
        }
        let digest = hasher.finalize();
        let hex = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        Ok((written, hex))
    }

    /// The assembled file's bytes in `range` (all when `None`), as a stream of chunks.
    pub async fn read(
        &self,
        attachment_id: Uuid,
        range: Option<Range<u64>>,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static, BlobError> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&blob_path(attachment_id), options)
            .await
            .map_err(storage_error)?;
        Ok(result.into_stream().map_err(std::io::Error::other))
    }

    /// Removes the assembled file.
    pub async fn delete_blob(&self, attachment_id: Uuid) -> Result<(), BlobError> {
        self.delete(&blob_path(attachment_id)).await
    }

    /// Removes part objects by key; absent ones count as removed.
    pub async fn delete_parts(&self, keys: &[String]) -> Result<(), BlobError> {
        for key in keys {
            self.delete(&Path::from(key.as_str())).await?;
        }
        Ok(())
    }

    async fn delete(&self, path: &Path) -> Result<(), BlobError> {
        match self.store.delete(path).await.map_err(storage_error) {
            Ok(()) | Err(BlobError::NotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Every object key under a prefix (`blobs/`, `parts/`), for tests and audits.
    pub fn list(&self, prefix: &str) -> BoxStream<'static, Result<String, BlobError>> {
        self.store
            .list(Some(&Path::from(prefix)))
            .map(|meta| {
                meta.map(|meta| meta.location.to_string())
                    .map_err(storage_error)
            })
            .boxed()
    }
}

fn parts_prefix(attachment_id: Uuid) -> String {
    format!("parts/{}", attachment_id.simple())
}

fn blob_path(attachment_id: Uuid) -> Path {
    Path::from(format!("blobs/{}", attachment_id.simple()))
}
