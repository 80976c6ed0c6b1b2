//! Sealing a stop-before-excess window (design §4.2): one record per segment (see
//! `collector::quota`), each over its own period — from the segment's begin to the next
//! segment's begin, the last one to the window's end (or the release) — and each carrying
//! `relate_pkg_instance` = the segment's package. Periods never overlap and begins strictly
//! increase, so every record gets a distinct period and serial. In a partially frozen window
//! the periods are placed within the window's active part instead ([`super::place`]): a
//! segment wanting to begin in a frozen stretch moves to the next active second (or back into
//! the last ones), and a record ends where a frozen stretch begins; a segment left without an
//! active second (fewer active seconds than segments) moves to its package's carry, as in a
//! wholly frozen window.
//!
//! Carry rule: as for every record, value = usage + carry-in rounded down to 4 decimals, the
//! rest carried — but the carry is kept per package (`packages.carry`, held in memory by
//! [`PackageCarries`] while an instance is sealed), so the values reported against a package add
//! up to at most what was drawn from it, hence never more than its quota (quotas have at most 4
//! decimals). A remainder left on a package is one more "carried" term of the conservation
//! audit.
//!
//! Where carried package usage may go (rules in [`super::carry`]): a segment whose record would
//! not overlap its package's validity is not reported; its usage becomes `unbillable`. A wholly
//! frozen window's segments move to their packages' carries ([`defer_window`]); the next
//! active window in which such a package is valid gets a record of that carry (of at least
//! 0.0001) against the package: in the package's own segment if the window has one, else in a
//! segment of its own over the window's last active second (the window's first active stretch
//! — the whole window when it was never frozen — when the window has no segments); one such
//! package per window, the others wait for the next. The package must be valid during that
//! period, so the record overlaps its validity.

use super::carry::{is_due, overlaps_validity};
use super::place::place;
use super::record_for;
use crate::model::{Package, Timestamp};
use crate::store::packages::{self, Segment};
use crate::store::sql::Tx;
use crate::store::{InstanceRow, NewRecord, StoreError, WindowRow};
use rust_decimal::Decimal;

/// The records of one window, the usage no segment holds (only after a plan was switched to
/// `package = "stop"` mid-window, or a segment left no time in the window), which the caller
/// carries on the instance, and the usage that can never be reported (its package's validity
/// ended before the window).
pub struct SealedWindow {
    pub records: Vec<NewRecord>,
    pub residual: Decimal,
    pub unbillable: Decimal,
}

/// One instance's packages with the carry each holds, read once per seal of the instance and
/// written back by [`PackageCarries::store`].
#[derive(Default)]
pub struct PackageCarries {
    pkgs: Vec<Package>,
    /// Each package's carry as loaded, to write back only what changed.
    loaded: Vec<Decimal>,
}

impl PackageCarries {
    pub fn load(tx: &Tx<'_>, instance_key: i64) -> Result<PackageCarries, StoreError> {
        let pkgs = packages::of_instance(tx, instance_key)?;
        let loaded = pkgs.iter().map(|p| p.carry).collect();
        Ok(PackageCarries { pkgs, loaded })
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Package> {
        self.pkgs.iter_mut().find(|p| p.package_id == id)
    }

    /// Whether some package holds a carry of at least 0.0001 and is still valid after `t`
    /// (UTC seconds): a later window may report it.
    pub fn any_due_after(&self, t: i64) -> bool {
        self.pkgs.iter().any(|p| is_due(p.carry) && p.to > Timestamp::from_secs(t))
    }

    /// Takes the carries of packages whose validity ended at or before `t` (UTC seconds): no
    /// later record can name them.
    pub fn take_expired(&mut self, t: i64) -> Decimal {
        let mut out = Decimal::ZERO;
        for p in self.pkgs.iter_mut().filter(|p| p.to <= Timestamp::from_secs(t)) {
            out += std::mem::take(&mut p.carry);
        }
        out
    }

    /// Takes every package's carry (the instance can produce no record any more).
    pub fn take_all(&mut self) -> Decimal {
        self.pkgs.iter_mut().map(|p| std::mem::take(&mut p.carry)).sum()
    }

    /// Writes back every carry that changed since [`PackageCarries::load`].
    pub fn store(&self, tx: &Tx<'_>) -> Result<(), StoreError> {
        for (p, was) in self.pkgs.iter().zip(&self.loaded) {
            if p.carry != *was {
                packages::set_carry(tx, &p.package_id, p.carry)?;
            }
        }
        Ok(())
    }
}

/// A wholly frozen window (no record): each segment's usage moves to its package's carry.
/// Returns the usage no known package holds, for the instance's carry.
pub fn defer_window(tx: &Tx<'_>, pkgs: &mut PackageCarries, w: &WindowRow) -> Result<Decimal, StoreError> {
    let mut residual = w.usage;
    for s in packages::segments(tx, w.instance_key, w.start)? {
        if let Some(p) = pkgs.get_mut(&s.package_id) {
            p.carry += s.usage;
            residual -= s.usage;
        }
    }
    Ok(residual)
}

/// The records of a stop window billed up to `end` (UTC seconds: the window's end clipped to
/// the instance's release) whose active stretches are `active`
/// ([`super::carry::active_stretches`] of the window clipped to the instance's life),
/// or `None` when it has no segments and no package carry is due in it (sealed like any
/// window). Periods follow [`place`]: each record lies within one active stretch.
pub fn seal_window(
    tx: &Tx<'_>,
    inst: &InstanceRow,
    w: &WindowRow,
    end: i64,
    active: &[(i64, i64)],
    pkgs: &mut PackageCarries,
    now: Timestamp,
) -> Result<Option<SealedWindow>, StoreError> {
    let mut segs = packages::segments(tx, inst.key, w.start)?;
    // Segments beginning at or after `end` (a release reported after they were stored) get no
    // period; they are the last ones, as begins strictly increase.
    let mut live = segs.iter().take_while(|s| s.begin < end).count();
    let mut periods = place(&begins(&segs[..live]), active);
    // Carried package usage with no segment here gets a segment of its own: over the window's
    // first active stretch when it has no segments, else over its last active second (the
    // window's own segments keep the rest of their periods). One package per window; the
    // others wait for the next.
    let slot = if segs.is_empty() {
        active.first().copied()
    } else if live == segs.len() {
        last_free_second(&periods, active)
    } else {
        None
    };
    let waiting = slot.and_then(|(from, to)| {
        pkgs.pkgs
            .iter()
            .filter(|p| is_due(p.carry) && !segs.iter().any(|s| s.package_id == p.package_id))
            .find(|p| overlaps_validity(from, to, p.from, p.to))
            .map(|p| Segment { begin: from, package_id: p.package_id.clone(), usage: Decimal::ZERO })
    });
    if let Some(seg) = waiting {
        segs.push(seg);
        live += 1;
        periods = place(&begins(&segs[..live]), active);
    }
    if segs.is_empty() {
        return Ok(None);
    }
    let mut records = Vec::with_capacity(segs.len());
    let (mut residual, mut unbillable) = (w.usage, Decimal::ZERO);
    for (k, s) in segs.iter().enumerate() {
        if k >= live {
            tracing::warn!(instance = %inst.instance_id, window = w.start, begin = s.begin, "segment has no time left in the window (released inside it); its usage is carried on the instance");
            continue;
        }
        let pkg = pkgs.get_mut(&s.package_id);
        let Some((seg_begin, seg_end)) = periods.get(k).copied().flatten() else {
            // No active second left for it: like a wholly frozen window's segment.
            if let Some(p) = pkg {
                tracing::warn!(instance = %inst.instance_id, package = %p.package_id, window = w.start, usage = %s.usage, "no active second left in the partly frozen window for this package's record; its usage moves to the package's carry");
                p.carry += s.usage;
                residual -= s.usage;
            }
            continue;
        };
        residual -= s.usage;
        if let Some(p) = pkg.as_ref().filter(|p| !overlaps_validity(seg_begin, seg_end, p.from, p.to)) {
            tracing::warn!(instance = %inst.instance_id, package = %p.package_id, window = w.start, usage = %s.usage, "usage drawn from a package was carried past the package's validity; it cannot be reported against it and is kept as unbillable");
            unbillable += s.usage;
            continue;
        }
        let carry_in = pkg.as_ref().map_or(Decimal::ZERO, |p| p.carry);
        let rec = record_for(inst, w.start, (seg_begin, seg_end), s.usage, carry_in, Some(s.package_id.clone()), now);
        if let Some(p) = pkg {
            p.carry = rec.carry_out;
        }
        records.push(rec);
    }
    if !residual.is_zero() {
        tracing::warn!(instance = %inst.instance_id, window = w.start, %residual, "window usage not drawn from any package (plan switched to package = \"stop\"?); carried on the instance");
    }
    Ok(Some(SealedWindow { records, residual, unbillable }))
}

fn begins(segs: &[Segment]) -> Vec<i64> {
    segs.iter().map(|s| s.begin).collect()
}

/// The window's last active second `[t, t + 1)`, if the last placed record begins before it.
fn last_free_second(periods: &[Option<(i64, i64)>], active: &[(i64, i64)]) -> Option<(i64, i64)> {
    let last = active.last()?.1 - 1;
    match periods.last() {
        Some(Some((b, _))) if *b < last => Some((last, last + 1)),
        _ => None,
    }
}
