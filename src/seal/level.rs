//! Sealing a level plan's instance (`weighted_sum`; issue 14, rule and arithmetic in
//! [`crate::model::weighted`]).
//!
//! Unlike other plans, every window from the cursor up to the closed boundary is visited, with
//! or without events: the level held through a window bills it. The level at the first window
//! is read from the last earlier event ([`levels::level_before`]), then carried from window to
//! window in memory; the events of all visited windows are read in one query. Late events
//! stored since the last seal are among them (indexed by their own, sealed, window), so they
//! set the level of every window not sealed yet.
//!
//! Per window, by its fate ([`carry::window_fate`], as for every plan): outside the instance's
//! life or wholly frozen, no record (the integral is 0 there); otherwise the integral over the
//! window clipped to the life, minus frozen intervals, is cut into a record. A window gets a
//! record when its integral is > 0, it has events, or the carry makes a value > 0 — so a
//! window with a held level and no events is billed, a 0-value record (kept, never uploaded)
//! marks a tiny integral that went into the carry, and each record's carry-in is exactly the
//! previous record's carry-out, which the audit checks. Windows with neither are skipped: they
//! change nothing. The carry is unit·seconds; once the instance is released and sealed
//! through its release, what is left of it becomes `unbillable` (unit·seconds too, for these
//! instances). Each record keeps the highest event seq and the number of status changes its
//! seal saw ([`levels::set_seen`]).

use super::carry::{self, Fate, Life};
use super::{boundary_at_or_after, closed_until, new_record, SealReport};
use crate::config::{Config, Plan};
use crate::model::weighted::{seal_window, WindowIn};
use crate::model::MAX_RECORD_VALUE;
use crate::model::{Quantity, Timestamp};
use crate::store::records::{NewRecord, RecordState};
use crate::store::sql::Tx;
use crate::store::{instances, levels, lifecycle, records, InstanceRow, StoreError};
use rust_decimal::Decimal;

/// Seals every closed, unsealed window of `inst`, whose plan is a level plan.
pub(super) fn seal_instance(
    tx: &Tx<'_>,
    cfg: &Config,
    plan: &Plan,
    inst: &InstanceRow,
    now: Timestamp,
    report: &mut SealReport,
) -> Result<(), StoreError> {
    let until = closed_until(cfg, plan, now);
    if inst.sealed_until >= until {
        return Ok(());
    }
    let history = lifecycle::history(tx, inst.key)?;
    let life = Life { start: inst.start, release: inst.release, history: &history };
    let frozen = levels::frozen_secs(&history);
    let seen = (levels::max_seq(tx)?, history.0.len() as i64);
    let mut start = boundary_at_or_after(cfg, plan, inst.sealed_until.max(cfg.timezone.window_start(plan.period, inst.start)));
    let mut level = levels::level_before(tx, inst.key, start, seen.0)?;
    let events = levels::events_between(tx, inst.key, start, until, seen.0)?;
    let mut rest = events.as_slice();
    let mut carry = inst.carry;
    while start < until && inst.release.is_none_or(|r| Timestamp::from_secs(start) < r) {
        let end = cfg.timezone.window_end(plan.period, start);
        // Events indexed by a window this loop does not visit (a plan whose period changed)
        // still set the level.
        let n = rest.iter().take_while(|(w, _)| *w < end).count();
        let (mine, later) = rest.split_at(n);
        rest = later;
        let evs: Vec<_> = mine.iter().map(|(_, e)| e.clone()).collect();
        if let Fate::Record { begin, end: stop } = carry::window_fate(life, start, end) {
            let out = seal_window(WindowIn { level, events: &evs, begin, end: stop, frozen: &frozen, carry_in: carry })?;
            if !out.integral.is_zero() || !evs.is_empty() || !out.cut.value.is_zero() {
                let rec =
                    new_record(inst, start, (begin, stop), Quantity(out.cut.value), (out.integral, carry, out.cut.carry_out), None, now);
                tally(report, inst, &rec, out.cut.value);
                records::insert(tx, &rec, now.0)?;
                levels::set_seen(tx, start, &rec.record.metering_sn, seen.0, seen.1)?;
                carry = out.cut.carry_out;
            }
        }
        level = evs.last().map_or(level, |e| e.quantity);
        start = end;
    }
    let mut unbillable = Decimal::ZERO;
    if carry::sealed_through_release(inst.release, until) {
        unbillable = std::mem::take(&mut carry);
    }
    instances::set_sealed(tx, inst.key, until, carry)?;
    if !unbillable.is_zero() {
        tracing::warn!(instance = %inst.instance_id, unit_seconds = %unbillable, "the instance is released and sealed through its release: the carried remainder of its level integral can no longer be billed; kept as unbillable");
        instances::add_unbillable(tx, inst.key, unbillable)?;
    }
    report.instances += 1;
    Ok(())
}

/// Counts a written record in the report. Unlike other plans' (whose carry-out is ≥ 0.0001
/// only when capped), a level record carries up to 0.36 unit·seconds every time: it is capped
/// only when its value is the store's limit.
fn tally(report: &mut SealReport, inst: &InstanceRow, rec: &NewRecord, value: Decimal) {
    report.records += 1;
    if rec.state == RecordState::Zero {
        report.zero += 1;
    }
    if value == MAX_RECORD_VALUE {
        report.capped += 1;
        tracing::warn!(instance = %inst.instance_id, sn = %rec.record.metering_sn, excess_unit_seconds = %rec.carry_out, "record value capped at 99999999.9999; the excess is carried to the next record");
    }
}
