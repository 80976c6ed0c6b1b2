//! The HTTP side of the mock: an accept loop serving one route, and the request handler that
//! runs faults → auth → nonce → body → bill → answer. An injected fault, a refused signature
//! and a billed request each log one INFO line with the request's number, so the log of the
//! `meterd mock-store` binary shows what it was asked and answered during an outage.
//!
//! Connections are served by hand (hyper's HTTP/1 connection builder) rather than with
//! `axum::serve` because a "drop" fault must close the TCP connection without an answer: each
//! connection gets a [`ConnKill`] token in its request extensions, and cancelling it drops the
//! connection future, which closes the socket.
//!
//! Shared state sits behind one `std::sync::Mutex`, locked only for short synchronous steps
//! (never across an `.await`). Billing — dedupe, ledger append and flush — happens in one
//! locked step, so a request is either billed completely or not at all.

use super::codes::{Answer, Code, Rejection};
use super::faults::{Fault, LostAnswer};
use super::fields::Context;
use super::ledger::Ledger;
use super::validate::{check_auth, check_body, NonceCache};
use super::{Counters, MockConfig};
use crate::model::Timestamp;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Large enough that an oversized batch is answered `MKT.9003`, not HTTP 413.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Cancelling it closes the connection the request arrived on, without an answer.
#[derive(Clone)]
pub(crate) struct ConnKill(CancellationToken);

pub(crate) struct Shared {
    pub(crate) cfg: MockConfig,
    state: Mutex<MockState>,
}

#[derive(Debug, Default)]
pub(crate) struct MockState {
    requests: u64,
    nonces: NonceCache,
    pub(crate) ledger: Ledger,
    pub(crate) counters: Counters,
    /// Request bodies in arrival order, when `cfg.keep_bodies` (tests only).
    pub(crate) received: Vec<Bytes>,
}

impl Shared {
    pub(crate) fn new(cfg: MockConfig, ledger: Ledger) -> Shared {
        Shared { cfg, state: Mutex::new(MockState { ledger, ..MockState::default() }) }
    }

    /// The state; a panic elsewhere cannot leave it half-billed (billing has no await and
    /// no panicking step), so a poisoned lock is still consistent.
    pub(crate) fn lock(&self) -> MutexGuard<'_, MockState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_request(&self, body: &Bytes) -> u64 {
        let mut s = self.lock();
        if self.cfg.keep_bodies {
            s.received.push(body.clone());
        }
        s.requests += 1;
        s.counters.requests = s.requests;
        s.requests
    }

    fn count(&self, label: &str) {
        *self.lock().counters.outcomes.entry(label.to_string()).or_default() += 1;
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let path = shared.cfg.path.clone();
    Router::new().route(&path, post(handle)).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)).with_state(shared)
}

/// Accepts connections until `shutdown` is cancelled.
pub(crate) async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "mock-store: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        tokio::spawn(connection(stream, router.clone(), shutdown.clone()));
    }
}

async fn connection(stream: tokio::net::TcpStream, router: Router, shutdown: CancellationToken) {
    let kill = CancellationToken::new();
    let tag = ConnKill(kill.clone());
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(tag.clone());
        tower_service::Service::call(&mut router.clone(), req)
    });
    let conn = hyper::server::conn::http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = conn => if let Err(e) = result { tracing::debug!(error = %e, "mock-store: connection ended with an error") },
        _ = kill.cancelled() => {}
        _ = shutdown.cancelled() => {}
    }
}

async fn handle(State(shared): State<Arc<Shared>>, Extension(conn): Extension<ConnKill>, headers: HeaderMap, body: Bytes) -> Response {
    let n = shared.next_request(&body);
    if !shared.cfg.faults.latency.is_zero() {
        tokio::time::sleep(shared.cfg.faults.latency).await;
    }
    let fault = shared.cfg.faults.decide(n);
    match fault {
        Fault::Drop => {
            tracing::info!(request = n, "mock-store: injected fault: connection dropped");
            return drop_connection(&shared, conn, "drop").await;
        }
        Fault::Fail => {
            tracing::info!(request = n, "mock-store: injected fault: answered 500 MKT.0999");
            return answer(&shared, Code::Internal, "injected failure (--fail-first/--fail-every)");
        }
        Fault::None | Fault::BillThenFail(_) => {}
    }
    if let Err(r) = admit(&shared, &headers, &body) {
        tracing::info!(request = n, code = r.code.as_str(), message = %r.message, "mock-store: rejected");
        return answer(&shared, r.code, &r.message);
    }
    let records = match check_body(&body, &context(&shared)) {
        Ok(records) => records,
        Err(r) => return answer(&shared, r.code, &r.message),
    };
    let outcome = match bill(&shared, records) {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(error = %e, "mock-store: cannot write the ledger; nothing billed");
            return answer(&shared, Code::Internal, "ledger write failed");
        }
    };
    tracing::info!(request = n, billed = outcome.billed, duplicates = outcome.duplicates, "mock-store: accepted");
    match fault {
        Fault::BillThenFail(LostAnswer::Empty500) => {
            shared.count("bill-then-500");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Fault::BillThenFail(LostAnswer::Drop) => drop_connection(&shared, conn, "bill-then-drop").await,
        _ => answer(&shared, Code::Success, "success"),
    }
}

/// Dedupe, append and flush the ledger, and count, in one locked step.
fn bill(shared: &Shared, records: Vec<crate::model::UsageRecord>) -> std::io::Result<super::ledger::Billed> {
    let billed_at = Timestamp::now().to_rfc3339();
    let mut state = shared.lock();
    let outcome = state.ledger.bill(records, &billed_at)?;
    state.counters.records_billed += outcome.billed;
    state.counters.duplicates += outcome.duplicates;
    Ok(outcome)
}

/// Auth headers, then the nonce (only a correctly signed request uses up its nonce).
fn admit(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<(), Rejection> {
    let real_now_ms = chrono::Utc::now().timestamp_millis();
    let nonce = check_auth(headers, body, &shared.cfg.key, real_now_ms)?;
    if !shared.lock().nonces.insert(&nonce, Instant::now()) {
        return Err(Rejection::new(Code::BadSignature, "nonce already used"));
    }
    Ok(())
}

fn context(shared: &Shared) -> Context<'_> {
    Context {
        now: shared.cfg.now.unwrap_or_else(Timestamp::now),
        instances: shared.cfg.instances.as_ref(),
        packages: shared.cfg.packages.as_ref(),
    }
}

fn answer(shared: &Shared, code: Code, message: &str) -> Response {
    shared.count(code.as_str());
    let body = serde_json::to_vec(&Answer { error_code: code.as_str(), error_msg: message }).unwrap_or_default();
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn drop_connection(shared: &Shared, conn: ConnKill, label: &str) -> Response {
    shared.count(label);
    conn.0.cancel();
    std::future::pending().await
}
