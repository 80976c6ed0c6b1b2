//! Pure money math for the cloud store's three price modes (design §3). No clock, no I/O.
//!
//! - fixed: `usage × price`;
//! - tier (volume, per record): the whole usage at the price of the first tier whose inclusive
//!   bound `up_to` holds it;
//! - step (graduated, cumulative): with `G(x)` = Σ over tiers of (part of x inside the tier) ×
//!   tier price, a record costs `G(before + usage) − G(before)`, where `before` is the usage of
//!   the same instance's earlier records in the same accumulation period.
//!
//! All arithmetic is exact `Decimal`; charges keep full precision and [`truncate_2dp`] gives
//! the displayed value (the cloud drops fractions of a cent).

use crate::config::{Accumulation, Pricing, Tier};
use crate::model::{FixedTz, Timestamp};
use rust_decimal::{Decimal, RoundingStrategy};

/// The charge of `usage` given `before` usage already accumulated in the accumulation period
/// (ignored by fixed and tier pricing). `None` only on arithmetic overflow.
pub fn charge(pricing: &Pricing, before: Decimal, usage: Decimal) -> Option<Decimal> {
    match pricing {
        Pricing::Fixed { price } => usage.checked_mul(*price),
        Pricing::Volume { tiers } => usage.checked_mul(volume_price(tiers, usage)),
        Pricing::Graduated { tiers, .. } => {
            let after = before.checked_add(usage)?;
            graduated(tiers, after)?.checked_sub(graduated(tiers, before)?)
        }
    }
}

/// The unit price of the first tier whose `up_to` ≥ `usage` (bounds inclusive).
pub fn volume_price(tiers: &[Tier], usage: Decimal) -> Decimal {
    tiers.iter().find(|t| t.up_to.is_none_or(|b| usage <= b)).map_or(Decimal::ZERO, |t| t.price)
}

/// `G(x)`: the graduated cost of cumulative usage `x`.
pub fn graduated(tiers: &[Tier], x: Decimal) -> Option<Decimal> {
    let mut total = Decimal::ZERO;
    let mut lower = Decimal::ZERO;
    for t in tiers {
        if x <= lower {
            break;
        }
        let upper = t.up_to.map_or(x, |b| b.min(x));
        total = total.checked_add((upper - lower).checked_mul(t.price)?)?;
        lower = upper;
    }
    Some(total)
}

/// Drops fractions of a cent: truncation toward zero to 2 decimals.
pub fn truncate_2dp(d: Decimal) -> Decimal {
    let mut t = d.round_dp_with_strategy(2, RoundingStrategy::ToZero);
    t.rescale(2); // always two digits: "0.60", not "0.6"
    t
}

/// Start (UTC seconds) of the accumulation period holding the window that starts at
/// `window_start`. For `Accumulation::Period` each window is its own period.
pub fn accumulation_start(acc: Accumulation, tz: FixedTz, window_start: i64) -> i64 {
    let t = Timestamp::from_secs(window_start);
    match acc {
        Accumulation::Period => window_start,
        Accumulation::Day => tz.day_start(t),
        Accumulation::Month => tz.month_start(t),
    }
}

/// Whether a step plan accumulates across records at all.
pub fn accumulates(pricing: &Pricing) -> Option<Accumulation> {
    match pricing {
        Pricing::Graduated { accumulation, .. } => Some(*accumulation),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
