//! Upload over real loopback HTTP against the mock store, on real SQLite files (issue 4,
//! design §6–§7): the happy path, transient failures with bounded backoff, an outage that stops
//! the run at the oldest batch (delivery in order across runs), lost answers resent
//! byte-identical, bad records bisected out and requeued, configuration errors that keep
//! records pending, oversized batches halved, SIGKILL mid-upload, expiry, transport rules, and
//! the key never showing up anywhere.
//!
//! The uploader runs as the library call (`meterd::upload::run::upload`) or as the real
//! `meterd` binary; the mock runs in-process (`MockStore::start`, for counters and the bytes it
//! received) or as the real `meterd mock-store` binary. Nothing here asserts timings; waits
//! are polls with a generous limit.

#[path = "util/mod.rs"]
mod util;

#[path = "upload/happy.rs"]
mod happy;

#[path = "upload/faults.rs"]
mod faults;

#[path = "upload/rejects.rs"]
mod rejects;

#[path = "upload/settings.rs"]
mod settings;

#[path = "upload/kill.rs"]
mod kill;

#[path = "upload/outage.rs"]
mod outage;
