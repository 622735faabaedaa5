//! The `veldwerk` binary: `serve` (default), `migrate`, `openapi`.

use std::process::ExitCode;

use anyhow::Context;
use veldwerk_server::{Application, Config, api, service::Services, store, telemetry};

const USAGE: &str = "usage: veldwerk [serve | migrate | openapi]

  serve    run the HTTP server (the default)
  migrate  apply database migrations and exit
  openapi  print the OpenAPI spec as JSON

Configuration: defaults, then the TOML file named by VELDWERK_CONFIG, then VELDWERK_* variables
(see README.md).";

#[tokio::main]
async fn main() -> ExitCode {
    let command = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "serve".to_owned());
    let result = match command.as_str() {
        "serve" => serve().await,
        "migrate" => migrate().await,
        "openapi" => print_openapi().await,
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("unknown command {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::load()?;
    telemetry::init(&config);
    let app = Application::build(config).await?;
    let addr = app.local_addr();
    tracing::info!(%addr, "listening");
    println!("Veldwerk listens on http://{addr}");
    println!("  API docs:      http://{addr}/docs");
    println!("  OpenAPI spec:  http://{addr}/openapi.json");
    println!("  Health check:  http://{addr}/healthz");
    if let Some(demo) = app.demo_logins() {
        println!("Demo data ({}):", demo.cohort_name);
        println!("  admin:    {} / {}", demo.admin_email, demo.admin_password);
        println!(
            "  trainer:  {} / {}",
            demo.trainer_email, demo.trainer_password
        );
        println!(
            "  participant invite codes: {}",
            demo.invite_codes.join(", ")
        );
    }
    app.run_until_stopped(shutdown_signal()).await
}

async fn migrate() -> anyhow::Result<()> {
    let config = Config::load()?;
    telemetry::init(&config);
    let db = store::connect(&config.database_url).await?;
    store::migrate(&db).await?;
    println!("migrations applied");
    Ok(())
}

async fn print_openapi() -> anyhow::Result<()> {
    // The spec needs no database, but the services need a pool: an in-memory SQLite one.
    let mut config = Config::load()?;
    config.database_url = "sqlite::memory:".to_owned();
    let db = store::connect(&config.database_url).await?;
    let services = Services::new(db, config)?;
    println!("{}", api::openapi(services).spec());
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("Failed to listen for SIGTERM")
        {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "no graceful shutdown on SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
