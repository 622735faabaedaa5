//! The contract for app developers, tried as they would: a TypeScript client generated from the
//! running server's OpenAPI document with openapi-typescript, a small app on it type-checked with
//! `tsc --strict` and run against the server (`tests/typescript/client.ts`).

use std::path::Path;

use serde_json::Value;
use uuid::Uuid;
use veldwerk_tests::db_test;
use veldwerk_tests::veldwerk_server::service::demo;

async fn node(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = tokio::process::Command::new("node")
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "node {args:?}:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

db_test!(async fn a_generated_typescript_client_type_checks_and_runs_against_the_server(app) {
    let Some(dir) = crate::fixtures::npm_check_dir("typescript", "openapi-typescript") else { return };
    // One directory per run: SQLite and PostgreSQL run at once.
    let run = dir.join("runs").join(Uuid::now_v7().to_string());
    std::fs::create_dir_all(&run).unwrap();
    std::fs::copy(dir.join("client.ts"), run.join("client.ts")).unwrap();
    let run_name = run.strip_prefix(&dir).unwrap().to_str().unwrap().to_owned();

    let spec_url = format!("{}/openapi.json", app.address);
    node(&dir, &["node_modules/openapi-typescript/bin/cli.js", &spec_url,
                 "--output", &format!("{run_name}/schema.d.ts")], &[]).await;
    node(&dir, &["node_modules/typescript/bin/tsc", "--strict", "--noUncheckedIndexedAccess",
                 "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022",
                 "--skipLibCheck", "--outDir", &format!("{run_name}/out"),
                 &format!("{run_name}/client.ts")], &[]).await;
    let stdout = node(&dir, &[&format!("{run_name}/out/client.js")], &[
        ("VELDWERK_URL", &app.address),
        ("TRAINER_EMAIL", demo::TRAINER_EMAIL),
        ("TRAINER_PASSWORD", demo::TRAINER_PASSWORD),
    ]).await;
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(report["attachment"], "stored", "{report}");
    assert!(report["changes"].as_u64().unwrap() >= 2, "{report}");
    std::fs::remove_dir_all(&run).unwrap();
});
