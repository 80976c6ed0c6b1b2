//! Request bodies under limits: every body is read here, before its handler runs, within
//! `server.max_body` bytes, `server.body_timeout`, and a share of `server.max_inflight_bytes`,
//! a budget over all requests at once. So the memory that request bodies hold is bounded by
//! configuration, not by how many clients are slow (issue 15: 32 never-ending chunked bodies
//! held about `max_body` each).
//!
//! Answers, in the API's JSON error shape, and nothing stored: 413 when a body is larger than
//! `max_body` (after reading and dropping up to `max_body` more bytes, so that a client still
//! sending can read the answer), 408 when it did not arrive within
//! `body_timeout` (counted from the end of the header), 503 with `Retry-After: 1` when taking
//! it would pass the in-flight budget. The budget is counted in KiB of buffer capacity (what
//! memory really holds), taken as the body grows and given back when the handler has answered.
//! The middleware runs after the token check, so an unauthenticated client is answered 401
//! without a byte of its body being buffered.

use super::ApiError;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budget unit: the in-flight budget is a semaphore of KiB.
const UNIT: usize = 1024;

/// The body limits of one server: shared by every request.
#[derive(Debug)]
pub struct BodyLimits {
    max_body: usize,
    body_timeout: Duration,
    max_inflight_bytes: usize,
    /// KiB of request bodies that may be held at once.
    budget: Arc<Semaphore>,
}

/// Why a body was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Larger than `max_body` (413).
    TooLarge,
    /// Not complete within `body_timeout` (408).
    TooSlow,
    /// Taking it would pass `max_inflight_bytes` (503, retry).
    OverBudget,
    /// The connection failed while reading (400; the client is usually gone).
    Broken(String),
}

impl BodyLimits {
    /// Limits from `[server]`: `max_body` and `max_inflight_bytes` in bytes.
    pub fn new(max_body: usize, body_timeout: Duration, max_inflight_bytes: usize) -> BodyLimits {
        let units = max_inflight_bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        BodyLimits { max_body, body_timeout, max_inflight_bytes, budget: Arc::new(Semaphore::new(units)) }
    }

    /// KiB of the budget free now (tests and metrics).
    pub fn free_bytes(&self) -> usize {
        self.budget.available_permits() * UNIT
    }

    /// Takes budget so that `held` covers `bytes` of buffer; `OverBudget` if it is not there.
    fn cover(&self, held: &mut Option<OwnedSemaphorePermit>, bytes: usize) -> Result<(), Refusal> {
        let have = held.as_ref().map_or(0, |p| p.num_permits());
        let need = bytes.div_ceil(UNIT).saturating_sub(have);
        if need == 0 {
            return Ok(());
        }
        let n = u32::try_from(need).map_err(|_| Refusal::OverBudget)?;
        let more = self.budget.clone().try_acquire_many_owned(n).map_err(|_| Refusal::OverBudget)?;
        match held {
            Some(p) => p.merge(more),
            None => *held = Some(more),
        }
        Ok(())
    }

    /// Reads `body` whole within the limits; the bytes and the budget they hold.
    pub async fn read(&self, mut body: Body, content_length: Option<usize>) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Refusal> {
        let mut held = None;
        let mut buf: Vec<u8> = Vec::new();
        let deadline = tokio::time::Instant::now() + self.body_timeout;
        if let Some(n) = content_length {
            if n > self.max_body {
                return Err(self.too_large(&mut body, deadline).await);
            }
            self.cover(&mut held, n)?;
            buf.reserve_exact(n);
        }
        loop {
            let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
            let frame = match tokio::time::timeout_at(deadline, next).await {
                Err(_) => return Err(Refusal::TooSlow),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(Refusal::Broken(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            let len = buf.len() + data.len();
            if len > self.max_body {
                return Err(self.too_large(&mut body, deadline).await);
            }
            if len > buf.capacity() {
                // Grow by doubling (capped at max_body), and count the capacity, not the length.
                let want = (buf.capacity() * 2).max(len).min(self.max_body).max(len);
                self.cover(&mut held, want)?;
                buf.reserve_exact(want - buf.len());
            }
            buf.extend_from_slice(&data);
        }
        Ok((Bytes::from(buf), held))
    }

    /// Reads and drops up to `max_body` more bytes of a body found too large (within the
    /// deadline, holding no memory), then refuses it: a client that is still sending when the
    /// answer comes would often see the connection reset instead of the 413.
    async fn too_large(&self, body: &mut Body, deadline: tokio::time::Instant) -> Refusal {
        let mut dropped = 0usize;
        while dropped <= self.max_body {
            let next = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx));
            match tokio::time::timeout_at(deadline, next).await {
                Ok(Some(Ok(frame))) => dropped += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
        Refusal::TooLarge
    }

    /// The answer to a refused body, in the API's error shape.
    pub fn answer(&self, refusal: &Refusal) -> Response {
        match refusal {
            Refusal::TooLarge => ApiError::TooLarge(format!(
                "the body is larger than server.max_body ({} bytes); split it into smaller requests — nothing was stored",
                self.max_body
            )),
            Refusal::TooSlow => ApiError::Other(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within server.body_timeout ({}); send it faster or in smaller requests — nothing was stored",
                    crate::config::Span(self.body_timeout)
                ),
            ),
            // 503 with `Retry-After` ([`ApiError::Unavailable`]).
            Refusal::OverBudget => ApiError::Unavailable(format!(
                "the server holds server.max_inflight_bytes ({} bytes) of request bodies already; retry in a moment — nothing was stored",
                self.max_inflight_bytes
            )),
            Refusal::Broken(e) => ApiError::BadRequest(format!("the body could not be read: {e} — nothing was stored")),
        }
        .into_response()
    }
}

/// Middleware: reads the body under [`BodyLimits`], then runs the handler on the bytes, holding
/// their share of the budget until the handler has answered.
pub async fn read_body(State(limits): State<Arc<BodyLimits>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let length = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    match limits.read(body, length).await {
        Ok((bytes, held)) => {
            let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            drop(held);
            response
        }
        Err(refusal) => {
            tracing::debug!(?refusal, "request body refused");
            limits.answer(&refusal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_body: usize, budget: usize) -> BodyLimits {
        BodyLimits::new(max_body, Duration::from_millis(200), budget)
    }

    #[tokio::test]
    async fn reads_within_limits_and_gives_the_budget_back() {
        let l = limits(10_000, 20_480);
        let (bytes, held) = l.read(Body::from(vec![7u8; 3000]), None).await.unwrap();
        assert_eq!(bytes.len(), 3000);
        assert!(l.free_bytes() < 20_480);
        drop(held);
        assert_eq!(l.free_bytes(), 20_480);
    }

    #[tokio::test]
    async fn too_large_over_budget_and_too_slow_are_refused() {
        let l = limits(4096, 8192);
        assert_eq!(l.read(Body::from(vec![0u8; 5000]), None).await.unwrap_err(), Refusal::TooLarge);
        assert_eq!(l.read(Body::empty(), Some(5000)).await.unwrap_err(), Refusal::TooLarge);
        let (_a, held) = l.read(Body::from(vec![0u8; 4096]), Some(4096)).await.unwrap();
        let (_b, held2) = l.read(Body::from(vec![0u8; 4096]), Some(4096)).await.unwrap();
        assert_eq!(l.read(Body::from(vec![0u8; 10]), Some(10)).await.unwrap_err(), Refusal::OverBudget);
        drop((held, held2));
        assert_eq!(l.free_bytes(), 8192, "refusals leak no budget");
        assert_eq!(l.read(Body::new(Never), None).await.unwrap_err(), Refusal::TooSlow);
    }

    /// A body that never ends and never sends.
    struct Never;

    impl HttpBody for Never {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
            std::task::Poll::Pending
        }
    }
}
