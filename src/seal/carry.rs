//! Where carried usage may be billed (issue 12, kinds 1 and 2). Pure: no I/O, no clock.
//!
//! Usage is *carried* when it cannot be billed in its own window: a late event (its window was
//! sealed before it arrived; the collector bills it in the instance's first unsealed window), a
//! remainder below 0.0001, the excess above the store's per-record cap, and the usage of a
//! window that turns out to be unbillable when it is sealed (see below). Carried usage must end
//! in a record the store can accept, or in `unbillable` — never sit in a carry forever.
//!
//! **Where it is decided: at seal time.** The collector only picks the first unsealed window
//! (or `unbillable`, when the instance is released and sealed through its release): at ingest
//! the freeze history of the windows ahead is not known yet (a freeze may be reported before
//! its unfreeze, a release may be reported late). Sealing a window decides with the history
//! known then ([`window_fate`]):
//! - a window outside the instance's life (at or after its release) gets no record; its usage
//!   is carried;
//! - a window the instance spent **wholly frozen** gets no record (the store refuses records of
//!   a frozen instance): its usage — carried-in late usage, or events stored before a freeze
//!   covering them was reported — moves on to the next window in which the instance is active;
//! - a **partially frozen** window is billed as usual, over the whole window (clipped to the
//!   instance's life): the instance was active for part of it, which is what the store checks;
//!   the records of a stop-before-excess window, cut into several periods anyway, are placed
//!   within the window's active part ([`active_stretches`], rule in [`super::place`]), so none
//!   lies in a frozen stretch;
//! - the next active window gets a record of what is carried even when it has no events of its
//!   own (only when the carry reaches 0.0001, so a record is never made of a remainder alone);
//! - once the instance is released and sealed through its release ([`sealed_through_release`]),
//!   no window can come: whatever is still carried — on the instance or on its packages —
//!   becomes `unbillable` (reported by `status` and `preview`). This holds for a release
//!   reported after the cursor passed it, too.
//!
//! Stop-before-excess packages (design §4.2): a segment's usage may only be reported against
//! its package when the record's period overlaps the package's validity `[from, to)`
//! ([`overlaps_validity`]; records are cut at crossing events, so a record may start before a
//! package's `from` or end after its `to`, but never lie wholly outside it). Usage drawn from a
//! package whose validity ended before the window it was carried to can never be reported
//! against it (later windows are later still) and becomes `unbillable` — it is prepaid, so it is
//! not billed as pay-per-use either. The carry of a wholly frozen stop window moves to its
//! packages' carries and is reported in the next active window where the package is valid; a
//! package's carry whose package expired before the seal cursor becomes `unbillable`.

use crate::model::Timestamp;
use crate::store::lifecycle::History;
use rust_decimal::Decimal;

/// The smallest value a record can hold (4 decimals): a carry below it makes only a zero record.
pub const MIN_RECORD_VALUE: Decimal = Decimal::from_parts(1, 0, 0, false, 4);

/// What sealing does with one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// A record over `[begin, end)` (UTC seconds): the window clipped to the instance's life.
    Record { begin: i64, end: i64 },
    /// Wholly frozen: no record; the usage moves on to the next active window.
    Frozen,
    /// No overlap with the instance's life: no record; the usage is carried (and becomes
    /// unbillable once the instance is sealed through its release).
    Outside,
}

/// The instance facts that decide a window's fate.
#[derive(Debug, Clone, Copy)]
pub struct Life<'a> {
    pub start: Timestamp,
    pub release: Option<Timestamp>,
    pub history: &'a History,
}

/// The fate of the window `[start, end)` (UTC seconds) of an instance with life `life`.
pub fn window_fate(life: Life<'_>, start: i64, end: i64) -> Fate {
    let begin = start.max(life.start.secs());
    let end = life.release.map_or(end, |r| end.min(r.secs()));
    if end <= begin {
        return Fate::Outside;
    }
    if active_during(life.history, begin, end) {
        Fate::Record { begin, end }
    } else {
        Fate::Frozen
    }
}

/// Whether the instance was active (not frozen) at some instant of `[begin, end)` (UTC
/// seconds). Frozen intervals are `[freeze, unfreeze)`; a freeze with no unfreeze yet lasts as
/// far as anyone knows.
pub fn active_during(history: &History, begin: i64, end: i64) -> bool {
    let Some(since) = history.frozen_since(Timestamp::from_secs(begin)) else { return true };
    history.unfrozen_after(since).is_some_and(|u| u < Timestamp::from_secs(end))
}

/// The active stretches of `[begin, end)` (UTC seconds): the runs of whole seconds in which the
/// instance was not frozen, disjoint and in time order, each `[from, to)` with `from < to`.
/// A second touched by a frozen interval (`[freeze, unfreeze)`, possibly not ending at a whole
/// second) is not active; a freeze with no unfreeze yet lasts to `end`. Empty when the instance
/// was frozen for every whole second of the window.
pub fn active_stretches(history: &History, begin: i64, end: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut from = begin;
    for (freeze, unfreeze) in history.frozen_intervals() {
        let thaw =
            unfreeze.map_or(i64::MAX, |u| u.0.div_euclid(Timestamp::NS_PER_SEC) + i64::from(u.0.rem_euclid(Timestamp::NS_PER_SEC) != 0));
        if thaw <= from {
            continue;
        }
        if freeze.secs() >= end {
            break;
        }
        if freeze.secs() > from {
            out.push((from, freeze.secs()));
        }
        from = thaw;
        if from >= end {
            break;
        }
    }
    if from < end {
        out.push((from, end));
    }
    out
}

/// Whether every window the instance can have a record in is sealed: it is released and the
/// cursor `sealed_until` (UTC seconds, a window boundary) is at or past the release.
pub fn sealed_through_release(release: Option<Timestamp>, sealed_until: i64) -> bool {
    release.is_some_and(|r| r <= Timestamp::from_secs(sealed_until))
}

/// Whether a record over `[begin, end)` (UTC seconds) may name a package valid in
/// `[from, to)`: the two intervals overlap.
pub fn overlaps_validity(begin: i64, end: i64, from: Timestamp, to: Timestamp) -> bool {
    from < Timestamp::from_secs(end) && Timestamp::from_secs(begin) < to
}

/// Whether a carry is worth a record of its own (at least 0.0001).
pub fn is_due(carry: Decimal) -> bool {
    carry >= MIN_RECORD_VALUE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_rfc3339;
    use crate::store::lifecycle::Status;

    fn t(s: &str) -> Timestamp {
        parse_rfc3339(s).unwrap()
    }
    fn s(x: &str) -> i64 {
        t(x).secs()
    }

    #[test]
    fn fates_of_frozen_partial_and_released_windows() {
        let h = History(vec![(t("2026-11-23T10:00:00Z"), Status::Freeze), (t("2026-11-23T12:00:00Z"), Status::Unfreeze)]);
        let life = Life { start: t("2026-11-23T00:00:00Z"), release: Some(t("2026-11-23T13:30:00Z")), history: &h };
        let hour = |x: &str| window_fate(life, s(x), s(x) + 3600);
        assert_eq!(hour("2026-11-23T09:00:00Z"), Fate::Record { begin: s("2026-11-23T09:00:00Z"), end: s("2026-11-23T10:00:00Z") });
        assert_eq!(hour("2026-11-23T10:00:00Z"), Fate::Frozen);
        assert_eq!(hour("2026-11-23T11:00:00Z"), Fate::Frozen, "unfrozen exactly at the window's end");
        assert!(matches!(hour("2026-11-23T12:00:00Z"), Fate::Record { .. }));
        assert_eq!(hour("2026-11-23T13:00:00Z"), Fate::Record { begin: s("2026-11-23T13:00:00Z"), end: s("2026-11-23T13:30:00Z") });
        assert_eq!(hour("2026-11-23T14:00:00Z"), Fate::Outside);
        // Partially frozen: active for part of the window, billed over the whole window.
        let h = History(vec![(t("2026-11-23T10:20:00Z"), Status::Freeze)]);
        let life = Life { history: &h, release: None, ..life };
        assert!(matches!(window_fate(life, s("2026-11-23T10:00:00Z"), s("2026-11-23T11:00:00Z")), Fate::Record { .. }));
        assert_eq!(window_fate(life, s("2026-11-23T11:00:00Z"), s("2026-11-23T12:00:00Z")), Fate::Frozen, "no unfreeze yet");
    }

    #[test]
    fn active_stretches_of_a_window() {
        let h = History(vec![
            (t("2026-11-23T10:10:00Z"), Status::Freeze),
            (Timestamp(t("2026-11-23T10:20:00Z").0 + 500_000_000), Status::Unfreeze),
            (t("2026-11-23T10:50:00Z"), Status::Freeze),
        ]);
        let (b, e) = (s("2026-11-23T10:00:00Z"), s("2026-11-23T11:00:00Z"));
        let unfrozen = s("2026-11-23T10:20:01Z"); // the unfreeze's own second was partly frozen
        assert_eq!(active_stretches(&h, b, e), vec![(b, s("2026-11-23T10:10:00Z")), (unfrozen, s("2026-11-23T10:50:00Z"))]);
        assert_eq!(active_stretches(&h, s("2026-11-23T10:15:00Z"), s("2026-11-23T10:30:00Z")), vec![(unfrozen, s("2026-11-23T10:30:00Z"))]);
        assert_eq!(active_stretches(&h, s("2026-11-23T11:00:00Z"), s("2026-11-23T12:00:00Z")), vec![], "no unfreeze yet");
        assert_eq!(active_stretches(&History::default(), b, e), vec![(b, e)]);
        // The regression case of tests/seal.proptest-regressions.
        let h = History(vec![(Timestamp::from_secs(1795175070), Status::Freeze), (Timestamp::from_secs(1795380870), Status::Unfreeze)]);
        assert_eq!(active_stretches(&h, 1795377600, 1795381200), vec![(1795380870, 1795381200)]);
    }

    #[test]
    fn release_and_validity_rules() {
        assert!(!sealed_through_release(None, s("2026-11-24T00:00:00Z")));
        assert!(sealed_through_release(Some(t("2026-11-23T10:00:00Z")), s("2026-11-23T10:00:00Z")));
        assert!(sealed_through_release(Some(t("2026-11-23T09:30:00Z")), s("2026-11-23T11:00:00Z")), "a release reported late");
        assert!(!sealed_through_release(Some(t("2026-11-23T10:30:00Z")), s("2026-11-23T10:00:00Z")));
        let (from, to) = (t("2026-11-23T08:00:00Z"), t("2026-11-23T10:00:00Z"));
        assert!(overlaps_validity(s("2026-11-23T09:00:00Z"), s("2026-11-23T10:00:00Z"), from, to));
        assert!(!overlaps_validity(s("2026-11-23T10:00:00Z"), s("2026-11-23T11:00:00Z"), from, to));
        assert!(!overlaps_validity(s("2026-11-23T07:00:00Z"), s("2026-11-23T08:00:00Z"), from, to));
        assert!(is_due("0.0001".parse().unwrap()) && !is_due("0.00009".parse().unwrap()));
    }
}
