//! Health: liveness (`GET /healthz`), readiness (`GET /readyz`) and the checks that
//! `meterd status` and `GET /v1/status` show (issue 15).
//!
//! The decisions are pure: [`evaluate`] turns one [`Inputs`] snapshot into a list of
//! [`Check`]s, and [`attention`] turns a [`Status`] into what `meterd status --check` reports.
//! The daemon's loops and the ingest writer feed [`Live`], shared state that only records what
//! happened (the last commit's outcome, seal failures in a row, the upload loop's last
//! configuration error, the database file having moved); the store feeds the rest at request
//! time (records past their deadline, unsealed windows past it).
//!
//! Two answers, two audiences:
//! - **liveness** fails only when this process can no longer do its job whatever happens
//!   outside it: the ingest writer thread died, or the database file it holds is no longer the
//!   file at its path. A supervisor should restart it (after the cause is fixed);
//! - **readiness** fails on anything a person must look at: the last ingest commit failed, the
//!   seal loop failed [`SEAL_FAILURES`] ticks in a row or has not succeeded for longer than its
//!   schedule allows, the upload loop stopped on a configuration error, the database is
//!   unwritable or full, records (or closed windows with usage) are past their reporting
//!   deadline. Each of these clears by itself once its cause is removed.
//!
//! On a shared PostgreSQL store only the node holding the sealer lease seals. A **standby**
//! (a node that does not hold it) has no seal of its own to judge: its `seal` check passes and
//! says so — `standby: node-a holds the sealer lease (epoch 3); last seal on the store 40 s
//! ago` — reading the store's last seal (`meta::LAST_SEAL`, which whichever node sealed wrote),
//! not a seal of its own. So when sealing stops store-wide, the `seal` check fails on the one
//! node that holds the lease (its loop fails or goes stale), `deadline` fails everywhere once
//! windows pass their deadline, and `contrib/prometheus`'s `MeterdSealerLeaseNotHeld` fires when no
//! node holds it; a standby's `seal` check never pages. A standby's staleness clock restarts at
//! each tick it stands by, so a node that takes the lease over is judged from then.
//!
//! Checks that need the daemon's memory (`writer`, `database_file`, `ingest`, `seal`,
//! `database_writable`, `upload` configuration errors) are absent from a one-shot
//! `meterd status`, which cannot see them; it shows the store-derived ones.

use crate::status::Status;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Mutex;

/// Seal ticks that may fail in a row before readiness fails (one failure may be a busy lock).
pub const SEAL_FAILURES: u32 = 3;
/// Slack added to "two seal intervals" before a seal loop without success counts as stale.
pub const SEAL_SLACK_SECS: i64 = 60;

/// One check's outcome: `name` is stable (scripts match on it), `detail` says what is wrong
/// and what to do (or what was seen, when it passes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// What the checks are computed from. `None` in a daemon-only field means "not known here"
/// (a one-shot command): that check is left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    /// Unix seconds.
    pub now: i64,
    /// The ingest writer thread is running.
    pub writer_alive: Option<bool>,
    /// Why the database file is no longer the one at its path, if it is not.
    pub file_moved: Option<Option<String>>,
    /// The last ingest commit's error (reason, message), `Some(None)` when it succeeded.
    pub ingest_error: Option<Option<(String, String)>>,
    /// Seal loop: failures in a row, last error, last success and start (unix seconds), and
    /// the schedule's interval in seconds.
    pub seal: Option<SealInputs>,
    /// The upload loop's last configuration error, `Some(None)` when there is none.
    pub upload_config_error: Option<Option<String>>,
    /// The last write that failed because the database cannot take writes (reason, message).
    pub unwritable: Option<Option<(String, String)>>,
    /// Waiting records past their reporting deadline.
    pub records_past_deadline: u64,
    /// Closed windows with usage, not sealed yet, whose record would be past its deadline.
    pub windows_past_deadline: u64,
}

/// The seal loop's side of [`Inputs`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealInputs {
    pub failures_in_row: u32,
    pub last_error: Option<String>,
    /// Unix seconds of the last successful seal, if any since start.
    pub last_ok: Option<i64>,
    /// Unix seconds the loop started.
    pub started: i64,
    /// Seconds between two scheduled ticks.
    pub interval: i64,
    /// Unix seconds of the loop's last tick as a standby (it did not hold the sealer lease).
    pub last_standby: Option<i64>,
    /// Set on a standby (see the module docs): who holds the sealer lease, in words
    /// ([`standby`]); the `seal` check then passes and reports the store's last seal.
    pub standby: Option<String>,
    /// Unix seconds of the store's last seal by any node (`meta::LAST_SEAL`), if known.
    pub store_last_ok: Option<i64>,
}

/// Whether this daemon is a standby, and who holds the sealer lease, in words: `None` on
/// SQLite (one machine, it always seals) and when this process holds the lease at the stored
/// epoch (`held`, from [`Live::lease_held`]); else `NODE holds the sealer lease (epoch N)`,
/// `another process named NODE holds …` (this node's name, another process) or `no node holds
/// the sealer lease (STATE); this node takes it at its next lease tick`.
pub fn standby(view: Option<&crate::status::StoreView>, held: Option<i64>) -> Option<String> {
    let view = view.filter(|v| v.backend != "sqlite")?;
    if held.is_some() {
        return None;
    }
    Some(match &view.lease {
        Some(l) if !l.released && !l.expired && l.holder == view.node => {
            format!("another process named {} holds the sealer lease (epoch {}); node names must be unique per process", l.holder, l.epoch)
        }
        Some(l) if !l.released && !l.expired => format!("{} holds the sealer lease (epoch {})", l.holder, l.epoch),
        _ => format!("no node holds the sealer lease ({}); this node takes it at its next lease tick", view.lease_state),
    })
}

/// Liveness: the checks whose failure means the process cannot do its job.
pub const LIVENESS: [&str; 2] = ["writer", "database_file"];

/// Every check that `inputs` can decide, in a fixed order.
pub fn evaluate(i: &Inputs) -> Vec<Check> {
    let mut out = Vec::new();
    let mut push = |name, ok, detail: String| out.push(Check { name, ok, detail });
    if let Some(alive) = i.writer_alive {
        let detail = if alive { "running" } else { "the ingest writer thread stopped; restart meterd (see its log for why)" };
        push("writer", alive, detail.to_string());
    }
    if let Some(moved) = &i.file_moved {
        match moved {
            None => push("database_file", true, "the open database file is the one at its path (always so on PostgreSQL: no file)".into()),
            Some(m) => push("database_file", false, format!("{m}; restore the file, then restart meterd")),
        }
    }
    if let Some(e) = &i.ingest_error {
        match e {
            None => push("ingest", true, "the last ingest commit succeeded (or none was tried)".into()),
            Some((reason, m)) => push("ingest", false, format!("the last ingest commit failed ({reason}): {m}")),
        }
    }
    if let Some(s) = &i.seal {
        push("seal", seal_ok(s, i.now), seal_detail(s, i.now));
    }
    if let Some(e) = &i.upload_config_error {
        match e {
            None => push("upload", true, "no configuration error".into()),
            Some(m) => push("upload", false, format!("the upload loop stopped on a configuration error: {m}")),
        }
    }
    if let Some(e) = &i.unwritable {
        match e {
            None => push("database_writable", true, "the last write succeeded".into()),
            Some((reason, m)) => push("database_writable", false, format!("the database cannot take writes ({reason}): {m}")),
        }
    }
    let late = i.records_past_deadline + i.windows_past_deadline;
    let detail = if late == 0 {
        "nothing is past its reporting deadline".to_string()
    } else {
        format!(
            "{} waiting records and {} unsealed closed windows with usage are past their reporting deadline; check the seal and upload loops",
            i.records_past_deadline, i.windows_past_deadline
        )
    };
    push("deadline", late == 0, detail);
    out
}

/// Since when the seal loop has had no success: its last success, its last tick as a standby
/// (sealing was another node's job until then), or its start.
fn seal_stale_since(s: &SealInputs) -> i64 {
    s.last_ok.unwrap_or(s.started).max(s.last_standby.unwrap_or(s.started)).max(s.started)
}

fn seal_ok(s: &SealInputs, now: i64) -> bool {
    s.standby.is_some() || (s.failures_in_row < SEAL_FAILURES && now - seal_stale_since(s) <= 2 * s.interval.max(1) + SEAL_SLACK_SECS)
}

fn seal_detail(s: &SealInputs, now: i64) -> String {
    let err = s.last_error.as_deref().unwrap_or("-");
    if let Some(who) = &s.standby {
        let store = match s.store_last_ok {
            Some(t) => format!("last seal on the store {} s ago", now - t),
            None => "no seal recorded on the store yet".to_string(),
        };
        return format!("standby: {who}; {store}");
    }
    if s.failures_in_row >= SEAL_FAILURES {
        format!("the seal loop failed its last {} ticks (last error: {err}); closed windows stay unsealed", s.failures_in_row)
    } else if !seal_ok(s, now) {
        format!("no successful seal for {} s (the schedule fires every {} s; last error: {err})", now - seal_stale_since(s), s.interval)
    } else {
        match s.last_ok {
            Some(t) => format!("last successful seal {} s ago", now - t),
            None => "no seal finished yet".into(),
        }
    }
}

/// Whether every liveness check in `checks` passes.
pub fn live(checks: &[Check]) -> bool {
    checks.iter().filter(|c| LIVENESS.contains(&c.name)).all(|c| c.ok)
}

/// Whether every check passes.
pub fn ready(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.ok)
}

/// What needs a person in a status snapshot (`meterd status --check`): records or windows
/// past their deadline, rejected or expired records, a failed last upload, a failing
/// conservation check, instances whose plan is missing from the config. Empty: all is well.
pub fn attention(s: &Status) -> Vec<String> {
    let mut out = Vec::new();
    if s.past_deadline > 0 {
        out.push(format!("{} waiting records are past their reporting deadline", s.past_deadline));
    }
    if s.unsealed_past_deadline > 0 {
        out.push(format!("{} closed windows with usage are unsealed past their reporting deadline", s.unsealed_past_deadline));
    }
    for state in ["rejected", "expired"] {
        if let Some(n) = s.records.get(state).filter(|n| **n > 0) {
            let (noun, verb) = if *n == 1 { ("record", "is") } else { ("records", "are") };
            out.push(format!("{n} {noun} {verb} {state}; see `meterd rejected`, fix the cause, then `meterd requeue SN` (or `--all`)"));
        }
    }
    // Flagged records not yet answered: the store will refuse them (a late release or freeze
    // contradicts them), so a person should know before they are sent (new-user trial);
    // once answered they count as rejected above.
    let waiting = s.flagged_records.iter().filter(|f| matches!(f.state.as_str(), "pending" | "uploading")).count();
    if waiting > 0 {
        let (noun, verb) = if waiting == 1 { ("record", "is") } else { ("records", "are") };
        out.push(format!(
            "{waiting} {noun} a late release or freeze contradicts {verb} waiting for upload and the store will refuse it; see `meterd status` (flagged records)"
        ));
    }
    if let Some(e) = &s.last_error {
        out.push(format!("the last upload failed: {e}"));
    }
    if let Some(v) = s.conservation_violations.as_ref().filter(|v| !v.is_empty()) {
        out.push(format!("conservation fails for {v:?}"));
    }
    for (inst, plan) in &s.missing_plans {
        out.push(format!("instance {inst} uses plan {plan:?}, which is not in the config; restore the plan"));
    }
    out
}

/// Shared state the daemon's loops and the ingest writer update, read by `/healthz`,
/// `/readyz`, `/v1/status` and `/metrics`. Only records facts; [`evaluate`] judges them.
#[derive(Debug, Default)]
pub struct Live {
    /// Unix seconds the daemon started (seal staleness counts from here before a success).
    pub started: i64,
    /// Seconds between two seal ticks of `schedule.seal`.
    pub seal_interval: i64,
    pub seal_failures_in_row: AtomicU32,
    pub seal_last_error: Mutex<Option<String>>,
    /// Unix seconds; 0 = none yet.
    pub seal_last_ok: AtomicI64,
    /// Unix seconds of the seal loop's last tick as a standby; 0 = none.
    pub seal_last_standby: AtomicI64,
    pub upload_last_ok: AtomicI64,
    pub upload_config_error: Mutex<Option<String>>,
    pub unwritable: Mutex<Option<(String, String)>>,
    /// Seal failures and upload failures by reason (for `/metrics`).
    pub seal_failures: Mutex<BTreeMap<String, u64>>,
    pub upload_failures: Mutex<BTreeMap<String, u64>>,
    /// The epoch at which this process holds the sealer lease (shared store); 0 = it holds
    /// none. Set by the daemon's lease loop; `status` says "held by this node" only when the
    /// stored lease has this epoch, not merely this node's name (`store::lease::decide`).
    pub lease_epoch: AtomicI64,
    /// The epoch at which another process holds the sealer lease under this node's name
    /// (`--node` reused); 0 = none. Set by the daemon's lease loop, shown by `/metrics`
    /// (`meterd_lease_name_clash`) and the `seal` check's standby detail.
    pub lease_name_clash: AtomicI64,
}

/// A condition starting or clearing, for logging it once each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Started,
    Cleared,
}

/// Whether the same-name lease clash (an epoch, 0: none) started or cleared between two lease
/// ticks: `Started` also when the other process's epoch changed (another process again).
pub fn name_clash_change(before: i64, now: i64) -> Option<Change> {
    match (before, now) {
        (b, n) if b == n => None,
        (_, 0) => Some(Change::Cleared),
        _ => Some(Change::Started),
    }
}

fn set<T>(m: &Mutex<T>, v: T) {
    if let Ok(mut g) = m.lock() {
        *g = v;
    }
}

fn get<T: Clone>(m: &Mutex<T>) -> Option<T> {
    m.lock().ok().map(|g| g.clone())
}

/// Adds one to `map[key]`.
pub fn bump(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
    if let Ok(mut m) = map.lock() {
        *m.entry(key.to_string()).or_default() += 1;
    }
}

impl Live {
    pub fn new(started: i64, seal_interval: i64) -> Live {
        Live { started, seal_interval, ..Live::default() }
    }

    /// The epoch at which this process holds the sealer lease, if it does.
    pub fn lease_held(&self) -> Option<i64> {
        Some(self.lease_epoch.load(Ordering::Relaxed)).filter(|e| *e > 0)
    }

    /// The daemon's [`Inputs`] at wall-clock `now` (unix seconds): this state, the writer's,
    /// and the store-derived counts (records, unsealed windows) past their deadline.
    pub fn inputs(&self, now: i64, writer: &crate::collector::Collector, late: (u64, u64)) -> Inputs {
        let w = writer.health();
        let unwritable = self.unwritable().or_else(|| w.last_error().filter(|(reason, _)| crate::store::unwritable_reason(reason)));
        Inputs {
            now,
            writer_alive: Some(writer.writer_alive()),
            file_moved: Some(writer.file_moved()),
            ingest_error: Some(w.last_error()),
            seal: Some(self.seal_inputs(self.started, self.seal_interval)),
            upload_config_error: Some(self.upload_config_error()),
            unwritable: Some(unwritable),
            records_past_deadline: late.0,
            windows_past_deadline: late.1,
        }
    }

    pub fn seal_ok(&self, now: i64) {
        self.seal_failures_in_row.store(0, Ordering::Relaxed);
        self.seal_last_ok.store(now, Ordering::Relaxed);
        set(&self.seal_last_error, None);
        self.write_ok();
    }

    /// The seal loop stood by at `now` (another node holds the sealer lease): not a seal of
    /// this node's, and no failure either; staleness counts from here if it takes over.
    pub fn seal_standing_by(&self, now: i64) {
        self.seal_failures_in_row.store(0, Ordering::Relaxed);
        self.seal_last_standby.store(now, Ordering::Relaxed);
        set(&self.seal_last_error, None);
    }

    pub fn seal_failed(&self, reason: &str, message: String, unwritable: bool) {
        self.seal_failures_in_row.fetch_add(1, Ordering::Relaxed);
        bump(&self.seal_failures, reason);
        if unwritable {
            set(&self.unwritable, Some((reason.to_string(), message.clone())));
        }
        set(&self.seal_last_error, Some(message));
    }

    pub fn upload_ok(&self, now: i64) {
        self.upload_last_ok.store(now, Ordering::Relaxed);
        set(&self.upload_config_error, None);
    }

    pub fn upload_failed(&self, reason: &str, config_error: Option<String>) {
        bump(&self.upload_failures, reason);
        if config_error.is_some() {
            set(&self.upload_config_error, config_error);
        }
    }

    pub fn write_failed(&self, reason: &str, message: String) {
        set(&self.unwritable, Some((reason.to_string(), message)));
    }

    /// A write of this node's committed (a seal, or on a shared store the lease loop's
    /// heartbeat, which writes at every tick; not an upload run, which may have read only):
    /// the store takes writes again, so `database_writable` clears. A standby
    /// never seals, so without the lease loop's writes a failure it saw as holder (a server
    /// outage) would stay for ever (new-user trial, issue 13).
    pub fn write_ok(&self) {
        set(&self.unwritable, None);
    }

    /// The seal side of [`Inputs`].
    pub fn seal_inputs(&self, started: i64, interval: i64) -> SealInputs {
        let last_ok = self.seal_last_ok.load(Ordering::Relaxed);
        let last_standby = self.seal_last_standby.load(Ordering::Relaxed);
        SealInputs {
            failures_in_row: self.seal_failures_in_row.load(Ordering::Relaxed),
            last_error: get(&self.seal_last_error).flatten(),
            last_ok: (last_ok > 0).then_some(last_ok),
            started,
            interval,
            last_standby: (last_standby > 0).then_some(last_standby),
            standby: None,
            store_last_ok: None,
        }
    }

    pub fn upload_config_error(&self) -> Option<String> {
        get(&self.upload_config_error).flatten()
    }

    pub fn unwritable(&self) -> Option<(String, String)> {
        get(&self.unwritable).flatten()
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
