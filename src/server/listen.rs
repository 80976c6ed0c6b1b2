//! The accept loop: HTTP/1.1 connections under a cap and two timeouts, served by hyper with
//! the axum router (design §7; issue 15: slow and idle clients must not exhaust memory, file
//! descriptors or the daemon's attention).
//!
//! - **Connection cap** (`server.max_connections`): a semaphore on accepted connections. One
//!   more is answered `503` with `Retry-After: 1` and the API's JSON error, then closed; at
//!   most [`MAX_REFUSING`] such answers are in progress at once (beyond that a connection is
//!   closed unanswered), so refusing costs bounded descriptors too.
//! - **Header timeout** (`server.header_timeout`): from the first byte of a request until its
//!   header is complete. **Idle timeout** (`server.idle_timeout`): a connection with no request
//!   in progress, before its first request or between keep-alive requests (also one whose
//!   client does not read its answer). Either closes the connection. A per-connection
//!   watchdog decides from the connection's [`Activity`] ([`deadline`] is the pure rule);
//!   hyper's own header timer is off because it starts at the wait for a request, which would
//!   make the two timeouts one.
//! - Body limits are the router's business ([`super::limits`]); hyper's read buffer is capped
//!   at [`MAX_BUF`], which also bounds a request header.
//!
//! Accept errors (`EMFILE` under a low file limit) are logged at most every 10 s and retried
//! after a short pause. Shutdown: stop accepting, let every connection finish its request
//! (hyper's graceful shutdown), wait for them; the daemon bounds the wait.

use super::ApiError;
use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Over-cap connections being answered 503 at once.
pub const MAX_REFUSING: usize = 32;

/// What to say when `addr` cannot be listened on: the address, the system's reason, and what
/// to do about it, naming the port and `fix` (where the address comes from, e.g. "--listen or
/// `server.listen`"). The address in use (another process holds the port), an address this
/// machine does not have and a privileged port are all configuration problems (exit 2).
pub fn bind_error(addr: std::net::SocketAddr, fix: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    let port = addr.port();
    let hint = match e.kind() {
        K::AddrInUse => {
            format!("port {port} is already in use by another process (another meterd?); stop it, or pick another port with {fix}")
        }
        K::AddrNotAvailable => format!("{} is not an address of this machine; use one it has (127.0.0.1: loopback) with {fix}", addr.ip()),
        K::PermissionDenied => format!("port {port} needs privileges this process lacks; pick a port of 1024 or above with {fix}"),
        _ => format!("pick another address with {fix}"),
    };
    format!("cannot listen on {addr}: {e}; {hint}")
}

/// hyper's per-connection read buffer limit (bytes): also the largest request header.
pub const MAX_BUF: usize = 64 * 1024;

/// The connection limits of `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

const NONE: u64 = u64::MAX;

/// What one connection is doing, as the watchdog needs it; times in ms since `start`.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Requests handed to the router and not answered yet.
    in_flight: AtomicUsize,
    /// When the connection last had no request in progress.
    idle_since: AtomicU64,
    /// First byte of the next request's header, or [`NONE`].
    first_byte: AtomicU64,
    /// Wakes the watchdog when a header starts: it may be asleep until the idle deadline,
    /// which is later than the header's (a client dripping its header was closed only at the
    /// idle timeout; operator trial finding).
    header_started: tokio::sync::Notify,
}

/// A copy of [`Activity`] at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub in_flight: usize,
    pub idle_since: u64,
    pub first_byte: Option<u64>,
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    Header,
    Idle,
}

/// The pure rule: when (ms since the connection's start) this connection expires, and why;
/// `None` while a request is in progress (its body has its own timeout).
pub fn deadline(s: Snapshot, header: Duration, idle: Duration) -> Option<(u64, Expired)> {
    if s.in_flight > 0 {
        return None;
    }
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE);
    Some(match s.first_byte {
        Some(t) => (t.saturating_add(ms(header)), Expired::Header),
        None => (s.idle_since.saturating_add(ms(idle)), Expired::Idle),
    })
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(NONE),
            header_started: tokio::sync::Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn snapshot(&self) -> Snapshot {
        let first = self.first_byte.load(Ordering::Acquire);
        Snapshot {
            in_flight: self.in_flight.load(Ordering::Acquire),
            idle_since: self.idle_since.load(Ordering::Acquire),
            first_byte: (first != NONE).then_some(first),
        }
    }

    fn read_some(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && self.first_byte.load(Ordering::Relaxed) == NONE {
            self.first_byte.store(self.now_ms(), Ordering::Release);
            // A permit is kept if the watchdog is not waiting yet: no wake-up is lost.
            self.header_started.notify_one();
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.first_byte.store(NONE, Ordering::Release);
        InFlight(self.clone())
    }

    /// Resolves when the connection has expired.
    async fn watchdog(&self, limits: ConnLimits) -> Expired {
        loop {
            let now = self.now_ms();
            match deadline(self.snapshot(), limits.header_timeout, limits.idle_timeout) {
                Some((at, why)) if at <= now => return why,
                Some((at, _)) => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(at - now)) => {}
                        _ = self.header_started.notified() => {}
                    }
                }
                None => tokio::time::sleep(limits.header_timeout.min(limits.idle_timeout)).await,
            }
        }
    }
}

/// A request in progress on a connection; ends when dropped (answered or cancelled).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.idle_since.store(a.now_ms(), Ordering::Release);
        }
    }
}

/// A TCP stream that tells its [`Activity`] when request bytes arrive.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_some();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` resolves, then lets open
/// connections finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let stop = CancellationToken::new();
    let mut last_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "cannot accept connections (file limit? see server.max_connections); retrying");
                    last_warning = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let (router, stop) = (router.clone(), stop.clone());
                tokio::spawn(async move {
                    connection(stream, router, limits, stop).await;
                    drop(slot);
                });
            }
            Err(_) => match refusing.clone().try_acquire_owned() {
                Ok(r) => {
                    tokio::spawn(async move {
                        refuse(stream, limits.max_connections).await;
                        drop(r);
                    });
                }
                Err(_) => drop(stream),
            },
        }
    }
    stop.cancel();
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

async fn connection(stream: TcpStream, router: Router, limits: ConnLimits, stop: CancellationToken) {
    let activity = Arc::new(Activity::new());
    let io = hyper_util::rt::TokioIo::new(Tracked { inner: stream, activity: activity.clone() });
    let act = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let in_flight = act.begin();
        let mut router = router.clone();
        let answer = tower_service::Service::call(&mut router, req.map(Body::new));
        async move {
            let r = answer.await;
            drop(in_flight);
            r
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().max_buf_size(MAX_BUF).header_read_timeout(None).serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        why = activity.watchdog(limits) => {
            tracing::debug!(?why, "closing an expired connection");
            return;
        }
        _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = activity.watchdog(limits) => {}
    }
}

/// Answers one connection over the cap: 503, `Retry-After`, JSON error, then close. Reads
/// (and drops) what the client sent for a moment, so the close does not reset the answer away.
async fn refuse(mut stream: TcpStream, cap: usize) {
    let body = axum::body::to_bytes(
        axum::response::IntoResponse::into_response(ApiError::Unavailable(format!(
            "the server serves server.max_connections ({cap}) connections already; retry in a moment"
        )))
        .into_body(),
        4096,
    )
    .await
    .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let answer = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut total = 0;
        while total < 64 * 1024 {
            let n = tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await?;
            if n == 0 {
                break;
            }
            total += n;
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), answer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_names_the_port_and_the_way_out() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = std::net::TcpListener::bind(addr).unwrap_err();
        let m = bind_error(addr, "--listen", &e);
        assert!(m.contains(&format!("port {} is already in use", addr.port())) && m.contains("with --listen"), "{m}");
    }

    const H: Duration = Duration::from_secs(10);
    const I: Duration = Duration::from_secs(60);

    #[test]
    fn idle_connection_expires_after_the_idle_timeout() {
        let s = Snapshot { in_flight: 0, idle_since: 5_000, first_byte: None };
        assert_eq!(deadline(s, H, I), Some((65_000, Expired::Idle)));
    }

    #[test]
    fn a_started_header_has_the_header_timeout_from_its_first_byte() {
        let s = Snapshot { in_flight: 0, idle_since: 5_000, first_byte: Some(7_000) };
        assert_eq!(deadline(s, H, I), Some((17_000, Expired::Header)));
    }

    #[test]
    fn a_request_in_progress_never_expires_here() {
        let s = Snapshot { in_flight: 1, idle_since: 0, first_byte: None };
        assert_eq!(deadline(s, H, I), None);
    }

    #[test]
    fn activity_follows_reads_and_requests() {
        let a = Arc::new(Activity::new());
        a.read_some();
        assert!(a.snapshot().first_byte.is_some());
        let r = a.begin();
        assert_eq!(a.snapshot().first_byte, None);
        a.read_some(); // body bytes: not the start of a new header
        assert_eq!(a.snapshot().first_byte, None);
        assert_eq!(deadline(a.snapshot(), H, I), None);
        drop(r);
        assert_eq!(a.snapshot().in_flight, 0);
    }
}
