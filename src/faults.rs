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
//! - `METERD_FAULTS=apply-beside-fails`: every background apply of delivered batches on
//!   PostgreSQL fails (`upload::applier`), as a lost second connection would: the upload run
//!   must apply in its delivery transactions instead;
//! - `METERD_MAX_PAGE_COUNT=N`: cap the database at N pages (`PRAGMA max_page_count`), the
//!   way a full disk behaves: writes fail with SQLITE_FULL;
//! - `METERD_FOLD_EVENTS=N`, `METERD_FLUSH_EVENTS=N`: fold window totals / flush dedupe keys
//!   every N events instead of every 131,072 / 262,144, so that small tests cross those
//!   boundaries many times.
//!
//! The last two items are not switches but options ([`OpenOptions`], [`Tuning`]): only the binary
//! reads them from the environment, through [`open_options_from_env`] and
//! [`tuning_from_env`], and passes them in; a test in one process sets them per collector.
//!
//! Production never sets these; they exist so tests can show that the protections hold (and
//! fail without them).

use crate::collector::Tuning;
use crate::store::OpenOptions;
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

/// Whether `point` is switched on (a fault the caller makes itself, such as an error).
pub fn is_on(point: &str) -> bool {
    switches().iter().any(|s| s == point)
}

/// Panics (unwinding, unlike [`crash_point`]) when `point` is switched on.
pub fn panic_point(point: &str) {
    if switches().iter().any(|s| s == point) {
        panic!("fault injection: panic at {point}");
    }
}

/// The store options the environment asks for: `METERD_MAX_PAGE_COUNT=N` sets
/// [`OpenOptions::max_page_count`]. Read by the binary only (the `cli` and `daemon` code that
/// opens the ingest store), never below it: library callers pass [`OpenOptions`] themselves.
pub fn open_options_from_env() -> OpenOptions {
    OpenOptions { max_page_count: std::env::var("METERD_MAX_PAGE_COUNT").ok().and_then(|v| v.parse().ok()) }
}

/// The collector tuning the environment asks for: `METERD_FOLD_EVENTS=N` /
/// `METERD_FLUSH_EVENTS=N` (N > 0) override [`Tuning::fold_events`] / [`Tuning::flush_events`];
/// unset or unparsable leaves the default. Read by the binary only, like
/// [`open_options_from_env`]: library callers pass [`Tuning`] to `Collector::builder`.
pub fn tuning_from_env() -> Tuning {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<usize>().ok()).filter(|n| *n > 0);
    let d = Tuning::default();
    Tuning {
        fold_events: var("METERD_FOLD_EVENTS").unwrap_or(d.fold_events),
        flush_events: var("METERD_FLUSH_EVENTS").unwrap_or(d.flush_events),
    }
}
