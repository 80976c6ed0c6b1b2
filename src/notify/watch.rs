//! The facts not established at ingest, found by a periodic scan of the store (the daemon's
//! notify loop, every [`SCAN_EVERY`]): instances' window usage past configured amounts,
//! waiting records near or past their reporting deadline, and records the store rejected. Each
//! fact goes through `decide`; what the outbox holds already is dropped, and the daemon writes
//! the rest. The scan only reads: it runs in a read transaction, so it never holds the
//! writers' lock (on PostgreSQL the advisory lock every node's ingest takes; on SQLite the
//! ingest writer's) while it walks every instance — a write transaction is opened only when
//! there is something new to enqueue, and the outbox's unique `(target, state)` still makes a
//! race with another scanner harmless.
//!
//! Choices: usage amounts are checked against the instance's current window and the one before
//! it (a crossing just before a window boundary is still announced), on the window totals the
//! seal bills (`windows` plus the unfolded tail); deadlines of the [`DEADLINE_SCAN`] oldest
//! waiting records; rejections of the last [`REJECTED_WITHIN_NS`] only, so configuring a
//! receiver on an old store does not replay years of dead letters.
//!
//! **Pruning the outbox.** A delivered row is what stops its crossing being announced again
//! (`store::notify`), so [`prune_rule`] deletes only rows no scan can rebuild, at most
//! [`PRUNE_BATCH`] per run (the holder's watch loop, every [`PRUNE_EVERY`]): delivered
//! `usage.crossed`, `record.rejected`, `readiness.lost` and `readiness.regained` notices
//! created more than [`PRUNE_AFTER`] (14 days) before now. A usage state names its window and a
//! scan looks only at the current and previous window (at most 2 days back), a rejection's
//! names its time and a scan looks 7 days back — both at or before the row's creation — and a
//! readiness state names the instant of the change, never seen twice. So rebuilding one would
//! take the clock going back more than a week. Kept forever: `quota.crossed` (a package's
//! reset period may be a year, and late events up to `collector.max_age` still count in it)
//! and the deadline notices (a requeued record waits again; its deadline notice must stay
//! announced). Those grow with packages × periods × fractions and with records that neared
//! their deadline — small next to usage crossings, which can be one per window per amount.

use super::decide;
use crate::config::{Config, EventKind};
use crate::model::Timestamp;
use crate::store::notify::NewNotice;
use crate::store::sql::Tx;
use crate::store::{dead_letters, instances, notify, records, windows, StoreError};
use std::collections::BTreeMap;
use std::time::Duration;

/// How often the daemon scans for these facts.
pub const SCAN_EVERY: Duration = Duration::from_secs(5);
/// Oldest waiting records whose deadline is checked per scan (they are the nearest to it).
pub const DEADLINE_SCAN: usize = 1000;
/// Rejections older than this are not announced (7 days).
pub const REJECTED_WITHIN_NS: i64 = 7 * 86_400 * 1_000_000_000;

/// Delivered notices this much older than now may be pruned (see the module docs).
pub const PRUNE_AFTER: Duration = Duration::from_secs(14 * 86_400);
/// How often the lease holder's watch loop prunes.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Rows deleted per prune at most (one bounded transaction).
pub const PRUNE_BATCH: usize = 50_000;

/// What may be pruned at `now`: the kinds whose states no scan can rebuild, and the creation
/// time (Unix nanoseconds) before which their delivered rows may go (see the module docs).
pub fn prune_rule(now: Timestamp) -> (Vec<String>, i64) {
    let kinds = [EventKind::UsageCrossed, EventKind::RecordRejected, EventKind::ReadinessLost, EventKind::ReadinessRegained];
    let after_ns = i64::try_from(PRUNE_AFTER.as_nanos()).unwrap_or(i64::MAX);
    (kinds.iter().map(|k| k.as_str().to_string()).collect(), now.0.saturating_sub(after_ns))
}

/// The notices the store's facts call for at `now` that the outbox does not hold yet (read
/// only; the caller enqueues them with `store::notify::enqueue`).
pub fn scan(tx: &Tx<'_>, cfg: &Config, now: Timestamp) -> Result<Vec<NewNotice>, StoreError> {
    let t = &cfg.notify;
    let wants = |k| t.iter().any(|n| n.wants(k));
    let usage_wanted = t.iter().any(|n| n.wants(EventKind::UsageCrossed) && !n.usage_amounts.is_empty());
    let deadline_wanted = wants(EventKind::DeadlineNear) || wants(EventKind::DeadlineMissed);
    let rejected_wanted = wants(EventKind::RecordRejected);
    if !(usage_wanted || deadline_wanted || rejected_wanted) {
        return Ok(Vec::new());
    }
    let insts = instances::list(tx)?;
    let plan_of: BTreeMap<&str, &str> = insts.iter().map(|i| (i.instance_id.as_str(), i.plan.as_str())).collect();
    let mut notices = Vec::new();
    if usage_wanted {
        let tail = windows::Unfolded::load(tx)?;
        for i in &insts {
            let Some(plan) = cfg.plan(&i.plan) else { continue };
            let current = cfg.timezone.window_start(plan.period, now);
            let previous = cfg.timezone.window_start(plan.period, Timestamp::from_secs(current - 1));
            for w in windows::of_instance_with(tx, &tail, i.key, previous, current + 1)? {
                let u = decide::WindowUse { instance_id: &i.instance_id, plan: &i.plan, window_start: w.start, usage: w.usage };
                notices.extend(decide::usage(t, &u, now));
            }
        }
    }
    if deadline_wanted {
        let key_plan: BTreeMap<i64, &str> = insts.iter().map(|i| (i.key, i.plan.as_str())).collect();
        for r in records::unsent(tx, DEADLINE_SCAN)? {
            let Some(plan_name) = key_plan.get(&r.instance_key) else { continue };
            let Some(plan) = cfg.plan(plan_name) else { continue };
            let w = decide::Waiting {
                metering_sn: &r.metering_sn,
                instance_id: &r.instance_id,
                plan: plan_name,
                deadline: crate::status::deadline(plan.period, r.end),
            };
            notices.extend(decide::deadline(t, &w, now));
        }
    }
    if rejected_wanted {
        for r in dead_letters::list(tx)?.iter().take_while(|r| r.at_ns >= now.0.saturating_sub(REJECTED_WITHIN_NS)) {
            let j = decide::Rejection {
                metering_sn: &r.metering_sn,
                instance_id: &r.instance_id,
                plan: plan_of.get(r.instance_id.as_str()).copied().unwrap_or_default(),
                code: &r.code,
                message: &r.message,
                at_ns: r.at_ns,
            };
            notices.extend(decide::rejected(t, &j));
        }
    }
    let mut fresh = Vec::new();
    for n in notices {
        if !notify::announced(tx, &n.target, &n.state)? {
            fresh.push(n);
        }
    }
    Ok(fresh)
}
