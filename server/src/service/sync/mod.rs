//! The sync use cases: push (apply a device's mutations exactly once), pull (changes in the
//! caller's scope since a cursor), and change notices for live streams.
//!
//! The rules of the protocol itself (clocks, merge, validation of values) live in
//! `veldwerk-sync-protocol`; this module applies them to stored records and decides who may
//! write and see what. One file per use case (`push`, `pull`, `notices`); here what they
//! share: the caller's scope, the server's own writes and clock, tombstones.

mod notices;
mod pull;
mod push;
mod rxdb;
mod watermelon;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;
use veldwerk_sync_protocol::{
    Hlc,
    merge::{self, DELETED},
    schema::{COLLECTIONS, COUNTERPART_FIELD, CollectionSpec, SHARED_FIELD},
};

use super::{Actor, Result, Role, Services};
use crate::store::{
    catalog, cohorts as cohort_store,
    sync::{self as store, StoredRecord},
};

pub use self::{
    notices::ChangeNotice,
    pull::{PageBound, PageChange, PullPage, page_bound},
    watermelon::WatermelonPushAnswer,
};

/// How far ahead of the server's clock a device's clock may claim to be. A phone set to next
/// year gets its writes stamped at most this far in the future.
pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;

impl Services {
    /// The cohorts whose changes concern the caller: (as a member, as staff).
    pub async fn sync_scope(&self, actor: &Actor) -> Result<(Vec<Uuid>, Vec<Uuid>)> {
        match actor.role {
            Role::Participant => {
                let cohorts = store::memberships_of(&self.db, actor.user_id)
                    .await?
                    .into_iter()
                    .map(|membership| membership.cohort_id)
                    .collect();
                Ok((cohorts, Vec::new()))
            }
            Role::Trainer => {
                let cohorts: Vec<Uuid> = store::memberships_of(&self.db, actor.user_id)
                    .await?
                    .into_iter()
                    .map(|membership| membership.cohort_id)
                    .collect();
                Ok((cohorts.clone(), cohorts))
            }
            Role::Admin => {
                let organisations = catalog::list_organisations(&self.db, actor.provider_id)
                    .await?
                    .into_iter()
                    .map(|organisation| organisation.id);
                let cohorts: Vec<Uuid> =
                    cohort_store::list_cohorts_of_organisations(&self.db, organisations)
                        .await?
                        .into_iter()
                        .map(|cohort| cohort.id)
                        .collect();
                Ok((cohorts.clone(), cohorts))
            }
        }
    }

    /// Writes fields of a record as the server (an attachment's `state`): a change devices pull
    /// like any other, stamped with the server's clock so it wins over what devices wrote before.
    /// `also_notify` lists users beyond the owner and the cohort's staff who see the record.
    pub(crate) async fn write_as_server(
        &self,
        spec: &'static CollectionSpec,
        id: Uuid,
        fields: BTreeMap<String, Value>,
        also_notify: &[Uuid],
    ) -> Result<()> {
        let now = Utc::now();
        let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        let txn = crate::store::begin_write(&self.db).await?;
        // The version first: on PostgreSQL it is the turn that keeps a push from changing the
        // record between this read and the write.
        let version = store::next_version(&txn).await?;
        let Some(mut record) = store::find_records(&txn, spec, &[id]).await?.pop() else {
            return Ok(());
        };
        let seen = record.state.values().map(|stamped| &stamped.clock).max();
        let clock = self.server_clock(seen, now_ms);
        let base: BTreeMap<String, Hlc> = fields
            .keys()
            .filter_map(|name| Some((name.clone(), record.state.get(name)?.clock.clone())))
            .collect();
        let applied = merge::apply(&record.state, &fields, &clock, &base);
        if !applied.changed {
            return Ok(());
        }
        record.state = applied.state;
        record.version = version;
        store::upsert_records(&txn, spec, &[&record], now).await?;
        txn.commit().await?;
        let mut users = vec![record.owner_id];
        users.extend_from_slice(also_notify);
        self.publish_notice(ChangeNotice {
            users,
            record_cohorts: vec![record.cohort_id],
            ..ChangeNotice::default()
        });
        Ok(())
    }

    /// Removes tombstones last changed before `cutoff` (see `jobs::tombstones`).
    pub async fn purge_tombstones(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        let txn = crate::store::begin_write(&self.db).await?;
        let purged = store::purge_tombstones(&txn, COLLECTIONS, cutoff).await?;
        txn.commit().await?;
        Ok(purged)
    }

    pub(crate) fn server_clock(&self, observed: Option<&Hlc>, now_ms: u64) -> Hlc {
        let mut clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(observed) = observed {
            clock.observe(observed);
        }
        clock.tick(now_ms)
    }
}

/// Reduces a deleted record's state to its tombstone: the deletion and what decides who learns of
/// it (see `FieldSpec::kept_in_tombstone`); nothing personal stays for the tombstone's 90 days.
pub(crate) fn keep_only_tombstone(spec: &CollectionSpec, state: &mut merge::RecordState) {
    state.retain(|name, _| {
        name == DELETED
            || spec
                .field(name)
                .is_some_and(|field| field.kept_in_tombstone())
    });
}

/// The cohort member a feedback exercise is shared with, if any.
pub(crate) fn shared_counterpart(record: &StoredRecord) -> Option<Uuid> {
    if record.value(SHARED_FIELD) != &Value::Bool(true) || record.is_deleted() {
        return None;
    }
    record.value(COUNTERPART_FIELD).as_str()?.parse().ok()
}
