//! Does an export's memory grow with its size? Starts the real `veldwerk` server (SQLite, local
//! storage), enrols a participant whose attachments total a given size, then downloads their
//! export (`GET /v1/me/export`) with a slow reader while sampling the server's resident memory,
//! and prints the archive's size, the time it took and the server's peak memory above what it
//! held before. Figures: `BENCHMARKS.md`, "Export".
//!
//! ```text
//! cargo build --release -p veldwerk-server -p veldwerk-tests
//! ./target/release/export_memory --files 4 --file-mb 16     # 64 MB of attachments
//! ./target/release/export_memory --files 32 --file-mb 16    # 512 MB
//! ```

use std::{
    net::TcpListener,
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use veldwerk_tests::client::Device;

fn arg(name: &str, default: usize) -> anyhow::Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .context("a value after the flag")?
            .parse()
            .context("a number"),
        None => Ok(default),
    }
}

/// The process's resident memory in KB (`VmRSS`).
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let files = arg("--files", 4)?;
    let file_mb = arg("--file-mb", 16)?;
    let exe = std::env::current_exe()?;
    let server_bin = exe
        .parent()
        .context("the program's folder")?
        .join("veldwerk");
    let data = tempfile::tempdir()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(&server_bin)
        .arg("serve")
        .env(
            "VELDWERK_DATABASE_URL",
            format!("sqlite://{}/export.db?mode=rwc", data.path().display()),
        )
        .env("VELDWERK_LISTEN", format!("127.0.0.1:{port}"))
        .env("VELDWERK_DATA_DIR", data.path())
        .env("VELDWERK_LOG_FILTER", "warn")
        .env("VELDWERK_ACCESS_TOKEN_TTL_SECS", "86400")
        // As the container image runs it (deploy/Dockerfile).
        .env("MALLOC_ARENA_MAX", "2")
        .env("MALLOC_MMAP_THRESHOLD_", "1048576")
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", server_bin.display()))?;
    let pid = child.id();
    let _server = Server(child);
    let address = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http
        .get(format!("{address}/readyz"))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the server did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let post = |path: &str, token: Option<String>, body: Value| {
        let mut request = http.post(format!("{address}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let trainer: Value = post(
        "/v1/auth/login",
        None,
        json!({ "email": "trainer@veldwerk.test", "password": "demo-trainer-wachtwoord" }),
    )
    .await?
    .json()
    .await?;
    let trainer_token = trainer["access_token"]
        .as_str()
        .context("a token")?
        .to_owned();
    let cohorts: Value = http
        .get(format!("{address}/v1/cohorts"))
        .bearer_auth(&trainer_token)
        .send()
        .await?
        .json()
        .await?;
    let cohort: Uuid = cohorts[0]["id"].as_str().context("a cohort")?.parse()?;
    let invites: Value = post(
        &format!("/v1/cohorts/{cohort}/invites"),
        Some(trainer_token.clone()),
        json!({ "count": 1 }),
    )
    .await?
    .json()
    .await?;
    let session: Value = post(
        "/v1/auth/enrol",
        None,
        json!({ "invite_code": invites[0]["code"], "display_name": "Exporteur" }),
    )
    .await?
    .json()
    .await?;
    let mut device = Device::new(&address, &session);
    let token = device.debug_token().to_owned();

    let interview = Uuid::now_v7();
    device.write(
        "interviews",
        interview,
        Some(cohort),
        json!({ "name_consent": false, "status": "draft", "notes": "met foto's" }),
    );
    let bytes: Vec<u8> = (0..file_mb * 1024 * 1024)
        .map(|i| (i % 251) as u8)
        .collect();
    let sha256: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut ids = Vec::new();
    for _ in 0..files {
        let id = Uuid::now_v7();
        device.write(
            "attachments",
            id,
            Some(cohort),
            json!({
                "parent_collection": "interviews", "parent_id": interview, "file_name": "foto.jpg",
                "content_type": "image/jpeg", "size": bytes.len(), "sha256": sha256,
            }),
        );
        ids.push(id);
    }
    device.sync().await?;
    if !device.rejected.is_empty() {
        bail!("rejected: {:?}", device.rejected);
    }
    for id in &ids {
        let response = http
            .patch(format!("{address}/v1/attachments/{id}/content"))
            .bearer_auth(&token)
            .header("upload-offset", "0")
            .header("content-type", "application/offset+octet-stream")
            .body(bytes.clone())
            .send()
            .await?;
        if response.status() != 204 {
            bail!("upload answered {}", response.status());
        }
    }
    drop(bytes);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_kb = rss_kb(pid);
    let peak_kb = Arc::new(AtomicU64::new(before_kb));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak_kb, done) = (peak_kb.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak_kb.fetch_max(rss_kb(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let response = http
        .get(format!("{address}/v1/me/export"))
        .bearer_auth(&token)
        .send()
        .await?;
    if response.status() != 200 {
        bail!("export answered {}", response.status());
    }
    let mut body = response.bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        received += chunk?.len() as u64;
        // A phone on a slow connection: the server must wait, not buffer.
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    let expected = (files * file_mb * 1024 * 1024) as u64;
    if received < expected {
        bail!("the archive has {received} bytes, fewer than its attachments' {expected}");
    }
    let peak_kb = peak_kb.load(Ordering::Relaxed);
    println!(
        "attachments {} MB: archive {:.1} MB in {seconds:.1} s ({:.0} MB/s); server memory {:.1} MB before, peak {:.1} MB (+{:.1} MB)",
        files * file_mb,
        received as f64 / 1_048_576.0,
        received as f64 / 1_048_576.0 / seconds,
        before_kb as f64 / 1024.0,
        peak_kb as f64 / 1024.0,
        peak_kb.saturating_sub(before_kb) as f64 / 1024.0,
    );
    Ok(())
}
