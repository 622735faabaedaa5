//! Building and running the application: what `main` calls, and what the tests drive on port 0.

use std::{future::Future, net::SocketAddr, time::Duration};

use anyhow::Context;
use sea_orm::DatabaseConnection;

use crate::{
    api,
    config::Config,
    jobs,
    service::{Services, demo::DemoLogins},
    store,
};

/// A server bound to its port, with its database migrated, ready to run.
pub struct Application {
    listener: tokio::net::TcpListener,
    services: Services,
    demo: Option<DemoLogins>,
}

impl Application {
    /// Connects to the database, applies migrations, creates the demo data when configured, and
    /// binds the listen address (port 0 picks a free port).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = store::connect(&config.database_url).await?;
        Self::build_with_database(config, db).await
    }

    /// Like [`Application::build`] on an existing connection pool.
    pub async fn build_with_database(
        config: Config,
        db: DatabaseConnection,
    ) -> anyhow::Result<Self> {
        store::migrate(&db).await?;
        let listen = config.listen;
        let services = Services::new(db, config)?;
        let demo = services
            .ensure_demo()
            .await
            .map_err(anyhow::Error::from)
            .context("Failed to create the demo data")?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("Failed to listen on {listen}"))?;
        Ok(Self {
            listener,
            services,
            demo,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// The use cases, for tests and jobs that act without HTTP.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The demo logins, when demo data is on.
    pub fn demo_logins(&self) -> Option<&DemoLogins> {
        self.demo.as_ref()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish (up to 10 s).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let retention =
            Duration::from_secs(self.services.config().tombstone_retention_days * 86_400);
        let purger = tokio::spawn(jobs::tombstones::run(
            self.services.clone(),
            Duration::from_secs(3_600),
            retention,
        ));
        let attachments = &self.services.config().attachments;
        let collector = tokio::spawn(jobs::attachments::run(
            self.services.clone(),
            Duration::from_secs(attachments.gc_interval_secs.max(1)),
            Duration::from_secs(attachments.gc_grace_secs),
        ));
        let retention_job = tokio::spawn(jobs::retention::run(
            self.services.clone(),
            Duration::from_secs(
                self.services
                    .config()
                    .privacy
                    .retention_interval_secs
                    .max(1),
            ),
        ));
        let (stop_worker, worker_stopped) = tokio::sync::watch::channel(false);
        let push_worker = self.services.config().push.worker_enabled.then(|| {
            let worker = format!("worker-{}", uuid::Uuid::now_v7().simple());
            let interval =
                Duration::from_secs(self.services.config().push.worker_interval_secs.max(1));
            tokio::spawn(jobs::push::run(
                self.services.clone(),
                worker,
                interval,
                worker_stopped,
            ))
        });
        let relay = tokio::spawn(self.services.clone().relay_notices());
        let services = self.services.clone();
        let limits = crate::http_server::ConnectionLimits {
            header_read_timeout: Duration::from_secs(services.config().header_read_timeout_secs),
            idle_timeout: Duration::from_secs(services.config().idle_timeout_secs),
        };
        let drain = Duration::from_secs(services.config().shutdown_drain_secs);
        let grace = Duration::from_secs(services.config().shutdown_grace_secs);
        let shutdown = async move {
            shutdown.await;
            // Report not ready first, so a load balancer stops sending traffic, then stop
            // accepting and let in-flight requests finish.
            services.start_draining();
            tracing::info!(?drain, "shutting down: not ready, draining");
            tokio::time::sleep(drain).await;
        };
        let served = crate::http_server::serve(
            self.listener,
            api::app(self.services),
            limits,
            shutdown,
            grace,
        )
        .await
        .context("The HTTP server failed");
        purger.abort();
        collector.abort();
        retention_job.abort();
        relay.abort();
        if let Some(push_worker) = push_worker {
            // Let the round in hand finish its sends and record them, within the grace period.
            let _ = stop_worker.send(true);
            if tokio::time::timeout(grace, push_worker).await.is_err() {
                tracing::warn!("the push worker did not finish within the grace period");
            }
        }
        served
    }
}
