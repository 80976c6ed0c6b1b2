//! Where the records of a stop-before-excess window go in time (issue 12): the placement rule,
//! pure — no I/O, no clock. `segments::seal_window` applies it.
//!
//! The store checks a record's period against the instance's status, so a record must not lie
//! in a frozen stretch. A stop window's records are its segments, each wanting to begin at its
//! own begin (`collector::quota`: the window's record begin for the first, the crossing
//! event's second for the others). Given the window's *active stretches* (the whole seconds of
//! the window, clipped to the instance's life, in which the instance was not frozen:
//! [`super::carry::active_stretches`]), [`place`] gives each segment a period `[begin, end)` in
//! whole UTC seconds:
//! - **begin**: the first active second at or after both the segment's own begin and one
//!   second after the previous record's begin — so a segment that wanted to begin in a frozen
//!   stretch (the window's first segment, or usage stored before a late freeze was reported)
//!   moves to the next active second; but never so late that the segments after it find no
//!   active second left: the k-th of n records begins at the latest at the (n−k)-th active
//!   second from the end (it moves back into the window's last active seconds instead);
//! - **end**: the next record's begin, or the end of the active stretch its begin lies in,
//!   whichever is first — so a record never spans a frozen stretch, and records of one window
//!   never overlap (begins strictly increase).
//!
//! A window without freezes has one stretch (the window clipped to the life), in which every
//! segment keeps its own begin and every record ends at the next one's begin (the last at the
//! window's end): periods are exactly what they were before this rule.
//!
//! When the active stretches hold fewer whole seconds than there are segments (at most a few
//! seconds active in the window), the first segments get one second each and the others get
//! no period (`None`); the caller moves their usage to their packages' carries, as for a wholly
//! frozen window, to be reported in the next active window where the package is valid.

/// The periods `[begin, end)` (UTC seconds) of records wanting to begin at `wanted` (strictly
/// increasing) in a window whose active stretches are `active` (disjoint, in time order, each
/// `[from, to)` with `from < to`), in the order given; `None` for a record left without a
/// second (see the module docs). Every period lies within one stretch; begins strictly
/// increase.
pub fn place(wanted: &[i64], active: &[(i64, i64)]) -> Vec<Option<(i64, i64)>> {
    let seconds: i64 = active.iter().map(|(from, to)| to - from).sum();
    let fit = wanted.len().min(usize::try_from(seconds).unwrap_or(0));
    let mut begins: Vec<i64> = Vec::with_capacity(fit);
    for (k, &want) in wanted.iter().take(fit).enumerate() {
        let lo = begins.last().map_or(want, |prev| want.max(prev + 1));
        // Leave one second for each of the records after this one.
        let latest = nth_from_end(active, (fit - 1 - k) as i64);
        let begin = next_active(active, lo).map_or(latest, |b| b.min(latest));
        begins.push(begin);
    }
    let mut out: Vec<Option<(i64, i64)>> = begins
        .iter()
        .enumerate()
        .map(|(k, &b)| {
            let stretch_end = active.iter().find(|(from, to)| *from <= b && b < *to).map_or(b + 1, |(_, to)| *to);
            Some((b, begins.get(k + 1).map_or(stretch_end, |&n| n.min(stretch_end))))
        })
        .collect();
    out.resize(wanted.len(), None);
    out
}

/// The first active second at or after `t`, if any.
fn next_active(active: &[(i64, i64)], t: i64) -> Option<i64> {
    active.iter().find(|(_, to)| t < *to).map(|(from, _)| t.max(*from))
}

/// The `n`-th active second counted from the last one (`n = 0`: the last); the caller makes
/// sure there are more than `n` active seconds.
fn nth_from_end(active: &[(i64, i64)], mut n: i64) -> i64 {
    for (from, to) in active.iter().rev() {
        if n < to - from {
            return to - 1 - n;
        }
        n -= to - from;
    }
    i64::MIN // unreachable when the caller keeps to the contract
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proptest case of `tests/seal.proptest-regressions` ("record inside a frozen
    /// interval"): frozen from 1795175070 to 1795380870, so the window 1795377600..1795381200
    /// is active only from 1795380870. Its segments wanted to begin at the window's start and
    /// the seconds after it — all frozen — and now share the active part.
    #[test]
    fn records_of_a_partly_frozen_window_go_to_its_active_part() {
        let active = [(1795380870, 1795381200)];
        assert_eq!(
            place(&[1795377600, 1795377601, 1795377602], &active),
            vec![Some((1795380870, 1795380871)), Some((1795380871, 1795380872)), Some((1795380872, 1795381200))]
        );
        assert_eq!(place(&[1795377600], &active), vec![Some((1795380870, 1795381200))]);
        // A crossing inside the active part keeps its second.
        assert_eq!(place(&[1795377600, 1795381000], &active), vec![Some((1795380870, 1795381000)), Some((1795381000, 1795381200))]);
    }

    #[test]
    fn without_freezes_periods_are_unchanged() {
        let active = [(0, 3600)];
        assert_eq!(place(&[0, 100, 101, 3599], &active), vec![Some((0, 100)), Some((100, 101)), Some((101, 3599)), Some((3599, 3600))]);
        assert_eq!(place(&[], &active), vec![]);
    }

    #[test]
    fn records_never_span_a_frozen_stretch() {
        // Active 0..100 and 200..300; frozen 100..200 and from 300 to the window's end.
        let active = [(0, 100), (200, 300)];
        assert_eq!(place(&[0, 250], &active), vec![Some((0, 100)), Some((250, 300))]);
        // Wanting to begin in the frozen middle: the next active second.
        assert_eq!(place(&[0, 150], &active), vec![Some((0, 100)), Some((200, 300))]);
        // Wanting to begin in the frozen tail: back into the last active seconds.
        assert_eq!(place(&[0, 3000, 3001], &active), vec![Some((0, 100)), Some((298, 299)), Some((299, 300))]);
        assert_eq!(place(&[3000], &active), vec![Some((299, 300))]);
    }

    #[test]
    fn too_few_active_seconds_leave_the_last_records_without_a_period() {
        let active = [(10, 11), (20, 21)];
        assert_eq!(place(&[0, 1, 2], &active), vec![Some((10, 11)), Some((20, 21)), None]);
        assert_eq!(place(&[0], &[]), vec![None]);
    }
}
