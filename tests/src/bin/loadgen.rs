//! Load generator: simulated participants' devices against a real `veldwerk` server process,
//! started by this program for each scenario run on a fresh database (SQLite, or PostgreSQL
//! given `--database`). Prints a table of medians and can write every run as JSON. Scenarios and
//! what they check: `veldwerk_tests::loadgen`; figures: `BENCHMARKS.md`.
//!
//! ```text
//! cargo build --release -p veldwerk-server -p veldwerk-tests
//! ulimit -n 30000   # the live-stream scenario holds 10,000 connections on each side
//! ./target/release/loadgen                                   # SQLite, every scenario, 3 runs
//! ./target/release/loadgen --database postgres://postgres@127.0.0.1:5432/test
//! ./target/release/loadgen --scenarios upload,storm --runs 5 --json results.json
//! ./target/release/loadgen --smoke --runs 1                  # small: correctness only
//! npm ci --prefix tests/peer                                 # pouchdb-server, the peer
//! ./target/release/loadgen --scenarios standard --peer --runs 3
//! ```

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use veldwerk_tests::{
    database_on,
    loadgen::{self, Goal, Measurement, SCENARIOS, Sizes, Target},
};

struct Options {
    /// Small sizes for a correctness check: the targets do not apply.
    smoke: bool,
    database: Option<String>,
    scenarios: Vec<String>,
    runs: usize,
    sizes: Sizes,
    json: Option<PathBuf>,
    server_bin: PathBuf,
    /// Also run the standard workload on pouchdb-server (from this npm folder), in each run.
    peer: Option<PathBuf>,
}

const USAGE: &str = "loadgen [--database postgres://...] [--scenarios upload,download,idle,storm,streams,media] \
[--runs N] [--smoke] [--json FILE] [--server-bin PATH] [--peer] [--peer-dir tests/peer] [--upload-devices N] [--upload-mutations N] \
[--record-bytes N] [--stored 10000,1000000] [--storm-devices N] [--streams N] [--media-mb N] [--media-chunk-mb N]";

fn options() -> anyhow::Result<Options> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exe = std::env::current_exe()?;
    let mut options = Options {
        smoke: args.iter().any(|a| a == "--smoke"),
        peer: args
            .iter()
            .any(|a| a == "--peer")
            .then(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peer"))),
        database: None,
        scenarios: SCENARIOS.iter().map(|s| s.to_string()).collect(),
        runs: 3,
        sizes: if args.iter().any(|a| a == "--smoke") {
            Sizes::smoke()
        } else {
            Sizes::full()
        },
        json: None,
        server_bin: exe
            .parent()
            .context("the program's folder")?
            .join("veldwerk"),
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "--smoke" || flag == "--peer" {
            continue;
        }
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} takes a value\n{USAGE}"))?;
        let sizes = &mut options.sizes;
        match flag.as_str() {
            "--database" => options.database = Some(value),
            "--scenarios" => options.scenarios = value.split(',').map(str::to_owned).collect(),
            "--runs" => options.runs = value.parse()?,
            "--json" => options.json = Some(value.into()),
            "--server-bin" => options.server_bin = value.into(),
            "--peer-dir" => options.peer = Some(value.into()),
            "--upload-devices" => sizes.upload_devices = value.parse()?,
            "--upload-mutations" => sizes.upload_mutations = value.parse()?,
            "--record-bytes" => sizes.record_bytes = value.parse()?,
            "--stored" => {
                sizes.stored_records = value.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "--storm-devices" => sizes.storm_devices = value.parse()?,
            "--streams" => sizes.streams = value.parse()?,
            "--media-mb" => sizes.media_mb = value.parse()?,
            "--media-chunk-mb" => sizes.media_chunk_mb = value.parse()?,
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    for name in &options.scenarios {
        if !SCENARIOS.contains(&name.as_str()) {
            bail!("unknown scenario {name:?}; known: {}", SCENARIOS.join(", "));
        }
    }
    Ok(options)
}

/// A `veldwerk serve` child process on a fresh database; killed and its database dropped when
/// this is dropped.
struct Server {
    child: Child,
    target: Target,
    _database: veldwerk_tests::TestDatabase,
    _files: tempfile::TempDir,
}

impl Server {
    async fn start(options: &Options) -> anyhow::Result<Self> {
        let database = database_on(options.database.as_deref()).await;
        let files = tempfile::tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(files.path().join("server.log"))?;
        let child = Command::new(&options.server_bin)
            .arg("serve")
            .env("VELDWERK_DATABASE_URL", database.url())
            .env("VELDWERK_LISTEN", format!("127.0.0.1:{port}"))
            .env("VELDWERK_DATA_DIR", files.path())
            .env("VELDWERK_LOG_FILTER", "warn")
            .env("VELDWERK_LOG_FORMAT", "json")
            // One address plays thousands of phones.
            .env("VELDWERK_RATE_LIMIT_PER_ADDRESS", "100000000")
            .env("VELDWERK_RATE_LIMIT_PER_ACCOUNT", "100000000")
            .env("VELDWERK_ACCESS_TOKEN_TTL_SECS", "86400")
            // The stream scenario holds 10 streams per enrolled device (10,000 on 1,000).
            .env("VELDWERK_MAX_STREAMS_PER_DEVICE", "16")
            // As the container image runs it (deploy/Dockerfile).
            .env("MALLOC_ARENA_MAX", "2")
            .env("MALLOC_MMAP_THRESHOLD_", "1048576")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it: cargo build --release -p veldwerk-server)",
                    options.server_bin.display()
                )
            })?;
        let target = Target {
            address: format!("http://127.0.0.1:{port}"),
            server_pid: Some(child.id()),
        };
        let mut server = Self {
            child,
            target,
            _database: database,
            _files: files,
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let ready = http
                .get(format!("{}/readyz", server.target.address))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("the server exited with {status} before it was ready");
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the server was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first, as an orchestrator would (and so a profiler wrapping the server writes
        // its output); SIGKILL if it has not exited after 20 s.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn goal_text(goal: Goal) -> String {
    match goal {
        Goal::AtLeast(value) => format!(">= {value}"),
        Goal::AtMost(value) => format!("<= {value}"),
        Goal::None => "-".to_owned(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let backend = if options.database.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let mut all: Vec<(usize, Measurement)> = Vec::new();
    let mut peer: Vec<Measurement> = Vec::new();
    for name in &options.scenarios {
        for run in 0..options.runs {
            eprintln!("{backend}: {name}, run {} of {}", run + 1, options.runs);
            let server = Server::start(&options).await?;
            let started = Instant::now();
            let results = loadgen::run(name, &server.target, &options.sizes)
                .await
                .with_context(|| format!("scenario {name} failed its correctness checks"))?;
            drop(server);
            eprintln!("  done in {:.1} s", started.elapsed().as_secs_f64());
            for result in results {
                eprintln!("  {}: {:.2} {}", result.metric, result.value, result.unit);
                all.push((run, result));
            }
            if let (Some(dir), "standard") = (&options.peer, name.as_str()) {
                eprintln!(
                    "pouchdb-server: standard, run {} of {}",
                    run + 1,
                    options.runs
                );
                let server = loadgen::couch::Peer::start(dir).await?;
                let started = Instant::now();
                let results = loadgen::couch::run(&server.target, &options.sizes)
                    .await
                    .context("the peer's workload failed its checks")?;
                eprintln!("  done in {:.1} s", started.elapsed().as_secs_f64());
                for result in results {
                    eprintln!("  {}: {:.2} {}", result.metric, result.value, result.unit);
                    peer.push(result);
                }
            }
        }
    }

    // One row per metric: the median of the runs, the runs themselves, the target.
    let mut metrics: Vec<(&'static str, String, &'static str, Goal)> = Vec::new();
    for (_, m) in &all {
        if !metrics
            .iter()
            .any(|(s, metric, _, _)| *s == m.scenario && *metric == m.metric)
        {
            metrics.push((m.scenario, m.metric.clone(), m.unit, m.goal));
        }
    }
    println!(
        "\n{backend}, {} run(s) each; median (all runs)",
        options.runs
    );
    if options.smoke {
        println!("(smoke sizes: every device converged; targets do not apply)");
    }
    println!("| scenario | metric | median | runs | target | met |");
    println!("|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (scenario, metric, unit, goal) in metrics {
        let mut values: Vec<f64> = all
            .iter()
            .filter(|(_, m)| m.scenario == scenario && m.metric == metric)
            .map(|(_, m)| m.value)
            .collect();
        let runs = values.clone();
        values.sort_by(f64::total_cmp);
        let median = values[values.len() / 2];
        // The smoke sizes say nothing about the targets.
        let goal = if options.smoke { Goal::None } else { goal };
        let met = match goal.met(median) {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        let runs_text: Vec<String> = runs.iter().map(|v| format!("{v:.2}")).collect();
        println!(
            "| {scenario} | {metric} | {median:.2} {unit} | {} | {} | {met} |",
            runs_text.join(", "),
            goal_text(goal)
        );
        rows.push(serde_json::json!({
            "database": backend, "scenario": scenario, "metric": metric, "unit": unit,
            "median": median, "runs": runs, "target": goal_text(goal), "met": met,
        }));
    }
    if !peer.is_empty() {
        println!(
            "\nthe standard workload, Veldwerk ({backend}) and pouchdb-server in the same runs; medians (all runs)"
        );
        println!("| figure | pouchdb-server | Veldwerk | ratio | goal |");
        println!("|---|---|---|---|---|");
        let ours: Vec<Measurement> = all.iter().map(|(_, m)| m.clone()).collect();
        let runs_of = |list: &[Measurement], metric: &str| -> String {
            list.iter()
                .filter(|m| m.metric == metric)
                .map(|m| format!("{:.2}", m.value))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut seen: Vec<&str> = Vec::new();
        for m in ours.iter().filter(|m| m.scenario == "standard") {
            // Each figure once (every run reports them all).
            if seen.contains(&m.metric.as_str()) {
                continue;
            }
            seen.push(&m.metric);
            let (Some(theirs), Some(mine)) = (
                loadgen::standard::medians(&peer, &m.metric),
                loadgen::standard::medians(&ours, &m.metric),
            ) else {
                continue;
            };
            // Ratios read "times better": rates Veldwerk / peer, times and sizes peer / Veldwerk.
            let ratio = if mine <= 0.0 || theirs <= 0.0 {
                "-".to_owned()
            } else if m.unit == "/s" {
                format!("{:.2}x", mine / theirs)
            } else {
                format!("{:.2}x", theirs / mine)
            };
            println!(
                "| {} | {theirs:.2} ({}) | {mine:.2} ({}) | {ratio} | {} |",
                m.metric,
                runs_of(&peer, &m.metric),
                runs_of(&ours, &m.metric),
                goal_text(m.goal)
            );
            rows.push(serde_json::json!({
                "database": "pouchdb-server", "scenario": "standard", "metric": m.metric,
                "unit": m.unit, "median": theirs,
                "runs": peer.iter().filter(|p| p.metric == m.metric).map(|p| p.value).collect::<Vec<_>>(),
            }));
        }
    }
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
