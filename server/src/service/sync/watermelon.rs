//! The protocol for WatermelonDB apps (PROTOCOL.md, "WatermelonDB"): `pullChanges` and
//! `pushChanges` of `synchronize()`, translated by `veldwerk_sync_protocol::watermelon` onto the
//! native pull and push, so the records, the scope, the merge and the exactly-once rule are the
//! same ones.

use std::collections::HashMap;

use chrono::Utc;
use uuid::Uuid;
use veldwerk_sync_protocol::{
    Change, Hlc, MAX_BATCH, MAX_PULL_LIMIT, MutationStatus, PushRequest, cursor,
    schema::{self, COLLECTIONS, READ_ONLY_COLLECTIONS},
    watermelon::{self, Changes, MAX_PULL_CHANGES, PullAnswer, Rejection},
};

use super::{MAX_CLOCK_SKEW_MS, pull::put, shared_counterpart};
use crate::service::{Actor, Error, Result, Role, Services};
use crate::store::sync as store;

/// What `pushChanges` answers: the records not applied, in WatermelonDB's
/// `experimentalRejectedIds` (so they stay marked as changed on the device), and why.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatermelonPushAnswer {
    pub experimental_rejected_ids: watermelon::RejectedIds,
    pub rejections: Vec<Rejection>,
}

/// Every table a pull answers, each present even when nothing changed.
fn tables() -> impl Iterator<Item = &'static str> {
    COLLECTIONS
        .iter()
        .map(|spec| spec.name)
        .chain(READ_ONLY_COLLECTIONS.iter().copied())
}

impl Services {
    /// The changes in the caller's scope after `last_pulled_at` (from the beginning when it is
    /// absent, or when `migration` asks for records the device's new tables and columns need:
    /// sending everything is a superset of what WatermelonDB requires), and the version read up
    /// to. WatermelonDB has no pages: the native pull is read page by page here, in version
    /// order, until about `limit` changes (at most [`MAX_PULL_CHANGES`]), so the answer is the
    /// consistent state as of its `timestamp` and its size is bounded; `has_more` says there is
    /// more after it.
    #[tracing::instrument(skip_all, fields(user.id = %actor.user_id))]
    pub async fn watermelon_pull(
        &self,
        actor: &Actor,
        last_pulled_at: Option<i64>,
        migration: bool,
        limit: Option<usize>,
    ) -> Result<PullAnswer> {
        let limit = limit.unwrap_or(MAX_PULL_CHANGES).clamp(1, MAX_PULL_CHANGES);
        let since = last_pulled_at.filter(|since| *since > 0);
        let from = if migration { None } else { since };
        let mut cursor = from.map(cursor::encode);
        let mut pulled: Vec<Change> = Vec::new();
        let has_more = loop {
            let page_limit = (limit - pulled.len()).min(MAX_PULL_LIMIT);
            let page = self
                .pull(actor, cursor.as_deref(), Some(page_limit))
                .await?;
            pulled.extend(page.changes);
            cursor = Some(page.cursor);
            if !page.has_more || pulled.len() >= limit {
                break page.has_more;
            }
        };
        let timestamp = cursor.as_deref().and_then(cursor::decode).unwrap_or(0);
        Ok(PullAnswer {
            changes: watermelon::changes(tables(), pulled, since.is_none()),
            timestamp,
            has_more,
        })
    }

    /// Applies WatermelonDB's pushed changes as native pushes of at most [`MAX_BATCH`]
    /// mutations, each one transaction that is refused whole (`changed_since_pull`) when a
    /// record it writes changed on the server after `last_pulled_at`. Records that cannot be
    /// applied (an id that is not a UUID, a read-only collection, a value the rules refuse) are
    /// answered in `experimentalRejectedIds`; the rest apply.
    #[tracing::instrument(skip_all, fields(user.id = %actor.user_id))]
    pub async fn watermelon_push(
        &self,
        actor: &Actor,
        last_pulled_at: i64,
        changes: Changes,
    ) -> Result<WatermelonPushAnswer> {
        let mut answer = WatermelonPushAnswer::default();
        if let Some(unknown) = changes
            .keys()
            .find(|table| !tables().any(|known| known == table.as_str()))
        {
            return Err(Error::invalid(
                "unknown_collection",
                format!("`{unknown}` is not a synced collection"),
            ));
        }
        let now_ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        let node = actor.device_id.simple().to_string();
        let mut mutations = Vec::new();
        let mut tables_of: HashMap<Uuid, &'static str> = HashMap::new();
        for (table, table_changes) in &changes {
            let (ids, rejected) = watermelon::pushed_ids(table, table_changes);
            answer.rejections.extend(rejected);
            let Some(spec) = schema::collection(table) else {
                answer.rejections.extend(ids.iter().map(|id| Rejection {
                    table: table.clone(),
                    id: id.to_string(),
                    code: "read_only_collection".to_owned(),
                    message: format!("`{table}` is written by the server only"),
                }));
                continue;
            };
            let current = self.watermelon_current(actor, spec, &ids).await?;
            let table_mutations =
                watermelon::mutations(spec, table_changes, last_pulled_at, &current, |seen| {
                    let seen = seen.map(|clock| clock.bounded(now_ms, MAX_CLOCK_SKEW_MS));
                    let tick = self.server_clock(seen.as_ref(), now_ms);
                    Hlc::new(tick.wall_ms, tick.counter, node.clone())
                });
            for mutation in &table_mutations {
                tables_of.insert(mutation.id, spec.name);
            }
            mutations.extend(table_mutations);
        }
        let mut mutations = mutations.into_iter().peekable();
        while mutations.peek().is_some() {
            let batch: Vec<_> = mutations.by_ref().take(MAX_BATCH).collect();
            let request = PushRequest { mutations: batch };
            let records: Vec<_> = request
                .mutations
                .iter()
                .map(|m| (m.id, m.record_id))
                .collect();
            let response = self
                .push_unchanged_since(actor, request, Some(last_pulled_at))
                .await?;
            for (result, (mutation_id, record_id)) in response.results.iter().zip(records) {
                if result.status == MutationStatus::Rejected {
                    answer.rejections.push(Rejection {
                        table: tables_of[&mutation_id].to_owned(),
                        id: record_id.to_string(),
                        code: result.code.clone().unwrap_or_else(|| "rejected".to_owned()),
                        message: result.message.clone().unwrap_or_default(),
                    });
                }
            }
        }
        for rejection in &answer.rejections {
            answer
                .experimental_rejected_ids
                .entry(rejection.table.clone())
                .or_default()
                .push(rejection.id.clone());
        }
        Ok(answer)
    }

    /// The server's state of these records, those the caller can see (their own, feedback
    /// shared with them); others are as if absent, and the native push refuses writing them.
    async fn watermelon_current(
        &self,
        actor: &Actor,
        spec: &'static schema::CollectionSpec,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, veldwerk_sync_protocol::Record>> {
        if actor.role != Role::Participant {
            return Ok(HashMap::new());
        }
        let mut current = HashMap::new();
        for record in store::find_records(&self.db, spec, ids).await? {
            let visible = record.owner_id == actor.user_id
                || shared_counterpart(&record) == Some(actor.user_id);
            if visible && let Change::Put(record) = put(record, actor) {
                current.insert(record.id, record);
            }
        }
        Ok(current)
    }
}
