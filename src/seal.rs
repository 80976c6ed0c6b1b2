//! Sealing: turn every closed, unsealed window into one immutable usage record (design §5).
//!
//! A window `[start, end)` is sealable once `now ≥ end + seal.grace`. Each instance keeps a
//! cursor `sealed_until`: all windows before it are sealed, and it only moves forward, so
//! sealing is idempotent, catches up after any downtime, and never reseals when `now` goes
//! backwards. The cursor, the records and the carried remainder of an instance change in one
//! transaction.
//!
//! A record's value is the window's usage plus the carry-in, rounded down to 4 decimals; the
//! remainder (< 0.0001) is carried to the next window, and a value over the store's field limit
//! is capped with the excess carried. Hence, per instance: Σ events = Σ record values + open
//! usage + carry + unbillable (+ package carries + over_quota for packages, see `seal::segments`).
//!
//! Stop-before-excess instances (design §4.2) seal one record per window *segment*, each with
//! its own period and `relate_pkg_instance`; in a partially frozen window these periods lie
//! within the window's active part (rule in [`place`]).
//!
//! Carried usage (late events, remainders, capped excess) is billed only where the store can
//! accept it (issue 12; rules and the reasons in [`carry`]): a window the instance spent wholly
//! frozen, or one outside its life, gets no record and its usage moves on; the next active
//! window gets a record of a carry of at least 0.0001 even without events of its own; once the
//! instance is released and sealed through its release, whatever is still carried (on the
//! instance or its packages) becomes `unbillable`, so nothing sits in a carry forever.
//!
//! Point plans (`max`, `latest`, `unique_count`; issue 14, [`crate::model::Aggregation`]):
//! a window's value is recomputed here from the window's stored events
//! ([`crate::model::point_value`] over [`crate::store::points::window_events`]), floored to 4
//! decimals; nothing is carried in or out (the part dropped by the floor is kept as the
//! record's `carry_out` for `status`, and not carried on).
//!
//! Level plans (`weighted_sum`; issue 14, [`crate::model::weighted`]) are sealed by `seal::level`:
//! every window up to the cursor, the level carried from window to window, the remainder
//! carried in unit·seconds.
//!
//! On PostgreSQL a chunk of instances reads what it seals and writes its records and cursors
//! in a few set-based statements (`seal::bulk`); the decisions above are the same code on both
//! backends, and SQLite keeps its per-instance statements.

mod bulk;
pub mod carry;
mod level;
pub mod place;
mod segments;

use crate::config::{Config, PackageMode, Plan};
use crate::model::{format_record_time, metering_sn, Quantity, Timestamp, UsageRecord, MAX_RECORD_VALUE};
use crate::store::records::{self, NewRecord, RecordState};
use crate::store::sql::{Backend, Tx};
use crate::store::{instances, lifecycle, windows, InstanceRow, Store, StoreError, WindowRow};
use bulk::Prefetched;
use carry::{Fate, Life};
use rust_decimal::Decimal;
use segments::PackageCarries;

/// Instances sealed per transaction: bounds how long the write lock is held.
const INSTANCES_PER_TX: usize = 256;

/// What one seal run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SealReport {
    /// Instances whose cursor moved.
    pub instances: usize,
    /// Records written (including zero-value ones).
    pub records: usize,
    /// Records with value 0 (kept for preview, never uploaded).
    pub zero: usize,
    /// Records capped at 99999999.9999.
    pub capped: usize,
}

/// The boundary up to which windows of `plan` are closed at `now`.
pub fn closed_until(cfg: &Config, plan: &Plan, now: Timestamp) -> i64 {
    let cutoff = now.add_secs(-cfg.seal.grace.as_secs_i64());
    cfg.timezone.window_start(plan.period, cutoff)
}

/// Seals every closed, unsealed window of every instance.
pub fn seal(store: &mut Store, cfg: &Config, now: Timestamp) -> Result<SealReport, StoreError> {
    seal_counting(store, cfg, now, &|_| {})
}

/// Records that a seal run just succeeded: the store's last seal (`meta::LAST_SEAL`, the real
/// time), which `status`, `/metrics` and a standby's health read. Every seal run calls it — the
/// daemon's and `meterd seal`'s — on the connection (and under the lease) it sealed with.
pub fn note_sealed(store: &mut Store) -> Result<(), StoreError> {
    store.write(|tx| crate::store::meta::set(tx, crate::store::meta::LAST_SEAL, &Timestamp::now().to_string()))
}

/// [`seal`], calling `count` with the records each transaction writes, inside it, just before
/// its commit (the daemon's `meterd_records_sealed_total`: never behind what `status` shows).
pub fn seal_counting(store: &mut Store, cfg: &Config, now: Timestamp, count: &dyn Fn(usize)) -> Result<SealReport, StoreError> {
    let all = store.read(instances::list)?;
    let due: Vec<InstanceRow> = all
        .into_iter()
        .filter(|i| match cfg.plan(&i.plan) {
            Some(p) => i.sealed_until < closed_until(cfg, p, now),
            // A finished instance (released, sealed through its release) has nothing left to
            // seal: its plan may be removed from the config (`crate::settings`).
            None if carry::sealed_through_release(i.release, i.sealed_until) => false,
            None => {
                tracing::error!(instance = %i.instance_id, plan = %i.plan, "instance's plan is missing from the config; its windows stay unsealed until the plan is restored");
                false
            }
        })
        .collect();
    let mut report = SealReport::default();
    for chunk in due.chunks(INSTANCES_PER_TX) {
        let part = store.write(|tx| {
            // Sum the events not yet in `windows` into it first (see `store::windows`).
            windows::fold(tx)?;
            let mut part = SealReport::default();
            // On PostgreSQL the chunk's reads and writes are set-based (see `bulk`).
            let mut pre = match tx.backend() {
                Backend::Sqlite => None,
                Backend::Postgres => {
                    let ids: Vec<String> = chunk.iter().map(|i| i.instance_id.clone()).collect();
                    let until =
                        |row: &InstanceRow| cfg.plan(&row.plan).filter(|p| !p.aggregation.is_level()).map(|p| closed_until(cfg, p, now));
                    Some(Prefetched::load(tx, &ids, until)?)
                }
            };
            for stale in chunk {
                // Re-read under the write lock: another sealer may have moved the cursor.
                let inst = match &pre {
                    Some(p) => p.instance(&stale.instance_id),
                    None => instances::get(tx, &stale.instance_id)?,
                };
                let Some(inst) = inst else { continue };
                let Some(plan) = cfg.plan(&inst.plan) else { continue };
                if plan.aggregation.is_level() {
                    level::seal_instance(tx, cfg, plan, &inst, now, &mut part)?;
                } else {
                    seal_instance(tx, cfg, plan, &inst, now, &mut part, pre.as_mut())?;
                }
            }
            if let Some(p) = &mut pre {
                p.flush(tx, now.0)?;
            }
            count(part.records);
            Ok(part)
        })?;
        report.instances += part.instances;
        report.records += part.records;
        report.zero += part.zero;
        report.capped += part.capped;
    }
    Ok(report)
}

fn seal_instance(
    tx: &Tx<'_>,
    cfg: &Config,
    plan: &Plan,
    inst: &InstanceRow,
    now: Timestamp,
    report: &mut SealReport,
    mut pre: Option<&mut Prefetched>,
) -> Result<(), StoreError> {
    let until = closed_until(cfg, plan, now);
    if inst.sealed_until >= until {
        return Ok(());
    }
    let history = match pre.as_deref_mut() {
        Some(p) => p.take_history(inst.key),
        None => lifecycle::history(tx, inst.key)?,
    };
    let life = Life { start: inst.start, release: inst.release, history: &history };
    let stop = plan.package == Some(PackageMode::Stop);
    // Loaded for every plan: a plan switched away from `package = "stop"` may leave carries.
    let mut pkgs = match pre.as_deref() {
        Some(p) if !p.has_packages(inst.key) => PackageCarries::default(),
        _ => PackageCarries::load(tx, inst.key)?,
    };
    let mut carry = inst.carry;
    // Additive plans carry remainders and late usage; point plans carry nothing.
    let carries = plan.aggregation.is_additive();
    let mut unbillable = pkgs.take_expired(inst.sealed_until);
    let rows = match pre.as_deref_mut() {
        Some(p) => p.take_windows(inst.key),
        None => windows::of_instance(tx, inst.key, inst.sealed_until, until)?,
    };
    let mut rows = rows.into_iter().peekable();
    // The first window in time that may still be sealed (for carries due without usage).
    let first = inst.sealed_until.max(cfg.timezone.window_start(plan.period, inst.start));
    let mut next = boundary_at_or_after(cfg, plan, first);
    loop {
        // The next window: the next one with usage, or, while a carry is due, the next in time.
        let live = inst.release.is_none_or(|r| Timestamp::from_secs(next) < r);
        let due = next < until && live && ((carries && carry::is_due(carry)) || (stop && pkgs.any_due_after(next)));
        let start = match (rows.peek().map(|w| w.start), due) {
            (Some(s), true) => s.min(next),
            (Some(s), false) => s,
            (None, true) => next,
            (None, false) => break,
        };
        let w = rows.next_if(|w| w.start == start).unwrap_or(WindowRow { instance_key: inst.key, start, usage: Decimal::ZERO, events: 0 });
        let window_end = cfg.timezone.window_end(plan.period, w.start);
        next = window_end;
        let (begin, end) = match carry::window_fate(life, w.start, window_end) {
            Fate::Outside => {
                if !w.usage.is_zero() {
                    tracing::warn!(instance = %inst.instance_id, window = w.start, "window lies outside the instance's lifetime; its usage is carried");
                }
                carry += w.usage;
                continue;
            }
            Fate::Frozen => {
                tracing::info!(instance = %inst.instance_id, window = w.start, usage = %w.usage, "the instance was frozen for the whole window: no record; its usage moves on to the next active window");
                carry += if stop { segments::defer_window(tx, &mut pkgs, &w)? } else { w.usage };
                continue;
            }
            Fate::Record { begin, end } => (begin, end),
        };
        if stop {
            let active = carry::active_stretches(life.history, begin, end);
            if let Some(sealed) = segments::seal_window(tx, inst, &w, end, &active, &mut pkgs, now)? {
                carry += sealed.residual;
                unbillable += sealed.unbillable;
                for rec in sealed.records {
                    count(report, inst, &rec);
                    write_record(tx, pre.as_deref_mut(), rec, now)?;
                }
                continue;
            }
        }
        if w.events == 0 && w.usage.is_zero() && !(carries && carry::is_due(carry)) {
            continue; // visited for a package carry that is not valid here: nothing to record
        }
        let rec = if carries {
            let rec = record_for(inst, w.start, (begin, end), w.usage, carry, None, now);
            carry = rec.carry_out;
            rec
        } else {
            let events = crate::store::points::window_events(tx, inst.key, w.start, plan.unique_by.as_deref())?;
            record_for(inst, w.start, (begin, end), crate::model::point_value(plan.aggregation, &events), Decimal::ZERO, None, now)
        };
        count(report, inst, &rec);
        write_record(tx, pre.as_deref_mut(), rec, now)?;
    }
    unbillable += pkgs.take_expired(until);
    if carry::sealed_through_release(inst.release, until) {
        unbillable += carry + pkgs.take_all();
        carry = Decimal::ZERO;
    }
    pkgs.store(tx)?;
    match pre {
        Some(p) => p.push_cursor(inst.key, until, carry),
        None => instances::set_sealed(tx, inst.key, until, carry)?,
    }
    if !unbillable.is_zero() {
        tracing::warn!(instance = %inst.instance_id, %unbillable, "carried usage can no longer be billed (instance released and sealed through its release, or its package expired); kept as unbillable");
        instances::add_unbillable(tx, inst.key, unbillable)?;
    }
    report.instances += 1;
    Ok(())
}

/// Writes a sealed record now (SQLite), or holds it for the chunk's one bulk insert
/// (PostgreSQL, [`bulk`]).
fn write_record(tx: &Tx<'_>, pre: Option<&mut Prefetched>, rec: NewRecord, now: Timestamp) -> Result<(), StoreError> {
    match pre {
        Some(p) => {
            p.push_record(rec);
            Ok(())
        }
        None => records::insert(tx, &rec, now.0),
    }
}

/// The first window boundary of `plan` at or after `t` (UTC seconds).
fn boundary_at_or_after(cfg: &Config, plan: &Plan, t: i64) -> i64 {
    let start = cfg.timezone.window_start(plan.period, Timestamp::from_secs(t));
    if start == t {
        t
    } else {
        cfg.timezone.window_end(plan.period, start)
    }
}

fn count(report: &mut SealReport, inst: &InstanceRow, rec: &NewRecord) {
    report.records += 1;
    if rec.state == RecordState::Zero {
        report.zero += 1;
    }
    if rec.carry_out >= Decimal::new(1, 4) {
        report.capped += 1;
        tracing::warn!(instance = %inst.instance_id, sn = %rec.record.metering_sn, excess = %rec.carry_out, "record value capped at 99999999.9999; the excess is carried to the next record");
    }
}

/// The record for one window, or `None` if the window has no overlap with the instance's life.
pub fn build_record(cfg: &Config, plan: &Plan, inst: &InstanceRow, w: &WindowRow, carry_in: Decimal, now: Timestamp) -> Option<NewRecord> {
    let end_of_window = cfg.timezone.window_end(plan.period, w.start);
    let begin = w.start.max(inst.start.secs());
    let end = inst.release.map_or(end_of_window, |r| end_of_window.min(r.secs()));
    if end <= begin {
        return None;
    }
    Some(record_for(inst, w.start, (begin, end), w.usage, carry_in, None, now))
}

/// The record of `usage` (plus `carry_in`) over `[begin, end)` of the window starting at
/// `window_start`: value rounded down to 4 decimals, capped at the store's limit, the rest
/// carried.
pub(crate) fn record_for(
    inst: &InstanceRow,
    window_start: i64,
    (begin, end): (i64, i64),
    usage: Decimal,
    carry_in: Decimal,
    relate_pkg_instance: Option<String>,
    now: Timestamp,
) -> NewRecord {
    let (mut value, rest) = Quantity(usage + carry_in).floor_4dp();
    let mut carry_out = rest.0;
    if value.0 > MAX_RECORD_VALUE {
        carry_out += value.0 - MAX_RECORD_VALUE;
        value = Quantity(MAX_RECORD_VALUE);
    }
    new_record(inst, window_start, (begin, end), value, (usage, carry_in, carry_out), relate_pkg_instance, now)
}

/// The record of `value` over `[begin, end)` of the window starting at `window_start`, keeping
/// the window's usage, carry-in and carry-out as given (in the plan's unit, or unit·seconds for
/// `weighted_sum`).
pub(crate) fn new_record(
    inst: &InstanceRow,
    window_start: i64,
    (begin, end): (i64, i64),
    value: Quantity,
    (usage, carry_in, carry_out): (Decimal, Decimal, Decimal),
    relate_pkg_instance: Option<String>,
    now: Timestamp,
) -> NewRecord {
    let (b, e) = (format_record_time(Timestamp::from_secs(begin)), format_record_time(Timestamp::from_secs(end)));
    let record = UsageRecord {
        metering_sn: metering_sn(&inst.instance_id, &b, &e),
        begin_time: b,
        end_time: e,
        instance_id: inst.instance_id.clone(),
        record_time: format_record_time(now),
        relate_pkg_instance,
        usage_value: value.to_string(),
    };
    NewRecord {
        instance_key: inst.key,
        window_start,
        begin,
        end,
        window_usage: usage,
        carry_in,
        carry_out,
        record_time: now.secs(),
        state: if value.is_zero() { RecordState::Zero } else { RecordState::Pending },
        record,
    }
}
