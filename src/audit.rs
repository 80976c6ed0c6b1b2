//! The conservation audit (design §5): per instance,
//! Σ acknowledged event quantities = Σ sealed record values + usage in open windows + carried
//! remainder + unbillable + over_quota. Tests check it after any sequence of faults; `status`
//! reports it. The carried remainder includes what each of the instance's packages carries
//! (stop-before-excess records carry per package); `over_quota` is stop-before-excess usage
//! that no package covered, acknowledged and never billed.
//!
//! The event side of the balance follows the instance's plan aggregation (issue 14): for `sum`
//! it is Σ quantity; for `count` it is the number of stored events (each bills 1, whatever its
//! quantity). For the point aggregations (`max`, `latest`, `unique_count`), which carry nothing,
//! the check is per window: every sealed window's record equals the aggregation recomputed from
//! the window's stored events, floored to 4 decimals (and capped as a record is);
//! `event_total` is then the sum of the recomputed values and `mismatched_windows` counts the
//! windows that differ. For `weighted_sum` ([`crate::model::weighted`]), which carries in
//! unit·seconds, the check is per record and chained: each record's integral is recomputed
//! from the events (seq ≤ the record's `seen_seq`) and status changes (the first
//! `seen_changes`) its seal saw, over the record's own period; value × 3600 + carry-out must
//! equal that integral + carry-in, and each carry-in the previous record's carry-out (0 for the
//! first). A record that breaks any of these counts in `mismatched_windows`. Its balance is in
//! unit·seconds: `event_total` = Σ recomputed integrals, `sealed` = Σ values × 3600,
//! `carried` and `unbillable` the instance's (unit·seconds for these instances), `open` 0 (an
//! open window's integral is not fixed until it closes). [`balances`] assumes `sum` for every instance (it has no config);
//! callers that have the config use [`balances_with`] with [`rule_of`].
//!
//! Beside the balance, the audit reports carried usage that no record can ever bill
//! ([`stranded`], issue 12): the carry of an instance released and sealed through its release,
//! or the carry of a package whose validity ended before the seal cursor. It should always be 0
//! (sealing and `instance release` move such usage to `unbillable`); `status` lists any.

use crate::model::{point_value, Aggregation, Package, Quantity, Timestamp, MAX_RECORD_VALUE};
use crate::store::sql::Tx;
use crate::store::{events, instances, packages, records, windows, InstanceRow, Store, StoreError};
use rust_decimal::Decimal;
use serde::Serialize;

/// One instance's balance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Balance {
    pub instance_id: String,
    /// The plan's aggregation, which decides what `event_total` is.
    pub aggregation: Aggregation,
    pub events: u64,
    /// What the acknowledged events bill in total: Σ quantity (`sum`), or `events` (`count`).
    #[serde(with = "rust_decimal::serde::str")]
    pub event_total: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub sealed: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub open: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub carried: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub unbillable: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub over_quota: Decimal,
    /// The part of `carried` that no record can ever bill (see [`stranded`]); should be 0.
    #[serde(with = "rust_decimal::serde::str")]
    pub stranded: Decimal,
    /// Point plans: sealed windows whose record differs from the recomputed value; should be 0.
    pub mismatched_windows: u64,
}

impl Balance {
    /// Whether every acknowledged unit is accounted for exactly once.
    pub fn holds(&self) -> bool {
        self.mismatched_windows == 0 && self.event_total == self.sealed + self.open + self.carried + self.unbillable + self.over_quota
    }

    /// Whether nothing carried is stranded (every carry can still end in a record).
    pub fn settled(&self) -> bool {
        self.stranded.is_zero()
    }
}

/// Carried usage of `inst` (with its packages `pkgs`) that no record can ever bill: everything
/// carried once the instance is released and its cursor is at or past the release; before that,
/// the carries of packages whose validity ended at or before the cursor (a record must overlap
/// its package's validity, and every window before the cursor is sealed).
pub fn stranded(inst: &InstanceRow, pkgs: &[Package]) -> Decimal {
    let cursor = Timestamp::from_secs(inst.sealed_until);
    let through = inst.release.is_some_and(|r| r <= cursor);
    let pkg: Decimal = pkgs.iter().filter(|p| through || p.to <= cursor).map(|p| p.carry).sum();
    if through {
        inst.carry + pkg
    } else {
        pkg
    }
}

/// The check the audit runs for a plan of `agg`, as `status` names it.
pub fn check_name(agg: Aggregation) -> &'static str {
    match agg {
        Aggregation::Sum => "events = records + open + carried + unbillable + over_quota (quantities)",
        Aggregation::Count => "events = records + open + carried + unbillable + over_quota (event counts)",
        Aggregation::WeightedSum => {
            "every sealed window's record × 3600 + carry-out = its level integral recomputed from the events and status changes its seal saw + carry-in, carry-in = the previous record's carry-out; Σ integrals = Σ records × 3600 + carried + unbillable (unit·seconds)"
        }
        _ => "every sealed window's record = its events recomputed",
    }
}

/// Balances of every instance, from one consistent snapshot, every plan taken as `sum`.
pub fn balances(store: &mut Store) -> Result<Vec<Balance>, StoreError> {
    balances_with(store, &|_| (Aggregation::Sum, None))
}

/// A plan's aggregation and `unique_by` by name, as `cfg` configures it; `(Sum, None)` for a
/// plan no longer configured. The `rule_of` every command with a config passes to
/// [`balances_with`] (`status`, `backup`, `store copy`): taking every plan as `sum` would report
/// every `max`, `count`, `latest`, `unique_count` or `weighted_sum` instance as broken.
pub fn rule_of(cfg: &crate::config::Config) -> impl Fn(&str) -> (Aggregation, Option<String>) + '_ {
    |plan| cfg.plan(plan).map_or((Aggregation::Sum, None), |p| (p.aggregation, p.unique_by.clone()))
}

/// Balances of every instance, from one consistent snapshot; `rule_of` gives a plan's
/// aggregation and `unique_by` by plan name (`(Sum, None)` for a plan no longer configured).
pub fn balances_with(store: &mut Store, rule_of: &dyn Fn(&str) -> (Aggregation, Option<String>)) -> Result<Vec<Balance>, StoreError> {
    store.read(|tx| {
        let mut out = Vec::new();
        let totals = events::totals_all(tx)?;
        let tail = windows::Unfolded::load(tx)?;
        for inst in instances::list(tx)? {
            let pkgs = packages::of_instance(tx, inst.key)?;
            let stranded = stranded(&inst, &pkgs);
            let (n, total) = totals.get(&inst.key).copied().unwrap_or((0, crate::model::Quantity::ZERO));
            let sealed: Decimal = records::of_instance(tx, inst.key, i64::MIN, i64::MAX)?.iter().map(|r| r.usage_value).sum();
            let open: Decimal = windows::of_instance_with(tx, &tail, inst.key, inst.sealed_until, i64::MAX)?.iter().map(|w| w.usage).sum();
            let (aggregation, unique_by) = rule_of(&inst.plan);
            if aggregation.is_point() {
                out.push(point_balance(tx, &inst, aggregation, unique_by.as_deref(), n)?);
                continue;
            }
            if aggregation.is_level() {
                out.push(level_balance(tx, &inst, n)?);
                continue;
            }
            let event_total = match aggregation {
                Aggregation::Count => Decimal::from(n),
                _ => total.0,
            };
            out.push(Balance {
                instance_id: inst.instance_id,
                aggregation,
                events: n,
                event_total,
                sealed,
                open,
                carried: inst.carry + pkgs.iter().map(|p| p.carry).sum::<Decimal>(),
                unbillable: inst.unbillable,
                over_quota: packages::over_quota(tx, inst.key)?,
                stranded,
                mismatched_windows: 0,
            });
        }
        Ok(out)
    })
}

/// The per-window check of a point plan's instance (see the module docs).
fn point_balance(tx: &Tx<'_>, inst: &InstanceRow, agg: Aggregation, unique_by: Option<&str>, events: u64) -> Result<Balance, StoreError> {
    let (mut recomputed, mut sealed, mut mismatched) = (Decimal::ZERO, Decimal::ZERO, 0);
    for r in records::of_instance(tx, inst.key, i64::MIN, i64::MAX)? {
        let exact = point_value(agg, &crate::store::points::window_events(tx, inst.key, r.window_start, unique_by)?);
        let value = Quantity(exact).floor_4dp().0 .0.min(MAX_RECORD_VALUE);
        if value != r.usage_value {
            mismatched += 1;
        }
        recomputed += value;
        sealed += r.usage_value;
    }
    Ok(Balance {
        instance_id: inst.instance_id.clone(),
        aggregation: agg,
        events,
        event_total: recomputed,
        sealed,
        open: Decimal::ZERO,
        carried: Decimal::ZERO,
        unbillable: Decimal::ZERO,
        over_quota: Decimal::ZERO,
        stranded: Decimal::ZERO,
        mismatched_windows: mismatched,
    })
}

/// The chained per-record check of a level plan's instance, in unit·seconds (see the module
/// docs).
fn level_balance(tx: &crate::store::sql::Tx<'_>, inst: &InstanceRow, events: u64) -> Result<Balance, StoreError> {
    use crate::model::weighted as level;
    use crate::store::{levels, lifecycle};
    let history = lifecycle::history(tx, inst.key)?;
    let (mut integrals, mut sealed, mut mismatched, mut prev_carry) = (Decimal::ZERO, Decimal::ZERO, 0, Decimal::ZERO);
    for r in levels::sealed_of_instance(tx, inst.key)? {
        let Some((seq, changes)) = r.seen else {
            mismatched += 1;
            continue;
        };
        let seen_history = lifecycle::History(history.0.iter().take(changes.max(0) as usize).copied().collect());
        let frozen = levels::frozen_secs(&seen_history);
        let before = levels::level_before(tx, inst.key, r.window_start, seq)?;
        let evs: Vec<level::LevelEvent> =
            levels::events_between(tx, inst.key, r.window_start, r.window_start + 1, seq)?.into_iter().map(|(_, e)| e).collect();
        let integral = level::integral(before, &evs, r.begin, r.end, &frozen)?;
        let cut = level::cut(integral, r.carry_in)?;
        if integral != r.integral || r.carry_in != prev_carry || cut.value != r.value || cut.carry_out != r.carry_out {
            mismatched += 1;
        }
        prev_carry = r.carry_out;
        let overflow = || StoreError::Corrupt(format!("the level integrals of instance {:?} overflow a decimal", inst.instance_id));
        integrals = integrals.checked_add(integral).ok_or_else(overflow)?;
        sealed = r.value.checked_mul(Decimal::from(3600)).and_then(|v| sealed.checked_add(v)).ok_or_else(overflow)?;
    }
    Ok(Balance {
        instance_id: inst.instance_id.clone(),
        aggregation: Aggregation::WeightedSum,
        events,
        event_total: integrals,
        sealed,
        open: Decimal::ZERO,
        carried: inst.carry,
        unbillable: inst.unbillable,
        over_quota: Decimal::ZERO,
        stranded: Decimal::ZERO,
        mismatched_windows: mismatched,
    })
}
