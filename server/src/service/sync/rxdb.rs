//! The protocol for RxDB apps (PROTOCOL.md, "RxDB"): a collection's pull by checkpoint and its
//! push of document rows, translated by `veldwerk_sync_protocol::rxdb` onto the native pull and
//! push, so the records, the scope, the merge and the exactly-once rule are the same ones.

use std::collections::HashMap;

use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;
use veldwerk_sync_protocol::{
    Change, Hlc, MAX_BATCH, PushRequest, cursor,
    rxdb::{self, Checkpoint, PullAnswer, PushRow},
    schema,
};

use super::{MAX_CLOCK_SKEW_MS, pull::put, shared_counterpart};
use crate::service::{Actor, Error, Result, Role, Services};
use crate::store::sync as store;

impl Services {
    /// One collection's documents changed after `cursor`, at least `batch_size` of them unless
    /// there are no more (RxDB stops pulling at a short page), in version order, each once.
    #[tracing::instrument(skip_all, fields(user.id = %actor.user_id, collection))]
    pub async fn rxdb_pull(
        &self,
        actor: &Actor,
        collection: &str,
        cursor: Option<&str>,
        batch_size: usize,
    ) -> Result<PullAnswer> {
        known_collection(collection)?;
        let batch_size = batch_size.clamp(1, veldwerk_sync_protocol::MAX_PULL_LIMIT);
        let mut cursor = cursor.filter(|c| !c.is_empty()).map(str::to_owned);
        let mut documents: Vec<(Uuid, Value)> = Vec::new();
        loop {
            let page = self
                .pull(actor, cursor.as_deref(), Some(batch_size))
                .await?;
            for change in &page.changes {
                let of_collection = match change {
                    Change::Put(record) => record.collection == collection,
                    Change::Evict { collection: c, .. } => c == collection,
                };
                if of_collection {
                    documents.push(rxdb::document(change));
                }
            }
            cursor = Some(page.cursor);
            if !page.has_more || documents.len() >= batch_size {
                break;
            }
        }
        // A record changed twice within the pages read is sent once, in its latest state.
        let mut latest: HashMap<Uuid, usize> = HashMap::new();
        for (position, (id, _)) in documents.iter().enumerate() {
            latest.insert(*id, position);
        }
        let documents = documents
            .into_iter()
            .enumerate()
            .filter(|(position, (id, _))| latest[id] == *position)
            .map(|(_, (_, doc))| doc)
            .collect();
        Ok(PullAnswer {
            documents,
            checkpoint: Checkpoint {
                cursor: cursor.unwrap_or_else(|| cursor::encode(0)),
            },
        })
    }

    /// Applies RxDB push rows as one native push and answers the server's state of every
    /// document the rows wrote: merged with what other devices wrote, with fresh clocks and
    /// version, a tombstone where the record is deleted or not the caller's to see. RxDB's
    /// default conflict handler takes those states, so the device holds what the server holds
    /// (and its next edit is made over the clocks it really saw).
    #[tracing::instrument(skip_all, fields(user.id = %actor.user_id, collection, rows = rows.len()))]
    pub async fn rxdb_push(
        &self,
        actor: &Actor,
        collection: &str,
        rows: Vec<PushRow>,
    ) -> Result<Vec<Value>> {
        known_collection(collection)?;
        if schema::collection(collection).is_none() {
            return Err(Error::invalid(
                "read_only_collection",
                format!("`{collection}` is written by the server only; do not push it"),
            ));
        }
        if rows.len() > MAX_BATCH {
            return Err(Error::Invalid {
                code: "batch_too_large",
                message: format!("a push carries at most {MAX_BATCH} rows; push fewer at a time"),
                details: Some(serde_json::json!({ "max": MAX_BATCH })),
            });
        }
        let now_ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        let node = actor.device_id.simple().to_string();
        let mut ids = Vec::with_capacity(rows.len());
        let mut mutations = Vec::with_capacity(rows.len());
        for row in &rows {
            let read = rxdb::mutation(collection, row, |seen| {
                // The device has seen these clocks; its write comes after them (bounded, so a
                // forged clock cannot move the server's clock far ahead).
                let seen = seen.map(|clock| clock.bounded(now_ms, MAX_CLOCK_SKEW_MS));
                let tick = self.server_clock(seen.as_ref(), now_ms);
                Hlc::new(tick.wall_ms, tick.counter, node.clone())
            });
            let mutation = read.map_err(|err| Error::invalid("invalid_body", err.to_string()))?;
            ids.push(rxdb::row_id(row).expect("read above"));
            mutations.extend(mutation);
        }
        if !mutations.is_empty() {
            self.push(actor, PushRequest { mutations }).await?;
        }
        self.rxdb_documents(actor, collection, &ids).await
    }

    /// The documents of these records as the caller may see them now.
    async fn rxdb_documents(
        &self,
        actor: &Actor,
        collection: &str,
        ids: &[Uuid],
    ) -> Result<Vec<Value>> {
        let spec = schema::collection(collection).expect("a writable collection");
        let (_, staff_cohorts) = self.sync_scope(actor).await?;
        let mut found: HashMap<Uuid, Value> = HashMap::new();
        for record in store::find_records(&self.db, spec, ids).await? {
            let visible = match actor.role {
                Role::Participant => {
                    record.owner_id == actor.user_id
                        || shared_counterpart(&record) == Some(actor.user_id)
                }
                Role::Trainer | Role::Admin => staff_cohorts.contains(&record.cohort_id),
            };
            if visible {
                let (id, doc) = rxdb::document(&put(record, actor));
                found.insert(id, doc);
            }
        }
        Ok(ids
            .iter()
            .map(|id| found.get(id).cloned().unwrap_or_else(|| rxdb::removed(*id)))
            .collect())
    }
}

fn known_collection(collection: &str) -> Result<()> {
    if rxdb::is_replicated(collection) {
        Ok(())
    } else {
        Err(Error::NotFound("collection"))
    }
}
