//! Collecting bytes nobody needs: those of deleted attachments after their grace period, and
//! part objects that no upload will use (left by a finished upload, or by a process that died
//! between storing a part and recording it).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use crate::{
    service::{Result, Services},
    store::attachments as store,
};

/// A part object that no upload has recorded is left alone this long (or the grace period, if
/// that is shorter): the request that wrote it may still be about to record it.
const UNRECORDED_PART_AGE: chrono::Duration = chrono::Duration::hours(1);

impl Services {
    /// Removes the bytes of attachments deleted before `cutoff` (or whose record is gone) and
    /// the part objects no upload needs; returns how many attachments were collected. See
    /// `jobs::attachments`.
    pub async fn collect_attachments(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        let mut collected = 0;
        loop {
            let batch = store::collectable(&self.db, cutoff, 100).await?;
            if batch.is_empty() {
                break;
            }
            for id in batch {
                self.blobs.delete_parts_of(id).await?;
                self.blobs.delete_blob(id).await?;
                store::mark_collected(&self.db, id, Utc::now()).await?;
                collected += 1;
            }
        }
        let unrecorded_before = cutoff.max(Utc::now() - UNRECORDED_PART_AGE);
        let removed = self.collect_parts(unrecorded_before).await?;
        if removed > 0 {
            tracing::info!(removed, "removed part objects no upload needs");
        }
        Ok(collected)
    }

    /// Removes the part objects of uploads that are stored, collected or gone, and those of
    /// pending uploads that were never recorded and were written before `unrecorded_before`.
    async fn collect_parts(&self, unrecorded_before: DateTime<Utc>) -> Result<usize> {
        let mut by_upload: BTreeMap<uuid::Uuid, Vec<(String, DateTime<Utc>)>> = BTreeMap::new();
        for (id, key, written) in self.blobs.all_parts().await? {
            by_upload.entry(id).or_default().push((key, written));
        }
        let mut removed = 0;
        for (id, objects) in by_upload {
            let upload = store::find_upload(&self.db, id).await?;
            let in_progress = upload
                .as_ref()
                .is_some_and(|u| u.stored_at.is_none() && u.collected_at.is_none());
            let recorded: HashSet<String> = if in_progress {
                store::parts(&self.db, id)
                    .await?
                    .into_iter()
                    .map(|(_, key)| key)
                    .collect()
            } else {
                HashSet::new()
            };
            let doomed: Vec<String> = objects
                .into_iter()
                .filter(|(key, written)| {
                    !recorded.contains(key) && (!in_progress || *written < unrecorded_before)
                })
                .map(|(key, _)| key)
                .collect();
            self.blobs.delete_parts(&doomed).await?;
            removed += doomed.len();
        }
        Ok(removed)
    }
}
