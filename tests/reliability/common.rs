//! What the reliability tests share: seeds that are printed and replayable, the mock cloud
//! store on its own runtime, configs pointing at it, commands whose death by signal is an
//! expected outcome, and the checks every fault ends with (the file reopens, `integrity_check`
//! is `ok`, conservation holds).

use crate::util::{example_config_with, Env};
use meterd::mockstore::Faults;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// The interconnection key of the mock stores in these tests (a canary: it must never show up
/// in any output).
pub const KEY: &str = "rel-canary-key-7f3a9c1e5b";

/// The seed of a randomized test: `SEED=<n>` replays a run; otherwise one is drawn and printed.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("SEED") {
        Ok(s) => s.parse().unwrap_or_else(|_| panic!("SEED={s:?} is not a u64")),
        Err(_) => {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
            (t as u64) ^ ((t >> 64) as u64) ^ u64::from(std::process::id())
        }
    };
    eprintln!("{test}: seed {seed} (replay with SEED={seed} cargo test --test reliability {test})");
    seed
}

pub use crate::util::mock::Mock;

/// The mock cloud store (`util::mock`) with `faults`, pinned at `now` for the 21-day rule,
/// keeping every request body.
pub fn start_mock(now: &str, faults: Faults) -> Mock {
    let mut cfg = crate::util::mock::mock_config(KEY, now);
    cfg.faults = faults;
    Mock::start(cfg)
}

/// The example config with the store at `endpoint` (and `fallback`), short backoff, and any
/// further replacements.
pub fn upload_config(endpoint: &str, fallback: &str, more: &[(&str, &str)]) -> String {
    let (e, f) = (format!("endpoint = {endpoint:?}"), format!("fallback = {fallback:?}"));
    let mut all: Vec<(&str, &str)> = vec![
        ("endpoint = \"https://mkt.myhuaweicloud.com\"", &e),
        ("# fallback = \"https://mkt.myhuaweicloud.cn\"", &f),
        ("backoff_base = \"200ms\"", "backoff_base = \"5ms\""),
        ("backoff_cap = \"30s\"", "backoff_cap = \"40ms\""),
        // The storage plan sums, as before `weighted_sum`: these tests check the sum balance
        // (`audit::balances`) under faults; weighted_sum has its own suite.
        ("aggregation = \"weighted_sum\"\n", ""),
    ];
    all.extend_from_slice(more);
    example_config_with(&all)
}

/// A finished command whose exit may be a signal (a fault switch aborts the process).
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

/// Runs a prepared command to completion with stdin closed.
pub fn outcome(mut cmd: Command) -> Outcome {
    let o = cmd.stdin(Stdio::null()).output().expect("spawn meterd");
    Outcome {
        code: o.status.code(),
        signal: o.status.signal(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `meterd upload --now NOW` with the test key in the environment and extra variables.
/// On PostgreSQL a run refused because a killed run still holds the sealer lease is rerun
/// until that lease ends ([`Env::run_waiting_out_lease`]).
pub fn upload(env: &Env, now: &str, envs: &[(&str, &str)]) -> Outcome {
    env.run_waiting_out_lease(
        || {
            let mut cmd = env.cmd();
            cmd.args(["upload", "--now", now]).env("METERD_ISV_KEY", KEY);
            for (k, v) in envs {
                cmd.env(k, v);
            }
            outcome(cmd)
        },
        |o| (o.code.unwrap_or(-1), o.stderr.clone()),
    )
}

/// Reopens the store as a restarted meterd would (WAL recovery), checks `integrity_check` and
/// that every instance balances (design §5 conservation). Returns the balances.
pub fn assert_sound(env: &Env, when: &str) -> Vec<meterd::audit::Balance> {
    let mut store = meterd::store::Store::open(&env.db).unwrap_or_else(|e| panic!("{when}: the store does not reopen: {e}"));
    store.integrity_check().unwrap_or_else(|e| panic!("{when}: integrity_check: {e}"));
    let balances = meterd::audit::balances(&mut store).unwrap_or_else(|e| panic!("{when}: audit: {e}"));
    for b in &balances {
        assert!(b.holds(), "{when}: conservation violated: {b:?}");
    }
    balances
}

/// `meterd status --format json --now NOW`: the CLI's own conservation audit must be clean.
pub fn assert_status_clean(env: &Env, now: &str) -> serde_json::Value {
    let r = env.run(&["status", "--format", "json", "--now", now]);
    r.success();
    let v = r.json();
    assert_eq!(v["conservation_violations"], serde_json::json!([]), "{v}");
    v
}

pub use crate::util::assert_billed_once;

/// (metering_sn, state, usage_value) of every record in the store, in (window, serial) order,
/// with the state the store reports: a record waiting in `upload_queue` is stored as
/// `pending` and takes its batch's state (sending, delivered) until upload applies its delivery to it, so the
/// raw `records.state` column alone is not the answer during or right after a run.
pub fn records(env: &Env) -> Vec<(String, String, String)> {
    let mut store = meterd::store::Store::open(&env.db).expect("open the store");
    let mut rows = store.read(meterd::store::records::all).expect("read records");
    rows.sort_by(|a, b| (a.window_start, &a.metering_sn).cmp(&(b.window_start, &b.metering_sn)));
    rows.into_iter().map(|r| (r.metering_sn, r.state.as_str().to_string(), r.usage_value.to_string())).collect()
}

/// The bodies of every batch the uploader stored.
pub fn batch_bodies(env: &Env) -> Vec<Vec<u8>> {
    env.db().rows("SELECT body FROM batches ORDER BY id", &[], |r| r.get(0))
}
