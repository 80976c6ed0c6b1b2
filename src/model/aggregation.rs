//! How a plan turns a window's events into the window's value (issue 14): [`Aggregation`].
//!
//! Where a window's value lives depends on whether the aggregation is *additive*:
//! - `sum` and `count` are additive. Each accepted event contributes a fixed amount (its
//!   quantity, or 1) decided at ingest — its *billing quantity* ([`Aggregation::billing_quantity`])
//!   — so they share everything `sum` has: the lazily folded `windows` totals
//!   (`store::windows`), `late = "carry"` / `"reject"`, the 4-decimal floor with the remainder
//!   carried, and stop-before-excess packages drawn at ingest (a `count` event draws 1). The
//!   `windows` table then holds counts for `count` plans, and `billed_qty` keeps the billing
//!   quantity of an event whose quantity differs from it, so the unfolded tail sums the same.
//! - `max`, `latest`, `unique_count` and `weighted_sum` are not additive: a window's value is
//!   recomputed at seal from the stored events of that window (the events table keeps each
//!   event's time, quantity and properties), never kept at ingest. They are accepted by this
//!   type but refused at config load until the seal side of them exists
//!   ([`Aggregation::supported`]), so no plan is silently billed by `sum`.
//!
//! `sum` stays byte for byte what it was: the hot path branches once per event on a `Copy`
//! enum and does no other work for it.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A plan's `aggregation` (issue 14). Default [`Aggregation::Sum`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Σ quantity of the window's events.
    #[default]
    Sum,
    /// Number of the window's stored events (after dedupe); each event counts 1 whatever its
    /// quantity.
    Count,
    /// The largest quantity in the window.
    Max,
    /// The quantity of the window's event with the greatest time (ties: greatest id, byte order).
    Latest,
    /// Distinct values of the event property named by the plan's `unique_by`.
    UniqueCount,
    /// Time integral of a level, in unit·hours.
    WeightedSum,
}

impl Aggregation {
    /// Every value, in the order the docs list them.
    pub const ALL: [Aggregation; 6] =
        [Aggregation::Sum, Aggregation::Count, Aggregation::Max, Aggregation::Latest, Aggregation::UniqueCount, Aggregation::WeightedSum];

    /// The name written in `meterd.toml` (`"sum"`, `"unique_count"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::Sum => "sum",
            Aggregation::Count => "count",
            Aggregation::Max => "max",
            Aggregation::Latest => "latest",
            Aggregation::UniqueCount => "unique_count",
            Aggregation::WeightedSum => "weighted_sum",
        }
    }

    /// Parses a `meterd.toml` name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Aggregation> {
        Aggregation::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Whether a window's value is the sum of per-event amounts fixed at ingest (`sum`,
    /// `count`): such windows carry remainders and late events, and may draw from
    /// stop-before-excess packages.
    pub fn is_additive(self) -> bool {
        matches!(self, Aggregation::Sum | Aggregation::Count)
    }

    /// Whether this meterd bills plans with this aggregation (the others are refused at config
    /// load with a message saying so).
    pub fn supported(self) -> bool {
        self.is_additive()
    }

    /// What one accepted event adds to its window, for additive aggregations: its quantity
    /// (`sum`) or 1 (`count`). For the others, the quantity (unused by their windows).
    #[inline]
    pub fn billing_quantity(self, quantity: Decimal) -> Decimal {
        match self {
            Aggregation::Count => Decimal::ONE,
            _ => quantity,
        }
    }

    /// Serde helper: `sum` is left out of serialized plans, so they stay byte for byte as before.
    pub fn is_sum(&self) -> bool {
        *self == Aggregation::Sum
    }
}

impl std::fmt::Display for Aggregation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Aggregation::ALL {
            assert_eq!(Aggregation::parse(a.as_str()), Some(a));
        }
        assert_eq!(Aggregation::parse("avg"), None);
        assert_eq!(Aggregation::default(), Aggregation::Sum);
    }

    #[test]
    fn count_bills_one_per_event() {
        let q: Decimal = "12.5".parse().unwrap();
        assert_eq!(Aggregation::Count.billing_quantity(q), Decimal::ONE);
        assert_eq!(Aggregation::Count.billing_quantity(Decimal::ZERO), Decimal::ONE);
        assert_eq!(Aggregation::Sum.billing_quantity(q), q);
    }
}
