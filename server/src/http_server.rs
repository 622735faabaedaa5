//! The HTTP server loop: hyper under poem's endpoint, with the connection limits poem's own
//! `Server` does not offer. A client gets `header_read_timeout` to send each request head (a
//! slowloris that trickles headers is cut off), a connection with no traffic either way for
//! `idle_timeout` is closed, and on shutdown connections finish their requests within the grace
//! period. Body read time is bounded where bodies are read (`api`), as it depends on the route.

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use poem::{
    Addr, Endpoint, Response,
    web::{LocalAddr, RemoteAddr},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Time limits for every connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// To receive a complete request head (request line and headers).
    pub header_read_timeout: Duration,
    /// Without a byte in either direction; live streams send a comment every 15 s.
    pub idle_timeout: Duration,
}

/// Serves `endpoint` on `listener` until `shutdown` completes, then stops accepting and gives open
/// connections `grace` to finish what they are doing.
pub async fn serve<E>(
    listener: tokio::net::TcpListener,
    endpoint: E,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> io::Result<()>
where
    E: Endpoint<Output = Response> + 'static,
{
    let endpoint = Arc::new(endpoint);
    let local = LocalAddr(Addr::SocketAddr(listener.local_addr()?));
    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors, for instance: wait a little, keep serving.
                        tracing::warn!(error = %err, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(serve_connection(
                    stream,
                    endpoint.clone(),
                    local.clone(),
                    RemoteAddr(Addr::SocketAddr(remote)),
                    limits,
                    closed.clone(),
                ));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing.send(true);
    let finished = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the grace period are closed"
        );
        connections.abort_all();
    }
    Ok(())
}

async fn serve_connection<E>(
    stream: tokio::net::TcpStream,
    endpoint: Arc<E>,
    local: LocalAddr,
    remote: RemoteAddr,
    limits: ConnectionLimits,
    mut closing: tokio::sync::watch::Receiver<bool>,
) where
    E: Endpoint<Output = Response> + 'static,
{
    let activity = Activity::default();
    let mut stream = stream;
    // The version is told apart here rather than by hyper-util's automatic builder, which reads
    // the first 24 bytes on their own: hyper's 8 KiB read buffer then has to grow to take the
    // rest of the request and stays at 16 KiB for as long as the connection is open (a live
    // stream, for hours). Read here, the request head reaches hyper in one piece.
    // Silent from the start: idle, and not sending its request head either.
    let before_first_request = limits.header_read_timeout.min(limits.idle_timeout);
    let first = tokio::select! {
        read = tokio::time::timeout(before_first_request, first_bytes(&mut stream)) => {
            match read {
                Ok(Ok(first)) if !first.is_empty() => first,
                // Closed, failed or silent before a request: nothing to answer.
                _ => return,
            }
        }
        _ = closing.changed() => return,
    };
    let http2 = first.starts_with(HTTP2_PREFACE);
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
        pending: Vec::new(),
        unread: first,
    });
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let endpoint = endpoint.clone();
        let request = poem::Request::from((
            request,
            local.clone(),
            remote.clone(),
            poem::http::uri::Scheme::HTTP,
        ));
        async move {
            // Boxed: hyper keeps room for the service's future in every connection for as long
            // as it is open (`Box::pin(None)` of its type), and the whole API's future is about
            // 14 KB. Boxed, that room is a pointer and the 14 KB exists only while a request is
            // being answered, not for every idle connection or live stream (BENCHMARKS.md).
            let response: hyper::Response<_> =
                Box::pin(endpoint.get_response(request)).await.into();
            Ok::<_, Infallible>(response)
        }
    });
    // Each connection's driver is boxed: unboxed, both kinds would be laid out in this task's
    // future (7.5 KB for every connection, measured); boxed, the task is 1.2 KB and the HTTP/1
    // driver 1.9 KB.
    if http2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        let connection = builder.serve_connection(io, service);
        Box::pin(drive(
            connection,
            |c| c.graceful_shutdown(),
            &activity,
            limits,
            closing,
        ))
        .await;
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // A client that closes its side once the request is sent (a phone cut off right
            // after the last chunk) still has the request carried out; the idle timeout ends
            // the rest.
            .half_close(true);
        let connection = builder.serve_connection(io, service);
        Box::pin(drive(
            connection,
            |c| c.graceful_shutdown(),
            &activity,
            limits,
            closing,
        ))
        .await;
    }
}

/// What a client speaking HTTP/2 without TLS sends first (RFC 9113, section 3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The connection's first bytes: at least enough to tell HTTP/2's preface from an HTTP/1
/// request, and whatever else has arrived (up to 8 KiB, hyper's read buffer). Empty when the
/// client closed first.
async fn first_bytes(stream: &mut tokio::net::TcpStream) -> io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut first = Vec::with_capacity(8 * 1024);
    while first.len() < HTTP2_PREFACE.len() && HTTP2_PREFACE.starts_with(&first) {
        // `read_buf` fills the spare capacity; it is there, as the loop stops at 24 bytes.
        if stream.read_buf(&mut first).await? == 0 {
            return Ok(Vec::new());
        }
    }
    Ok(first)
}

/// Runs a connection until it ends, is idle for too long, or the server shuts down; then lets
/// the requests in flight finish.
async fn drive<C: Future>(
    connection: C,
    graceful_shutdown: impl FnOnce(Pin<&mut C>),
    activity: &Activity,
    limits: ConnectionLimits,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    tokio::pin!(connection);
    let mut check = tokio::time::interval(limits.idle_timeout.min(Duration::from_secs(5)));
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = closing.changed() => break,
            _ = check.tick() => {
                if activity.quiet_for() >= limits.idle_timeout {
                    tracing::debug!("closing an idle connection");
                    break;
                }
            }
        }
    }
    // Requests in flight finish; nothing new is read.
    graceful_shutdown(connection.as_mut());
    let _ = connection.await;
}

/// When a connection last moved a byte.
#[derive(Clone)]
struct Activity {
    started: Instant,
    last_millis: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_millis: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(now, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// A socket that records its activity, and gives hyper's own answers a body in the API's error
/// shape.
struct Watched<T> {
    inner: T,
    activity: Activity,
    /// The rest of a rewritten answer still to be written.
    pending: Vec<u8>,
    /// Bytes read before hyper took over (`first_bytes`), given to hyper first.
    unread: Vec<u8>,
}

/// hyper answers a request it cannot parse by itself, before any endpoint: status line,
/// `connection: close`, `content-length: 0`. Our endpoints never answer an error without a body,
/// so that combination is hyper's; it becomes the same answer with a JSON body.
fn with_error_body(answer: &[u8]) -> Option<Vec<u8>> {
    const BODYLESS: &[u8] = b"\r\nconnection: close\r\ncontent-length: 0\r\n";
    let text = std::str::from_utf8(answer).ok()?;
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    let (code, message) = match status {
        "400" => (
            "bad_request",
            "the request is not valid HTTP (a control character in a header, for instance)",
        ),
        "414" => ("uri_too_long", "the request's path and query are too long"),
        "431" => ("headers_too_large", "the request's headers are too large"),
        _ => return None,
    };
    if !answer.windows(BODYLESS.len()).any(|w| w == BODYLESS) || !text.ends_with("\r\n\r\n") {
        return None;
    }
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    let head = text.trim_end_matches("\r\n").replace(
        "content-length: 0",
        &format!(
            "content-length: {}\r\ncontent-type: application/json; charset=utf-8\r\nx-content-type-options: nosniff",
            body.len()
        ),
    );
    Some(format!("{head}\r\n\r\n{body}").into_bytes())
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.unread.is_empty() && buf.remaining() > 0 {
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread[..n]);
            self.unread.drain(..n);
            if self.unread.is_empty() {
                // Its 8 KiB are given back rather than kept for the connection's life.
                self.unread = Vec::new();
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.is_empty()
            && let Some(rewritten) = with_error_body(buf)
        {
            self.pending = rewritten;
        }
        if !self.pending.is_empty() {
            // The rewritten answer goes out whole before the original counts as written.
            while !self.pending.is_empty() {
                let this = &mut *self;
                match Pin::new(&mut this.inner).poll_write(cx, &this.pending) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        this.pending.drain(..n);
                    }
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            self.activity.touch();
            return Poll::Ready(Ok(buf.len()));
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        // hyper then writes whole answers through `poll_write`, where error answers are
        // recognised.
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_error_answers_get_a_json_body_and_ours_are_left_alone() {
        let hyper = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 14:25:10 GMT\r\n\r\n";
        let rewritten = String::from_utf8(with_error_body(hyper).unwrap()).unwrap();
        let (head, body) = rewritten.split_once("\r\n\r\n").unwrap();
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["code"], "uri_too_long");
        assert!(
            head.contains(&format!("content-length: {}", body.to_string().len())),
            "{head}"
        );
        assert!(head.contains("content-type: application/json"), "{head}");
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n";
        assert!(with_error_body(ours).is_none());
        let ok = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(with_error_body(ok).is_none());
    }
}
