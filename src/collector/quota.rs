//! Stop-before-excess deduction at ingest (design §4.2), inside the writer's transaction.
//!
//! For an instance whose plan says `package = "stop"`, each accepted event's billing quantity
//! (its quantity; 1 for a `count` plan) is drawn
//! from the packages valid at the event's time, earliest expiry first (see
//! [`crate::model::Package`]); what no package covers is kept as `over_quota`: acknowledged,
//! never billed, one more term of the conservation audit. Deduction happens in commit order.
//!
//! The covered part is billed by the window as usual, and is also kept as *segments* of the
//! window, one per run of usage drawn from one package, so sealing can give each package its
//! own record with a distinct period:
//! - the window's first segment begins at the window's record begin (the window start, or the
//!   instance start);
//! - usage drawn from the same package as the window's latest segment is added to it, whatever
//!   the event's time (an out-of-order event never reopens an earlier segment);
//! - usage drawn from another package begins a new segment at the event's time in whole
//!   seconds, or one second after the latest segment's begin if that is later (out-of-order
//!   and same-second crossings), so segment begins strictly increase;
//! - when no whole second of the window is left for a new segment, that part is kept as
//!   `over_quota` instead (never billed twice, never on the wrong package).

use super::decide::{InstanceCache, InstanceCtx};
use super::parse::EventInput;
use crate::config::{Config, PackageMode, Plan};
use crate::model::{deduction_order, split_quota, FixedTz, Package, Timestamp};
use crate::store::packages::{self, Segment};
use crate::store::sql::Tx;
use crate::store::StoreError;
use rust_decimal::Decimal;
use std::collections::{BTreeSet, HashMap};

/// The packages of one stop instance and what they used, as seen by this transaction.
pub struct StopQuota {
    packages: Vec<Package>,
    /// (package index, period start) → used, read through and written through.
    used: HashMap<(usize, i64), Decimal>,
    /// (receiver, state) of the quota notices this cache knows are in the outbox, so an
    /// instance past a threshold does not try to enqueue it again at every transaction.
    announced: BTreeSet<(String, String)>,
}

/// The quota state of an instance, for stop plans only.
pub fn load(tx: &Tx<'_>, plan: &Plan, instance_key: i64) -> Result<Option<StopQuota>, StoreError> {
    if plan.package != Some(PackageMode::Stop) {
        return Ok(None);
    }
    Ok(Some(StopQuota { packages: packages::of_instance(tx, instance_key)?, used: HashMap::new(), announced: BTreeSet::new() }))
}

impl StopQuota {
    /// Reads what each package valid at `t` used in its period, into the cache.
    fn prefetch(&mut self, tx: &Tx<'_>, tz: FixedTz, t: Timestamp) -> Result<(), StoreError> {
        for i in deduction_order(&self.packages, t) {
            let period = self.packages[i].period_start(tz, t);
            if let std::collections::hash_map::Entry::Vacant(e) = self.used.entry((i, period)) {
                e.insert(packages::used(tx, &self.packages[i].package_id, period)?);
            }
        }
        Ok(())
    }

    /// Quota left at `t` over every package valid then.
    pub fn remaining_at(&mut self, tx: &Tx<'_>, tz: FixedTz, t: Timestamp) -> Result<Decimal, StoreError> {
        self.prefetch(tx, tz, t)?;
        Ok(deduction_order(&self.packages, t)
            .into_iter()
            .map(|i| (self.packages[i].quota - self.used[&(i, self.packages[i].period_start(tz, t))]).max(Decimal::ZERO))
            .sum())
    }
}

/// Deducts `q` (an accepted event's billing quantity: its quantity, or 1 for a `count` plan)
/// billed in the window starting at `window`; returns the part the window bills (all of it for
/// instances without a stop plan).
pub fn deduct(tx: &Tx<'_>, cfg: &Config, ctx: &mut InstanceCtx, window: i64, ev: &EventInput, q: Decimal) -> Result<Decimal, StoreError> {
    let (Some(stop), Some(plan)) = (ctx.quota.as_mut(), ctx.plan.as_ref()) else { return Ok(q) };
    if q.is_zero() {
        return Ok(q);
    }
    let tz = cfg.timezone;
    stop.prefetch(tx, tz, ev.time)?;
    let (parts, mut over) = split_quota(&stop.packages, tz, ev.time, q, |i, p| stop.used[&(i, p)]);
    let key = ctx.row.key;
    let window_end = tz.window_end(plan.period, window);
    let end = ctx.row.release.map_or(window_end, |r| window_end.min(r.secs()));
    let mut last = packages::last_segment(tx, key, window)?;
    let mut covered = Decimal::ZERO;
    for (i, period, amount) in parts {
        let id = &stop.packages[i].package_id;
        let seg = match last.take() {
            Some(s) if &s.package_id == id => Segment { usage: s.usage + amount, ..s },
            Some(s) => Segment { begin: ev.time.secs().max(s.begin + 1), package_id: id.clone(), usage: amount },
            None => Segment { begin: window.max(ctx.row.start.secs()), package_id: id.clone(), usage: amount },
        };
        if seg.begin >= end {
            tracing::warn!(instance = %ctx.row.instance_id, window, "no whole second left in the window for another package's record; usage kept as over_quota");
            over += amount;
            continue;
        }
        let used = stop.used.entry((i, period)).or_default();
        *used += amount;
        packages::set_used(tx, id, period, *used)?;
        packages::put_segment(tx, key, window, &seg)?;
        covered += amount;
        last = Some(seg);
    }
    if over > Decimal::ZERO {
        packages::add_over_quota(tx, key, over)?;
    }
    Ok(covered)
}

/// Enqueues the `quota.crossed` notifications (issue 17) that the packages of the stop
/// instances named by `events` call for, in the ingest transaction, so the crossing commits
/// with the usage that caused it, whichever door or node took the events. The decision is
/// `notify::decide::quota`; the outbox's unique `(target, state)` makes it once per state.
/// Costs nothing without a `[[notify]]` that wants quota events.
pub fn announce(
    tx: &Tx<'_>,
    cfg: &Config,
    cache: &mut InstanceCache,
    events: &[(usize, EventInput)],
    now: Timestamp,
) -> Result<(), StoreError> {
    if !cfg.notify.iter().any(|t| t.wants(crate::config::EventKind::QuotaCrossed))
        || !cfg.plans.values().any(|p| p.package == Some(PackageMode::Stop))
    {
        return Ok(());
    }
    let ids: BTreeSet<&str> = events.iter().map(|(_, e)| e.instance_id.as_str()).collect();
    for id in ids {
        let Some(ctx) = cache.get_mut(id) else { continue };
        let plan = ctx.row.plan.clone();
        let Some(stop) = ctx.quota.as_mut() else { continue };
        let instance_remaining = stop.remaining_at(tx, cfg.timezone, now)?;
        let mut used: Vec<((usize, i64), Decimal)> = stop.used.iter().map(|(k, v)| (*k, *v)).collect();
        used.sort_by_key(|(k, _)| *k);
        for ((i, period_start), used) in used {
            let p = &stop.packages[i];
            let u = crate::notify::decide::PackageUse {
                instance_id: id,
                plan: &plan,
                package_id: &p.package_id,
                period_start,
                quota: p.quota,
                used,
                instance_remaining,
            };
            for n in crate::notify::decide::quota(&cfg.notify, &u, now) {
                if stop.announced.insert((n.target.clone(), n.state.clone())) {
                    crate::store::notify::enqueue(tx, &n)?;
                }
            }
        }
    }
    Ok(())
}

/// Stop instances named by `events` that have no quota left at `now`, sorted.
pub fn exhausted(
    tx: &Tx<'_>,
    cfg: &Config,
    cache: &mut InstanceCache,
    events: &[(usize, EventInput)],
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    if !cfg.plans.values().any(|p| p.package == Some(PackageMode::Stop)) {
        return Ok(Vec::new()); // the hot path without stop plans pays nothing
    }
    let ids: BTreeSet<&str> = events.iter().map(|(_, e)| e.instance_id.as_str()).collect();
    let mut out = Vec::new();
    for id in ids {
        if let Some(stop) = cache.get_mut(id).and_then(|c| c.quota.as_mut()) {
            if stop.remaining_at(tx, cfg.timezone, now)? <= Decimal::ZERO {
                out.push(id.to_string());
            }
        }
    }
    Ok(out)
}
