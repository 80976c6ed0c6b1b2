//! Usage after a release reported late (issue 12 follow-up, session 25): moved to
//! `unbillable` by the transaction that records the release.
//!
//! A release is known at ingest only from the moment it is recorded; until then events after
//! it are accepted (the cloud store's release may reach meterd after the usage). The store
//! refuses usage after a release, so once the release is recorded, the accepted events with
//! `time ≥ release` that are not yet in a sealed record can never be billed. **Where it is
//! decided: at the release itself** (design (b) of the issue), not at the seal: the release's
//! transaction finds those events and moves their usage out of the windows that would bill
//! them, so from that commit on every reader agrees without deriving anything — the seal (the
//! record of the window holding the release is `[window start, release)` with the usage before
//! the release only), `preview` (charges and the unbillable column), `status` (`unbillable`),
//! the conservation audit and the aggregations. Deciding at the seal instead would have made
//! every reader (preview, status, audit, `/metrics`) re-derive the same split from the raw
//! events until the window is sealed.
//!
//! What moves, by plan ([`Billing`], the caller's config decides it; the rule is [`movable`],
//! pure):
//! - `sum`/`count` (pay-per-use and `payg` packages): each such event's billed amount leaves
//!   its window's total (`windows`, after the unfolded tail is folded in so that every total is
//!   stored; the ingest writers see the fold and reload their in-memory sums) and is added to
//!   the instance's `unbillable`; the event is kept, billed nowhere (`billed_window` NULL, as
//!   unbillable usage is at ingest). The conservation line holds: the usage moves from `open`
//!   to `unbillable`.
//! - `max`/`latest`/`unique_count`: the event leaves its point window's index
//!   (`window_events`) and is billed nowhere, counted with the instance's events billed
//!   nowhere (`late_unbilled`, shown by `status`); the seal recomputes the window from the
//!   events before the release.
//! - `weighted_sum`: nothing moves. A level holds only until the release, so a level set after
//!   it adds nothing to any window's integral already.
//! - `package = "stop"`: as `sum`/`count` (the part over quota stays `over_quota`), and what
//!   the events drew goes back to their packages: the window's segments and the packages'
//!   use in the reset period shrink by each event's draws (`store::lifecycle_release_stop`).
//!
//! Events already in a sealed record (`billed_window` before the seal cursor) stay there: a
//! sealed record never changes; one ending after the release is flagged
//! (`store::lifecycle_flags`), and `preview` charges it 0.
//!
//! **Cost.** One read of the instance's events at or after the release or billed in a window
//! not sealed yet, once per release (it replaces the read that counted them for the release's
//! warning before): on PostgreSQL through the `events_key (instance_ref, event_id)` index's
//! leading column; SQLite has no index on `events` by instance (an index on the ingest hot
//! path would cost every event), so it scans the table, once per release. Then, only when
//! something moves, a fold of the unfolded tail, one update per moved event and one per window
//! (and per segment and package period of a stop instance).

use super::instances::InstanceRow;
use super::sql::{params, Tx};
use super::{dec, Result};
use crate::model::{FixedTz, Timestamp};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// How an instance's plan bills its events, as far as a late release needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billing {
    /// `sum`/`count` without a stop-before-excess package: usage moves to `unbillable`.
    Additive,
    /// `max`/`latest`/`unique_count`: events leave their point window.
    Point,
    /// `sum`/`count` with `package = "stop"`: as `Additive`, and the draws go back to the
    /// packages (reset periods in this zone).
    Stop(FixedTz),
    /// Nothing moves: `weighted_sum`, or a plan missing from the config.
    Kept,
}

impl Billing {
    /// The billing of the plan named `plan` in `cfg`.
    pub fn of(cfg: &crate::config::Config, plan: &str) -> Billing {
        match cfg.plan(plan) {
            Some(p) if p.aggregation.is_additive() && p.package == Some(crate::config::PackageMode::Stop) => Billing::Stop(cfg.timezone),
            Some(p) if p.aggregation.is_additive() => Billing::Additive,
            Some(p) if p.aggregation.is_point() => Billing::Point,
            _ => Billing::Kept,
        }
    }
}

/// An event as the release reads it: one at or after the release, or one billed in a window
/// not sealed yet.
#[derive(Debug, Clone, PartialEq)]
pub struct AfterRelease {
    pub seq: i64,
    pub time: Timestamp,
    /// The window that bills it (UTC seconds), `None` when it is billed nowhere already.
    pub billed_window: Option<i64>,
    /// What it bills there: `billed_qty`, else its quantity.
    pub amount: Decimal,
}

/// What the release moved out of the windows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Moved {
    /// Events stored at or after the release (moved or not).
    pub events_after: u64,
    /// Events moved out of their (unsealed) windows.
    pub events: u64,
    /// Usage moved to `unbillable` (plan unit; 0 for point plans).
    pub usage: Decimal,
}

/// The events (of `after`) the release at `at` takes out of their windows: those at or after
/// it billed in a window not sealed yet (start ≥ `sealed_until`), with their windows' totals
/// (usage, events) to subtract. Pure.
pub fn movable(after: &[AfterRelease], at: Timestamp, sealed_until: i64) -> (Vec<&AfterRelease>, BTreeMap<i64, (Decimal, u64)>) {
    let moved: Vec<&AfterRelease> = after.iter().filter(|e| e.time >= at && e.billed_window.is_some_and(|w| w >= sealed_until)).collect();
    let mut per_window: BTreeMap<i64, (Decimal, u64)> = BTreeMap::new();
    for e in &moved {
        if let Some(w) = e.billed_window {
            let t = per_window.entry(w).or_default();
            t.0 += e.amount;
            t.1 += 1;
        }
    }
    (moved, per_window)
}

/// Moves the usage of `inst`'s events at or after its release `at` that no sealed record holds
/// to `unbillable` (see the module docs). Call in the release's transaction, after the release
/// time is stored. Idempotent: a moved event is billed nowhere, so a repeat moves nothing.
pub fn move_after_release(tx: &Tx<'_>, inst: &InstanceRow, at: Timestamp, billing: Billing) -> Result<Moved> {
    // The events after the release, and (for the segments of stop windows) every event billed
    // in a window not sealed yet, in commit order.
    let mut read = Vec::new();
    tx.for_each(
        "SELECT seq, time_ns, billed_window, coalesce(billed_qty, qty) FROM events
         WHERE instance_ref = ?1 AND (time_ns >= ?2 OR billed_window >= ?3) ORDER BY seq",
        params![inst.key, at.0, inst.sealed_until],
        |r| {
            read.push(AfterRelease {
                seq: r.get(0)?,
                time: Timestamp(r.get(1)?),
                billed_window: r.get(2)?,
                amount: dec(&r.get::<String>(3)?)?,
            });
            Ok(())
        },
    )?;
    let mut out = Moved { events_after: read.iter().filter(|e| e.time >= at).count() as u64, ..Moved::default() };
    if billing == Billing::Kept {
        return Ok(out);
    }
    let (moved, per_window) = movable(&read, at, inst.sealed_until);
    if moved.is_empty() {
        return Ok(out);
    }
    if let Billing::Stop(tz) = billing {
        super::lifecycle_release_stop::give_back(tx, inst.key, tz, &read, at, &per_window)?;
    }
    // Every billable event into `windows` first, so the totals can be lowered in place.
    super::windows::fold(tx)?;
    for e in &moved {
        tx.execute("UPDATE events SET billed_window = NULL, billed_qty = NULL WHERE seq = ?1", params![e.seq])?;
        if billing == Billing::Point {
            tx.execute(
                "DELETE FROM window_events WHERE instance_ref = ?1 AND window_start = ?2 AND seq = ?3",
                params![inst.key, e.billed_window, e.seq],
            )?;
        }
    }
    for (&start, &(usage, events)) in &per_window {
        super::windows::subtract(tx, inst.key, start, usage, events)?;
        out.usage += usage;
    }
    out.events = moved.len() as u64;
    match billing {
        Billing::Additive | Billing::Stop(_) if !out.usage.is_zero() => super::instances::add_unbillable(tx, inst.key, out.usage)?,
        Billing::Point => {
            super::points::add_late_unbilled(tx, inst.key, out.events)?;
            out.usage = Decimal::ZERO;
        }
        _ => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_events_billed_in_unsealed_windows_move() {
        let e = |seq, w: Option<i64>, a: &str| AfterRelease {
            seq,
            time: Timestamp::from_secs(5000),
            billed_window: w,
            amount: a.parse().unwrap(),
        };
        // Sealed until 7200: window 3600 is in a record; the event of seq 2 is billed nowhere;
        // the event of seq 6 is before the release at 4000.
        let early = AfterRelease { time: Timestamp::from_secs(3900), ..e(6, Some(7200), "9") };
        let after = [e(1, Some(3600), "5"), e(2, None, "1"), e(3, Some(7200), "3"), e(4, Some(7200), "0.5"), e(5, Some(10800), "2"), early];
        let (moved, per_window) = movable(&after, Timestamp::from_secs(4000), 7200);
        assert_eq!(moved.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        let want: BTreeMap<i64, (Decimal, u64)> = [(7200, ("3.5".parse().unwrap(), 2)), (10800, (Decimal::TWO, 1))].into();
        assert_eq!(per_window, want);
    }
}
