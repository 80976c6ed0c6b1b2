//! One bad request never breaks the next: panic containment for the HTTP server.
//!
//! A panic is a bug, but it must cost one request, not the daemon. Two things can outlive the
//! panicking request and are handled here:
//!
//! - **The shared admin connection** ([`crate::server::AppState::admin`]) sits behind a
//!   `std::sync::Mutex`, which a panic while the guard is held *poisons*: every later `lock()`
//!   fails. [`lock_admin`] takes the guard anyway, clears the poison and rolls back any
//!   transaction the panic left open ([`crate::store::lock_recovering`]), so the next request
//!   sees a clean connection. Nothing the panicking request wrote is kept: every write runs in
//!   one transaction, rolled back when it unwinds (or here, at the latest).
//! - **The connection task**: a panic in a handler's async code would drop the client's
//!   connection without an answer. [`catch_panic`] (a middleware around every route) turns it
//!   into `500 {"error": …}`, the same JSON shape as every other error.
//!
//! Panics inside `spawn_blocking` closures come back as a `JoinError`; the server maps those
//! to the same 500 with [`internal_error`].

use crate::store::Store;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

/// Locks the admin connection, recovering it if an earlier request panicked while holding it
/// (see [`crate::store::lock_recovering`]).
pub fn lock_admin(admin: &Mutex<Store>) -> MutexGuard<'_, Store> {
    crate::store::lock_recovering(admin, "admin")
}

/// The answer to a request whose handler panicked: 500 with the usual `{"error": …}` body.
pub fn internal_error(what: &str) -> Response {
    tracing::error!(panic = what, "a request handler panicked; answered 500");
    let msg = format!(
        "internal error while answering this request ({what}); it changed nothing and other requests are unaffected — please report it with the daemon log"
    );
    (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({ "error": msg }))).into_response()
}

/// Middleware: runs the rest of the stack and answers [`internal_error`] if it panics.
pub async fn catch_panic(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match CatchUnwind(Box::pin(next.run(req))).await {
        Ok(r) => r,
        Err(payload) => internal_error(&panic_message(payload.as_ref())),
    }
}

/// The text a panic was raised with (`panic!("…")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

/// A future that yields `Err(payload)` instead of unwinding through its caller. Boxed, so it
/// is `Unpin` and needs no unsafe pin projection.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_read_from_str_and_string_payloads() {
        let p = std::panic::catch_unwind(|| panic!("range start {} is greater", 3)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "range start 3 is greater");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "panic");
    }
}
