//! The sync use cases: push (apply a device's mutations exactly once), pull (changes in the
//! caller's scope since a cursor), and change notices for live streams.
//!
//! The rules of the protocol itself (clocks, merge, validation of values) live in
//! `veldwerk-sync-protocol`; this module applies them to stored records and decides who may
//! write and see what.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_sync_protocol::{
    Change, ConflictReport, Hlc, MAX_BATCH, MAX_PULL_LIMIT, Mutation, MutationResult,
    MutationStatus, PullResponse, PushRequest, PushResponse, Record, cursor,
    merge::{self, DELETED, RecordState},
    schema::{
        self, ANNOUNCEMENT_FIELD, ASSIGNMENT_FIELD, ATTACHMENT_PARENTS, ATTACHMENT_PENDING,
        ATTACHMENT_STATE_FIELD, ATTACHMENTS, COLLECTIONS, COUNTERPART_FIELD, CollectionSpec,
        Identity, PARENT_COLLECTION_FIELD, PARENT_ID_FIELD, SHARED_FIELD,
    },
};

use super::{Actor, Error, Result, Role, Services, cohorts::day_start};
use crate::store::{
    attachments as attachment_store, catalog, cohorts as cohort_store,
    sync::{self as store, Audience, MAX_KEPT_CONFLICTS, StoredRecord},
};

/// How far ahead of the server's clock a device's clock may claim to be. A phone set to next
/// year gets its writes stamped at most this far in the future.
pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;

/// Which devices a change concerns, for live streams: they are poked to pull.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ChangeNotice {
    /// Every stream is concerned (a notice too large to list its audience).
    #[serde(default)]
    pub everyone: bool,
    /// Users whose own scope changed (record owners, feedback counterparts, new trainers).
    pub users: Vec<Uuid>,
    /// Cohorts whose records changed: their trainers are poked.
    pub record_cohorts: Vec<Uuid>,
    /// Cohorts whose schedule changed: all their members are poked.
    pub member_cohorts: Vec<Uuid>,
    /// Devices whose session ended (logout, revocation): their streams say so and close.
    #[serde(default)]
    pub ended_devices: Vec<Uuid>,
    /// Devices reported lost: their streams tell them to wipe, and close.
    #[serde(default)]
    pub wiped_devices: Vec<Uuid>,
}

/// The PostgreSQL channel that carries change notices between replicas.
const NOTICE_CHANNEL: &str = "veldwerk_changes";
/// PostgreSQL refuses NOTIFY payloads from 8,000 bytes.
const MAX_NOTICE_BYTES: usize = 7_900;

/// A notice as it travels between replicas.
#[derive(serde::Serialize, serde::Deserialize)]
struct RelayedNotice {
    /// The replica that sent it, which ignores its own.
    origin: Uuid,
    notice: ChangeNotice,
}

impl Services {
    /// Publishes a change to the live streams. Nobody listening is fine.
    pub(crate) fn notify_change(&self, member_cohorts: &[Uuid], users: &[Uuid]) {
        self.publish_notice(ChangeNotice {
            users: users.to_vec(),
            member_cohorts: member_cohorts.to_vec(),
            ..ChangeNotice::default()
        });
    }

    /// Pokes this replica's streams at once, and on PostgreSQL the other replicas' through
    /// `NOTIFY` (they run [`Services::relay_notices`]).
    pub(crate) fn publish_notice(&self, notice: ChangeNotice) {
        let notice = std::sync::Arc::new(notice);
        let _ = self.changes.send(notice.clone());
        if self.db.get_database_backend() != sea_orm::DbBackend::Postgres {
            return;
        }
        let mut relayed = RelayedNotice {
            origin: self.instance_id,
            notice: (*notice).clone(),
        };
        let mut payload = serde_json::to_string(&relayed).unwrap_or_default();
        if payload.len() > MAX_NOTICE_BYTES {
            relayed.notice = ChangeNotice {
                everyone: true,
                ..ChangeNotice::default()
            };
            payload = serde_json::to_string(&relayed).unwrap_or_default();
        }
        let db = self.db.clone();
        tokio::spawn(async move {
            let statement = sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                [NOTICE_CHANNEL.into(), payload.into()],
            );
            if let Err(err) = sea_orm::ConnectionTrait::execute_raw(&db, statement).await {
                tracing::warn!(error = %err, "could not relay a change notice to other replicas");
            }
        });
    }

    /// Listens for other replicas' notices (PostgreSQL only) and pokes this replica's streams;
    /// reconnects after errors. Runs until the task is dropped.
    pub async fn relay_notices(self) {
        if self.db.get_database_backend() != sea_orm::DbBackend::Postgres {
            return;
        }
        let pool = self.db.get_postgres_connection_pool().clone();
        loop {
            let listener = async {
                let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await?;
                listener.listen(NOTICE_CHANNEL).await?;
                loop {
                    let notification = listener.recv().await?;
                    let Ok(relayed) = serde_json::from_str::<RelayedNotice>(notification.payload())
                    else {
                        continue;
                    };
                    if relayed.origin != self.instance_id {
                        let _ = self.changes.send(std::sync::Arc::new(relayed.notice));
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), sea_orm::sqlx::Error>(())
            };
            if let Err(err) = listener.await {
                tracing::warn!(error = %err, "change-notice listener failed; reconnecting");
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    /// Receives every change notice from now on.
    pub fn subscribe_changes(
        &self,
    ) -> tokio::sync::broadcast::Receiver<std::sync::Arc<ChangeNotice>> {
        self.changes.subscribe()
    }

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

    /// Applies a batch of mutations from the caller's device in one transaction. Each mutation is
    /// applied at most once: a mutation id seen before answers its first result.
    #[tracing::instrument(skip_all, fields(user.id = %actor.user_id, mutations = request.mutations.len()))]
    pub async fn push(&self, actor: &Actor, request: PushRequest) -> Result<PushResponse> {
        if request.mutations.len() > MAX_BATCH {
            return Err(Error::Invalid {
                code: "batch_too_large",
                message: format!(
                    "a push carries at most {MAX_BATCH} mutations; send the outbox in several pushes"
                ),
                details: Some(json!({ "max": MAX_BATCH })),
            });
        }
        let now = Utc::now();
        let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        let mut context = self.push_context(actor, &request).await?;

        let txn = crate::store::begin_write(&self.db).await?;
        let version = store::next_version(&txn).await?;
        // Writes take turns on the version; an erasure (or revocation) that took its turn
        // before this push must win, or the push would write the erased person's data back.
        super::accounts::live_device_on(&txn, actor.device_id).await?;
        let ids: Vec<Uuid> = request.mutations.iter().map(|m| m.id).collect();
        let known = store::find_mutation_results(&txn, actor.user_id, &ids).await?;

        let mut records: HashMap<(&'static str, Uuid), StoredRecord> = HashMap::new();
        for spec in COLLECTIONS {
            let mut ids: Vec<Uuid> = request
                .mutations
                .iter()
                .filter(|m| m.collection == spec.name)
                .map(|m| m.record_id)
                .collect();
            // The records new attachments say they belong to.
            ids.extend(request.mutations.iter().filter_map(|m| {
                let collection = m.fields.get(PARENT_COLLECTION_FIELD)?.as_str()?;
                (m.collection == ATTACHMENTS.name && collection == spec.name)
                    .then(|| {
                        m.fields
                            .get(PARENT_ID_FIELD)?
                            .as_str()?
                            .parse::<Uuid>()
                            .ok()
                    })
                    .flatten()
            }));
            for record in store::find_records(&txn, spec, &ids).await? {
                records.insert((spec.name, record.id), record);
            }
        }
        // Who could see each feedback exercise before this batch, to evict those who lose it.
        let visible_before: HashMap<Uuid, Option<Uuid>> = records
            .values()
            .filter(|record| record.spec.field(COUNTERPART_FIELD).is_some())
            .map(|record| (record.id, shared_counterpart(record)))
            .collect();

        let mut touched: HashSet<(&'static str, Uuid)> = HashSet::new();
        let mut results: Vec<MutationResult> = Vec::with_capacity(request.mutations.len());
        let mut fresh: Vec<(Uuid, Value)> = Vec::new();
        let mut answered: HashMap<Uuid, MutationResult> = HashMap::new();
        let mut max_clock: Option<Hlc> = None;
        for mutation in &request.mutations {
            if let Some(previous) = known.get(&mutation.id) {
                let result: MutationResult = serde_json::from_value(previous.clone())
                    .map_err(|err| anyhow::anyhow!("stored mutation result unreadable: {err}"))?;
                results.push(result);
                continue;
            }
            if let Some(previous) = answered.get(&mutation.id) {
                results.push(previous.clone());
                continue;
            }
            let clock = mutation.clock.bounded(now_ms, MAX_CLOCK_SKEW_MS);
            let result = match apply_mutation(
                actor,
                &mut context,
                mutation,
                &clock,
                &mut records,
                version,
                now,
            ) {
                Ok((key, conflicts)) => {
                    touched.insert(key);
                    max_clock = max_clock.max(Some(clock));
                    MutationResult {
                        id: mutation.id,
                        status: MutationStatus::Applied,
                        code: None,
                        message: None,
                        conflicts,
                    }
                }
                Err((code, message)) => MutationResult {
                    id: mutation.id,
                    status: MutationStatus::Rejected,
                    code: Some(code.to_owned()),
                    message: Some(message),
                    conflicts: Vec::new(),
                },
            };
            fresh.push((
                mutation.id,
                serde_json::to_value(&result).map_err(anyhow::Error::from)?,
            ));
            answered.insert(mutation.id, result.clone());
            results.push(result);
        }

        let cascade_clock = self.server_clock(max_clock.as_ref(), now_ms);
        delete_attachments_of_deleted(&txn, &mut records, &mut touched, &cascade_clock, version)
            .await?;

        let mut notice = ChangeNotice::default();
        for spec in COLLECTIONS {
            let changed: Vec<&StoredRecord> = touched
                .iter()
                .filter(|(collection, _)| *collection == spec.name)
                .filter_map(|key| records.get(key))
                .collect();
            store::upsert_records(&txn, spec, &changed, now).await?;
            for record in changed {
                notice.users.push(record.owner_id);
                notice.record_cohorts.push(record.cohort_id);
                if spec.field(COUNTERPART_FIELD).is_none() {
                    continue;
                }
                let before = visible_before.get(&record.id).copied().flatten();
                let after = shared_counterpart(record);
                if let Some(after) = after {
                    notice.users.push(after);
                }
                if before == after {
                    continue;
                }
                // The exercise's attachments follow it: re-sent to the new counterpart, evicted
                // from the old one.
                let attachments = attachment_store::live_attachments_of(&txn, &[record.id]).await?;
                store::stamp_records(&txn, &ATTACHMENTS, &attachments, version).await?;
                if let Some(before) = before {
                    let mut evicted = vec![(spec.name, record.id)];
                    evicted.extend(attachments.iter().map(|id| (ATTACHMENTS.name, *id)));
                    store::insert_evictions(&txn, before, &evicted, version).await?;
                    notice.users.push(before);
                }
            }
        }
        store::insert_mutation_results(&txn, actor.device_id, actor.user_id, &fresh, now).await?;
        txn.commit().await?;

        if !touched.is_empty() {
            self.publish_notice(notice);
        }
        let rejected = results
            .iter()
            .filter(|result| result.status == MutationStatus::Rejected)
            .count() as u64;
        let metrics = self.metrics();
        metrics
            .sync_pushes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics
            .mutations_rejected
            .fetch_add(rejected, std::sync::atomic::Ordering::Relaxed);
        metrics.mutations_applied.fetch_add(
            results.len() as u64 - rejected,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(PushResponse {
            results,
            server_clock: self.server_clock(max_clock.as_ref(), now_ms),
        })
    }

    /// Changes in the caller's scope after `cursor`, at most `limit` (whole versions only).
    #[tracing::instrument(skip_all, fields(user.id = %actor.user_id))]
    pub async fn pull(
        &self,
        actor: &Actor,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<PullResponse> {
        let after = match cursor {
            None | Some("") => 0,
            Some(text) => cursor::decode(text).ok_or_else(|| {
                Error::invalid("invalid_cursor", "the cursor was not issued by this server")
            })?,
        };
        let limit = limit
            .unwrap_or(veldwerk_sync_protocol::DEFAULT_PULL_LIMIT)
            .clamp(1, MAX_PULL_LIMIT);
        let (head, purged_below) = store::head(&self.db).await?;
        if after > head || (after > 0 && after < purged_below) {
            return Err(Error::Gone {
                code: "reset_required",
                message: "this cursor is older than the server keeps deletions for (or from another server); \
                          pull again without a cursor and keep your unsent outbox"
                    .into(),
            });
        }
        let now_ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        self.metrics()
            .sync_pulls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if after > 0 && after == head {
            // Nothing was committed after the cursor, so nothing can have changed for anyone:
            // the common pull of an app that is up to date costs one query.
            return Ok(PullResponse {
                changes: Vec::new(),
                cursor: cursor::encode(head),
                has_more: false,
                server_clock: self.server_clock(None, now_ms),
            });
        }
        let (member_cohorts, staff_cohorts) = self.sync_scope(actor).await?;
        let audience = match actor.role {
            Role::Participant => Audience::Participant {
                user: actor.user_id,
                cohorts: member_cohorts.clone(),
            },
            Role::Trainer | Role::Admin => Audience::Cohorts(staff_cohorts.clone()),
        };
        if after == 0 && actor.role != Role::Participant {
            // A staff device starting from scratch is about to hold these cohorts' participant
            // records: the audit log says so, once per start (not per page).
            for cohort in &staff_cohorts {
                super::audit::record(
                    &self.db,
                    actor.provider_id,
                    Some(actor),
                    super::audit::AuditEvent::new(super::audit::AuditAction::CohortRecordsSynced)
                        .cohort(*cohort)
                        .details(json!({ "device_id": actor.device_id })),
                )
                .await?;
            }
        }
        let scope = PullScope {
            actor,
            audience,
            member_cohorts: &member_cohorts,
        };
        // Fetch one more than the limit from each source: a source that fills up tells how far
        // this page may safely reach (see `page_bound`).
        let fetch = (limit + 1) as u64;
        let sources = self.change_sources(&scope, after, head, fetch).await?;
        let page = page_bound(&sources, limit, head);
        let (bound, has_more) = (page.bound, page.has_more);
        let mut changes: Vec<(i64, Change)> = sources
            .into_iter()
            .flatten()
            .filter(|(version, _)| {
                *version < bound || (*version == bound && !page.bound_version_cut)
            })
            .collect();
        if page.bound_version_cut {
            // One version holds more rows than a page (a cascade, an eviction of a whole
            // cohort): the page carries that version whole, however large.
            let whole = self
                .change_sources(&scope, bound - 1, bound, store::UNLIMITED)
                .await?;
            changes.extend(whole.into_iter().flatten());
        }

        // A cohort that became visible after the cursor brings its older records along.
        for (cohort_id, _) in store::grants_between(&self.db, actor.user_id, after, bound).await? {
            if after == 0 {
                break; // A first pull sees everything anyway.
            }
            for spec in COLLECTIONS {
                for record in store::cohort_records_upto(&self.db, spec, cohort_id, after).await? {
                    changes.push((record.version, put(record, actor)));
                }
            }
            let ids = [cohort_id];
            for c in store::changed_cohorts(&self.db, &ids, -1, after, store::UNLIMITED).await? {
                changes.push((c.version, cohort_change(&c)));
            }
            let zones = cohort_store_zones(&self.db, &ids).await?;
            for d in store::changed_days(&self.db, &ids, -1, after, store::UNLIMITED).await? {
                changes.push((d.version, day_change(&d, &zones)));
            }
            for a in store::changed_assignments(&self.db, &ids, -1, after, store::UNLIMITED).await?
            {
                changes.push((a.version, assignment_change(&a)));
            }
            let recipient = (actor.role == Role::Participant).then_some(actor.user_id);
            for row in
                store::changed_announcements(&self.db, &ids, recipient, -1, after, store::UNLIMITED)
                    .await?
            {
                changes.push(announcement_change(&row)?);
            }
        }

        // Version order; within a version evictions first, so a record evicted and re-shared in
        // one batch ends up present.
        changes.sort_by(|(va, a), (vb, b)| {
            (va, change_rank(a), change_key(a)).cmp(&(vb, change_rank(b), change_key(b)))
        });
        Ok(PullResponse {
            changes: changes.into_iter().map(|(_, change)| change).collect(),
            cursor: cursor::encode(bound),
            has_more,
            server_clock: self.server_clock(None, now_ms),
        })
    }

    /// Every kind of change the caller may pull with `after < version <= upto`, one list per
    /// source (a collection, the cohort tables, announcements, evictions), each in version order
    /// and at most `fetch` long.
    async fn change_sources(
        &self,
        scope: &PullScope<'_>,
        after: i64,
        upto: i64,
        fetch: u64,
    ) -> Result<Vec<Vec<(i64, Change)>>> {
        let PullScope {
            actor,
            audience,
            member_cohorts,
        } = scope;
        let mut sources: Vec<Vec<(i64, Change)>> = Vec::new();
        for spec in COLLECTIONS {
            let rows = store::changed_records(&self.db, spec, audience, after, upto, fetch).await?;
            sources.push(
                rows.into_iter()
                    .map(|r| (r.version, put(r, actor)))
                    .collect(),
            );
        }
        let cohorts = store::changed_cohorts(&self.db, member_cohorts, after, upto, fetch).await?;
        sources.push(
            cohorts
                .iter()
                .map(|c| (c.version, cohort_change(c)))
                .collect(),
        );
        let days = store::changed_days(&self.db, member_cohorts, after, upto, fetch).await?;
        let zones: HashMap<Uuid, String> = cohort_store_zones(&self.db, member_cohorts).await?;
        sources.push(
            days.iter()
                .map(|d| (d.version, day_change(d, &zones)))
                .collect(),
        );
        let assignments =
            store::changed_assignments(&self.db, member_cohorts, after, upto, fetch).await?;
        sources.push(
            assignments
                .iter()
                .map(|a| (a.version, assignment_change(a)))
                .collect(),
        );
        let recipient = (actor.role == Role::Participant).then_some(actor.user_id);
        let announcements =
            store::changed_announcements(&self.db, member_cohorts, recipient, after, upto, fetch)
                .await?;
        sources.push(
            announcements
                .iter()
                .map(announcement_change)
                .collect::<std::result::Result<_, sea_orm::DbErr>>()?,
        );
        let evictions = store::evictions_since(&self.db, actor.user_id, after, upto, fetch).await?;
        sources.push(
            evictions
                .into_iter()
                .map(|e| {
                    (
                        e.version,
                        Change::Evict {
                            collection: e.collection,
                            id: e.record_id,
                        },
                    )
                })
                .collect(),
        );
        Ok(sources)
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
        record.version = store::next_version(&txn).await?;
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

    async fn push_context(&self, actor: &Actor, request: &PushRequest) -> Result<PushContext> {
        if actor.role != Role::Participant {
            return Ok(PushContext::default());
        }
        let attaches = request
            .mutations
            .iter()
            .any(|m| m.collection == ATTACHMENTS.name);
        let attachment_usage = if attaches {
            attachment_store::usage(&self.db, actor.user_id).await?
        } else {
            0
        };
        let (cohorts, _) = self.sync_scope(actor).await?;
        let assignments = store::assignments_of(&self.db, &cohorts)
            .await?
            .into_iter()
            .map(|a| (a.id, a.cohort_id))
            .collect();
        let members = store::members_of(&self.db, &cohorts)
            .await?
            .into_iter()
            .map(|m| (m.user_id, m.cohort_id))
            .collect();
        let announcements = store::changed_announcements(
            &self.db,
            &cohorts,
            Some(actor.user_id),
            -1,
            i64::MAX,
            store::UNLIMITED,
        )
        .await?
        .iter()
        .map(|row| Ok((row.try_get("", "id")?, row.try_get("", "cohort_id")?)))
        .collect::<std::result::Result<_, sea_orm::DbErr>>()?;
        Ok(PushContext {
            cohorts: cohorts.into_iter().collect(),
            assignments,
            members,
            announcements,
            attachment_usage,
            attachment_rules: self.config.attachments.clone(),
        })
    }
}

/// What a participant's push is checked against.
/// Whose changes a pull gathers.
struct PullScope<'a> {
    actor: &'a Actor,
    audience: Audience,
    member_cohorts: &'a [Uuid],
}

#[derive(Debug, Default)]
struct PushContext {
    /// Cohorts the caller participates in.
    cohorts: HashSet<Uuid>,
    /// Assignment id to its cohort.
    assignments: HashMap<Uuid, Uuid>,
    /// (member, cohort) pairs of those cohorts.
    members: HashSet<(Uuid, Uuid)>,
    /// Announcements in the caller's inbox, to their cohort.
    announcements: HashMap<Uuid, Uuid>,
    /// Bytes the caller's attachments take (declared sizes), growing as the batch adds some.
    attachment_usage: i64,
    /// Content types, file size and quota for new attachments.
    attachment_rules: crate::config::AttachmentConfig,
}

type Rejection = (&'static str, String);

/// Validates and merges one mutation into the batch's working set of records.
fn apply_mutation(
    actor: &Actor,
    context: &mut PushContext,
    mutation: &Mutation,
    clock: &Hlc,
    records: &mut HashMap<(&'static str, Uuid), StoredRecord>,
    version: i64,
    now: DateTime<Utc>,
) -> std::result::Result<((&'static str, Uuid), Vec<ConflictReport>), Rejection> {
    let spec = schema::collection(&mutation.collection).ok_or_else(|| {
        (
            "unknown_collection",
            format!("{:?} is not a writable collection", mutation.collection),
        )
    })?;
    if actor.role != Role::Participant {
        return Err(("forbidden", "only participants write records".into()));
    }
    if mutation.clock.node != actor.device_id.simple().to_string() {
        return Err((
            "invalid_clock",
            "the clock's node must be this device's id without dashes".into(),
        ));
    }
    let mut fields = mutation.fields.clone();
    for (name, value) in &fields {
        let field = spec.field(name).ok_or_else(|| {
            (
                "unknown_field",
                format!("{} has no field {name:?}", spec.name),
            )
        })?;
        field
            .validate(value)
            .map_err(|err| (err.code, err.message))?;
        if field.server_written {
            return Err(("read_only_field", format!("only the server sets {name}")));
        }
    }
    if mutation.delete {
        fields.insert(DELETED.to_owned(), Value::Bool(true));
    }
    let key = (spec.name, mutation.record_id);
    if spec.name == ATTACHMENTS.name && !records.contains_key(&key) && !mutation.delete {
        check_new_attachment(actor, context, mutation, records)?;
        fields.insert(ATTACHMENT_STATE_FIELD.to_owned(), json!(ATTACHMENT_PENDING));
    }
    let frees_quota = spec.name == ATTACHMENTS.name
        && mutation.delete
        && records
            .get(&key)
            .is_some_and(|existing| existing.owner_id == actor.user_id && !existing.is_deleted());
    let freed = frees_quota
        .then(|| records.get(&key)?.value("size").as_i64())
        .flatten()
        .unwrap_or(0);
    let record = match records.get_mut(&key) {
        Some(record) => {
            check_existing_write(actor, spec, record, mutation)?;
            if record.is_deleted() {
                if mutation.delete {
                    // Deleted already (from another device, or a cascade): nothing to do.
                    return Ok((key, Vec::new()));
                }
                if matches!(spec.identity, Identity::ClientGenerated) {
                    // A delete is final for records the app names itself: the edit is handed back
                    // to its owner, who may save it as a new record.
                    return Err((
                        "record_deleted",
                        "this record was deleted (on another device, or with its parent); save \
                         the edit as a new record if it is still wanted"
                            .into(),
                    ));
                }
                // One record per participant and thing (assignment work, harvest, profile): an
                // edit after a delete starts it afresh.
                record.state.clear();
                record.conflicts.clear();
            }
            record
        }
        None => {
            let record = new_record(actor, context, spec, mutation, now)?;
            records.entry(key).or_insert(record)
        }
    };
    if let Some(assignment) = fields.get(ASSIGNMENT_FIELD).and_then(Value::as_str) {
        let assignment: Uuid = assignment.parse().unwrap_or_default();
        if context.assignments.get(&assignment) != Some(&record.cohort_id) {
            return Err((
                "unknown_assignment",
                "no such assignment in this cohort".into(),
            ));
        }
    }
    if let Some(announcement) = fields.get(ANNOUNCEMENT_FIELD).and_then(Value::as_str) {
        let announcement: Uuid = announcement.parse().unwrap_or_default();
        if context.announcements.get(&announcement) != Some(&record.cohort_id) {
            return Err((
                "unknown_announcement",
                "no such announcement in your inbox".into(),
            ));
        }
    }
    if let Identity::Linked(link) = spec.identity
        && let Some(new) = fields.get(link)
        && !record.value(link).is_null()
        && record.value(link) != new
    {
        return Err(("invalid_field", format!("{link} cannot change")));
    }
    for (name, new) in &fields {
        let fixed = spec.field(name).is_some_and(|field| field.immutable);
        if fixed && !record.value(name).is_null() && record.value(name) != new {
            return Err(("immutable_field", format!("{name} cannot change once set")));
        }
    }
    if let Some(counterpart) = fields.get(COUNTERPART_FIELD).and_then(Value::as_str) {
        let counterpart: Uuid = counterpart.parse().unwrap_or_default();
        if !context.members.contains(&(counterpart, record.cohort_id))
            || counterpart == actor.user_id
        {
            return Err((
                "unknown_counterpart",
                "the counterpart must be another member of this cohort".into(),
            ));
        }
    }

    let mut applied = merge::apply(&record.state, &fields, clock, &mutation.base);
    check_record_rules(spec, &applied.state, record.state.is_empty())?;
    let deleting = applied
        .state
        .get(DELETED)
        .is_some_and(|stamped| stamped.value == Value::Bool(true));
    if deleting {
        keep_only_tombstone(spec, &mut applied.state);
        applied.conflicts.clear();
        record.conflicts.clear();
    }
    let conflicts: Vec<ConflictReport> = applied
        .conflicts
        .iter()
        .map(|conflict| ConflictReport {
            field: conflict.field.clone(),
            kept_value: conflict.winner.value.clone(),
            kept_clock: conflict.winner.clock.clone(),
            lost_value: conflict.loser.value.clone(),
            lost_clock: conflict.loser.clock.clone(),
        })
        .collect();
    // A deleted attachment no longer counts against the quota, later in this batch too.
    context.attachment_usage -= freed;
    // Writing a field over the value the record holds (its clock as `base`) settles that field's
    // earlier conflicts: the owner saw the outcome and chose. This is how an app dismisses one.
    let settled: Vec<&String> = mutation
        .fields
        .keys()
        .filter(|field| {
            record.state.get(*field).map(|stamped| &stamped.clock) == mutation.base.get(*field)
                && mutation.base.contains_key(*field)
        })
        .collect();
    let before = record.conflicts.len();
    if record.owner_id == actor.user_id {
        record
            .conflicts
            .retain(|conflict| !settled.contains(&&conflict.field));
    }
    let dismissed = record.conflicts.len() != before;
    if applied.changed || !conflicts.is_empty() || dismissed {
        record.state = applied.state;
        record.conflicts.extend(conflicts.iter().cloned());
        let excess = record.conflicts.len().saturating_sub(MAX_KEPT_CONFLICTS);
        record.conflicts.drain(..excess);
        record.version = version;
    }
    Ok((key, conflicts))
}

fn check_existing_write(
    actor: &Actor,
    spec: &CollectionSpec,
    record: &StoredRecord,
    mutation: &Mutation,
) -> std::result::Result<(), Rejection> {
    if mutation
        .cohort_id
        .is_some_and(|cohort| cohort != record.cohort_id)
    {
        return Err((
            "cohort_mismatch",
            "a record cannot move to another cohort".into(),
        ));
    }
    if record.owner_id == actor.user_id {
        return Ok(());
    }
    let counterpart_write = shared_counterpart(record) == Some(actor.user_id)
        && !mutation.delete
        && mutation.fields.keys().all(|name| {
            spec.field(name)
                .is_some_and(|field| field.counterpart_writable)
        });
    if counterpart_write {
        Ok(())
    } else {
        Err(("forbidden", "this record belongs to someone else".into()))
    }
}

fn new_record(
    actor: &Actor,
    context: &PushContext,
    spec: &'static CollectionSpec,
    mutation: &Mutation,
    now: DateTime<Utc>,
) -> std::result::Result<StoredRecord, Rejection> {
    let cohort_id = mutation.cohort_id.ok_or_else(|| {
        (
            "cohort_required",
            "a new record needs its cohort_id".to_owned(),
        )
    })?;
    if !context.cohorts.contains(&cohort_id) {
        return Err((
            "forbidden",
            "you are not a participant of that cohort".into(),
        ));
    }
    let expected = match spec.identity {
        Identity::ClientGenerated => None,
        Identity::Linked(link) => {
            let linked = mutation
                .fields
                .get(link)
                .and_then(Value::as_str)
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| {
                    (
                        "missing_field",
                        format!("a new {} record needs {link}", spec.name),
                    )
                })?;
            Some(schema::linked_record_id(spec.name, actor.user_id, linked))
        }
        Identity::PerCohort => Some(schema::cohort_record_id(
            spec.name,
            actor.user_id,
            cohort_id,
        )),
        Identity::PerUser => Some(schema::user_record_id(spec.name, actor.user_id)),
    };
    if expected.is_some_and(|expected| expected != mutation.record_id) {
        return Err((
            "invalid_record_id",
            format!(
                "{} ids are derived; see the schema's id functions",
                spec.name
            ),
        ));
    }
    Ok(StoredRecord {
        spec,
        id: mutation.record_id,
        owner_id: actor.user_id,
        cohort_id,
        version: 0,
        state: RecordState::new(),
        conflicts: Vec::new(),
        created_at: now,
    })
}

/// A new attachment must belong to a live record of the caller in the same cohort, have an
/// accepted content type, and fit the file size limit and the caller's quota.
fn check_new_attachment(
    actor: &Actor,
    context: &mut PushContext,
    mutation: &Mutation,
    records: &HashMap<(&'static str, Uuid), StoredRecord>,
) -> std::result::Result<(), Rejection> {
    let text = |name: &str| mutation.fields.get(name).and_then(Value::as_str);
    let parent = text(PARENT_COLLECTION_FIELD)
        .and_then(schema::collection)
        .zip(text(PARENT_ID_FIELD).and_then(|id| id.parse::<Uuid>().ok()))
        .and_then(|(spec, id)| records.get(&(spec.name, id)));
    let belongs = parent.is_some_and(|parent| {
        parent.owner_id == actor.user_id
            && !parent.is_deleted()
            && Some(parent.cohort_id) == mutation.cohort_id
    });
    if !belongs {
        return Err((
            "unknown_parent",
            format!(
                "an attachment belongs to one of your own records ({}) in the same cohort; push \
                 that record first",
                ATTACHMENT_PARENTS.join(", ")
            ),
        ));
    }
    let rules = &context.attachment_rules;
    let content_type = text("content_type").unwrap_or_default();
    if !rules.allows(content_type) {
        return Err((
            "content_type_not_allowed",
            format!(
                "{content_type:?} cannot be attached; allowed are {}",
                rules.content_types.join(", ")
            ),
        ));
    }
    let size = mutation
        .fields
        .get("size")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if size > rules.max_file_bytes {
        return Err((
            "file_too_large",
            format!(
                "the file has {size} bytes; at most {} are allowed",
                rules.max_file_bytes
            ),
        ));
    }
    if context.attachment_usage + size > rules.quota_bytes {
        return Err((
            "quota_exceeded",
            format!(
                "your attachments take {} of your {} bytes; this one ({size} bytes) does not fit",
                context.attachment_usage, rules.quota_bytes
            ),
        ));
    }
    context.attachment_usage += size;
    Ok(())
}

/// Deleting a record deletes its attachments, as the server, in the same version.
async fn delete_attachments_of_deleted(
    txn: &impl sea_orm::ConnectionTrait,
    records: &mut HashMap<(&'static str, Uuid), StoredRecord>,
    touched: &mut HashSet<(&'static str, Uuid)>,
    clock: &Hlc,
    version: i64,
) -> std::result::Result<(), sea_orm::DbErr> {
    let deleted_parents: HashSet<Uuid> = touched
        .iter()
        .filter(|(collection, _)| ATTACHMENT_PARENTS.contains(collection))
        .filter_map(|key| records.get(key))
        .filter(|record| record.is_deleted())
        .map(|record| record.id)
        .collect();
    if deleted_parents.is_empty() {
        return Ok(());
    }
    let parents: Vec<Uuid> = deleted_parents.iter().copied().collect();
    let stored = attachment_store::live_attachments_of(txn, &parents).await?;
    let missing: Vec<Uuid> = stored
        .iter()
        .filter(|id| !records.contains_key(&(ATTACHMENTS.name, **id)))
        .copied()
        .collect();
    for record in store::find_records(txn, &ATTACHMENTS, &missing).await? {
        records.insert((ATTACHMENTS.name, record.id), record);
    }
    let deletion = BTreeMap::from([(DELETED.to_owned(), Value::Bool(true))]);
    for record in records.values_mut() {
        let orphan = record.spec.name == ATTACHMENTS.name
            && !record.is_deleted()
            && record
                .value(PARENT_ID_FIELD)
                .as_str()
                .and_then(|id| id.parse().ok())
                .is_some_and(|parent: Uuid| deleted_parents.contains(&parent));
        if orphan {
            record.state = merge::apply(&record.state, &deletion, clock, &BTreeMap::new()).state;
            keep_only_tombstone(record.spec, &mut record.state);
            record.conflicts.clear();
            record.version = version;
            touched.insert((ATTACHMENTS.name, record.id));
        }
    }
    Ok(())
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

/// Rules across fields, checked on the merged result.
fn check_record_rules(
    spec: &CollectionSpec,
    state: &RecordState,
    is_new: bool,
) -> std::result::Result<(), Rejection> {
    let value = |name: &str| state.get(name).map_or(&Value::Null, |s| &s.value);
    let deleted = value(DELETED) == &Value::Bool(true);
    if is_new && !deleted {
        for field in spec.fields.iter().filter(|field| !field.nullable) {
            if value(field.name).is_null() {
                return Err((
                    "missing_field",
                    format!("a new {} record needs {}", spec.name, field.name),
                ));
            }
        }
    }
    if spec.name == schema::INTERVIEWS.name
        && !value("interviewee_name").is_null()
        && value("name_consent") != &Value::Bool(true)
    {
        return Err((
            "consent_required",
            "an interviewee's name may only be stored with their consent (name_consent: true)"
                .into(),
        ));
    }
    Ok(())
}

/// The cohort member a feedback exercise is shared with, if any.
pub(crate) fn shared_counterpart(record: &StoredRecord) -> Option<Uuid> {
    if record.value(SHARED_FIELD) != &Value::Bool(true) || record.is_deleted() {
        return None;
    }
    record.value(COUNTERPART_FIELD).as_str()?.parse().ok()
}

/// A stored record as a change to send, taken apart rather than copied: pages carry thousands.
fn put(record: StoredRecord, actor: &Actor) -> Change {
    let mut fields = BTreeMap::new();
    let mut clocks = BTreeMap::new();
    let mut deleted = false;
    let tombstone = record.is_deleted();
    for (field, stamped) in record.state {
        if field == DELETED {
            deleted = stamped.value == Value::Bool(true);
        } else if tombstone {
            // A tombstone carries its id, version and delete clock, nothing else.
            continue;
        } else if !stamped.value.is_null() && record.spec.field(&field).is_some() {
            fields.insert(field.clone(), stamped.value);
        }
        clocks.insert(field, stamped.clock);
    }
    Change::Put(Record {
        collection: record.spec.name.to_owned(),
        id: record.id,
        version: record.version,
        owner_id: Some(record.owner_id),
        cohort_id: Some(record.cohort_id),
        deleted,
        fields,
        clocks,
        // Losing values are the owner's to see and resolve.
        conflicts: if record.owner_id == actor.user_id && !tombstone {
            record.conflicts
        } else {
            Vec::new()
        },
    })
}

fn read_only(
    collection: &str,
    id: Uuid,
    version: i64,
    cohort_id: Option<Uuid>,
    fields: Value,
) -> Change {
    let fields = match fields {
        Value::Object(map) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    Change::Put(Record {
        collection: collection.to_owned(),
        id,
        version,
        owner_id: None,
        cohort_id,
        deleted: false,
        fields,
        clocks: BTreeMap::new(),
        conflicts: Vec::new(),
    })
}

fn cohort_change(cohort: &crate::store::entity::cohort::Model) -> Change {
    read_only(
        "cohorts",
        cohort.id,
        cohort.version,
        Some(cohort.id),
        json!({
            "name": cohort.name,
            "organisation_id": cohort.organisation_id,
            "programme_id": cohort.programme_id,
            "time_zone": cohort.time_zone,
        }),
    )
}

fn day_change(
    day: &crate::store::entity::cohort_day::Model,
    zones: &HashMap<Uuid, String>,
) -> Change {
    let cohort = crate::store::entity::cohort::Model {
        id: day.cohort_id,
        organisation_id: Uuid::nil(),
        programme_id: Uuid::nil(),
        name: String::new(),
        time_zone: zones.get(&day.cohort_id).cloned().unwrap_or_default(),
        created_at: Utc::now(),
        version: 0,
        retention_warned_at: None,
        purged_at: None,
    };
    read_only(
        "cohort_days",
        day.id,
        day.version,
        Some(day.cohort_id),
        json!({
            "day_number": day.day_number,
            "title": day.title,
            "description": day.description,
            "date": day.date.to_string(),
            "starts_at": day.starts_at.to_string(),
            "ends_at": day.ends_at.to_string(),
            "location": day.location,
            "starts_at_utc": day_start(&cohort, day).to_rfc3339(),
        }),
    )
}

fn assignment_change(assignment: &crate::store::entity::cohort_assignment::Model) -> Change {
    read_only(
        "assignments",
        assignment.id,
        assignment.version,
        Some(assignment.cohort_id),
        json!({
            "after_day": assignment.after_day,
            "due_day": assignment.due_day,
            "kind": assignment.kind,
            "title": assignment.title,
            "description": assignment.description,
        }),
    )
}

async fn cohort_store_zones(
    db: &sea_orm::DatabaseConnection,
    cohort_ids: &[Uuid],
) -> Result<HashMap<Uuid, String>> {
    Ok(
        store::changed_cohorts(db, cohort_ids, -1, i64::MAX, store::UNLIMITED)
            .await?
            .into_iter()
            .map(|cohort| (cohort.id, cohort.time_zone))
            .collect(),
    )
}

fn announcement_change(
    row: &sea_orm::QueryResult,
) -> std::result::Result<(i64, Change), sea_orm::DbErr> {
    let version: i64 = row.try_get("", "version")?;
    let publish_at: DateTime<Utc> = row.try_get("", "publish_at")?;
    let cohort_id: Uuid = row.try_get("", "cohort_id")?;
    Ok((
        version,
        read_only(
            "announcements",
            row.try_get("", "id")?,
            version,
            Some(cohort_id),
            json!({
                "author_id": row.try_get::<Uuid>("", "author_id")?,
                "title": row.try_get::<String>("", "title")?,
                "body": row.try_get::<String>("", "body")?,
                "published_at": publish_at.to_rfc3339(),
                "to_whole_cohort": row.try_get::<bool>("", "to_whole_cohort")?,
            }),
        ),
    ))
}

fn change_rank(change: &Change) -> u8 {
    match change {
        Change::Evict { .. } => 0,
        Change::Put(_) => 1,
    }
}

fn change_key(change: &Change) -> (&str, Uuid) {
    match change {
        Change::Evict { collection, id } => (collection, *id),
        Change::Put(record) => (&record.collection, record.id),
    }
}

/// Where a page ends: every change with a version up to `bound` is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageBound {
    pub bound: i64,
    pub has_more: bool,
    /// A source came back full with rows of version `bound` only, so it may hold more of that
    /// version than were fetched: the page must fetch that version whole.
    pub bound_version_cut: bool,
}

/// How far a page reaches. Each source is in version order and was fetched with one row more
/// than `limit`. If a source came back full, its versions beyond what it returned are unknown:
/// the page ends before its last version, or, when all its rows are of one version, at that
/// version, which must then be fetched whole. The page ends at the lowest such bound. Whole
/// versions only: a push's changes always arrive together, however many they are.
pub fn page_bound(sources: &[Vec<(i64, Change)>], limit: usize, head: i64) -> PageBound {
    let mut bound = head;
    let mut has_more = false;
    let mut cut_at: Option<i64> = None;
    for source in sources {
        if source.len() > limit {
            has_more = true;
            let last = source.last().map_or(head, |(version, _)| *version);
            let first = source.first().map_or(head, |(version, _)| *version);
            if last > first {
                // Every row of this source with a version below `last` was fetched.
                bound = bound.min(last - 1);
            } else {
                bound = bound.min(last);
                cut_at = Some(cut_at.map_or(last, |cut| cut.min(last)));
            }
        }
    }
    PageBound {
        bound,
        // Nothing can come after the head.
        has_more: has_more && bound < head,
        bound_version_cut: cut_at == Some(bound),
    }
}
