//! Health that tells the truth (issue 15), against the real binary, real SQLite files and
//! real loopback HTTP:
//!
//! - `moved`: the database file deleted or moved away under a running daemon — ingest answers
//!   503, `/healthz` and `/readyz` 503, an ERROR is logged, a restart refuses to start empty,
//!   and once the file is back nothing acknowledged is missing;
//! - `writer`: the ingest writer thread made to panic through the fault switch — `/healthz`
//!   503 naming the writer;
//! - `readonly`: a database read-only when the daemon starts (as an unprivileged user, after a
//!   kill or a clean stop) — exit 3 naming the files and the fix, nothing opened; once
//!   writable, the next start serves and every acknowledged event is stored;
//! - `full`: a full filesystem (a small tmpfs the test mounts) — ingest 503, `/readyz` 503,
//!   nothing acknowledged lost, recovery once space is back;
//! - `uploaders`: two daemons on one database never send one batch, and their delivered
//!   counts add up;
//! - `check`: `meterd status --check` exit codes and the checks `meterd status` shows.

#[path = "../util/mod.rs"]
mod util;

mod check;
mod full;
mod moved;
mod readonly;
mod uploaders;
mod writer;

use std::time::{Duration, Instant};
use util::{example_config_with, Env, Ev};

/// The example config with both schedules firing every second.
pub fn fast_env() -> Env {
    Env::with_config(&example_config_with(&[
        ("seal = \"0 */5 * * * *\"", "seal = \"* * * * * *\""),
        ("upload = \"30 */5 * * * *\"", "upload = \"* * * * * *\""),
    ]))
}

/// Posts `n` events of instance `inst` with ids `{prefix}-{i}`; the HTTP answer.
pub fn post(d: &util::Daemon, inst: &str, prefix: &str, n: usize) -> util::Reply {
    let body: Vec<String> = (0..n).map(|i| Ev::new(&format!("{prefix}-{i}"), inst, "1", "2026-11-23T11:10:00Z").json()).collect();
    d.http().events(util::ndjson(&body))
}

/// Polls `path` until `pred` holds on the reply (or panics after 15 s with the last reply).
pub fn wait_reply(d: &util::Daemon, path: &str, what: &str, pred: impl Fn(&util::Reply) -> bool) -> util::Reply {
    let start = Instant::now();
    loop {
        let r = d.http().get(path);
        if pred(&r) {
            return r;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{path} never showed {what}: {} {}", r.status, r.text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Names of the failing checks in a `/readyz` answer.
pub fn failing(r: &util::Reply) -> Vec<String> {
    r.json()["failing"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// The value of one metric line (`name{labels}` exactly) in `/metrics`, if present.
pub fn metric(d: &util::Daemon, series: &str) -> Option<f64> {
    let text = d.http().get("/metrics").text();
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}
