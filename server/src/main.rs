//! The `veldwerk` binary: `serve` (default), `migrate`, `openapi`.

use std::process::ExitCode;

use anyhow::Context;
use veldwerk_server::{
    Application, Config, api,
    service::{Role, Services, accounts::NewStaff},
    store, telemetry,
};

const USAGE: &str = "usage: veldwerk [serve | migrate | openapi | bootstrap ...]

  serve      run the HTTP server (the default)
  migrate    apply database migrations and exit
  openapi    print the OpenAPI spec as JSON
  health     exit 0 if the server on this machine answers /readyz (for container health checks)
  bootstrap --provider NAME --email EMAIL [--name DISPLAY_NAME]
             create a provider, its first admin (password read from standard input) and the
             Urban Professional programme: the first step of a production installation

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
        "bootstrap" => bootstrap(std::env::args().skip(2).collect()).await,
        "health" => health().await,
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
    if config.mode == veldwerk_server::config::Mode::Production
        && config.push.mode == veldwerk_server::config::PushMode::Log
    {
        tracing::warn!(
            "push mode is log: notifications are written to the log and reach no device \
             (set VELDWERK_PUSH_MODE=fcm with a service account key to send them)"
        );
    }
    let production = config.mode == veldwerk_server::config::Mode::Production;
    let app = Application::build(config).await?;
    let addr = app.local_addr();
    tracing::info!(%addr, "listening");
    // The banner is for people trying it out (it shows the demo logins); production's log is
    // for collectors and stays one JSON object per line (the `listening` line says the address).
    if production {
        return app.run_until_stopped(shutdown_signal()).await;
    }
    println!("Veldwerk listens on http://{addr}");
    println!("  Console:       http://{addr}/console");
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
    if config.mode == veldwerk_server::config::Mode::Production {
        tracing::info!("migrations applied");
    } else {
        println!("migrations applied");
    }
    Ok(())
}

async fn bootstrap(args: Vec<String>) -> anyhow::Result<()> {
    let flag = |name: &str| {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|index| args.get(index + 1))
            .cloned()
    };
    let (Some(provider), Some(email)) = (flag("--provider"), flag("--email")) else {
        anyhow::bail!("bootstrap needs --provider NAME and --email EMAIL\n\n{USAGE}");
    };
    let display_name = flag("--name").unwrap_or_else(|| "Beheerder".to_owned());
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("Failed to read the admin password from standard input")?;
    let config = Config::load()?;
    telemetry::init(&config);
    let db = store::connect(&config.database_url).await?;
    store::migrate(&db).await?;
    let services = Services::new(db, config)?;
    let (provider, admin) = services
        .bootstrap_provider(
            &provider,
            NewStaff {
                role: Role::Admin,
                email,
                display_name,
                password: password.trim_end_matches(['\r', '\n']).to_owned(),
            },
        )
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    println!(
        "created provider {:?} ({}) with admin {}",
        provider.name,
        provider.id,
        admin.email.unwrap_or_default()
    );
    Ok(())
}

/// Asks the local server whether it is ready; for a container's HEALTHCHECK, which has no curl.
async fn health() -> anyhow::Result<()> {
    let config = Config::load()?;
    let port = config.listen.port();
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .context("the server does not answer")?;
    anyhow::ensure!(
        response.status().is_success(),
        "not ready: {}",
        response.status()
    );
    Ok(())
}

async fn print_openapi() -> anyhow::Result<()> {
    // The spec needs no database, but the services need a pool: an in-memory SQLite one.
    let mut config = Config::load()?;
    config.database_url = "sqlite::memory:".to_owned();
    let db = store::connect(&config.database_url).await?;
    let services = Services::new(db, config)?;
    println!(
        "{}",
        api::document::complete(&api::openapi(services).spec())
    );
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
