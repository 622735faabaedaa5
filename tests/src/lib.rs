//! Test harness: the real Veldwerk server on port 0, against a fresh database per test.
//!
//! Every scenario runs twice, on SQLite (always) and on PostgreSQL when
//! `VELDWERK_TEST_POSTGRES_URL` is set (e.g. `postgres://postgres@127.0.0.1:5432/test`): each test
//! gets its own database, created from that URL's server and dropped afterwards. Without the
//! variable the PostgreSQL variant says it was skipped and passes.

use std::{future::Future, time::Duration};

use reqwest::{Method, header::HeaderMap};
use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;
use tokio::sync::oneshot;
use veldwerk_server::{Application, Config, config::Secret};

pub use veldwerk_server;

pub mod browser;
pub mod client;
pub mod fcm_mock;
pub mod loadgen;
pub mod seed;
pub mod spec_check;

/// The environment variable naming the PostgreSQL server for tests.
pub const POSTGRES_URL_VAR: &str = "VELDWERK_TEST_POSTGRES_URL";
/// The environment variable naming an S3-compatible server for tests (e.g. `moto_server` at
/// `http://127.0.0.1:5000`); each test gets a bucket of its own there.
pub const S3_URL_VAR: &str = "VELDWERK_TEST_S3_URL";

/// Where a test's attachment bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// A temporary folder.
    Local,
    /// A fresh bucket on the server named by [`S3_URL_VAR`].
    S3,
}

/// Runs one attachment scenario on both databases and both storage backends.
#[macro_export]
macro_rules! storage_test {
    ($(#[$meta:meta])* async fn $name:ident($app:ident) with $configure:expr; $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario($app: $crate::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_local() {
                $crate::run_with_storage($crate::Backend::Sqlite, $crate::Storage::Local, $configure, scenario).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_local() {
                $crate::run_with_storage($crate::Backend::Postgres, $crate::Storage::Local, $configure, scenario).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_s3() {
                $crate::run_with_storage($crate::Backend::Sqlite, $crate::Storage::S3, $configure, scenario).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_s3() {
                $crate::run_with_storage($crate::Backend::Postgres, $crate::Storage::S3, $configure, scenario).await;
            }
        }
    };
    ($(#[$meta:meta])* async fn $name:ident($app:ident) $body:block) => {
        $crate::storage_test!($(#[$meta])* async fn $name($app) with |_| {}; $body);
    };
}

/// Runs `scenario` with attachments in `storage`; S3 without [`S3_URL_VAR`] is skipped, saying so.
pub async fn run_with_storage<F, Fut>(
    backend: Backend,
    storage: Storage,
    configure: impl FnOnce(&mut Config),
    scenario: F,
) where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    let s3 = match storage {
        Storage::Local => None,
        Storage::S3 => match std::env::var(S3_URL_VAR) {
            Ok(url) => Some((url.clone(), fresh_bucket(&url).await)),
            Err(_) => {
                eprintln!("skipped: {S3_URL_VAR} is not set, so this S3 test did not run");
                return;
            }
        },
    };
    let configure = move |config: &mut Config| {
        if let Some((url, bucket)) = s3 {
            let attachments = &mut config.attachments;
            attachments.storage = veldwerk_server::config::StorageKind::S3;
            attachments.s3_endpoint = Some(url);
            attachments.s3_bucket = bucket;
            attachments.s3_allow_http = true;
            attachments.s3_access_key_id = Some(Secret::new("test"));
            attachments.s3_secret_access_key = Some(Secret::new("test"));
        }
        configure(config);
    };
    run_scenario(backend, configure, scenario).await;
}

/// Creates an empty bucket on the S3 test server (which, like moto, accepts unsigned requests).
async fn fresh_bucket(url: &str) -> String {
    let bucket = format!("veldwerk-test-{}", uuid::Uuid::new_v4().simple());
    let response = reqwest::Client::new()
        .put(format!("{}/{bucket}", url.trim_end_matches('/')))
        .send()
        .await
        .expect("the S3 test server answers");
    assert!(
        response.status().is_success(),
        "creating a bucket failed: {}",
        response.status()
    );
    bucket
}

/// The database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one scenario on both databases: `sqlite` and `postgres` tests in a module named after it.
///
/// ```text
/// db_test!(async fn a_trainer_can_log_in(app) { ... });
/// ```
#[macro_export]
macro_rules! db_test {
    ($(#[$meta:meta])* async fn $name:ident($app:ident) $body:block) => {
        $crate::db_test!($(#[$meta])* async fn $name($app) with |_| {}; $body);
    };
    ($(#[$meta:meta])* async fn $name:ident($app:ident) with $configure:expr; $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario($app: $crate::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::run_scenario($crate::Backend::Sqlite, $configure, scenario).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::run_scenario($crate::Backend::Postgres, $configure, scenario).await;
            }
        }
    };
}

/// Like [`db_test!`], with a local FCM server that the app sends through (push mode `fcm`).
#[macro_export]
macro_rules! fcm_test {
    ($(#[$meta:meta])* async fn $name:ident($app:ident, $fcm:ident) $body:block) => {
        $crate::fcm_test!($(#[$meta])* async fn $name($app, $fcm) with |_| {}; $body);
    };
    ($(#[$meta:meta])* async fn $name:ident($app:ident, $fcm:ident) with $configure:expr; $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario($app: $crate::TestApp, $fcm: $crate::fcm_mock::MockFcm) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::run_with_fcm($crate::Backend::Sqlite, $configure, scenario).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::run_with_fcm($crate::Backend::Postgres, $configure, scenario).await;
            }
        }
    };
}

/// Starts a local FCM server, then the app configured to send through it, and runs `scenario`.
pub async fn run_with_fcm<F, Fut>(
    backend: Backend,
    configure: impl FnOnce(&mut Config),
    scenario: F,
) where
    F: FnOnce(TestApp, fcm_mock::MockFcm) -> Fut,
    Fut: Future<Output = ()>,
{
    let fcm = fcm_mock::MockFcm::start().await;
    let key = fcm.service_account_json();
    let url = fcm.url.clone();
    let configure = move |config: &mut Config| {
        config.push.mode = veldwerk_server::config::PushMode::Fcm;
        config.push.fcm_credentials_json = Some(Secret::new(key));
        config.push.fcm_base_url = url;
        configure(config);
    };
    run_scenario(backend, configure, |app| scenario(app, fcm)).await;
}

/// Starts the server on `backend` (skipping PostgreSQL when not configured) and runs `scenario`.
pub async fn run_scenario<F, Fut>(
    backend: Backend,
    configure: impl FnOnce(&mut Config),
    scenario: F,
) where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    match TestApp::spawn_with(backend, configure).await {
        Some(app) => scenario(app).await,
        None => {
            eprintln!("skipped: {POSTGRES_URL_VAR} is not set, so this PostgreSQL test did not run")
        }
    }
}

/// A running server with its own database.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub backend: Backend,
    pub services: veldwerk_server::service::Services,
    server: ServerProcess,
    config: Config,
    database: TestDatabase,
    /// The data folder (attachments stored locally), removed afterwards.
    _files: tempfile::TempDir,
}

/// The server, on a runtime of its own so that a test can crash it: stopping that runtime drops
/// every in-flight request wherever it is, as a killed process would.
struct ServerProcess {
    kill: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerProcess {
    async fn start(config: Config) -> (Self, String, veldwerk_server::service::Services) {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (kill, killed) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a server runtime");
            runtime.block_on(async move {
                let app = Application::build(config)
                    .await
                    .expect("the application starts");
                let address = format!("http://{}", app.local_addr());
                let services = app.services().clone();
                tokio::spawn(app.run_until_stopped(std::future::pending()));
                let _ = ready_tx.send((address, services));
                let _ = killed.await;
            });
            runtime.shutdown_background();
        });
        let (address, services) = ready_rx
            .await
            .expect("the server thread starts the application");
        (
            Self {
                kill: Some(kill),
                thread: Some(thread),
            },
            address,
            services,
        )
    }

    fn stop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

impl TestApp {
    /// The test configuration: development mode with the demo data (the fixture most tests use),
    /// port 0, and a fresh database.
    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Option<Self> {
        let database = TestDatabase::create(backend).await?;
        let files = tempfile::tempdir().expect("a temporary folder");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().expect("a valid address"),
            database_url: database.url.clone(),
            data_dir: files.path().to_owned(),
            jwt_secret: Secret::new("a-test-secret-that-is-long-enough-for-hs256"),
            ..Config::default()
        };
        // Tests run the push worker's rounds themselves (`jobs::push::run_once`).
        config.push.worker_enabled = false;
        // No default quiet hours, so that no test's outcome depends on the hour it runs at; the
        // tests of quiet hours give each device its own.
        config.push.quiet_hours_start = "00:00".to_owned();
        config.push.quiet_hours_end = "00:00".to_owned();
        configure(&mut config);
        let (server, address, services) = ServerProcess::start(config.clone()).await;
        Some(Self {
            address,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            backend,
            services,
            server,
            config,
            database,
            _files: files,
        })
    }

    /// Starts a second server process on this app's database, as another replica would run.
    pub async fn start_replica(&self) -> Replica {
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().expect("a valid address");
        config.demo_data = false;
        let (server, address, services) = ServerProcess::start(config).await;
        Replica {
            address,
            services,
            _server: server,
        }
    }

    /// Kills the server at once, dropping in-flight requests mid-way, as a crash would.
    pub fn kill(&mut self) {
        self.server.stop();
    }

    /// Starts the server again on the same database and port.
    pub async fn restart(&mut self) {
        self.server.stop();
        let mut config = self.config.clone();
        config.listen = self
            .address
            .trim_start_matches("http://")
            .parse()
            .expect("the old address");
        let (server, address, services) = ServerProcess::start(config).await;
        self.server = server;
        self.address = address;
        self.services = services;
    }

    /// The database URL this app uses.
    pub fn database_url(&self) -> &str {
        &self.database.url
    }

    /// Sends a request; `token` becomes a bearer header, `body` a JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::from(request.send().await.expect("the server answers")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Logs in and returns the session JSON.
    pub async fn login(&self, email: &str, password: &str) -> Value {
        self.post(
            "/v1/auth/login",
            None,
            serde_json::json!({ "email": email, "password": password }),
        )
        .await
        .expect(201)
    }

    /// Redeems an invite and returns the session JSON.
    pub async fn enrol(&self, code: &str, name: &str) -> Value {
        self.post(
            "/v1/auth/enrol",
            None,
            serde_json::json!({ "invite_code": code, "display_name": name }),
        )
        .await
        .expect(201)
    }
}

/// A second server on the same database; stopped when dropped.
pub struct Replica {
    pub address: String,
    pub services: veldwerk_server::service::Services,
    _server: ServerProcess,
}

/// A live sync stream (`GET /v1/sync/events`) as a test reads it.
pub struct LiveStream {
    events:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Vec<u8>, reqwest::Error>> + Send>>,
    received: String,
}

impl LiveStream {
    /// Opens the stream on a server as the device with this access token.
    pub async fn open(client: &reqwest::Client, address: &str, token: &str) -> Self {
        Self::open_at(client, &format!("{address}/v1/sync/events"), token).await
    }

    /// Opens an event stream at this URL (`/v1/sync/events`, `/v1/rxdb/events`).
    pub async fn open_at(client: &reqwest::Client, url: &str, token: &str) -> Self {
        use futures_util::StreamExt;
        let response = client
            .get(url)
            .bearer_auth(token)
            .header("veldwerk-protocol", "1")
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            events: response
                .bytes_stream()
                .map(|chunk| chunk.map(|b| b.to_vec()))
                .boxed(),
            received: String::new(),
        }
    }

    /// Waits (at most 10 s, then fails the test) for an event of this name, and returns what
    /// arrived up to it.
    pub async fn next_event(&mut self, name: &str) -> String {
        self.next_containing(&format!("event: {name}")).await
    }

    /// Waits (at most 10 s, then fails the test) until what arrived contains `marker`, and
    /// returns what arrived up to then.
    pub async fn next_containing(&mut self, marker: &str) -> String {
        use futures_util::StreamExt;
        let name = marker;
        let events = &mut self.events;
        let received = &mut self.received;
        tokio::time::timeout(Duration::from_secs(10), async {
            while !received.contains(marker) {
                let chunk = events.next().await.expect("the stream stays open").unwrap();
                received.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {name} event; got {received:?}"));
        std::mem::take(received)
    }

    /// Reads until the server ends the stream (at most 10 s); returns what arrived.
    pub async fn until_closed(&mut self) -> String {
        use futures_util::StreamExt;
        let events = &mut self.events;
        let received = &mut self.received;
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(chunk) = events.next().await {
                received.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            }
        })
        .await
        .expect("the stream ends");
        std::mem::take(received)
    }
}

/// A status, headers and JSON body (`Null` when the body is empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
        }
    }

    /// Asserts the status, showing the body on failure, and returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        self.body
    }

    /// Asserts an error reply: its status and stable code, in the one error shape.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        assert_eq!(
            self.body["code"], code,
            "unexpected error code; body: {}",
            self.body
        );
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "an error has a message; body: {}",
            self.body
        );
        self.body
    }
}

/// A fresh, empty database for a test that needs one without a server (`None`: PostgreSQL is not
/// configured).
pub async fn fresh_database(backend: Backend) -> Option<TestDatabase> {
    TestDatabase::create(backend).await
}

/// A fresh, empty database: a SQLite file in a temporary folder, or (given a server URL) a new
/// PostgreSQL database on that server, dropped when the value is dropped.
pub async fn database_on(postgres_url: Option<&str>) -> TestDatabase {
    match postgres_url {
        None => TestDatabase::sqlite(),
        Some(url) => TestDatabase::postgres(url.to_owned()).await,
    }
}

/// A database that exists for one test.
pub struct TestDatabase {
    url: String,
    /// For PostgreSQL: the server URL and the database name to drop afterwards.
    postgres: Option<(String, String)>,
    /// For SQLite: the folder holding the file, removed afterwards.
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// Its connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite()),
            Backend::Postgres => {
                let server_url = std::env::var(POSTGRES_URL_VAR).ok()?;
                Some(Self::postgres(server_url).await)
            }
        }
    }

    fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
        Self {
            url,
            postgres: None,
            _dir: Some(dir),
        }
    }

    async fn postgres(server_url: String) -> Self {
        let name = format!("veldwerk_test_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(&server_url)
            .await
            .expect("the PostgreSQL test server accepts connections");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("a test database can be created");
        admin.close().await.ok();
        Self {
            url: replace_database(&server_url, &name),
            postgres: Some((server_url, name)),
            _dir: None,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((server_url, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs outside async context; use a small runtime of its own on another thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                if let Ok(admin) = Database::connect(&server_url).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// The same server URL with another database name.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (server, _) = base.rsplit_once('/').unwrap_or((base, ""));
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// Every `table.column` of the database at `database_url` with a value whose text contains
/// `needle`, in every table the migrations made: how a test proves that nothing of a person is
/// left anywhere, without listing (and forgetting) tables.
pub async fn columns_containing(database_url: &str, needle: &str) -> Vec<String> {
    use sea_orm::{DbBackend, Statement};
    let db = Database::connect(database_url)
        .await
        .expect("the test database accepts connections");
    let backend = db.get_database_backend();
    let columns: Vec<(String, String)> = match backend {
        DbBackend::Sqlite => {
            let tables = db
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                ))
                .await
                .expect("tables can be listed");
            let mut columns = Vec::new();
            for table in tables {
                let table: String = table.try_get("", "name").unwrap();
                let info = db
                    .query_all_raw(Statement::from_string(
                        backend,
                        format!("PRAGMA table_info(\"{table}\")"),
                    ))
                    .await
                    .expect("columns can be listed");
                for column in info {
                    columns.push((table.clone(), column.try_get("", "name").unwrap()));
                }
            }
            columns
        }
        _ => db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
                 WHERE table_schema = 'public'",
            ))
            .await
            .expect("columns can be listed")
            .into_iter()
            .map(|row| (row.try_get("", "t").unwrap(), row.try_get("", "c").unwrap()))
            .collect(),
    };
    assert!(
        columns.len() > 50,
        "the database has its tables: {columns:?}"
    );
    let mut hits = Vec::new();
    for (table, column) in columns {
        let sql = format!(
            "SELECT COUNT(*) AS hits FROM \"{table}\" WHERE CAST(\"{column}\" AS TEXT) LIKE '%{}%'",
            needle.replace('\'', "''")
        );
        let row = db
            .query_one_raw(Statement::from_string(backend, sql))
            .await
            .expect("a column can be searched")
            .expect("a count");
        let count: i64 = row.try_get("", "hits").unwrap();
        if count > 0 {
            hits.push(format!("{table}.{column}"));
        }
    }
    db.close().await.ok();
    hits
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_is_replaced_and_options_kept() {
        assert_eq!(
            super::replace_database("postgres://u@h:5432/test?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            super::replace_database("postgres://u@h/test", "x"),
            "postgres://u@h/x"
        );
    }
}
