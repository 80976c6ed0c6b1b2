//! Golden tables of the `weighted_sum` core (issue 14): boundaries, `+08:00` day windows, a
//! freeze and a release inside a window, held levels, exact cutting and conservation.

use super::*;
use crate::model::{parse_rfc3339, FixedTz, Period};

fn s(x: &str) -> i64 {
    parse_rfc3339(x).unwrap().secs()
}
fn d(x: &str) -> Decimal {
    x.parse().unwrap()
}
fn ev(at: &str, id: &str, q: &str) -> LevelEvent {
    LevelEvent { time_ns: parse_rfc3339(at).unwrap().0, id: id.into(), quantity: d(q) }
}
/// The integral of one hour window starting at `start`, nothing frozen.
fn hour(level: &str, events: &[LevelEvent], start: &str) -> Decimal {
    integral(d(level), events, s(start), s(start) + 3600, &[]).unwrap()
}

#[test]
fn events_at_a_window_start_and_end() {
    let at_start = [ev("2026-11-23T10:00:00Z", "a", "10")];
    assert_eq!(hour("0", &at_start, "2026-11-23T10:00:00Z"), d("36000"), "an event at the start holds for the whole window");
    // An event at the window's end belongs to the next window: it changes nothing here.
    let at_end = [ev("2026-11-23T11:00:00Z", "b", "99")];
    assert_eq!(hour("4", &at_end, "2026-11-23T10:00:00Z"), d("14400"));
    assert_eq!(hour("0", &[], "2026-11-23T10:00:00Z"), Decimal::ZERO, "before the first event the level is 0");
}

#[test]
fn a_level_change_exactly_at_a_boundary() {
    let evs = [ev("2026-11-23T10:00:00Z", "a", "5"), ev("2026-11-23T11:00:00Z", "b", "8")];
    let first = seal_window(WindowIn {
        level: Decimal::ZERO,
        events: &evs[..1],
        begin: s("2026-11-23T10:00:00Z"),
        end: s("2026-11-23T11:00:00Z"),
        frozen: &[],
        carry_in: Decimal::ZERO,
    })
    .unwrap();
    assert_eq!((first.integral, first.cut.value, first.level_after), (d("18000"), d("5"), d("5")));
    let second = seal_window(WindowIn {
        level: first.level_after,
        events: &evs[1..],
        begin: s("2026-11-23T11:00:00Z"),
        end: s("2026-11-23T12:00:00Z"),
        frozen: &[],
        carry_in: first.cut.carry_out,
    })
    .unwrap();
    assert_eq!((second.integral, second.cut.value), (d("28800"), d("8")));
}

#[test]
fn day_windows_in_plus_eight() {
    let tz: FixedTz = "+08:00".parse().unwrap();
    let t = |x: &str| parse_rfc3339(x).unwrap();
    // 23:30 local on the 23rd, then 02:00 local on the 24th.
    let evs = [ev("2026-11-23T15:30:00Z", "a", "20"), ev("2026-11-23T18:00:00Z", "b", "10")];
    let day23 = tz.window_start(Period::Day, t("2026-11-23T15:30:00Z"));
    assert_eq!(day23, s("2026-11-22T16:00:00Z"), "the local day starts at 16:00Z");
    let end23 = tz.window_end(Period::Day, day23);
    let w23 =
        seal_window(WindowIn { level: Decimal::ZERO, events: &evs[..1], begin: day23, end: end23, frozen: &[], carry_in: Decimal::ZERO })
            .unwrap();
    assert_eq!(w23.cut.value, d("10"), "20 GB for half an hour");
    let end24 = tz.window_end(Period::Day, end23);
    let w24 = seal_window(WindowIn {
        level: w23.level_after,
        events: &evs[1..],
        begin: end23,
        end: end24,
        frozen: &[],
        carry_in: w23.cut.carry_out,
    })
    .unwrap();
    assert_eq!(w24.cut.value, d("260"), "20 GB × 2 h + 10 GB × 22 h");
}

#[test]
fn a_freeze_and_a_release_inside_a_window() {
    let frozen = [(s("2026-11-23T10:15:00Z"), Some(s("2026-11-23T10:45:00Z")))];
    let evs = [ev("2026-11-23T10:00:00Z", "a", "12")];
    // Released at 10:50: the record's period ends there. Billed: 10:00–10:15 and 10:45–10:50.
    let w = seal_window(WindowIn {
        level: Decimal::ZERO,
        events: &evs,
        begin: s("2026-11-23T10:00:00Z"),
        end: s("2026-11-23T10:50:00Z"),
        frozen: &frozen,
        carry_in: Decimal::ZERO,
    })
    .unwrap();
    assert_eq!((w.integral, w.cut.value), (d("14400"), d("4")));
    // The level holds through the freeze: a change reported during it (stored before the
    // freeze was known) bills from the unfreeze on.
    let evs = [ev("2026-11-23T10:00:00Z", "a", "12"), ev("2026-11-23T10:30:00Z", "b", "6")];
    assert_eq!(
        integral(Decimal::ZERO, &evs, s("2026-11-23T10:00:00Z"), s("2026-11-23T11:00:00Z"), &frozen).unwrap(),
        d("12") * d("900") + d("6") * d("900")
    );
    // Still frozen (no unfreeze yet): nothing after the freeze bills.
    let open = [(s("2026-11-23T10:15:00Z"), None)];
    assert_eq!(integral(d("12"), &[], s("2026-11-23T10:00:00Z"), s("2026-11-23T11:00:00Z"), &open).unwrap(), d("10800"));
}

#[test]
fn a_window_without_events_bills_the_held_level() {
    let w = seal_window(WindowIn { level: d("7"), events: &[], begin: 0, end: 3600, frozen: &[], carry_in: Decimal::ZERO }).unwrap();
    assert_eq!((w.cut.value, w.level_after), (d("7"), d("7")));
}

#[test]
fn ties_and_sub_second_times() {
    let mut evs = [ev("2026-11-23T10:00:00.900Z", "b", "3"), ev("2026-11-23T10:00:00.900Z", "a", "5")];
    evs.sort_by(level_order);
    assert_eq!(evs[1].id, "b", "ties by id, byte order: the greater id holds");
    assert_eq!(last_level(&evs), Some(d("3")));
    // Floored to 10:00:00: level 3 for the whole hour.
    assert_eq!(hour("0", &evs, "2026-11-23T10:00:00Z"), d("10800"));
    // Two events in one second: the later holds from that second on, the earlier for 0 s.
    let evs = [ev("2026-11-23T10:00:05.100Z", "x", "100"), ev("2026-11-23T10:00:05.200Z", "y", "1")];
    assert_eq!(hour("0", &evs, "2026-11-23T10:00:00Z"), d("3595"));
    // An event before `begin` (a window clipped to the instance's start) sets the level only.
    assert_eq!(integral(Decimal::ZERO, &evs, s("2026-11-23T10:30:00Z"), s("2026-11-23T11:00:00Z"), &[]).unwrap(), d("1800"));
}

#[test]
fn cutting_floors_to_4_decimals_and_carries_unit_seconds() {
    // 1 unit for 1 second = 0.000277… unit·h: 0.0002 billed, 0.28 unit·s carried.
    assert_eq!(cut(d("1"), Decimal::ZERO).unwrap(), Cut { value: d("0.0002"), carry_out: d("0.28") });
    assert_eq!(cut(d("0.08"), d("0.28")).unwrap(), Cut { value: d("0.0001"), carry_out: Decimal::ZERO });
    // The quotient rounds up to 0.0001 at 28 digits; the floor must not.
    let just_under = d("0.35999999999999999999999999");
    assert_eq!(cut(just_under, Decimal::ZERO).unwrap(), Cut { value: Decimal::ZERO, carry_out: just_under });
    // Capped at the store's limit; the excess is carried, in unit·seconds.
    let huge = cut(d("1000000000000") * d("86400"), Decimal::ZERO).unwrap();
    assert_eq!(huge.value, MAX_RECORD_VALUE);
    assert_eq!(huge.value * d("3600") + huge.carry_out, d("86400000000000000"));
}

#[test]
fn conservation_holds_in_unit_seconds() {
    let levels = ["0.000000001", "1", "7.333333333", "0", "999999999999.999999999", "2.5", "1000000000000"];
    let (mut carry, mut billed, mut integrals) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for (k, q) in levels.iter().enumerate() {
        // Odd seconds into each window, so nothing divides evenly.
        let start = 3600 * k as i64;
        let evs = [LevelEvent { time_ns: (start + 7 * k as i64 + 1) * NS_PER_SEC, id: format!("e{k}"), quantity: d(q) }];
        let level = if k == 0 { Decimal::ZERO } else { d(levels[k - 1]) };
        let w = seal_window(WindowIn { level, events: &evs, begin: start, end: start + 3600, frozen: &[], carry_in: carry }).unwrap();
        assert!(w.cut.carry_out >= Decimal::ZERO && (w.cut.carry_out < d("0.36") || w.cut.value == MAX_RECORD_VALUE), "{k}: {w:?}");
        assert_eq!(w.cut.value, w.cut.value.round_dp(4));
        carry = w.cut.carry_out;
        billed += w.cut.value * SECONDS_PER_HOUR;
        integrals += w.integral;
    }
    assert_eq!(billed + carry, integrals, "Σ records × 3600 + final carry = Σ integrals");
}

#[test]
fn late_changes_of_sealed_time() {
    let late = ev("2026-11-23T10:20:00Z", "l", "8");
    let (sealed, next) = (s("2026-11-23T11:00:00Z"), Some(s("2026-11-23T10:50:00Z")));
    assert_eq!(late_change(d("5"), &late, next, sealed, None, &[]).unwrap(), d("5400"), "3 more for 30 minutes");
    assert_eq!(late_change(d("5"), &late, None, sealed, None, &[]).unwrap(), d("7200"), "up to the seal cursor");
    assert_eq!(
        late_change(d("10"), &late, None, sealed, Some(s("2026-11-23T10:30:00Z")), &[]).unwrap(),
        d("-1200"),
        "lower, until the release"
    );
    let frozen = [(s("2026-11-23T10:30:00Z"), None)];
    assert_eq!(late_change(d("5"), &late, None, sealed, None, &frozen).unwrap(), d("1800"));
    assert_eq!(hours_shown(d("5400"), 4), d("1.5"));
    assert_eq!(hours_shown(d("0.359"), 9), d("0.000099722"));
}

#[test]
fn overflow_is_an_error_not_a_panic() {
    let e = integral(Decimal::MAX, &[], 0, 86_400, &[]).unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
    assert!(cut(Decimal::MAX, Decimal::MAX).is_err());
}
