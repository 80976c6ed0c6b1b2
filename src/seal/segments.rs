//! Sealing a stop-before-excess window (design §4.2): one record per segment (see
//! `collector::quota`), each over its own period — from the segment's begin to the next
//! segment's begin, the last one to the window's end (or the release) — and each carrying
//! `relate_pkg_instance` = the segment's package. Periods never overlap and begins strictly
//! increase, so every record gets a distinct period and serial.
//!
//! Carry rule: as for every record, value = usage + carry-in rounded down to 4 decimals, the
//! rest carried — but the carry is kept per package (`packages.carry`), so the values reported
//! against a package add up to at most what was drawn from it, hence never more than its quota
//! (quotas have at most 4 decimals). A remainder left on a package is one more "carried" term
//! of the conservation audit.

use super::record_for;
use crate::config::{Config, Plan};
use crate::model::Timestamp;
use crate::store::packages;
use crate::store::{InstanceRow, NewRecord, StoreError, WindowRow};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// The records of one window, and the usage no segment holds (only after a plan was switched
/// to `package = "stop"` mid-window); the caller carries that on the instance.
pub struct SealedWindow {
    pub records: Vec<NewRecord>,
    pub residual: Decimal,
}

/// The records of a stop window, or `None` when it has no segments (no usage drawn from any
/// package: sealed like any window).
pub fn seal_window(
    tx: &rusqlite::Connection,
    cfg: &Config,
    plan: &Plan,
    inst: &InstanceRow,
    w: &WindowRow,
    now: Timestamp,
) -> Result<Option<SealedWindow>, StoreError> {
    let segs = packages::segments(tx, inst.key, w.start)?;
    let window_end = cfg.timezone.window_end(plan.period, w.start);
    let end = inst.release.map_or(window_end, |r| window_end.min(r.secs()));
    if segs.is_empty() || end <= w.start.max(inst.start.secs()) {
        return Ok(None);
    }
    let mut carries: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut records = Vec::with_capacity(segs.len());
    let mut residual = w.usage;
    for (k, s) in segs.iter().enumerate() {
        let seg_end = segs.get(k + 1).map_or(end, |n| n.begin);
        if s.begin >= seg_end {
            tracing::warn!(instance = %inst.instance_id, window = w.start, begin = s.begin, "segment has no time left in the window (released inside it); its usage is carried on the instance");
            continue;
        }
        let carry_in = match carries.get(&s.package_id) {
            Some(c) => *c,
            None => packages::get(tx, &s.package_id)?.map(|p| p.carry).unwrap_or_default(),
        };
        let rec = record_for(inst, w.start, (s.begin, seg_end), s.usage, carry_in, Some(s.package_id.clone()), now);
        carries.insert(s.package_id.clone(), rec.carry_out);
        residual -= s.usage;
        records.push(rec);
    }
    for (id, carry) in carries {
        packages::set_carry(tx, &id, carry)?;
    }
    if !residual.is_zero() {
        tracing::warn!(instance = %inst.instance_id, window = w.start, %residual, "window usage not drawn from any package (plan switched to package = \"stop\"?); carried on the instance");
    }
    Ok(Some(SealedWindow { records, residual }))
}
