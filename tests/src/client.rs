//! The reference client: what a phone does, in Rust, against the real server.
//!
//! A [`Device`] keeps the records it last pulled (the server's view), an outbox of local
//! mutations not yet acknowledged, and its cursor. What the user sees is the server's view with
//! the outbox re-applied on top ([`Device::view`]): pending local edits survive every pull. The
//! tests use devices as phones: take them offline, edit, reconnect, and compare replicas.

use std::{
    collections::BTreeMap,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use serde_json::Value;
use uuid::Uuid;
use veldwerk_sync_protocol::{
    APP_VERSION_HEADER, Change, Clock, Mutation, MutationResult, MutationStatus, PROTOCOL_HEADER,
    PROTOCOL_VERSION, PullResponse, PushRequest, PushResponse, Record,
    merge::{self, DELETED, RecordState, Stamped},
};

/// A device's copy of the server's records: (collection, id) to (version, deleted, fields).
pub type Replica = BTreeMap<(String, Uuid), (i64, bool, BTreeMap<String, Value>)>;

/// One device of one user.
pub struct Device {
    http: reqwest::Client,
    /// Where the server is, e.g. `http://127.0.0.1:41234`.
    pub address: String,
    access_token: String,
    pub user_id: Uuid,
    pub device_id: Uuid,
    clock: Clock,
    /// Added to the real time when stamping writes: a phone whose clock is wrong.
    pub clock_offset_ms: i64,
    /// Records as the server last sent them, by (collection, id).
    pub server: BTreeMap<(String, Uuid), Record>,
    /// Local mutations not yet acknowledged by the server, oldest first.
    pub outbox: Vec<Mutation>,
    /// Mutations the server refused, with its answer.
    pub rejected: Vec<(Mutation, MutationResult)>,
    pub cursor: Option<String>,
    /// Push at most this many mutations per request.
    pub batch_size: usize,
    /// Sent as `Veldwerk-App-Version`.
    pub app_version: String,
}

impl Device {
    /// A device signed in with a session from login, enrolment or device linking.
    pub fn new(address: &str, session: &Value) -> Self {
        Self::with_client(reqwest::Client::new(), address, session)
    }

    /// Like [`Device::new`], sharing an HTTP client (and its connection pool) with others.
    pub fn with_client(http: reqwest::Client, address: &str, session: &Value) -> Self {
        let id =
            |value: &Value| Uuid::parse_str(value.as_str().unwrap_or_default()).unwrap_or_default();
        let device_id = id(&session["device_id"]);
        Self {
            http,
            address: address.to_owned(),
            access_token: session["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            user_id: id(&session["user"]["id"]),
            device_id,
            clock: Clock::new(device_id.simple().to_string()),
            clock_offset_ms: 0,
            server: BTreeMap::new(),
            outbox: Vec::new(),
            rejected: Vec::new(),
            cursor: None,
            batch_size: 100,
            app_version: "1.0.0".to_owned(),
        }
    }

    fn now_ms(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        (real + self.clock_offset_ms).max(0) as u64
    }

    /// The access token, for tests that call other endpoints as this device.
    pub fn debug_token(&self) -> &str {
        &self.access_token
    }

    /// Records a local edit of some fields; works offline. Returns the mutation id.
    pub fn write(
        &mut self,
        collection: &str,
        record_id: Uuid,
        cohort_id: Option<Uuid>,
        fields: Value,
    ) -> Uuid {
        let fields: BTreeMap<String, Value> = match fields {
            Value::Object(map) => map.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        self.enqueue(collection, record_id, cohort_id, fields, false)
    }

    /// Records a local deletion; works offline.
    pub fn delete(&mut self, collection: &str, record_id: Uuid) -> Uuid {
        self.enqueue(collection, record_id, None, BTreeMap::new(), true)
    }

    fn enqueue(
        &mut self,
        collection: &str,
        record_id: Uuid,
        cohort_id: Option<Uuid>,
        fields: BTreeMap<String, Value>,
        delete: bool,
    ) -> Uuid {
        // The base: the clocks of the values the user is looking at, so the server can tell an
        // edit made over them from one made without seeing them.
        let seen = self.state(collection, record_id);
        let base = fields
            .keys()
            .chain(delete.then_some(&DELETED.to_owned()))
            .filter_map(|field| seen.get(field).map(|s| (field.clone(), s.clock.clone())))
            .collect();
        let now = self.now_ms();
        let mutation = Mutation {
            id: Uuid::now_v7(),
            collection: collection.to_owned(),
            record_id,
            cohort_id,
            fields,
            delete,
            clock: self.clock.tick(now),
            base,
        };
        let id = mutation.id;
        self.outbox.push(mutation);
        id
    }

    /// The record as the user sees it: the server's state with pending edits re-applied.
    fn state(&self, collection: &str, id: Uuid) -> RecordState {
        let mut state: RecordState = self
            .server
            .get(&(collection.to_owned(), id))
            .map(record_state)
            .unwrap_or_default();
        for mutation in self
            .outbox
            .iter()
            .filter(|m| m.collection == collection && m.record_id == id)
        {
            let mut fields = mutation.fields.clone();
            if mutation.delete {
                fields.insert(DELETED.to_owned(), Value::Bool(true));
            }
            state = merge::apply(&state, &fields, &mutation.clock, &mutation.base).state;
        }
        state
    }

    /// The fields of a record as the user sees it; `None` if unknown or deleted.
    pub fn view(&self, collection: &str, id: Uuid) -> Option<BTreeMap<String, Value>> {
        let state = self.state(collection, id);
        if state.is_empty()
            || state
                .get(DELETED)
                .is_some_and(|s| s.value == Value::Bool(true))
        {
            return None;
        }
        Some(
            state
                .into_iter()
                .filter(|(field, stamped)| field != DELETED && !stamped.value.is_null())
                .map(|(field, stamped)| (field, stamped.value))
                .collect(),
        )
    }

    /// Ids of the visible (not deleted) records of a collection.
    pub fn ids(&self, collection: &str) -> Vec<Uuid> {
        self.server
            .keys()
            .filter(|(c, _)| c == collection)
            .map(|(_, id)| *id)
            .chain(
                self.outbox
                    .iter()
                    .filter(|m| m.collection == collection)
                    .map(|m| m.record_id),
            )
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|id| self.view(collection, *id).is_some())
            .collect()
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(&self.access_token)
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
            .header(APP_VERSION_HEADER, &self.app_version)
    }

    /// Sends one batch from the outbox without touching local state; the raw answer.
    pub async fn send_batch(&self, batch: &[Mutation]) -> anyhow::Result<PushResponse> {
        let response = self
            .request(reqwest::Method::POST, "/v1/sync/push")
            .json(&PushRequest {
                mutations: batch.to_vec(),
            })
            .send()
            .await
            .context("push failed to reach the server")?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "push answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        Ok(response.json().await?)
    }

    /// Pushes the outbox in batches. Acknowledged mutations leave it; rejected ones move to
    /// [`Device::rejected`]. A failed request leaves the outbox as it was, to retry.
    pub async fn push(&mut self) -> anyhow::Result<()> {
        while !self.outbox.is_empty() {
            let batch: Vec<Mutation> = self.outbox.iter().take(self.batch_size).cloned().collect();
            let answer = self.send_batch(&batch).await?;
            self.clock.observe(&answer.server_clock);
            for result in answer.results {
                let Some(position) = self.outbox.iter().position(|m| m.id == result.id) else {
                    continue;
                };
                let mutation = self.outbox.remove(position);
                if result.status == MutationStatus::Rejected {
                    self.rejected.push((mutation, result));
                }
            }
        }
        Ok(())
    }

    /// The body of one pull from no cursor, as the server wrote it, without applying it.
    pub async fn raw_first_page(&self, limit: usize) -> anyhow::Result<String> {
        let response = self
            .request(
                reqwest::Method::GET,
                &format!("/v1/sync/pull?limit={limit}"),
            )
            .send()
            .await
            .context("pull failed to reach the server")?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            bail!("pull answered {status}: {body}");
        }
        Ok(body)
    }

    /// Pulls one page and applies it. Returns whether more pages wait.
    pub async fn pull_page(&mut self, limit: Option<usize>) -> anyhow::Result<bool> {
        // Cursors are URL-safe by construction (`c1.<digits>`).
        let mut parameters = Vec::new();
        if let Some(cursor) = &self.cursor {
            parameters.push(format!("cursor={cursor}"));
        }
        if let Some(limit) = limit {
            parameters.push(format!("limit={limit}"));
        }
        // Sync health, as PROTOCOL.md asks of apps: what the outbox still holds, and since when.
        parameters.push(format!("outbox_pending={}", self.outbox.len()));
        if let Some(oldest) = self.outbox.iter().map(|m| m.clock.wall_ms).min() {
            let at = chrono::DateTime::from_timestamp_millis(oldest as i64).unwrap_or_default();
            parameters.push(format!(
                "outbox_oldest={}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ));
        }
        let path = format!("/v1/sync/pull?{}", parameters.join("&"));
        let response = self
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .context("pull failed to reach the server")?;
        let status = response.status();
        if status == reqwest::StatusCode::GONE {
            // reset_required: start over from nothing, keeping the outbox.
            self.server.clear();
            self.cursor = None;
            return Ok(true);
        }
        if !status.is_success() {
            bail!(
                "pull answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        let page: PullResponse = response.json().await?;
        self.apply_page(page)
    }

    /// Applies a pulled page: puts replace local copies, evictions remove them.
    pub fn apply_page(&mut self, page: PullResponse) -> anyhow::Result<bool> {
        self.clock.observe(&page.server_clock);
        for change in page.changes {
            match change {
                Change::Put(record) => {
                    for clock in record.clocks.values() {
                        self.clock.observe(clock);
                    }
                    self.server
                        .insert((record.collection.clone(), record.id), record);
                }
                Change::Evict { collection, id } => {
                    self.server.remove(&(collection.clone(), id));
                    self.outbox
                        .retain(|m| !(m.collection == collection && m.record_id == id));
                }
            }
        }
        self.cursor = Some(page.cursor);
        Ok(page.has_more)
    }

    /// Pulls until there is nothing more.
    pub async fn pull(&mut self) -> anyhow::Result<()> {
        while self.pull_page(None).await? {}
        Ok(())
    }

    /// Push, then pull: what the app does when it comes online.
    pub async fn sync(&mut self) -> anyhow::Result<()> {
        self.push().await?;
        self.pull().await
    }

    /// The server's view as comparable data: (collection, id) to (version, deleted, fields).
    pub fn replica(&self) -> Replica {
        self.server
            .iter()
            .map(|(key, record)| {
                (
                    key.clone(),
                    (record.version, record.deleted, record.fields.clone()),
                )
            })
            .collect()
    }
}

/// A pulled record as merge state (fields with their clocks).
fn record_state(record: &Record) -> RecordState {
    let mut state = RecordState::new();
    if record.clocks.is_empty() {
        // Read-only collections carry no clocks: only the server writes them.
        let server = veldwerk_sync_protocol::Hlc::new(0, 0, "server");
        for (field, value) in &record.fields {
            state.insert(
                field.clone(),
                Stamped {
                    value: value.clone(),
                    clock: server.clone(),
                },
            );
        }
        return state;
    }
    for (field, clock) in &record.clocks {
        let value = if field == DELETED {
            Value::Bool(record.deleted)
        } else {
            record.fields.get(field).cloned().unwrap_or(Value::Null)
        };
        state.insert(
            field.clone(),
            Stamped {
                value,
                clock: clock.clone(),
            },
        );
    }
    state
}
