//! The database connection itself, below what the API shows.

use std::{
    mem::ManuallyDrop,
    net::TcpStream,
    os::fd::{FromRawFd, RawFd},
};

use sea_orm::ConnectionTrait;
use veldwerk_tests::{POSTGRES_URL_VAR, veldwerk_server::store};

/// Every statement to PostgreSQL over TCP must leave at once. sqlx 0.9.0 stopped setting
/// TCP_NODELAY, and then a statement written while the previous segment waits for its delayed ACK
/// is held ~40 ms by Nagle's algorithm (a third of the upload rate, issue 17). The workspace
/// patches sqlx-core until a release carries the fix; this test fails when the option is missing,
/// for instance when the patch is dropped for a release that still lacks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sockets_have_tcp_nodelay() {
    let Ok(url) = std::env::var(POSTGRES_URL_VAR) else {
        eprintln!("skipped: {POSTGRES_URL_VAR} is not set, so this PostgreSQL test did not run");
        return;
    };
    let port = postgres_port(&url);
    let db = store::connect(&url).await.expect("PostgreSQL answers");
    // Hold two connections at once so the pool has opened more than one socket.
    let (a, b) = tokio::join!(
        db.execute_unprepared("SELECT pg_sleep(0.2)"),
        db.execute_unprepared("SELECT pg_sleep(0.2)")
    );
    a.unwrap();
    b.unwrap();

    // Other tests in this process hold PostgreSQL sockets too; all of them go through the same
    // sqlx, so every one of them must have the option.
    let sockets = own_tcp_sockets_to(port);
    assert!(
        sockets.len() >= 2,
        "expected this process to hold PostgreSQL sockets to port {port}, found {}",
        sockets.len()
    );
    let mut checked = 0;
    for (fd, inode) in sockets {
        if let Some(nodelay) = tcp_nodelay(fd, inode) {
            assert!(
                nodelay,
                "a socket to PostgreSQL (fd {fd}) has TCP_NODELAY off"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "only {checked} PostgreSQL sockets stayed open to be checked"
    );
    db.close().await.unwrap();
}

/// The port of a `postgres://user@host:port/db` URL (5432 when it names none).
fn postgres_port(url: &str) -> u16 {
    let authority = url.split("://").nth(1).unwrap_or(url);
    let authority = authority.split('/').next().unwrap_or(authority);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    match host_port.rsplit_once(':') {
        Some((_, port)) if !port.ends_with(']') => port.parse().expect("a numeric port"),
        _ => 5432,
    }
}

/// This process's file descriptors that are TCP sockets connected to `port`, with their inodes.
fn own_tcp_sockets_to(port: u16) -> Vec<(RawFd, u64)> {
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(remote) = fields.get(2) else {
                continue;
            };
            let remote_port = remote
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            // State 01 is ESTABLISHED.
            if remote_port == Some(port)
                && fields.get(3) == Some(&"01")
                && let Some(inode) = fields.get(9).and_then(|i| i.parse::<u64>().ok())
            {
                inodes.insert(inode);
            }
        }
    }
    let mut sockets = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc is mounted") {
        let entry = entry.unwrap();
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        if let Some(inode) = socket_inode(fd)
            && inodes.contains(&inode)
        {
            sockets.push((fd, inode));
        }
    }
    sockets
}

fn socket_inode(fd: RawFd) -> Option<u64> {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let target = target.to_str()?;
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Reads TCP_NODELAY of a socket another part of this process owns, or `None` when it was closed
/// (or its number reused) meanwhile.
#[allow(unsafe_code)]
fn tcp_nodelay(fd: RawFd, inode: u64) -> Option<bool> {
    // SAFETY: `fd` was open as the socket `inode` a moment ago. The stream is never dropped
    // (ManuallyDrop), so it does not close the owner's descriptor, and `nodelay` only reads an
    // option. If the number was closed and reused meanwhile, the inode check below discards the
    // answer.
    let stream = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
    let nodelay = stream.nodelay().ok();
    (socket_inode(fd) == Some(inode))
        .then_some(nodelay)
        .flatten()
}

veldwerk_tests::db_test!(async fn long_texts_of_records_are_stored_with_lz4_on_postgres(app) {
    // Migration 17: a push writes the notes and the stored pull text while it holds the version,
    // and lz4 compresses them in about half pglz's time (BENCHMARKS.md).
    let (mut phone, cohort, _) = crate::sync::phone(&app, "Sanne").await;
    let notes = "Gesprek met een bewoner over de buurt en het project. ".repeat(60);
    phone.write(
        "interviews",
        uuid::Uuid::now_v7(),
        Some(cohort),
        serde_json::json!({ "name_consent": false, "status": "draft", "notes": notes }),
    );
    phone.sync().await.unwrap();
    let db = app.services.db();
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        eprintln!("SQLite does not compress: only the PostgreSQL variant of this test checks");
        return;
    }
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_column_compression(notes) AS notes, \
             pg_column_compression(wire_tail) AS wire_tail FROM interviews",
        ))
        .await
        .unwrap()
        .unwrap();
    for column in ["notes", "wire_tail"] {
        let method: Option<String> = row.try_get("", column).unwrap();
        assert_eq!(method.as_deref(), Some("lz4"), "{column} is compressed with {method:?}");
    }
});
