//! The standard workload ([`super::standard`]) on the peer: pouchdb-server 4.2 (`tests/peer`,
//! from npm), the CouchDB replication protocol a mobile team would otherwise pick with PouchDB on
//! the phone. Each participant has a database of their own, as CouchDB deployments scope data
//! (CouchDB has no per-document read rights), so:
//!
//! - upload: each phone posts its interviews to its database's `_bulk_docs`, in the same batches;
//! - the trainer's first download reads every participant's `_changes?include_docs=true` in
//!   pages of the same size, one database after another;
//! - the scoped download reads the participant's own database;
//! - an up-to-date pull is `_changes?since=<last_seq>` on the participant's database, quiet and
//!   while another participant writes to theirs every 20 ms.
//!
//! The records are the same JSON as Veldwerk's interviews, with `_id`s.

use std::{
    path::Path,
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    Goal, Measurement, Sizes, Target, measured,
    standard::{SCENARIO, interview_fields, metric, p99, peak},
};

/// pouchdb-server as a child process on a fresh directory; killed when dropped.
pub struct Peer {
    child: Child,
    pub target: Target,
    _dir: tempfile::TempDir,
}

impl Peer {
    /// Starts `tests/peer`'s pouchdb-server (installed with `npm ci --prefix tests/peer`) on a free
    /// port, on LevelDB in a temporary directory, logging only errors.
    pub async fn start(peer_dir: &Path) -> anyhow::Result<Self> {
        let script = peer_dir.join("node_modules/pouchdb-server/bin/pouchdb-server");
        ensure!(
            script.exists(),
            "{} is missing: run npm ci --prefix {}",
            script.display(),
            peer_dir.display()
        );
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            json!({ "log": { "level": "error", "file": dir.path().join("log.txt") } }).to_string(),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("node")
            .arg(&script)
            .args(["--port", &port.to_string(), "--no-stdout-logs"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.txt"))?)
            .spawn()
            .context("starting pouchdb-server with node")?;
        let mut peer = Self {
            target: Target {
                address: format!("http://127.0.0.1:{port}"),
                server_pid: Some(child.id()),
            },
            child,
            _dir: dir,
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if http
                .get(&peer.target.address)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(peer);
            }
            if let Some(status) = peer.child.try_wait()? {
                bail!("pouchdb-server exited with {status} before it was ready");
            }
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "pouchdb-server was not ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CouchDB client for one server.
#[derive(Clone)]
struct Couch {
    http: reqwest::Client,
    address: String,
}

impl Couch {
    async fn json(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let response = request.send().await.with_context(|| what.to_owned())?;
        let status = response.status();
        let body = response.bytes().await?;
        ensure!(
            status.is_success(),
            "{what} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(serde_json::from_slice(&body)?)
    }

    async fn create(&self, db: &str) -> anyhow::Result<()> {
        let url = format!("{}/{db}", self.address);
        self.json(self.http.put(url), "PUT db").await.map(drop)
    }

    /// Posts documents, checking that every one was stored.
    async fn bulk_docs(&self, db: &str, docs: Vec<Value>) -> anyhow::Result<()> {
        let count = docs.len();
        let url = format!("{}/{db}/_bulk_docs", self.address);
        let answer = self
            .json(
                self.http.post(url).json(&json!({ "docs": docs })),
                "_bulk_docs",
            )
            .await?;
        let stored = answer
            .as_array()
            .context("_bulk_docs answers a list")?
            .iter()
            .filter(|row| row["ok"] == json!(true))
            .count();
        ensure!(stored == count, "_bulk_docs stored {stored} of {count}");
        Ok(())
    }

    /// One `_changes` page with documents: (documents, last_seq).
    async fn changes(
        &self,
        db: &str,
        since: &Value,
        limit: usize,
    ) -> anyhow::Result<(Vec<Value>, Value)> {
        let since = match since {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let url = format!(
            "{}/{db}/_changes?include_docs=true&limit={limit}&since={since}",
            self.address
        );
        let mut answer = self.json(self.http.get(url), "_changes").await?;
        let results = match answer["results"].take() {
            Value::Array(results) => results,
            _ => bail!("_changes answered no results"),
        };
        Ok((results, answer["last_seq"].take()))
    }

    /// Reads a database's changes from the start in pages of `limit`: the documents received.
    async fn download(&self, db: &str, limit: usize) -> anyhow::Result<usize> {
        let (mut since, mut received) = (json!(0), 0);
        loop {
            let (results, last_seq) = self.changes(db, &since, limit).await?;
            received += results
                .iter()
                .filter(|row| row["doc"]["status"] == json!("done"))
                .count();
            since = last_seq;
            if results.len() < limit {
                return Ok(received);
            }
        }
    }
}

fn doc(fields: Value) -> Value {
    let mut doc = fields;
    doc["_id"] = json!(Uuid::now_v7().to_string());
    doc
}

fn database(index: usize) -> String {
    format!("participant-{index}")
}

/// The standard workload on pouchdb-server.
pub async fn run(target: &Target, sizes: &Sizes) -> anyhow::Result<Vec<Measurement>> {
    let couch = Couch {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()?,
        address: target.address.clone(),
    };
    let devices = sizes.standard_devices;
    let writer = database(devices);
    for index in 0..=devices {
        couch.create(&database(index)).await?;
    }
    let batches: Vec<Vec<Vec<Value>>> = (0..devices)
        .map(|index| {
            let docs: Vec<Value> = (0..sizes.standard_records)
                .map(|n| {
                    let seed = (index * sizes.standard_records + n) as u64;
                    doc(interview_fields(sizes.record_bytes, seed))
                })
                .collect();
            docs.chunks(sizes.batch).map(<[Value]>::to_vec).collect()
        })
        .collect();
    let mut results = Vec::new();

    // Upload: every phone at once, each its batches one after another.
    let total = devices * sizes.standard_records;
    let started = Instant::now();
    let uploads: Vec<anyhow::Result<()>> = stream::iter(batches.into_iter().enumerate())
        .map(|(index, batches)| {
            let couch = couch.clone();
            async move {
                for batch in batches {
                    couch.bulk_docs(&database(index), batch).await?;
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(devices)
        .collect()
        .await;
    let elapsed = started.elapsed();
    for result in uploads {
        result?;
    }
    results.push(measured(
        SCENARIO,
        metric::UPLOAD,
        total as f64 / elapsed.as_secs_f64(),
        "/s",
        Goal::AtLeast(20_000.0),
    ));

    // The trainer reads every participant's database.
    let cpu_before = target.cpu_seconds();
    let started = Instant::now();
    let mut received = 0;
    for index in 0..devices {
        received += couch.download(&database(index), 1_000).await?;
    }
    let elapsed = started.elapsed();
    ensure!(
        received == total,
        "the trainer received {received} of {total}"
    );
    results.push(measured(
        SCENARIO,
        metric::FIRST_DOWNLOAD,
        total as f64 / elapsed.as_secs_f64(),
        "/s",
        Goal::AtLeast(100_000.0),
    ));
    if let (Some(before), Some(after)) = (cpu_before, target.cpu_seconds()) {
        results.push(measured(
            SCENARIO,
            metric::SERVER_CPU_PER_RECORD,
            (after - before) * 1e6 / total as f64,
            "us",
            Goal::None,
        ));
    }

    let started = Instant::now();
    let own = couch.download(&database(0), 1_000).await?;
    let elapsed = started.elapsed();
    ensure!(
        own == sizes.standard_records,
        "the participant received {own} of {}",
        sizes.standard_records
    );
    results.push(measured(
        SCENARIO,
        metric::SCOPED_DOWNLOAD,
        elapsed.as_secs_f64() * 1000.0,
        "ms",
        Goal::None,
    ));

    let mut stored = total;
    for (step, &goal) in sizes.standard_stored.iter().enumerate() {
        while stored < goal {
            let each = ((goal - stored) / devices).clamp(1, 2_000);
            let mut work = Vec::new();
            for index in 0..devices {
                let count = each.min(goal - stored);
                let docs: Vec<Value> = (0..count)
                    .map(|n| doc(interview_fields(sizes.record_bytes, (stored + n) as u64)))
                    .collect();
                stored += count;
                work.push((index, docs));
            }
            let pushed: Vec<anyhow::Result<()>> = stream::iter(work)
                .map(|(index, docs)| {
                    let couch = couch.clone();
                    async move {
                        for batch in docs.chunks(250) {
                            couch.bulk_docs(&database(index), batch.to_vec()).await?;
                        }
                        anyhow::Ok(())
                    }
                })
                .buffer_unordered(4)
                .collect()
                .await;
            for result in pushed {
                result?;
            }
        }
        // Up to date on the participant's own database.
        let mut since = json!(0);
        loop {
            let (results, last_seq) = couch.changes(&database(0), &since, 1_000).await?;
            since = last_seq;
            if results.len() < 1_000 {
                break;
            }
        }
        for busy in [false, true] {
            let stop = Arc::new(AtomicBool::new(false));
            let writes = busy.then(|| {
                let (stop, couch, writer) = (stop.clone(), couch.clone(), writer.clone());
                tokio::spawn(async move {
                    let mut count = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let docs = vec![doc(interview_fields(500, count))];
                        couch.bulk_docs(&writer, docs).await?;
                        count += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    anyhow::Ok(count)
                })
            });
            let mut latencies = Vec::with_capacity(sizes.standard_pulls);
            for _ in 0..sizes.standard_pulls {
                let started = Instant::now();
                let (results, last_seq) = couch.changes(&database(0), &since, 1_000).await?;
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
                ensure!(results.is_empty(), "an up-to-date participant got changes");
                since = last_seq;
            }
            if let Some(writes) = writes {
                stop.store(true, Ordering::Relaxed);
                let count = writes.await??;
                ensure!(count > 0, "the other participant wrote nothing");
                stored += count as usize;
            }
            results.push(measured(
                SCENARIO,
                metric::pull_p99(goal, busy),
                p99(latencies),
                "ms",
                Goal::AtMost(2.0),
            ));
        }
        if step == 0 {
            results.extend(peak(target, metric::PEAK_AFTER_WORKLOAD));
        }
    }

    // The trainer again, every database, in the largest pages.
    let started = Instant::now();
    let mut received = 0;
    for index in 0..=devices {
        received += couch
            .download(&database(index), sizes.standard_largest_page)
            .await?;
    }
    let elapsed = started.elapsed();
    ensure!(
        received == stored,
        "the trainer received {received} of {stored}"
    );
    results.push(measured(
        SCENARIO,
        metric::LARGEST_PAGES,
        received as f64 / elapsed.as_secs_f64(),
        "/s",
        Goal::None,
    ));
    results.extend(peak(target, metric::PEAK_AT_END));
    Ok(results)
}
