//! Pull: the changes in the caller's scope after a cursor, whole versions only, from every
//! source (records, evictions, grants, the cohort's read-only rows, announcements).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_sync_protocol::{
    Change, Hlc, MAX_PULL_LIMIT, PullResponse, Record, cursor, schema::COLLECTIONS,
};

use crate::service::{Actor, Error, Result, Role, Services, cohorts::day_start};
use crate::store::sync::{self as store, Audience, StoredRecord};

impl Services {
    /// Changes in the caller's scope after `cursor`, at most `limit` (whole versions only).
    pub async fn pull(
        &self,
        actor: &Actor,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<PullResponse> {
        self.pull_page(actor, cursor, limit).await?.decode()
    }

    /// The same page with records as their stored JSON, for writing out as it is.
    #[tracing::instrument(skip_all, fields(user.id = %actor.user_id))]
    pub async fn pull_page(
        &self,
        actor: &Actor,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<PullPage> {
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
            return Ok(PullPage {
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
        let sources = store::PullSources {
            collections: COLLECTIONS,
            audience: &audience,
            cohort_ids: &member_cohorts,
            user_id: actor.user_id,
        };
        if after > 0 && !store::anything_changed(&self.db, sources, after, head).await? {
            // Others wrote since the cursor, nothing in the caller's scope: one statement
            // instead of every source's query (what the full path would answer, as
            // `page_bound` of empty sources is the head).
            return Ok(PullPage {
                changes: Vec::new(),
                cursor: cursor::encode(head),
                has_more: false,
                server_clock: self.server_clock(None, now_ms),
            });
        }
        if after == 0 && actor.role != Role::Participant {
            // A staff device starting from scratch is about to hold these cohorts' participant
            // records: the audit log says so, once per start (not per page).
            for cohort in &staff_cohorts {
                crate::service::audit::record(
                    &self.db,
                    actor.provider_id,
                    Some(actor),
                    crate::service::audit::AuditEvent::new(
                        crate::service::audit::AuditAction::CohortRecordsSynced,
                    )
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
        let mut changes: Vec<(i64, PageChange)> = sources
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
                    changes.push((record.version, PageChange::Change(put(record, actor))));
                }
            }
            let ids = [cohort_id];
            for c in store::changed_cohorts(&self.db, &ids, -1, after, store::UNLIMITED).await? {
                changes.push((c.version, PageChange::Change(cohort_change(&c))));
            }
            let zones = cohort_store_zones(&self.db, &ids).await?;
            for d in store::changed_days(&self.db, &ids, -1, after, store::UNLIMITED).await? {
                changes.push((d.version, PageChange::Change(day_change(&d, &zones))));
            }
            for a in store::changed_assignments(&self.db, &ids, -1, after, store::UNLIMITED).await?
            {
                changes.push((a.version, PageChange::Change(assignment_change(&a))));
            }
            let recipient = (actor.role == Role::Participant).then_some(actor.user_id);
            for row in
                store::changed_announcements(&self.db, &ids, recipient, -1, after, store::UNLIMITED)
                    .await?
            {
                let (version, change) = announcement_change(&row)?;
                changes.push((version, PageChange::Change(change)));
            }
        }

        // Version order; within a version evictions first, so a record evicted and re-shared in
        // one batch ends up present.
        changes.sort_by(|(va, a), (vb, b)| (va, a.order_key()).cmp(&(vb, b.order_key())));
        Ok(PullPage {
            changes: changes
                .into_iter()
                .filter(|(_, change)| !matches!(change, PageChange::Moved { .. }))
                .map(|(_, change)| change)
                .collect(),
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
    ) -> Result<Vec<Vec<(i64, PageChange)>>> {
        let PullScope {
            actor,
            audience,
            member_cohorts,
        } = scope;
        let mut sources: Vec<Vec<(i64, PageChange)>> = Vec::new();
        for spec in COLLECTIONS {
            let rows = store::changed_page_records(
                &self.db,
                spec,
                audience,
                actor.user_id,
                after,
                upto,
                fetch,
            )
            .await?;
            sources.push(
                rows.into_iter()
                    .map(|r| (r.version, page_put(r, actor)))
                    .collect(),
            );
        }
        let cohorts = store::changed_cohorts(&self.db, member_cohorts, after, upto, fetch).await?;
        sources.push(
            cohorts
                .iter()
                .map(|c| (c.version, PageChange::Change(cohort_change(c))))
                .collect(),
        );
        let days = store::changed_days(&self.db, member_cohorts, after, upto, fetch).await?;
        let zones: HashMap<Uuid, String> = cohort_store_zones(&self.db, member_cohorts).await?;
        sources.push(
            days.iter()
                .map(|d| (d.version, PageChange::Change(day_change(d, &zones))))
                .collect(),
        );
        let assignments =
            store::changed_assignments(&self.db, member_cohorts, after, upto, fetch).await?;
        sources.push(
            assignments
                .iter()
                .map(|a| (a.version, PageChange::Change(assignment_change(a))))
                .collect(),
        );
        let recipient = (actor.role == Role::Participant).then_some(actor.user_id);
        let announcements =
            store::changed_announcements(&self.db, member_cohorts, recipient, after, upto, fetch)
                .await?;
        sources.push(
            announcements
                .iter()
                .map(|row| {
                    announcement_change(row)
                        .map(|(version, change)| (version, PageChange::Change(change)))
                })
                .collect::<std::result::Result<_, sea_orm::DbErr>>()?,
        );
        let evictions = store::evictions_since(&self.db, actor.user_id, after, upto, fetch).await?;
        sources.push(
            evictions
                .into_iter()
                .map(|e| {
                    (
                        e.version,
                        PageChange::Change(Change::Evict {
                            collection: e.collection,
                            id: e.record_id,
                        }),
                    )
                })
                .collect(),
        );
        Ok(sources)
    }
}

/// Whose changes a pull gathers.
struct PullScope<'a> {
    actor: &'a Actor,
    audience: Audience,
    member_cohorts: &'a [Uuid],
}

/// A stored record as a change to send, taken apart rather than copied: pages carry thousands.
pub(super) fn put(record: StoredRecord, actor: &Actor) -> Change {
    // Losing values are the owner's to see and resolve.
    let owner = record.owner_id == actor.user_id;
    Change::Put(record.into_wire(owner))
}

fn page_put(record: store::PageRecord, actor: &Actor) -> PageChange {
    let (collection, id) = (record.spec.name, record.id);
    match record.body {
        store::PageBody::Json(json) => PageChange::Json {
            collection,
            id,
            json,
        },
        store::PageBody::Decoded(stored) => PageChange::Change(put(stored, actor)),
        store::PageBody::Moved => PageChange::Moved { collection, id },
    }
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

/// One change of a pull page.
#[derive(Debug)]
pub enum PageChange {
    /// A change built from its rows.
    Change(Change),
    /// A record's JSON as stored with it (see `store::sync::wire_json`), sent as it is.
    Json {
        collection: &'static str,
        id: Uuid,
        json: String,
    },
    /// A record that changed again while the page was read: it counts towards the page's size
    /// but is sent with its new version, in a later page.
    Moved { collection: &'static str, id: Uuid },
}

impl PageChange {
    /// Within a version evictions come first, then records by collection and id.
    fn order_key(&self) -> (u8, &str, Uuid) {
        match self {
            PageChange::Change(Change::Evict { collection, id }) => (0, collection, *id),
            PageChange::Change(Change::Put(record)) => (1, &record.collection, record.id),
            PageChange::Json { collection, id, .. } | PageChange::Moved { collection, id } => {
                (1, collection, *id)
            }
        }
    }
}

/// A pull page as the service builds it: records mostly as their stored JSON, which the native
/// endpoint writes out as it is.
#[derive(Debug)]
pub struct PullPage {
    /// In version order, whole versions only; never `PageChange::Moved`.
    pub changes: Vec<PageChange>,
    pub cursor: String,
    pub has_more: bool,
    pub server_clock: Hlc,
}

impl PullPage {
    /// The page as protocol types, for the adapters (RxDB, WatermelonDB) and tests.
    pub fn decode(self) -> Result<PullResponse> {
        let changes = self
            .changes
            .into_iter()
            .filter_map(|change| match change {
                PageChange::Change(change) => Some(Ok(change)),
                PageChange::Json { json, .. } => Some(serde_json::from_str(&json).map_err(|err| {
                    Error::Internal(anyhow::anyhow!("a stored record does not parse: {err}"))
                })),
                PageChange::Moved { .. } => None,
            })
            .collect::<Result<_>>()?;
        Ok(PullResponse {
            changes,
            cursor: self.cursor,
            has_more: self.has_more,
            server_clock: self.server_clock,
        })
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
pub fn page_bound<T>(sources: &[Vec<(i64, T)>], limit: usize, head: i64) -> PageBound {
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
