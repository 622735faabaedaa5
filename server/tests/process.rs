//! The `veldwerk` binary as a container runs it: configuration only from the environment,
//! listening on `0.0.0.0:$PORT`, refusing unsafe production settings, and stopping cleanly on
//! SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn veldwerk(data: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_veldwerk"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "VELDWERK_DATABASE_URL",
            format!("sqlite://{}?mode=rwc", data.join("veldwerk.db").display()),
        )
        .env("VELDWERK_DATA_DIR", data)
        .stdin(Stdio::null());
    command
}

#[test]
fn the_binary_serves_on_port_and_stops_cleanly_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let mut child = veldwerk(data.path())
        .env("PORT", "0")
        .env("VELDWERK_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let address = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix("Veldwerk listens on http://")
                .map(str::to_owned)
        })
        .expect("the server says where it listens");
    assert!(
        address.starts_with("0.0.0.0:"),
        "PORT means all interfaces: {address}"
    );
    let port = address.rsplit(':').next().unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ready = runtime.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
            .await
            .unwrap()
            .status()
    });
    assert_eq!(ready, 200);
    // The container's HEALTHCHECK: the binary asks the server on $PORT.
    let health = veldwerk(data.path())
        .env("PORT", port)
        .arg("health")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(health.success(), "`veldwerk health` sees a ready server");
    let unreachable = veldwerk(data.path())
        .env("PORT", "1")
        .arg("health")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!unreachable.success(), "and fails where nothing answers");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "a clean exit after SIGTERM: {exit:?}");
}

#[test]
fn production_mode_refuses_the_development_secret_with_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let output = veldwerk(data.path())
        .env("VELDWERK_MODE", "production")
        .env("VELDWERK_DEMO_DATA", "false")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("VELDWERK_JWT_SECRET"), "{stderr}");
}
