//! What the store will charge per use for each preview row, and only that: the pure decision
//! behind [`super::preview`] (no clock, no I/O), so every case is unit-tested alone.
//!
//! A row's *billable* usage is what the store prices per use ([`billable`]):
//! - a record the store **rejected** (or that expired before delivery, stored as rejected) is
//!   not billed at all: billable 0, and it adds nothing to step accumulation;
//! - a **stop-before-excess** record (plan `package = "stop"`, `relate_pkg_instance` set) is
//!   prepaid: the package was paid for up front, so the per-use charge is 0 and the row shows
//!   the units it draws from its package instead ([`drawn`]); open windows of such a plan are
//!   the same, since their usage can only ever be billed against a package (what no package
//!   covered is `over_quota`, never uploaded);
//! - a **pay-per-use package** row is charged for the part its packages do not cover
//!   (design §4.2, rule in [`crate::quota`]);
//! - anything else (open, pending, sending, delivered, zero) is billable in full.
//!
//! [`charges`] then prices the billable usage in time order; step plans accumulate only
//! billable usage over the accumulation period, so a rejected or prepaid record never buys a
//! cheaper step for a later one.

use crate::config::{PackageMode, Pricing};
use crate::model::FixedTz;
use crate::pricing;
use rust_decimal::Decimal;

/// Whether the store bills a row in `state` (`open|pending|sending|delivered|rejected|zero`).
pub fn is_billed(state: &str) -> bool {
    state != "rejected"
}

/// The usage the store charges per use for one row: `usage` minus what pay-per-use packages
/// `covered`; 0 for a rejected row and for every row of a stop-before-excess plan (prepaid).
pub fn billable(mode: Option<PackageMode>, state: &str, usage: Decimal, covered: Option<Decimal>) -> Decimal {
    if !is_billed(state) || mode == Some(PackageMode::Stop) {
        return Decimal::ZERO;
    }
    usage - covered.unwrap_or_default()
}

/// Stop-before-excess only: the units a row draws from its package (`usage`; 0 when the
/// store rejected the record, since it then drew nothing). `None` for other plans.
pub fn drawn(mode: Option<PackageMode>, state: &str, usage: Decimal) -> Option<Decimal> {
    (mode == Some(PackageMode::Stop)).then(|| if is_billed(state) { usage } else { Decimal::ZERO })
}

/// The charge of each row, given `(window start, billable usage)` in time order. Step plans
/// accumulate billable usage over the accumulation period holding each window (in `tz`).
/// `None` only when the arithmetic overflows a 96-bit decimal.
pub fn charges(plan: &Pricing, tz: FixedTz, rows: &[(i64, Decimal)]) -> Option<Vec<Decimal>> {
    let acc = pricing::accumulates(plan);
    let mut period: Option<(i64, Decimal)> = None;
    let mut out = Vec::with_capacity(rows.len());
    for &(window, usage) in rows {
        let key = acc.map(|a| pricing::accumulation_start(a, tz, window));
        let before = match (key, period) {
            (Some(k), Some((p, b))) if k == p => b,
            _ => Decimal::ZERO,
        };
        out.push(pricing::charge(plan, before, usage)?);
        if let Some(k) = key {
            period = Some((k, before.checked_add(usage)?));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Accumulation, Tier};

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn billable_usage_by_mode_and_state() {
        let stop = Some(PackageMode::Stop);
        let payg = Some(PackageMode::Payg);
        for (mode, state, usage, covered, want) in [
            (None, "pending", "12", None, "12"),
            (None, "delivered", "12", None, "12"),
            (None, "open", "12", None, "12"),
            (None, "zero", "0", None, "0"),
            (None, "rejected", "12", None, "0"),
            (stop, "pending", "10", None, "0"),
            (stop, "open", "10", None, "0"),
            (stop, "rejected", "10", None, "0"),
            (payg, "pending", "6", Some("3"), "3"),
            (payg, "rejected", "6", Some("0"), "0"),
        ] {
            let got = billable(mode, state, d(usage), covered.map(d));
            assert_eq!(got, d(want), "{mode:?} {state} {usage} covered {covered:?}");
        }
    }

    #[test]
    fn stop_rows_show_what_they_draw() {
        assert_eq!(drawn(Some(PackageMode::Stop), "pending", d("10")), Some(d("10")));
        assert_eq!(drawn(Some(PackageMode::Stop), "rejected", d("10")), Some(Decimal::ZERO));
        assert_eq!(drawn(Some(PackageMode::Payg), "pending", d("10")), None);
        assert_eq!(drawn(None, "pending", d("10")), None);
    }

    #[test]
    fn step_accumulates_billable_usage_only() {
        let step = Pricing::Graduated {
            tiers: vec![Tier { up_to: Some(d("3")), price: d("0.3") }, Tier { up_to: None, price: d("0.2") }],
            accumulation: Accumulation::Month,
        };
        let tz = FixedTz::default();
        // A rejected record of 5 between two billed ones: billable 0, so the third record is
        // priced as the second of the month (G(3) − G(2) = 0.3), not as if 7 came before it.
        let got = charges(&step, tz, &[(0, d("2")), (3600, d("0")), (7200, d("1"))]).unwrap();
        assert_eq!(got, [d("0.6"), d("0"), d("0.3")]);
        // A new accumulation period starts again from 0.
        let month = 40 * 86_400;
        let got = charges(&step, tz, &[(0, d("3")), (month, d("1"))]).unwrap();
        assert_eq!(got, [d("0.9"), d("0.3")]);
    }
}
