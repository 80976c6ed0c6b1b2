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
//! - `max`, `latest` and `unique_count` are *point* aggregations: a window's value is
//!   recomputed at seal from the stored events of that window ([`point_value`], pure), never
//!   kept at ingest — so no per-event work is added to any plan's hot path, a duplicate can
//!   never count twice (it is never stored twice), and the audit can recompute every sealed
//!   window the same way. At ingest such an event is stored with its own window in
//!   `billed_window` and a billed part of 0 (so `windows` knows the window has events, usage 0,
//!   and the seal visits it), plus one row in `window_events` (instance, window, seq) — the
//!   index the seal and the audit read a window's events by; only these plans write it.
//!   Values are floored to 4 decimals per window and nothing is carried (they are not
//!   additive); the dropped part is the record's `carry_out`, shown by `status`, never carried.
//!   A late event (its window already sealed) is stored and acknowledged but billed nowhere
//!   (`billed_window` NULL): the ingest result lists it, and `instances.late_unbilled` counts
//!   it for `status`, preview and `/metrics`.
//!
//!   **Memory: meterd holds nothing per open window**, for any aggregation. At ingest a point
//!   event is rows in the store — `events`, its canonical properties in `event_props`, its
//!   window in `window_events` — and the writer keeps no maximum, latest value or set of
//!   distinct values, so neither open windows nor distinct `unique_by` values grow the
//!   process. Memory is taken only while one window is read — when the seal closes it, when
//!   preview shows it open, when the audit recomputes it — one window at a time, freed before
//!   the next: every stored event of that window as a [`PointEvent`] (72 bytes + its `id` +,
//!   for `unique_count`, its `unique_by` value), and for `unique_count` a set of the distinct
//!   values borrowed from those events. The bench's probe (`benches/pipeline/agg.rs`) measures
//!   it: see the README's aggregation section for the figures.
//! - `weighted_sum` is a *level* aggregation (see [`crate::model::weighted`] for the rule and its
//!   arithmetic): a window's value is the time integral of the level the instance's events set,
//!   so it depends on events before the window too and bills windows without events. Its
//!   events are stored like a point plan's — billed part 0, indexed in `window_events` by their
//!   own window, late ones included (they set the level of the windows not sealed yet) — and a
//!   seal visits every window up to its cursor, reading the level at the first one from the
//!   last earlier indexed event. Its carry is kept in unit·seconds (`instances.carry` and the
//!   records' `carry_in`/`carry_out`/`window_usage` of such plans are unit·seconds), and each of
//!   its records keeps the highest event seq and the number of status changes its seal saw
//!   (`records.seen_seq`, `seen_changes`), so the audit recomputes exactly what was billed.
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

    /// Whether a window's value is recomputed at seal from the window's events (`max`,
    /// `latest`, `unique_count`): no carry, late events billed nowhere.
    pub fn is_point(self) -> bool {
        matches!(self, Aggregation::Max | Aggregation::Latest | Aggregation::UniqueCount)
    }

    /// Whether a window's value is the time integral of a level (`weighted_sum`): carried in
    /// unit·seconds, every window billed, late events change the windows not yet sealed.
    pub fn is_level(self) -> bool {
        self == Aggregation::WeightedSum
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

/// One stored event of a point window, as [`point_value`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointEvent {
    /// Event time, UTC nanoseconds.
    pub time_ns: i64,
    pub id: String,
    pub quantity: Decimal,
    /// The value of the plan's `unique_by` property (`unique_count` only).
    pub unique: Option<String>,
}

/// The exact value of a point window from its stored events (before the 4-decimal floor):
/// `max` the largest quantity; `latest` the quantity of the event with the greatest time, ties
/// broken by the greatest id in byte order; `unique_count` the number of distinct `unique`
/// values (an event without one is not counted; ingest refuses such events). 0 for no events.
/// For the additive aggregations, their own rule (Σ quantity, number of events), so the audit
/// can use one function.
pub fn point_value(agg: Aggregation, events: &[PointEvent]) -> Decimal {
    match agg {
        Aggregation::Sum | Aggregation::WeightedSum => events.iter().map(|e| e.quantity).sum(),
        Aggregation::Count => Decimal::from(events.len()),
        Aggregation::Max => events.iter().map(|e| e.quantity).max().unwrap_or(Decimal::ZERO),
        Aggregation::Latest => events
            .iter()
            .max_by(|a, b| (a.time_ns, a.id.as_bytes()).cmp(&(b.time_ns, b.id.as_bytes())))
            .map_or(Decimal::ZERO, |e| e.quantity),
        Aggregation::UniqueCount => {
            let distinct: std::collections::HashSet<&str> = events.iter().filter_map(|e| e.unique.as_deref()).collect();
            Decimal::from(distinct.len())
        }
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

    fn ev(t: i64, id: &str, q: &str, u: Option<&str>) -> PointEvent {
        PointEvent { time_ns: t, id: id.into(), quantity: q.parse().unwrap(), unique: u.map(str::to_string) }
    }

    #[test]
    fn point_values() {
        let seats: Vec<PointEvent> = (0..6).map(|i| ev(i * 600, &format!("s{i}"), "5", None)).collect();
        assert_eq!(point_value(Aggregation::Max, &seats), Decimal::from(5), "six reports of 5 seats bill 5");
        assert_eq!(point_value(Aggregation::Sum, &seats), Decimal::from(30));
        let evs = [ev(10, "a", "3", Some("u1")), ev(30, "b", "7.5", Some("u2")), ev(30, "a2", "1", Some("u1")), ev(20, "c", "9", None)];
        assert_eq!(point_value(Aggregation::Max, &evs), "9".parse().unwrap());
        // Time 30 twice: the greater id in byte order ("b" > "a2") wins.
        assert_eq!(point_value(Aggregation::Latest, &evs), "7.5".parse().unwrap());
        assert_eq!(point_value(Aggregation::UniqueCount, &evs), Decimal::from(2));
        assert_eq!(point_value(Aggregation::Count, &evs), Decimal::from(4));
        for a in Aggregation::ALL {
            assert_eq!(point_value(a, &[]), Decimal::ZERO, "{a}");
        }
    }

    #[test]
    fn count_bills_one_per_event() {
        let q: Decimal = "12.5".parse().unwrap();
        assert_eq!(Aggregation::Count.billing_quantity(q), Decimal::ONE);
        assert_eq!(Aggregation::Count.billing_quantity(Decimal::ZERO), Decimal::ONE);
        assert_eq!(Aggregation::Sum.billing_quantity(q), q);
    }
}
