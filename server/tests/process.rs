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
    let mut seen: Vec<String> = Vec::new();
    let address = lines
        .by_ref()
        .map_while(Result::ok)
        .inspect(|line| seen.push(line.clone()))
        .find_map(|line| {
            line.strip_prefix("Veldwerk listens on http://")
                .map(str::to_owned)
        })
        .expect("the server says where it listens");
    let invite = lines
        .by_ref()
        .map_while(Result::ok)
        .inspect(|line| seen.push(line.clone()))
        .find_map(|line| {
            line.trim()
                .strip_prefix("participant invite codes: ")
                .map(|codes| codes.split(", ").next().unwrap_or_default().to_owned())
        })
        .expect("the demo prints invite codes");
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
    // Use it with secrets and personal content, to check the logs afterwards.
    let secret_note = "Mevrouw Jansen vertelde over haar schulden";
    let access_token = runtime.block_on(async {
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let trainer: serde_json::Value = client
            .post(format!("{base}/v1/auth/login"))
            .json(&serde_json::json!({ "email": "trainer@veldwerk.test", "password": "demo-trainer-wachtwoord" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session: serde_json::Value = client
            .post(format!("{base}/v1/auth/enrol"))
            .json(&serde_json::json!({ "invite_code": invite, "display_name": "Sanne" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = session["access_token"].as_str().unwrap().to_owned();
        let device = session["device_id"].as_str().unwrap().replace('-', "");
        let cohorts: serde_json::Value = client
            .get(format!("{base}/v1/cohorts"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let pushed = client
            .post(format!("{base}/v1/sync/push"))
            .bearer_auth(&token)
            .header("veldwerk-protocol", "1")
            .json(&serde_json::json!({ "mutations": [{
                "id": uuid::Uuid::now_v7(), "collection": "interviews", "record_id": uuid::Uuid::now_v7(),
                "cohort_id": cohorts[0]["id"], "clock": format!("1796016342000-000000-{device}"),
                "fields": { "name_consent": false, "status": "draft", "notes": secret_note }
            }]}))
            .send()
            .await
            .unwrap();
        assert_eq!(pushed.status(), 200);
        assert!(trainer["access_token"].is_string());
        token
    });
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
    seen.extend(lines.map_while(Result::ok));
    // The log lines (JSON), not the start-up banner, which prints the demo logins on purpose.
    let log = seen
        .iter()
        .filter(|line| line.starts_with('{'))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        log.contains(r#""request.id""#),
        "JSON request lines with ids: {log}"
    );
    for secret in [
        "demo-trainer-wachtwoord",
        access_token.as_str(),
        secret_note,
    ] {
        assert!(!log.contains(secret), "the log must not contain {secret:?}");
    }
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

#[test]
fn production_logs_are_json_lines_only() {
    let data = tempfile::tempdir().unwrap();
    let mut child = veldwerk(data.path())
        .env("PORT", "0")
        .env("VELDWERK_MODE", "production")
        .env("VELDWERK_DEMO_DATA", "false")
        .env("VELDWERK_PUSH_MODE", "log")
        .env(
            "VELDWERK_JWT_SECRET",
            "a-production-secret-of-more-than-32-characters",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen: Vec<String> = Vec::new();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .inspect(|line| seen.push(line.clone()))
        .find(|line| line.contains(r#""message":"listening""#))
        .expect("a JSON line says the server listens");
    let listening: serde_json::Value = serde_json::from_str(&listening).unwrap();
    let port = listening["addr"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ready = runtime.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
            .await
            .unwrap()
            .status()
    });
    assert_eq!(ready, 200);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    seen.extend(lines.map_while(Result::ok));
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in seen.iter().map(String::as_str).chain(stderr.lines()) {
        if line.trim().is_empty() {
            continue;
        }
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON line: {line:?}"
        );
    }
}
