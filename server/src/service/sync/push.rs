//! Push: a device's mutations applied exactly once, merged per field, checked against the
//! caller's scope and the collections' rules, in one write transaction.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_sync_protocol::{
    ConflictReport, Hlc, MAX_BATCH, Mutation, MutationResult, MutationStatus, PushRequest,
    PushResponse,
    merge::{self, DELETED, RecordState},
    schema::{
        self, ANNOUNCEMENT_FIELD, ASSIGNMENT_FIELD, ATTACHMENT_PARENTS, ATTACHMENT_PENDING,
        ATTACHMENT_STATE_FIELD, ATTACHMENTS, COLLECTIONS, COUNTERPART_FIELD, CollectionSpec,
        Identity, PARENT_COLLECTION_FIELD, PARENT_ID_FIELD,
    },
};

use crate::service::{Actor, Error, Result, Role, Services};
use crate::store::{
    attachments as attachment_store,
    sync::{self as store, MAX_KEPT_CONFLICTS, StoredRecord},
};

use super::{ChangeNotice, MAX_CLOCK_SKEW_MS, keep_only_tombstone, shared_counterpart};

impl Services {
    /// Applies a batch of mutations from the caller's device in one transaction. Each mutation is
    /// applied at most once: a mutation id seen before answers its first result.
    #[tracing::instrument(skip_all, fields(user.id = %actor.user_id, mutations = request.mutations.len()))]
    pub async fn push(&self, actor: &Actor, request: PushRequest) -> Result<PushResponse> {
        self.push_unchanged_since(actor, request, None).await
    }

    /// [`Services::push`], refused as a whole with `changed_since_pull` when `since` is given and
    /// a record a new mutation writes, that the caller can see, has a version after it: the
    /// check WatermelonDB's contract asks for, made inside the push's transaction so that no
    /// write can slip in between. A mutation applied before (a replay) is no conflict.
    pub(crate) async fn push_unchanged_since(
        &self,
        actor: &Actor,
        request: PushRequest,
        since: Option<i64>,
    ) -> Result<PushResponse> {
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
        crate::service::accounts::live_device_on(&txn, actor.device_id).await?;
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
        if let Some(since) = since {
            let changed = request.mutations.iter().find(|mutation| {
                !known.contains_key(&mutation.id)
                    && records
                        .get(&(mutation_spec_name(mutation), mutation.record_id))
                        .is_some_and(|record| {
                            record.version > since
                                && (record.owner_id == actor.user_id
                                    || shared_counterpart(record) == Some(actor.user_id))
                        })
            });
            if let Some(mutation) = changed {
                return Err(Error::conflict(
                    "changed_since_pull",
                    format!(
                        "{} {} changed on the server after your last pull; pull, then push again",
                        mutation.collection, mutation.record_id
                    ),
                ));
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

/// The static name of a mutation's collection, to look it up among the loaded records (an
/// unknown collection matches nothing).
fn mutation_spec_name(mutation: &Mutation) -> &'static str {
    schema::collection(&mutation.collection).map_or("", |spec| spec.name)
}
