//! The load generator's scenarios: simulated participants' devices speaking the real sync
//! protocol over HTTP to a running server (see `src/bin/loadgen.rs` for the program, and
//! `BENCHMARKS.md` for the figures). Each scenario creates its own data through the API, measures,
//! and checks that every device converged to the server's state: a scenario that measured a
//! wrong answer returns an error instead of a figure.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use veldwerk_server::service::demo;
use veldwerk_sync_protocol::{
    APP_VERSION_HEADER, Change, DEFAULT_PULL_LIMIT, PROTOCOL_HEADER, PROTOCOL_VERSION, PullResponse,
};

use crate::client::Device;

pub mod couch;
pub mod standard;

/// The server under load: its address and, when the load generator started it, its process id
/// (for memory figures).
#[derive(Debug, Clone)]
pub struct Target {
    pub address: String,
    pub server_pid: Option<u32>,
}

impl Target {
    /// The server's resident memory now, in MB (Linux, only for a process we know).
    pub fn rss_mb(&self) -> Option<f64> {
        self.proc_status("VmRSS:")
    }

    /// The most resident memory the server has had, in MB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        self.proc_status("VmHWM:")
    }

    /// CPU time the server has used (user and system), in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        process_cpu_seconds(&format!("/proc/{}/stat", self.server_pid?))
    }

    fn proc_status(&self, field: &str) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server_pid?)).ok()?;
        let line = status.lines().find(|line| line.starts_with(field))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }
}

/// User and system CPU seconds of a process, from its `/proc/.../stat` (Linux's 100 ticks a
/// second).
fn process_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// How big each scenario is.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Upload: devices pushing at once, and interviews each (batches of `batch`).
    pub upload_devices: usize,
    pub upload_mutations: usize,
    pub batch: usize,
    /// Bytes of notes per interview.
    pub record_bytes: usize,
    /// Downloads: participants in one cohort and interviews each.
    pub cohort_participants: usize,
    pub records_per_participant: usize,
    /// Up-to-date pulls: the records stored (one measurement per size) and pulls per round.
    pub stored_records: Vec<usize>,
    pub idle_pulls: usize,
    /// Reconnect storm: devices and offline mutations each.
    pub storm_devices: usize,
    pub storm_mutations: usize,
    /// Idle live streams, over this many devices.
    pub streams: usize,
    pub stream_devices: usize,
    /// Media: file size and chunk size in MB, and uploads at once.
    pub media_mb: usize,
    pub media_chunk_mb: usize,
    pub media_parallel: usize,
    /// The standard workload (issue "Performance"): participants and interviews each, the
    /// records stored for the up-to-date pulls, pulls per measurement, the largest pull page.
    pub standard_devices: usize,
    pub standard_records: usize,
    pub standard_stored: Vec<usize>,
    pub standard_pulls: usize,
    pub standard_largest_page: usize,
    /// Measurement rounds inside a scenario (downloads, up-to-date pulls).
    pub rounds: usize,
    /// Requests in flight while setting up data.
    pub setup_concurrency: usize,
}

impl Sizes {
    /// The sizes of the targets in the issue "Sync at scale".
    pub fn full() -> Self {
        Self {
            upload_devices: 100,
            upload_mutations: 500,
            batch: 100,
            record_bytes: 2_000,
            cohort_participants: 100,
            records_per_participant: 1_000,
            stored_records: vec![10_000, 1_000_000],
            idle_pulls: 2_000,
            storm_devices: 1_000,
            storm_mutations: 20,
            streams: 10_000,
            stream_devices: 1_000,
            media_mb: 50,
            media_chunk_mb: 1,
            media_parallel: 10,
            standard_devices: 20,
            standard_records: 1_000,
            standard_stored: vec![20_000, 200_000],
            standard_pulls: 2_000,
            standard_largest_page: veldwerk_sync_protocol::MAX_PULL_LIMIT,
            rounds: 3,
            setup_concurrency: 8,
        }
    }

    /// Small enough for CI, where only correctness counts.
    pub fn smoke() -> Self {
        Self {
            upload_devices: 4,
            upload_mutations: 30,
            batch: 10,
            record_bytes: 500,
            cohort_participants: 5,
            records_per_participant: 12,
            stored_records: vec![200],
            idle_pulls: 20,
            storm_devices: 12,
            storm_mutations: 5,
            streams: 24,
            stream_devices: 6,
            media_mb: 3,
            media_chunk_mb: 1,
            media_parallel: 2,
            standard_devices: 3,
            standard_records: 20,
            standard_stored: vec![60, 150],
            standard_pulls: 20,
            standard_largest_page: 40,
            rounds: 2,
            setup_concurrency: 4,
        }
    }
}

/// What a figure should be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
    /// Reported, no target.
    None,
}

impl Goal {
    /// Whether a value meets it (`None` when there is no target).
    pub fn met(self, value: f64) -> Option<bool> {
        match self {
            Goal::AtLeast(goal) => Some(value >= goal),
            Goal::AtMost(goal) => Some(value <= goal),
            Goal::None => None,
        }
    }
}

/// One figure of one scenario run.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub scenario: &'static str,
    pub metric: String,
    pub value: f64,
    pub unit: &'static str,
    pub goal: Goal,
}

fn measured(
    scenario: &'static str,
    metric: impl Into<String>,
    value: f64,
    unit: &'static str,
    goal: Goal,
) -> Measurement {
    Measurement {
        scenario,
        metric: metric.into(),
        value,
        unit,
        goal,
    }
}

/// The scenarios, by name, in the order they run.
pub const SCENARIOS: &[&str] = &[
    "upload", "download", "idle", "storm", "streams", "media", "standard",
];

/// Runs one scenario against a fresh server.
pub async fn run(name: &str, target: &Target, sizes: &Sizes) -> anyhow::Result<Vec<Measurement>> {
    match name {
        "upload" => upload(target, sizes).await,
        "download" => downloads(target, sizes).await,
        "idle" => idle_pulls(target, sizes).await,
        "storm" => storm(target, sizes).await,
        "streams" => streams(target, sizes).await,
        "media" => media(target, sizes).await,
        "standard" => standard::run(target, sizes).await,
        other => bail!(
            "unknown scenario {other:?}; known: {}",
            SCENARIOS.join(", ")
        ),
    }
}

/// The HTTP side of setting up: staff, cohorts, invites, enrolment.
struct Api {
    http: reqwest::Client,
    address: String,
}

impl Api {
    fn new(address: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("an HTTP client"),
            address: address.to_owned(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(
            status.is_success(),
            "{method} {path} answered {status}: {text}"
        );
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> anyhow::Result<Value> {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    async fn get(&self, path: &str, token: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    async fn login(&self, email: &str, password: &str) -> anyhow::Result<Value> {
        self.post(
            "/v1/auth/login",
            None,
            json!({ "email": email, "password": password }),
        )
        .await
    }
}

fn text(value: &Value, pointer: &str) -> anyhow::Result<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("{pointer} missing in {value}"))
}

/// The demo provider's staff (the server runs with demo data), signed in.
struct Staff {
    admin: String,
    trainer: String,
    trainer_id: String,
    programme_id: String,
    trainer_session: Value,
}

async fn staff(api: &Api) -> anyhow::Result<Staff> {
    let admin = api
        .login(demo::ADMIN_EMAIL, demo::ADMIN_PASSWORD)
        .await
        .context("logging in as the demo admin (the server must run with demo data)")?;
    let trainer = api
        .login(demo::TRAINER_EMAIL, demo::TRAINER_PASSWORD)
        .await?;
    let admin_token = text(&admin, "/access_token")?;
    let programmes = api.get("/v1/programmes", &admin_token).await?;
    Ok(Staff {
        admin: admin_token,
        trainer: text(&trainer, "/access_token")?,
        trainer_id: text(&trainer, "/user/id")?,
        programme_id: text(&programmes, "/0/id")?,
        trainer_session: trainer,
    })
}

/// Creates `count` cohorts, each in a municipality of its own, trained by the demo trainer.
async fn cohorts(api: &Api, staff: &Staff, count: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(count);
    for index in 0..count {
        let organisation = api
            .post(
                "/v1/organisations",
                Some(&staff.admin),
                json!({ "name": format!("Gemeente Belasting {index} {}", Uuid::new_v4().simple()) }),
            )
            .await?;
        let first = chrono::Utc::now().date_naive() + chrono::Duration::days(7);
        let days: Vec<Value> = (0..6)
            .map(|day| {
                json!({
                    "day_number": day + 1,
                    "date": (first + chrono::Duration::weeks(day)).to_string(),
                    "starts_at": "09:30:00",
                    "ends_at": "16:30:00",
                    "location": format!("Zaal {}", day + 1),
                })
            })
            .collect();
        let cohort = api
            .post(
                "/v1/cohorts",
                Some(&staff.admin),
                json!({
                    "organisation_id": text(&organisation, "/id")?,
                    "programme_id": staff.programme_id,
                    "name": format!("Belasting, groep {index}"),
                    "days": days,
                    "trainer_ids": [staff.trainer_id],
                }),
            )
            .await?;
        ids.push(text(&cohort, "/id")?);
    }
    Ok(ids)
}

/// Enrols `count` participants in a cohort; returns their sessions (one device each).
async fn enrol(
    api: &Api,
    staff: &Staff,
    cohort: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Value>> {
    let mut codes = Vec::with_capacity(count);
    while codes.len() < count {
        let batch = (count - codes.len()).min(200);
        let invites = api
            .post(
                &format!("/v1/cohorts/{cohort}/invites"),
                Some(&staff.trainer),
                json!({ "count": batch }),
            )
            .await?;
        for invite in invites.as_array().context("a list of invites")? {
            codes.push(text(invite, "/code")?);
        }
    }
    stream::iter(codes.into_iter().enumerate())
        .map(|(index, code)| async move {
            api.post(
                "/v1/auth/enrol",
                None,
                json!({ "invite_code": code, "display_name": format!("Deelnemer {index}"), "device_name": "telefoon" }),
            )
            .await
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await
}

/// Participants' devices in `cohorts` cohorts, `per_cohort` each, with one shared HTTP client.
async fn fleet(
    api: &Api,
    staff: &Staff,
    cohorts_count: usize,
    per_cohort: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<(Device, Uuid)>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let mut devices = Vec::new();
    for cohort in cohorts(api, staff, cohorts_count).await? {
        let cohort_id: Uuid = cohort.parse()?;
        for session in enrol(api, staff, &cohort, per_cohort, concurrency).await? {
            let mut device = Device::with_client(http.clone(), &api.address, &session);
            device.batch_size = 100;
            devices.push((device, cohort_id));
        }
    }
    Ok(devices)
}

/// About `count` participants' devices, in as many cohorts of at most 100 as that takes.
async fn fleet_in_cohorts_of_100(
    api: &Api,
    staff: &Staff,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<(Device, Uuid)>> {
    let cohorts_count = count.div_ceil(100).max(1);
    fleet(
        api,
        staff,
        cohorts_count,
        count.div_ceil(cohorts_count),
        concurrency,
    )
    .await
}

const WORDS: &[&str] = &[
    "bewoners",
    "wijkcentrum",
    "gesprek",
    "buurt",
    "gemeente",
    "vertrouwen",
    "signaal",
    "samen",
    "ontmoeting",
    "jongeren",
    "zorg",
    "veiligheid",
    "luisteren",
    "afspraak",
    "netwerk",
    "initiatief",
    "straat",
    "inzicht",
    "vraag",
    "ervaring",
    "opgave",
    "bereik",
    "wethouder",
    "ondernemer",
];

/// Interview notes of about `bytes` bytes, different per seed.
fn notes(bytes: usize, seed: u64) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(7);
    let mut text = String::with_capacity(bytes + 16);
    while text.len() < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
        text.push(' ');
    }
    text.truncate(bytes);
    text
}

/// Writes `count` interviews into the device's outbox (offline); returns (id, notes) pairs.
fn write_interviews(
    device: &mut Device,
    cohort: Uuid,
    count: usize,
    bytes: usize,
    seed: u64,
) -> Vec<(Uuid, String)> {
    (0..count)
        .map(|index| {
            let id = Uuid::now_v7();
            let notes = notes(bytes, seed.wrapping_mul(1_000_003) + index as u64);
            device.write(
                "interviews",
                id,
                Some(cohort),
                json!({
                    "name_consent": false, "status": "done", "place": "Wijkcentrum De Boog",
                    "interviewee_role": "buurtwerker", "notes": notes,
                }),
            );
            (id, notes)
        })
        .collect()
}

/// Pulls until up to date and checks the device holds exactly what it wrote, as written.
async fn check_converged(device: &mut Device, written: &[(Uuid, String)]) -> anyhow::Result<()> {
    device.pull().await?;
    ensure!(
        device.outbox.is_empty() && device.rejected.is_empty(),
        "device {} has {} unsent and {} rejected mutations",
        device.device_id,
        device.outbox.len(),
        device.rejected.len()
    );
    let own: usize = device
        .server
        .iter()
        .filter(|((collection, _), record)| {
            collection == "interviews" && record.owner_id == Some(device.user_id)
        })
        .count();
    ensure!(
        own == written.len(),
        "device {} holds {own} of its interviews, wrote {}",
        device.device_id,
        written.len()
    );
    for (id, notes) in written {
        let record = device
            .server
            .get(&("interviews".to_owned(), *id))
            .with_context(|| format!("interview {id} did not come back"))?;
        ensure!(
            record.fields.get("notes").and_then(Value::as_str) == Some(notes.as_str()),
            "interview {id} came back changed"
        );
    }
    Ok(())
}

/// Samples the server's resident memory until stopped; the highest value seen.
struct MemorySampler {
    stop: Arc<AtomicBool>,
    peak_kb: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl MemorySampler {
    fn start(target: &Target) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kb = Arc::new(AtomicU64::new(0));
        let (flag, peak, target) = (stop.clone(), peak_kb.clone(), target.clone());
        let task = tokio::spawn(async move {
            while !flag.load(Ordering::Relaxed) {
                if let Some(mb) = target.rss_mb() {
                    peak.fetch_max((mb * 1024.0) as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self {
            stop,
            peak_kb,
            task,
        }
    }

    async fn stop(self) -> Option<f64> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let kb = self.peak_kb.load(Ordering::Relaxed);
        (kb > 0).then(|| kb as f64 / 1024.0)
    }
}

/// Many devices push their offline interviews at once, in batches.
async fn upload(target: &Target, sizes: &Sizes) -> anyhow::Result<Vec<Measurement>> {
    let api = Api::new(&target.address);
    let staff = staff(&api).await?;
    let mut devices =
        fleet_in_cohorts_of_100(&api, &staff, sizes.upload_devices, sizes.setup_concurrency)
            .await?;
    let mut written = Vec::new();
    for (index, (device, cohort)) in devices.iter_mut().enumerate() {
        device.batch_size = sizes.batch;
        written.push(write_interviews(
            device,
            *cohort,
            sizes.upload_mutations,
            sizes.record_bytes,
            index as u64,
        ));
    }
    let total: usize = written.iter().map(Vec::len).sum();
    let sampler = MemorySampler::start(target);
    let started = Instant::now();
    let pushed: Vec<anyhow::Result<()>> = stream::iter(devices.iter_mut())
        .map(|(device, _)| device.push())
        .buffer_unordered(sizes.upload_devices)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let peak = sampler.stop().await;
    for result in pushed {
        result?;
    }
    for ((device, _), written) in devices.iter_mut().zip(&written) {
        check_converged(device, written).await?;
    }
    let mut results = vec![measured(
        "upload",
        format!(
            "mutations/s ({} devices x {} interviews of {} B, batches of {})",
            devices.len(),
            sizes.upload_mutations,
            sizes.record_bytes,
            sizes.batch
        ),
        total as f64 / elapsed.as_secs_f64(),
        "/s",
        Goal::AtLeast(10_000.0),
    )];
    if let Some(peak) = peak {
        results.push(measured(
            "upload",
            "server RSS during the upload (peak sampled)",
            peak,
            "MB",
            Goal::AtMost(100.0),
        ));
    }
    Ok(results)
}

/// Pulls everything the token may see from no cursor: the records received, how many of each
/// collection belong to `cohort`, and the time it took. Parses each page into the protocol's
/// types, as a client does, without keeping them.
async fn download_all(
    http: &reqwest::Client,
    address: &str,
    token: &str,
    cohort: Uuid,
) -> anyhow::Result<(usize, BTreeMap<String, usize>, Duration)> {
    let started = Instant::now();
    let mut cursor: Option<String> = None;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    loop {
        let page = pull_page(http, address, token, cursor.as_deref(), 5_000).await?;
        for change in &page.changes {
            if let Change::Put(record) = change {
                if record.cohort_id == Some(cohort) {
                    *counts.entry(record.collection.clone()).or_default() += 1;
                }
                total += 1;
            }
        }
        cursor = Some(page.cursor);
        if !page.has_more {
            return Ok((total, counts, started.elapsed()));
        }
    }
}

/// A GET of a sync endpoint with the headers every sync request carries.
fn sync_request(http: &reqwest::Client, url: &str, token: &str) -> reqwest::RequestBuilder {
    http.get(url)
        .bearer_auth(token)
        .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
        .header(APP_VERSION_HEADER, "1.0.0")
}

/// One pull page, parsed into the protocol's types as a client does.
async fn pull_page(
    http: &reqwest::Client,
    address: &str,
    token: &str,
    cursor: Option<&str>,
    limit: usize,
) -> anyhow::Result<PullResponse> {
    let mut url = format!("{address}/v1/sync/pull?limit={limit}");
    if let Some(cursor) = cursor {
        url.push_str(&format!("&cursor={cursor}"));
    }
    let response = sync_request(http, &url, token).send().await?;
    ensure!(
        response.status().is_success(),
        "pull answered {}",
        response.status()
    );
    Ok(serde_json::from_slice(&response.bytes().await?)?)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A cohort's trainer downloads all of it; one participant downloads their own part of it.
async fn downloads(target: &Target, sizes: &Sizes) -> anyhow::Result<Vec<Measurement>> {
    let api = Api::new(&target.address);
    let staff = staff(&api).await?;
    let mut devices = fleet(
        &api,
        &staff,
        1,
        sizes.cohort_participants,
        sizes.setup_concurrency,
    )
    .await?;
    let mut written = Vec::new();
    for (index, (device, cohort)) in devices.iter_mut().enumerate() {
        device.batch_size = 250;
        written.push(write_interviews(
            device,
            *cohort,
            sizes.records_per_participant,
            sizes.record_bytes,
            index as u64,
        ));
    }
    let pushed: Vec<anyhow::Result<()>> = stream::iter(devices.iter_mut())
        .map(|(device, _)| device.push())
        .buffer_unordered(sizes.setup_concurrency)
        .collect()
        .await;
    for result in pushed {
        result?;
    }
    let total = sizes.cohort_participants * sizes.records_per_participant;
    eprintln!("  {total} interviews stored; measuring downloads");
    let http = reqwest::Client::new();
    let trainer_token = text(&staff.trainer_session, "/access_token")?;
    let participant_token = devices[0].0.debug_token().to_owned();
    let cohort = devices[0].1;
    let (mut cohort_rates, mut scoped_rates) = (Vec::new(), Vec::new());
    let (mut server_cpu, mut client_cpu) = (Vec::new(), Vec::new());
    for _ in 0..sizes.rounds {
        let server_before = target.cpu_seconds();
        let client_before = process_cpu_seconds("/proc/self/stat");
        let (records, counts, elapsed) =
            download_all(&http, &target.address, &trainer_token, cohort).await?;
        if let (Some(before), Some(after)) = (server_before, target.cpu_seconds()) {
            server_cpu.push((after - before) * 1e6 / records as f64);
        }
        if let (Some(before), Some(after)) = (client_before, process_cpu_seconds("/proc/self/stat"))
        {
            client_cpu.push((after - before) * 1e6 / records as f64);
        }
        ensure!(
            counts.get("interviews") == Some(&total),
            "the trainer received {:?} interviews, the cohort has {total}",
            counts.get("interviews")
        );
        cohort_rates.push(records as f64 / elapsed.as_secs_f64());
        let (records, counts, elapsed) =
            download_all(&http, &target.address, &participant_token, cohort).await?;
        ensure!(
            counts.get("interviews") == Some(&sizes.records_per_participant),
            "the participant received {:?} interviews, wrote {}",
            counts.get("interviews"),
            sizes.records_per_participant
        );
        scoped_rates.push(records as f64 / elapsed.as_secs_f64());
    }
    check_converged(&mut devices[0].0, &written[0]).await?;
    let mut cpu = Vec::new();
    if !server_cpu.is_empty() {
        cpu.push(measured(
            "download",
            "server CPU per record in the cohort download",
            median(&mut server_cpu),
            "us",
            Goal::None,
        ));
    }
    if !client_cpu.is_empty() {
        cpu.push(measured(
            "download",
            "load generator CPU per record in the cohort download",
            median(&mut client_cpu),
            "us",
            Goal::None,
        ));
    }
    let mut results = vec![
        measured(
            "download",
            format!("first download of a cohort ({total} interviews) to one trainer, records/s"),
            median(&mut cohort_rates),
            "/s",
            Goal::AtLeast(100_000.0),
        ),
        measured(
            "download",
            format!(
                "scoped download: one participant's {} among {total}, records/s",
                sizes.records_per_participant
            ),
            median(&mut scoped_rates),
            "/s",
            Goal::AtLeast(50_000.0),
        ),
    ];
    results.extend(cpu);
    Ok(results)
}

/// An up-to-date client pulls again and again, with `stored` records on the server.
async fn idle_pulls(target: &Target, sizes: &Sizes) -> anyhow::Result<Vec<Measurement>> {
    let api = Api::new(&target.address);
    let staff = staff(&api).await?;
    let participants = 100.min(sizes.stored_records[0]).max(1);
    let mut devices = fleet(&api, &staff, 1, participants + 1, sizes.setup_concurrency).await?;
    // Another participant of the cohort keeps writing during the second kind of measurement.
    let (mut writer, writer_cohort) = devices.pop().context("a writer")?;
    let mut results = Vec::new();
    let mut stored = 0;
    for &goal in &sizes.stored_records {
        // Add records until `goal` are stored, spread over the participants.
        let started = Instant::now();
        while stored < goal {
            let each = ((goal - stored) / participants).clamp(1, 2_000);
            for (index, (device, cohort)) in devices.iter_mut().enumerate() {
                device.batch_size = 250;
                let seed = (stored + index * each) as u64;
                let count = each.min(goal - stored);
                if count == 0 {
                    break;
                }
                write_interviews(device, *cohort, count, sizes.record_bytes, seed);
                stored += count;
            }
            let pushed: Vec<anyhow::Result<()>> = stream::iter(devices.iter_mut())
                .map(|(device, _)| device.push())
                .buffer_unordered(4)
                .collect()
                .await;
            for result in pushed {
                result?;
            }
        }
        eprintln!(
            "  stored {stored} records ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
        let device = &mut devices[0].0;
        device.server.clear();
        device.cursor = None;
        device.pull().await?;
        let http = reqwest::Client::new();
        for busy in [false, true] {
            // Busy: someone else writes every 20 ms, so the cursor is always behind the head and
            // every pull runs its queries, finding nothing in the caller's scope.
            let background = busy.then(|| {
                let placeholder = Device::with_client(http.clone(), &target.address, &Value::Null);
                BackgroundWriter::start(std::mem::replace(&mut writer, placeholder), writer_cohort)
            });
            let mut p99s = Vec::new();
            let mut p50s = Vec::new();
            for _ in 0..sizes.rounds {
                let mut latencies = up_to_date_pulls(
                    &http,
                    &target.address,
                    device,
                    sizes.idle_pulls,
                    DEFAULT_PULL_LIMIT,
                )
                .await?;
                latencies.sort_by(f64::total_cmp);
                p50s.push(latencies[latencies.len() / 2]);
                p99s.push(latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)]);
            }
            if let Some(background) = background {
                writer = background.stop().await?.0;
            }
            let when = if busy { ", others writing" } else { "" };
            results.push(measured(
                "idle",
                format!("up-to-date pull p99, {stored} records stored{when}"),
                median(&mut p99s),
                "ms",
                Goal::AtMost(2.0),
            ));
            results.push(measured(
                "idle",
                format!("up-to-date pull p50, {stored} records stored{when}"),
                median(&mut p50s),
                "ms",
                Goal::None,
            ));
        }
    }
    Ok(results)
}

/// Another participant of the cohort writing an interview every 20 ms on a task of its own, so
/// that every pull of the others finds the head moved.
struct BackgroundWriter {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<(Device, u64)>>,
}

impl BackgroundWriter {
    fn start(mut device: Device, cohort: Uuid) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut written = 0;
            while !flag.load(Ordering::Relaxed) {
                let fields = standard::interview_fields(500, written);
                device.write("interviews", Uuid::now_v7(), Some(cohort), fields);
                device.push().await?;
                written += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok((device, written))
        });
        Self { stop, task }
    }

    /// Stops the writing: the device back, and how many interviews it wrote (an error if none).
    async fn stop(self) -> anyhow::Result<(Device, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        let (device, written) = self.task.await??;
        ensure!(written > 0, "the other participant wrote nothing");
        Ok((device, written))
    }
}

/// `count` pulls by an up-to-date device, each checked to bring nothing: their latencies in ms.
async fn up_to_date_pulls(
    http: &reqwest::Client,
    address: &str,
    device: &mut Device,
    count: usize,
    limit: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let cursor = device.cursor.clone().context("a cursor after pulling")?;
        let started = Instant::now();
        let page = pull_page(http, address, device.debug_token(), Some(&cursor), limit).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        ensure!(
            page.changes.is_empty() && !page.has_more,
            "an up-to-date device received changes"
        );
        device.cursor = Some(page.cursor);
    }
    Ok(latencies)
}

/// A thousand devices come online at once, each with offline interviews, and sync.
async fn storm(target: &Target, sizes: &Sizes) -> anyhow::Result<Vec<Measurement>> {
    let api = Api::new(&target.address);
    let staff = staff(&api).await?;
    let mut devices =
        fleet_in_cohorts_of_100(&api, &staff, sizes.storm_devices, sizes.setup_concurrency).await?;
    // Each device was in sync before going offline.
    let pulled: Vec<anyhow::Result<()>> = stream::iter(devices.iter_mut())
        .map(|(device, _)| device.pull())
        .buffer_unordered(sizes.setup_concurrency * 4)
        .collect()
        .await;
    for result in pulled {
        result?;
    }
    let mut written = Vec::new();
    for (index, (device, cohort)) in devices.iter_mut().enumerate() {
        written.push(write_interviews(
            device,
            *cohort,
            sizes.storm_mutations,
            sizes.record_bytes,
            index as u64,
        ));
    }
    let count = devices.len();
    let started = Instant::now();
    let synced: Vec<anyhow::Result<()>> = stream::iter(devices.iter_mut().zip(&written))
        .map(|((device, _), written)| async move {
            device.sync().await?;
            check_converged(device, written).await
        })
        .buffer_unordered(count)
        .collect()
        .await;
    let elapsed = started.elapsed();
    for result in synced {
        result?;
    }
    Ok(vec![measured(
        "storm",
        format!(
            "{count} devices x {} offline mutations, all converged after",
            sizes.storm_mutations
        ),
        elapsed.as_secs_f64(),
        "s",
        Goal::AtMost(10.0),
    )])
}

/// One live stream: reads it until `event` arrives.
async fn until_event(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    event: &str,
) -> anyhow::Result<()> {
    let needle = format!("event: {event}");
    let mut seen = String::new();
    while let Some(chunk) = body.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk?));
        if seen.contains(&needle) {
            return Ok(());
        }
    }
    bail!("the stream ended before {event:?}")
}

/// Thousands of idle live streams: the server's memory.
async fn streams(target: &Target, sizes: &Sizes) -> anyhow::Result<Vec<Measurement>> {
    let api = Api::new(&target.address);
    let staff = staff(&api).await?;
    let mut devices =
        fleet_in_cohorts_of_100(&api, &staff, sizes.stream_devices, sizes.setup_concurrency)
            .await?;
    let before = target.rss_mb();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let tokens: Vec<String> = devices
        .iter()
        .map(|(device, _)| device.debug_token().to_owned())
        .collect();
    let address = target.address.clone();
    let open: Vec<_> = stream::iter(0..sizes.streams)
        .map(|index| {
            let (http, address) = (http.clone(), address.clone());
            let token = tokens[index % tokens.len()].clone();
            async move {
                let response = sync_request(&http, &format!("{address}/v1/sync/events"), &token)
                    .send()
                    .await?;
                ensure!(
                    response.status().is_success(),
                    "events answered {}",
                    response.status()
                );
                let mut body = response.bytes_stream();
                until_event(&mut body, "ready").await?;
                anyhow::Ok((index, body))
            }
        })
        .buffer_unordered(100)
        .try_collect()
        .await?;
    ensure!(open.len() == sizes.streams, "not every stream opened");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = target.rss_mb();
    // Still alive and listening: a change by the first device pokes its own streams.
    let (device, cohort) = &mut devices[0];
    write_interviews(device, *cohort, 1, 100, 0);
    device.push().await?;
    let mut own: Vec<_> = open
        .into_iter()
        .filter(|(index, _)| index % tokens.len() == 0)
        .map(|(_, body)| body)
        .collect();
    for body in &mut own {
        tokio::time::timeout(Duration::from_secs(10), until_event(body, "poke"))
            .await
            .context("a live stream was not poked within 10 s")??;
    }
    let mut results = Vec::new();
    if let Some(rss) = rss {
        results.push(measured(
            "streams",
            format!("server RSS with {} idle live streams", sizes.streams),
            rss,
            "MB",
            Goal::AtMost(300.0),
        ));
    }
    if let (Some(rss), Some(before)) = (rss, before) {
        results.push(measured(
            "streams",
            "memory per stream",
            (rss - before) * 1024.0 / sizes.streams as f64,
            "KB",
            Goal::None,
        ));
    }
    Ok(results)
}

/// The bytes of a test file, chunk by chunk, generated (not held in memory).
fn media_chunk(file_seed: u64, index: usize, chunk_bytes: usize) -> Vec<u8> {
    let mut state = file_seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index as u64 + 1);
    let mut bytes = Vec::with_capacity(chunk_bytes);
    while bytes.len() < chunk_bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(chunk_bytes);
    bytes
}

fn media_digest(file_seed: u64, chunks: usize, chunk_bytes: usize) -> String {
    let mut hasher = Sha256::new();
    for index in 0..chunks {
        hasher.update(media_chunk(file_seed, index, chunk_bytes));
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Uploads one generated file in chunks and finishes it.
async fn upload_file(
    http: &reqwest::Client,
    address: &str,
    token: &str,
    id: Uuid,
    file_seed: u64,
    chunks: usize,
    chunk_bytes: usize,
) -> anyhow::Result<()> {
    for index in 0..chunks {
        let response = http
            .patch(format!("{address}/v1/attachments/{id}/content"))
            .bearer_auth(token)
            .header("upload-offset", (index * chunk_bytes).to_string())
            .body(media_chunk(file_seed, index, chunk_bytes))
            .send()
            .await?;
        ensure!(
            response.status().as_u16() == 204,
            "a chunk answered {}",
            response.status()
        );
    }
    let response = http
        .post(format!("{address}/v1/attachments/{id}/finish"))
        .bearer_auth(token)
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "finish answered {}",
        response.status()
    );
    Ok(())
}

/// Upload and download of field media: one file, then several at once.
async fn media(target: &Target, sizes: &Sizes) -> anyhow::Result<Vec<Measurement>> {
    let api = Api::new(&target.address);
    let staff = staff(&api).await?;
    let (mut device, cohort) = fleet(&api, &staff, 1, 1, 1)
        .await?
        .pop()
        .context("one device")?;
    let chunk_bytes = sizes.media_chunk_mb * 1024 * 1024;
    let chunks = sizes.media_mb / sizes.media_chunk_mb;
    let file_bytes = chunks * chunk_bytes;
    let interview = Uuid::now_v7();
    device.write(
        "interviews",
        interview,
        Some(cohort),
        json!({ "name_consent": true, "status": "draft", "notes": "opname" }),
    );
    let files: Vec<(Uuid, u64)> = (0..=sizes.media_parallel)
        .map(|seed| (Uuid::now_v7(), seed as u64))
        .collect();
    for (id, seed) in &files {
        device.write(
            "attachments",
            *id,
            Some(cohort),
            json!({
                "parent_collection": "interviews", "parent_id": interview,
                "file_name": format!("opname-{seed}.m4a"), "content_type": "audio/mp4",
                "size": file_bytes, "sha256": media_digest(*seed, chunks, chunk_bytes),
            }),
        );
    }
    device.sync().await?;
    ensure!(
        device.rejected.is_empty(),
        "attachments refused: {:?}",
        device.rejected
    );
    let http = reqwest::Client::new();
    let token = device.debug_token().to_owned();
    let megabytes = file_bytes as f64 / (1024.0 * 1024.0);

    let (single, single_seed) = files[0];
    let single_sampler = MemorySampler::start(target);
    let started = Instant::now();
    upload_file(
        &http,
        &target.address,
        &token,
        single,
        single_seed,
        chunks,
        chunk_bytes,
    )
    .await?;
    let upload_rate = megabytes / started.elapsed().as_secs_f64();
    let single_peak = single_sampler.stop().await;

    let started = Instant::now();
    let response = http
        .get(format!(
            "{}/v1/attachments/{single}/content",
            target.address
        ))
        .bearer_auth(&token)
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "download answered {}",
        response.status()
    );
    let mut body = response.bytes_stream();
    let mut hasher = Sha256::new();
    let mut received = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        received += chunk.len();
        hasher.update(&chunk);
    }
    let download_rate = megabytes / started.elapsed().as_secs_f64();
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ensure!(
        received == file_bytes && digest == media_digest(single_seed, chunks, chunk_bytes),
        "the downloaded file differs from the uploaded one"
    );

    let sampler = MemorySampler::start(target);
    let started = Instant::now();
    let parallel: Vec<anyhow::Result<()>> = stream::iter(files[1..].iter().copied())
        .map(|(id, seed)| {
            let (http, address, token) = (http.clone(), target.address.clone(), token.clone());
            async move { upload_file(&http, &address, &token, id, seed, chunks, chunk_bytes).await }
        })
        .buffer_unordered(sizes.media_parallel)
        .collect()
        .await;
    let parallel_rate = megabytes * sizes.media_parallel as f64 / started.elapsed().as_secs_f64();
    let peak = sampler.stop().await;
    for result in parallel {
        result?;
    }
    device.pull().await?;
    for (id, _) in &files {
        let view = device
            .view("attachments", *id)
            .context("the attachment is synced")?;
        ensure!(
            view.get("state") == Some(&json!("stored")),
            "attachment {id} is not stored"
        );
    }
    let mut results = vec![
        measured(
            "media",
            format!(
                "upload of a {} MB file in {} MB chunks",
                sizes.media_mb, sizes.media_chunk_mb
            ),
            upload_rate,
            "MB/s",
            Goal::None,
        ),
        measured(
            "media",
            format!("download of the {} MB file", sizes.media_mb),
            download_rate,
            "MB/s",
            Goal::None,
        ),
        measured(
            "media",
            format!("{} such uploads at once, together", sizes.media_parallel),
            parallel_rate,
            "MB/s",
            Goal::None,
        ),
    ];
    if let Some(peak) = single_peak {
        results.push(measured(
            "media",
            format!(
                "server RSS during the upload of one {} MB file (peak sampled)",
                sizes.media_mb
            ),
            peak,
            "MB",
            Goal::AtMost(150.0),
        ));
    }
    if let Some(peak) = peak {
        results.push(measured(
            "media",
            format!(
                "server RSS during {} uploads at once ({} MB in all; peak sampled)",
                sizes.media_parallel,
                sizes.media_mb * sizes.media_parallel
            ),
            peak,
            "MB",
            Goal::AtMost((sizes.media_mb * sizes.media_parallel) as f64 / 4.0),
        ));
    }
    Ok(results)
}
