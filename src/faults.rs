//! Fault-injection switches for the crash and fault tests (issue 7). Off unless the
//! environment asks for them; each switch names one point in the pipeline:
//!
//! - `METERD_FAULTS=upload-after-response`: abort the process right after the store answered
//!   an upload request, before the local commit records the outcome (the "store billed, we
//!   crashed" window);
//! - `METERD_FAULTS=ingest-after-commit`: abort right after an ingest commit, before any reply
//!   (stored but never acknowledged: the client must retry, and the retry is a duplicate);
//! - `METERD_FAULTS=preview-handler`, `METERD_FAULTS=preview-in-transaction`: panic (a stand-in
//!   for any bug) in the `GET /v1/preview` handler's async code, or inside the preview's read
//!   transaction while the daemon's shared admin connection is locked; tests show the request
//!   answers 500 and the next request works ([`crate::guard`]);
//! - `METERD_FAULTS=ingest-writer-panic`: the ingest writer thread panics at its first job
//!   (the thread dies, the process lives on: `/healthz` must say so);
//! - `METERD_FAULTS=notify-after-send`: abort right after a notification receiver answered,
//!   before the outbox records it (the "receiver has it, we crashed" window: the restart must
//!   resend it with the same id); `notify-before-send`: abort just before the first attempt;
//! - `METERD_MAX_PAGE_COUNT=N`: cap the database at N pages (`PRAGMA max_page_count`), the
//!   way a full disk behaves: writes fail with SQLITE_FULL;
//! - `METERD_FOLD_EVENTS=N`, `METERD_FLUSH_EVENTS=N`: fold window totals / flush dedupe keys
//!   every N events instead of every 131,072 / 262,144 (read when a collector starts), so that
//!   small tests cross those boundaries many times.
//!
//! Production never sets these; they exist so tests can show that the protections hold (and
//! fail without them).

use std::sync::OnceLock;

fn switches() -> &'static Vec<String> {
    static S: OnceLock<Vec<String>> = OnceLock::new();
    S.get_or_init(|| {
        std::env::var("METERD_FAULTS")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    })
}

/// Aborts the process (like SIGKILL: no destructors, no flush) when `point` is switched on.
pub fn crash_point(point: &str) {
    if switches().iter().any(|s| s == point) {
        eprintln!("meterd: fault injection: crashing at {point}");
        std::process::abort();
    }
}

/// Panics (unwinding, unlike [`crash_point`]) when `point` is switched on.
pub fn panic_point(point: &str) {
    if switches().iter().any(|s| s == point) {
        panic!("fault injection: panic at {point}");
    }
}

/// The page cap requested by `METERD_MAX_PAGE_COUNT`, if any.
pub fn max_page_count() -> Option<u64> {
    std::env::var("METERD_MAX_PAGE_COUNT").ok().and_then(|v| v.parse().ok())
}

/// `METERD_FOLD_EVENTS` / `METERD_FLUSH_EVENTS` (see the module docs), if set.
pub fn batch_override(var: &str) -> Option<usize> {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0)
}
