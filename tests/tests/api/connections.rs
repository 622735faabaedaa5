//! Hostile clients on raw sockets: bodies announced and never sent, headers trickled, connections
//! left idle, and a device that opens stream after stream. None of them may hold what every other
//! client needs.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use veldwerk_tests::{LiveStream, TestApp, db_test};

use crate::sync::phone;

fn host(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Opens a push that announces a 1,000-byte body and sends 10 bytes of it.
async fn stalled_push(app: &TestApp, token: &str) -> TcpStream {
    let mut socket = TcpStream::connect(host(app)).await.unwrap();
    let head = format!(
        "POST /v1/sync/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         veldwerk-protocol: 1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"client\":"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
}

/// Reads what the server sends until it closes the connection (at most `limit`); `None` if it
/// stays open that long.
async fn until_closed(socket: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 4096];
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

db_test!(async fn stalled_push_bodies_hold_no_turn_and_one_participant_gets_a_fair_share(app) with |config| {
    config.body_read_timeout_secs = 3;
}; {
    let (mut honest, cohort, _) = phone(&app, "Sanne").await;
    let (greedy, _, _) = phone(&app, "Greedy").await;
    let (other, _, _) = phone(&app, "Other").await;
    // Four stalled pushes, as many as there are turns: two from each of two participants.
    let mut stalled = Vec::new();
    for token in [greedy.debug_token(), greedy.debug_token(), other.debug_token(), other.debug_token()] {
        stalled.push(stalled_push(&app, token).await);
    }
    // A third at once from the same participant (once the first two are in) is refused at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = stalled_push(&app, greedy.debug_token()).await;
    let refused = until_closed(&mut third, Duration::from_secs(10)).await.unwrap_or_default();
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("\"code\":\"rate_limited\""), "{refused}");
    // Meanwhile an honest participant's push goes through.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    honest.write(
        "interviews",
        uuid::Uuid::now_v7(),
        Some(cohort),
        json!({ "name_consent": false, "status": "draft", "notes": "buurtcoach", "place": "Wijkcentrum" }),
    );
    tokio::time::timeout(Duration::from_secs(2), honest.sync())
        .await
        .expect("a push goes through while others stall")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    // The stalled ones are answered 408 in the error shape once their time is up.
    for mut socket in stalled {
        let answer = until_closed(&mut socket, Duration::from_secs(15)).await.expect("the stall ends");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"code\":\"body_timeout\""), "{answer}");
    }
});

db_test!(async fn trickled_headers_are_cut_off(app) with |config| {
    config.header_read_timeout_secs = 1;
}; {
    let mut socket = TcpStream::connect(host(&app)).await.unwrap();
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    // A header every 300 ms, forever: the connection must still end.
    let trickle = async {
        for n in 0..100 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if socket.write_all(format!("X-Slow-{n}: y\r\n").as_bytes()).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(8), trickle).await;
    assert!(started.elapsed() < Duration::from_secs(8), "the server cut the trickle off");
});

db_test!(async fn idle_connections_are_closed(app) with |config| {
    config.idle_timeout_secs = 1;
}; {
    let mut socket = TcpStream::connect(host(&app)).await.unwrap();
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = socket.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    // Kept alive, then left alone: closed within a few seconds.
    assert!(until_closed(&mut socket, Duration::from_secs(8)).await.is_some(), "an idle connection stays open");
    // A silent connection that never sends a byte is closed too.
    let mut silent = TcpStream::connect(host(&app)).await.unwrap();
    assert!(until_closed(&mut silent, Duration::from_secs(8)).await.is_some());
});

db_test!(async fn a_device_holds_a_bounded_number_of_streams_and_the_newest_wins(app) with |config| {
    config.max_streams_per_device = 2;
}; {
    let (device, _, _) = phone(&app, "Sanne").await;
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut stream = LiveStream::open(&app.client, &app.address, device.debug_token()).await;
        stream.next_event("ready").await;
        streams.push(stream);
    }
    // Ten more: each ends the oldest, so the device never holds more than two.
    for _ in 0..10 {
        let mut newest = LiveStream::open(&app.client, &app.address, device.debug_token()).await;
        newest.next_event("ready").await;
        let mut oldest = streams.remove(0);
        let ended = oldest.until_closed().await;
        assert!(ended.contains("event: replaced"), "{ended}");
        streams.push(newest);
    }
    let metrics = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("veldwerk_sync_open_streams 2"), "{metrics}");
});

db_test!(async fn requests_hyper_refuses_are_answered_in_the_error_shape(app) {
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let big_header = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(500_000));
    let cases: [(&[u8], &str, &str); 4] = [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", "400", "bad_request"),
        (b"NOT HTTP AT ALL\r\n\r\n", "400", "bad_request"),
        (long_uri.as_bytes(), "414", "uri_too_long"),
        (big_header.as_bytes(), "431", "headers_too_large"),
    ];
    for (request, status, code) in cases {
        let mut socket = TcpStream::connect(host(&app)).await.unwrap();
        let _ = socket.write_all(request).await;
        let answer = until_closed(&mut socket, Duration::from_secs(10)).await.expect("an answer, then close");
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{answer}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.to_lowercase().contains("content-type: application/json"), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{answer}"));
        assert_eq!(body["code"], code, "{answer}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
});

/// Reads one HTTP/1.1 answer's head from a raw socket.
async fn answer_head(socket: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before answering: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&received).into_owned()
}

// The server tells HTTP/2 from HTTP/1 by the first bytes it reads itself (`http_server.rs`):
// requests that arrive in pieces, heads larger than what it reads first, and HTTP/2 without TLS,
// whole or with its preface split, must all be served as before.
db_test!(async fn requests_are_served_however_their_first_bytes_arrive(app) {
    // One byte, then the rest: not mistaken for a closed connection or an HTTP/2 preface.
    let mut socket = TcpStream::connect(host(&app)).await.unwrap();
    socket.write_all(b"G").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    socket.write_all(b"ET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(answer_head(&mut socket).await.starts_with("HTTP/1.1 200"));
    // Kept alive: a second request on the same connection.
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(answer_head(&mut socket).await.starts_with("HTTP/1.1 200"));

    // A head of 20 KB, more than the first read takes.
    let mut socket = TcpStream::connect(host(&app)).await.unwrap();
    let head = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n", "l".repeat(20_000));
    socket.write_all(head.as_bytes()).await.unwrap();
    assert!(answer_head(&mut socket).await.starts_with("HTTP/1.1 200"));

    // Starts like HTTP/2's preface and then is not: answered as HTTP/1 (a path it does not know).
    let mut socket = TcpStream::connect(host(&app)).await.unwrap();
    socket.write_all(b"PRI * HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = answer_head(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");

    // HTTP/2 with prior knowledge, as a client library speaks it.
    let http2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = http2.get(format!("{}/healthz", app.address)).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);

    // HTTP/2's preface in two pieces, then an empty SETTINGS frame: the server answers with its
    // own SETTINGS frame (type 4), which an HTTP/1 server would not.
    let mut socket = TcpStream::connect(host(&app)).await.unwrap();
    socket.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    socket.write_all(b"\r\nSM\r\n\r\n").await.unwrap();
    socket.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut frame = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), socket.read_exact(&mut frame))
        .await
        .expect("a frame within 10 s")
        .unwrap();
    assert_eq!(frame[3], 4, "the first frame is SETTINGS: {frame:?}");
});

db_test!(async fn a_connection_that_never_sends_a_request_is_closed_after_the_header_timeout(app) with |config| {
    config.header_read_timeout_secs = 1;
    config.idle_timeout_secs = 60;
}; {
    // Before any byte: the header timeout applies, not the (much longer) idle timeout.
    let mut silent = TcpStream::connect(host(&app)).await.unwrap();
    assert!(until_closed(&mut silent, Duration::from_secs(8)).await.is_some(), "a silent connection stays open");
    // Half a preface, then silence: closed too.
    let mut half = TcpStream::connect(host(&app)).await.unwrap();
    half.write_all(b"PRI * HTTP/2.0").await.unwrap();
    assert!(until_closed(&mut half, Duration::from_secs(8)).await.is_some(), "half a preface keeps the connection");
});
