//! Table tests of the pure steps of [`super::decide`]: the key lookup's outcome, the rules
//! ([`admit`]) and where the usage goes ([`place`]).

use super::*;
use crate::model::{Aggregation, Quantity};
use crate::store::lifecycle::Status;

const HOUR: i64 = 3_600;
/// 2026-11-23T00:00:00Z.
const DAY0: i64 = 1_795_392_000;

fn cfg() -> Config {
    Config::from_toml_str(crate::config::EXAMPLE_CONFIG).expect("the example config is valid")
}

/// The example's hourly `calls` plan with `agg`.
fn plan(cfg: &Config, agg: Aggregation) -> Plan {
    let mut p = cfg.plan("calls").expect("the example has `calls`").clone();
    p.aggregation = agg;
    p
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_secs(secs)
}

fn ev(time: i64, quantity: &str) -> EventInput {
    EventInput::new("e-1", "i-1", Quantity(quantity.parse().expect("a decimal")), at(time))
}

/// An instance started at DAY0, sealed until `sealed_until`, released at `release`.
fn ctx(plan: Option<Plan>, sealed_until: i64, release: Option<i64>, history: History) -> InstanceCtx {
    InstanceCtx {
        row: InstanceRow {
            key: 1,
            instance_id: "i-1".into(),
            plan: "calls".into(),
            start: at(DAY0),
            release: release.map(at),
            sealed_until,
            carry: Decimal::ZERO,
            unbillable: Decimal::ZERO,
        },
        history,
        plan,
        new_unbillable: Decimal::ZERO,
        new_late: 0,
        new_late_change: Decimal::ZERO,
        quota: None,
    }
}

#[test]
fn the_lookup_decides_duplicates_and_conflicts_before_any_rule() {
    let e = ev(DAY0, "2");
    assert_eq!(after_lookup(InsertOutcome::Inserted, &e, None), None);
    assert_eq!(after_lookup(InsertOutcome::Duplicate, &e, None), Some(Verdict::Duplicate));
    let conflict = InsertOutcome::Conflict { stored_quantity: Quantity(Decimal::ONE), stored_time: at(DAY0), stored_properties: None };
    let Some(Verdict::Rejected { id, error, reason }) = after_lookup(conflict, &e, None) else { panic!("a conflict is refused") };
    assert_eq!(reason, RejectReason::Conflict);
    assert_eq!(id, "e-1");
    assert!(error.contains("already stored with quantity 1") && error.contains("this one has quantity 2"), "{error}");
    assert!(!error.contains("properties"), "properties are named only when they differ: {error}");
    let conflict = InsertOutcome::Conflict {
        stored_quantity: Quantity(Decimal::TWO),
        stored_time: at(DAY0),
        stored_properties: Some("{\"a\":1}".into()),
    };
    let Some(Verdict::Rejected { error, .. }) = after_lookup(conflict, &e, None) else { panic!("a conflict is refused") };
    assert!(error.contains("and properties {\"a\":1}") && error.contains("and properties none"), "{error}");
}

/// One row of [`admit_applies_the_rules_in_order`]'s table.
type Case = (i64, i64, Option<i64>, History, Result<Option<i64>, &'static str>);

#[test]
fn admit_applies_the_rules_in_order() {
    let cfg = cfg();
    let sum = plan(&cfg, Aggregation::Sum);
    let now = at(DAY0 + 10 * HOUR);
    let frozen = History(vec![(at(DAY0 + 2 * HOUR), Status::Freeze), (at(DAY0 + 3 * HOUR), Status::Unfreeze)]);
    // (event time, sealed until, release, history, expected: Ok(window) or Err(words))
    let table: Vec<Case> = vec![
        (DAY0 + 5 * HOUR + 7, DAY0, None, History::default(), Ok(Some(DAY0 + 5 * HOUR))),
        (DAY0 + 11 * HOUR, DAY0, None, History::default(), Err("ahead of now")),
        (DAY0 - 30 * 86_400, DAY0, None, History::default(), Err("older than")),
        (DAY0 - 60, DAY0, None, History::default(), Err("before the instance's start")),
        (DAY0 + 4 * HOUR, DAY0, Some(DAY0 + 4 * HOUR), History::default(), Err("at or after the instance's release")),
        (DAY0 + 2 * HOUR + 1, DAY0, None, frozen.clone(), Err("frozen")),
        (DAY0 + 3 * HOUR, DAY0, None, frozen, Ok(Some(DAY0 + 3 * HOUR))),
        // Late (`late = "carry"`): billed in the first unsealed window.
        (DAY0 + HOUR, DAY0 + 4 * HOUR, None, History::default(), Ok(Some(DAY0 + 4 * HOUR))),
        // Late usage of a released, fully sealed instance: unbillable.
        (DAY0 + HOUR, DAY0 + 4 * HOUR, Some(DAY0 + 4 * HOUR), History::default(), Ok(None)),
    ];
    for (time, sealed, release, history, want) in table {
        let got = admit(&cfg, &ctx(Some(sum.clone()), sealed, release, history), &ev(time, "1"), now);
        match (want, &got) {
            (Ok(w), Ok(g)) => assert_eq!(*g, w, "event at {time}"),
            (Err(words), Err(r)) => assert!(r.message.contains(words), "event at {time}: {r:?} should say {words:?}"),
            (want, got) => panic!("event at {time}: expected {want:?}, got {got:?}"),
        }
    }
    let mut reject = cfg.clone();
    reject.collector.late = LatePolicy::Reject;
    let got = admit(&reject, &ctx(Some(sum.clone()), DAY0 + 4 * HOUR, None, History::default()), &ev(DAY0 + HOUR, "1"), now);
    assert!(got.as_ref().is_err_and(|r| r.message.contains("already sealed")), "{got:?}");
    let got = admit(&cfg, &ctx(None, DAY0, None, History::default()), &ev(DAY0 + HOUR, "1"), now);
    assert!(got.as_ref().is_err_and(|r| r.message.contains("not in the config")), "{got:?}");
    let mut metric = ev(DAY0 + HOUR, "1");
    metric.metric = Some("other".into());
    let got = admit(&cfg, &ctx(Some(sum), DAY0, None, History::default()), &metric, now);
    assert!(got.as_ref().is_err_and(|r| r.message.contains("does not match the billing factor")), "{got:?}");
}

#[test]
fn place_puts_usage_where_the_aggregation_bills_it() {
    let cfg = cfg();
    let (w, t) = (DAY0 + 5 * HOUR, DAY0 + 5 * HOUR + 7);
    let d = |s: &str| s.parse::<Decimal>().expect("a decimal");
    // (aggregation, billed window, quantity, placement)
    let table = [
        (Aggregation::Sum, Some(w), "2.5", Placement::Window { window: w, amount: d("2.5") }),
        (Aggregation::Count, Some(w), "2.5", Placement::Window { window: w, amount: Decimal::ONE }),
        // Late usage billed in a later window keeps its amount.
        (Aggregation::Sum, Some(w + HOUR), "2", Placement::Window { window: w + HOUR, amount: d("2") }),
        (Aggregation::Sum, None, "2", Placement::Unbillable { amount: d("2") }),
        (Aggregation::Count, None, "2", Placement::Unbillable { amount: Decimal::ONE }),
        (Aggregation::Max, Some(w), "3", Placement::PointOpen { window: w, billed_qty: Some(Decimal::ZERO) }),
        (Aggregation::Latest, Some(w), "0", Placement::PointOpen { window: w, billed_qty: None }),
        (Aggregation::UniqueCount, Some(w + HOUR), "1", Placement::PointLate),
        (Aggregation::Max, None, "3", Placement::PointLate),
        (Aggregation::WeightedSum, Some(w), "3", Placement::Level),
        (Aggregation::WeightedSum, None, "3", Placement::Level),
    ];
    for (agg, billed, q, want) in table {
        assert_eq!(place(&cfg, &plan(&cfg, agg), billed, &ev(t, q)), want, "{agg} billed {billed:?} quantity {q}");
    }
}
