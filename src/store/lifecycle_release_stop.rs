//! A late release of a stop-before-excess instance (`package = "stop"`): the draws of the
//! usage it makes unbillable go back to their packages (rules of the move itself in
//! `store::lifecycle_release`).
//!
//! Ingest draws each event's billing quantity from the packages in commit order and keeps the
//! draws per window *segment* (one run of usage from one package) and per package and reset
//! period (`collector::quota::deduct`), not per event. Segments only grow at their window's
//! tail, in commit order, so which segment holds which event's draw is recovered by walking
//! the window's events and segments backwards together ([`attribute`], pure): the latest
//! event's covered usage is the end of the latest segment, and so on. Walking backwards keeps
//! the recent events — those after a release — exact even when a window holds usage no
//! segment holds (a plan switched to `package = "stop"` mid-window: that usage is the oldest).
//!
//! For each event at or after the release in a window not sealed yet, its draws leave their
//! segments (a segment left empty is removed, so the seal makes no record of it) and the use
//! of their packages in the reset period of the event's time. What it had over every quota
//! stays `over_quota` (never billed either way).

use super::lifecycle_release::AfterRelease;
use super::packages::{self, Segment};
use super::sql::{params, Tx};
use super::{Result, StoreError};
use crate::model::{FixedTz, Timestamp};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Which segments hold each event's covered usage: `covered` per event in commit order,
/// `segments` the usage of each segment in begin order; returns per event its (segment index,
/// amount) parts. Walks both backwards; usage older than every segment gets no part. Pure.
pub fn attribute(covered: &[Decimal], segments: &[Decimal]) -> Vec<Vec<(usize, Decimal)>> {
    let mut out = vec![Vec::new(); covered.len()];
    let mut k = segments.len();
    let mut left = Decimal::ZERO;
    for (e, &c) in covered.iter().enumerate().rev() {
        let mut rest = c;
        while rest > Decimal::ZERO {
            while left.is_zero() && k > 0 {
                k -= 1;
                left = segments[k];
            }
            if left.is_zero() {
                break; // older than every segment
            }
            let take = rest.min(left);
            out[e].push((k, take));
            rest -= take;
            left -= take;
        }
    }
    out
}

/// Gives the draws of `inst`'s events at or after `at` in the windows of `windows` back to
/// their segments and packages. `read`: the instance's events billed in windows not sealed yet
/// (and those after the release), in commit order. Call in the release's transaction.
pub fn give_back(
    tx: &Tx<'_>,
    instance_key: i64,
    tz: FixedTz,
    read: &[AfterRelease],
    at: Timestamp,
    windows: &BTreeMap<i64, (Decimal, u64)>,
) -> Result<()> {
    let pkgs = packages::of_instance(tx, instance_key)?;
    let mut used_minus: BTreeMap<(String, i64), Decimal> = BTreeMap::new();
    for &window in windows.keys() {
        let segs = packages::segments(tx, instance_key, window)?;
        let events: Vec<&AfterRelease> = read.iter().filter(|e| e.billed_window == Some(window)).collect();
        let covered: Vec<Decimal> = events.iter().map(|e| e.amount).collect();
        let parts = attribute(&covered, &segs.iter().map(|s| s.usage).collect::<Vec<_>>());
        let mut seg_minus = vec![Decimal::ZERO; segs.len()];
        for (e, ps) in events.iter().zip(&parts).filter(|(e, _)| e.time >= at) {
            for &(k, amount) in ps {
                seg_minus[k] += amount;
                let pkg = pkgs.iter().find(|p| p.package_id == segs[k].package_id).ok_or_else(|| {
                    StoreError::Corrupt(format!("segment of window {window} names package {:?}, which is not stored", segs[k].package_id))
                })?;
                *used_minus.entry((pkg.package_id.clone(), pkg.period_start(tz, e.time))).or_default() += amount;
            }
        }
        for (seg, minus) in segs.iter().zip(seg_minus).filter(|(_, m)| !m.is_zero()) {
            let usage = seg.usage - minus;
            if usage.is_zero() {
                tx.execute(
                    "DELETE FROM segments WHERE instance_ref = ?1 AND window_start = ?2 AND begin_s = ?3",
                    params![instance_key, window, seg.begin],
                )?;
            } else {
                packages::put_segment(tx, instance_key, window, &Segment { usage, ..seg.clone() })?;
            }
        }
    }
    for ((id, period), minus) in used_minus {
        let used = packages::used(tx, &id, period)?;
        packages::set_used(tx, &id, period, (used - minus).max(Decimal::ZERO))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn draws_are_found_in_the_segments_walking_back_from_the_latest_event() {
        // Segments A = 5, B = 2: events 4 (A), 3 (1 from A, 2 from B).
        assert_eq!(attribute(&[d("4"), d("3")], &[d("5"), d("2")]), vec![vec![(0, d("4"))], vec![(1, d("2")), (0, d("1"))]]);
        // 6 units before the plan was switched to stop: held by no segment.
        assert_eq!(attribute(&[d("6"), d("3"), d("0")], &[d("3")]), vec![vec![], vec![(0, d("3"))], vec![]]);
    }
}
