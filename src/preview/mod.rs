//! Preview: what each record (and each open window so far) will cost, before anything is sent.
//!
//! One row per instance and window: sealed records with their delivery state (`pending`,
//! `sending`, `delivered`, `rejected`, `zero`: the record states of `status`), then open windows
//! (`open`: not yet sealed, whether or not their end has passed) with the usage so far. Step charges accumulate in time order over
//! the accumulation period, counting every earlier record of the period — also ones already
//! delivered and ones before `from` — so the preview shows what the store will bill.
//!
//! The preview prices what the store will charge per use, and only that ([`price`]): a record
//! the store rejected (or that expired) costs nothing and adds nothing to step accumulation;
//! nor does a record the store will refuse because a release or freeze reported after its seal
//! contradicts it (`flagged`, with the reason `status` lists it under; issue 12 follow-up).
//!
//! Packages (design §4.2): a stop-before-excess instance shows one row per record (one per
//! package segment, with `relate_pkg_instance`), each with charge 0 and the units it `drawn`
//! from its package (prepaid), its `over_quota` usage (never uploaded) and each package's
//! consumption per reset period. A pay-per-use-package instance shows per row the usage the
//! packages `covered` and is charged for the rest only (rule in [`crate::quota`]).
//!
//! Every query is answered, never a panic: a range ending before an instance's seal cursor
//! shows its records up to `to`; an empty range shows no rows. An inverted range (`from`
//! after `to`) is refused by [`PreviewQuery::new`] with a [`RangeError`], the error the CLI
//! (exit 2) and `GET /v1/preview` (400) show; a query built by hand with an inverted range
//! simply holds no windows.
//!
//! A finished instance (released and sealed through its release) whose plan was removed from
//! the config — allowed by [`crate::settings`] — cannot be priced: a preview of every instance
//! leaves it out with a warning (so one retired plan never breaks everyone's preview), and
//! `--instance` on it is an error that names the plan.

pub mod html;
mod level;
pub mod price;

use crate::config::{Config, PackageMode, Plan};
use crate::model::{FixedTz, Timestamp};
use crate::pricing;
use crate::quota;
use crate::store::records::{self, RecordState};
use crate::store::sql::Tx;
use crate::store::{instances, lifecycle, lifecycle_flags, packages, windows, InstanceRow, Store, StoreError};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// Which rows to show: window start in `[from, to)`, optionally one instance.
#[derive(Debug, Clone, Default)]
pub struct PreviewQuery {
    pub instance: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// The time open `weighted_sum` windows are integrated up to (see `preview::level`); `None`
    /// shows none of them.
    pub now: Option<Timestamp>,
}

/// A range that cannot hold any window because it ends before it begins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the range is inverted: from {from} is after to {to}; give a `from` at or before `to` (windows starting in [from, to) are shown)")]
pub struct RangeError {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl PreviewQuery {
    /// A query for windows starting in `[from, to)`; `from == to` is a valid empty range.
    /// Errors when `from` is after `to`.
    pub fn new(instance: Option<String>, from: Option<Timestamp>, to: Option<Timestamp>) -> Result<PreviewQuery, RangeError> {
        match (from, to) {
            (Some(from), Some(to)) if from > to => Err(RangeError { from, to }),
            _ => Ok(PreviewQuery { instance, from, to, now: None }),
        }
    }

    /// The same query, with open `weighted_sum` windows integrated up to `now`.
    pub fn at(self, now: Timestamp) -> PreviewQuery {
        PreviewQuery { now: Some(now), ..self }
    }
}

/// One window of one instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreviewRow {
    pub instance_id: String,
    pub plan: String,
    pub begin_time: Timestamp,
    pub end_time: Timestamp,
    /// The window's state: `open` (not sealed yet: usage so far) or its record's delivery
    /// state — `pending` (sealed, waiting for upload), `sending` (in a batch being uploaded),
    /// `delivered`, `rejected` (refused by the store or expired; see `meterd rejected`) or
    /// `zero` (value 0, never sent).
    pub state: &'static str,
    #[serde(with = "rust_decimal::serde::str")]
    pub usage: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub charge: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub charge_2dp: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metering_sn: Option<String>,
    /// The package a stop-before-excess record is deducted from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relate_pkg_instance: Option<String>,
    /// Pay-per-use packages: the part of `usage` the packages cover (not charged).
    #[serde(skip_serializing_if = "Option::is_none", with = "rust_decimal::serde::str_option")]
    pub covered: Option<Decimal>,
    /// Stop-before-excess: the units this row draws from its package (prepaid, so `charge`
    /// is 0); 0 for a record the store rejected.
    #[serde(skip_serializing_if = "Option::is_none", with = "rust_decimal::serde::str_option")]
    pub drawn: Option<Decimal>,
    /// Why the store will refuse this sealed record, when a release or freeze reported after
    /// its seal contradicts it (the reason `status` lists it under `flagged_records` with,
    /// rule in `store::lifecycle_flags`): its `charge` is 0, as a rejected record's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flagged: Option<String>,
}

/// Totals of one instance over the rows shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceTotal {
    pub instance_id: String,
    pub plan: String,
    pub currency: String,
    pub unit: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub usage: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub charge: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub charge_2dp: Decimal,
    /// Late usage of a released instance that no record can bill (`weighted_sum`: the carry
    /// left at the release, kept in unit·seconds, shown in unit·hours to 9 decimals), plus the
    /// usage of open windows in the range that begin at or after a release reported late (no
    /// row: the seal bills none of it).
    #[serde(with = "rust_decimal::serde::str")]
    pub unbillable: Decimal,
    /// Remainder below 0.0001 (or capped excess) waiting for the next record (`weighted_sum`:
    /// kept in unit·seconds, shown in unit·hours to 9 decimals).
    #[serde(with = "rust_decimal::serde::str")]
    pub carried: Decimal,
    /// Stop-before-excess usage no package covered: kept, never uploaded.
    #[serde(skip_serializing_if = "Decimal::is_zero", with = "rust_decimal::serde::str")]
    pub over_quota: Decimal,
    /// Events of a `max`/`latest`/`unique_count` plan stored after their window was sealed:
    /// billed nowhere (issue 14). Omitted when 0.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub late_unbilled: u64,
    /// `weighted_sum` plans: what events stored after their window was sealed would have
    /// changed in the sealed windows, in the plan's unit·hours (signed, rounded to 4
    /// decimals); never billed. Omitted when 0.
    #[serde(skip_serializing_if = "Decimal::is_zero", with = "rust_decimal::serde::str")]
    pub late_unbilled_change: Decimal,
    /// Each package's consumption per reset period.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<crate::quota::PeriodUse>,
}

/// Grand total per currency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurrencyTotal {
    pub currency: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub charge: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub charge_2dp: Decimal,
}

/// The whole preview.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preview {
    pub rows: Vec<PreviewRow>,
    pub instances: Vec<InstanceTotal>,
    pub totals: Vec<CurrencyTotal>,
}

/// Computes the preview from the store.
pub fn preview(store: &mut Store, cfg: &Config, q: &PreviewQuery) -> Result<Preview, StoreError> {
    store.read(|tx| {
        crate::faults::panic_point("preview-in-transaction");
        let mut all = instances::list(tx)?;
        if let Some(id) = &q.instance {
            all.retain(|i| &i.instance_id == id);
            if all.is_empty() {
                return Err(StoreError::NotFound(format!("instance {id:?} is not registered")));
            }
        } else {
            all.retain(|i| priceable(cfg, i));
        }
        // Usage not yet folded into `windows`: one scan, for one instance or all.
        let tail = match &all[..] {
            [one] => windows::Unfolded::load_instance(tx, one.key)?,
            _ => windows::Unfolded::load(tx)?,
        };
        let mut out = Preview { rows: Vec::new(), instances: Vec::new(), totals: Vec::new() };
        for inst in &all {
            instance_rows(tx, cfg, &tail, inst, q, &mut out)?;
        }
        let mut by_cur: BTreeMap<String, Decimal> = BTreeMap::new();
        for t in &out.instances {
            let c = by_cur.entry(t.currency.clone()).or_default();
            *c = c
                .checked_add(t.charge)
                .ok_or_else(|| StoreError::Overflow(format!("the {} total overflows a 96-bit decimal", t.currency)))?;
        }
        out.totals = by_cur
            .into_iter()
            .map(|(currency, charge)| CurrencyTotal { currency, charge, charge_2dp: pricing::truncate_2dp(charge) })
            .collect();
        normalize(&mut out);
        Ok(out)
    })
}

/// Whether an instance is shown when every instance is previewed. A finished instance
/// (released and sealed through its release) whose plan was removed from the config — which the
/// settings check allows ([`crate::settings`]) — cannot be priced, and is left out with a
/// warning so that everyone else's preview still answers; `--instance` names the missing plan.
fn priceable(cfg: &Config, inst: &InstanceRow) -> bool {
    if cfg.plan(&inst.plan).is_some() || !crate::settings::finished(inst) {
        return true;
    }
    tracing::warn!(instance = %inst.instance_id, plan = %inst.plan, "preview leaves out a finished instance whose plan is no longer in the config; add the [[plan]] back to see its records priced");
    false
}

/// Every decimal shown in its shortest form (`80`, not `80.0`; `0`, not `0.000`), so JSON, CSV,
/// table and HTML agree (issue 12, kind 8). `charge_2dp` keeps exactly two decimals: it is the
/// amount in cents as the bill shows it (`80.00`).
fn normalize(p: &mut Preview) {
    for r in &mut p.rows {
        r.usage = r.usage.normalize();
        r.charge = r.charge.normalize();
        r.covered = r.covered.map(|c| c.normalize());
    }
    for t in &mut p.instances {
        for d in [&mut t.usage, &mut t.charge, &mut t.unbillable, &mut t.carried, &mut t.over_quota] {
            *d = d.normalize();
        }
        for u in &mut t.packages {
            u.normalize();
        }
    }
    for t in &mut p.totals {
        t.charge = t.charge.normalize();
    }
}

/// One row before pricing: a record or an open window of one instance. Times in UTC seconds.
#[derive(Debug, Clone, PartialEq)]
struct Raw {
    window: i64,
    begin: i64,
    end: i64,
    state: &'static str,
    usage: Decimal,
    sn: Option<String>,
    pkg: Option<String>,
    /// Why the store will refuse this record (`store::lifecycle_flags`), if it will.
    flagged: Option<String>,
}

/// The label a record in `state` shows in the preview: its delivery state, named as
/// `status` and the README name it. A record waiting for upload is `pending` (every record is
/// sealed; until issue 16 the preview called this one state `sealed`).
fn record_label(state: RecordState) -> &'static str {
    state.as_str()
}

/// One instance's rows, priced ([`price_rows`]), with their sums.
#[derive(Debug, Clone, PartialEq)]
struct Priced {
    rows: Vec<PreviewRow>,
    usage: Decimal,
    charge: Decimal,
}

/// What overflows a 96-bit decimal while pricing one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Charges,
    Totals,
}

/// The shell of one instance's preview: loads its records, open windows, packages and
/// counters (I/O), has [`price_rows`] (pure) price them, and adds the rows and the instance's
/// total to `out`.
fn instance_rows(
    tx: &Tx<'_>,
    cfg: &Config,
    tail: &windows::Unfolded,
    inst: &InstanceRow,
    q: &PreviewQuery,
    out: &mut Preview,
) -> Result<(), StoreError> {
    let Some(plan) = cfg.plan(&inst.plan) else {
        return Err(StoreError::Invalid(format!(
            "instance {:?} uses plan {:?}, which is not in the config; add the [[plan]] back to preview its records",
            inst.instance_id, inst.plan
        )));
    };
    let from = q.from.map_or(i64::MIN, |t| t.secs());
    let to = q.to.map_or(i64::MAX, |t| t.secs());
    // Step pricing needs every earlier row of the accumulation period that holds `from`.
    let payg = plan.package == Some(PackageMode::Payg);
    let load_from = match pricing::accumulates(&plan.pricing) {
        _ if payg => i64::MIN, // coverage draws on every earlier record
        Some(acc) if from != i64::MIN => pricing::accumulation_start(acc, cfg.timezone, from),
        _ => from,
    };
    // A record a release or freeze reported after its seal contradicts is refused by the
    // store: flagged, and charged 0 like a rejected one (`store::lifecycle_flags`).
    let history = lifecycle::history(tx, inst.key)?;
    let mut raw: Vec<Raw> = records::summaries_of_instance(tx, inst.key, load_from, to)?
        .into_iter()
        .map(|r| {
            let judged = lifecycle_flags::judge(inst.release, &history, Timestamp::from_secs(r.begin), Timestamp::from_secs(r.end));
            Raw {
                window: r.window_start,
                begin: r.begin,
                end: r.end,
                state: record_label(r.state),
                flagged: judged.filter(|_| r.state != RecordState::Zero).map(|why| why.to_string()),
                usage: r.usage_value,
                sn: Some(r.metering_sn),
                pkg: r.relate_pkg,
            }
        })
        .collect();
    if plan.aggregation.is_level() {
        for (window, begin, end, usage) in level::open_rows(tx, cfg, plan, inst, q.now, to)? {
            raw.push(Raw { window, begin, end, state: "open", usage, sn: None, pkg: None, flagged: None });
        }
    }
    let point_windows = if plan.aggregation.is_level() {
        Vec::new()
    } else {
        windows::of_instance_with(tx, tail, inst.key, inst.sealed_until.max(load_from), to)?
    };
    // Usage of open windows that lie wholly after a release reported late: the seal gives such
    // a window no record and, sealed through the release, makes its usage `unbillable`
    // (`seal::carry`), so the preview prices none of it and shows it as unbillable already.
    let mut after_release = Decimal::ZERO;
    for w in point_windows {
        let end = cfg.timezone.window_end(plan.period, w.start);
        let end = inst.release.map_or(end, |r| end.min(r.secs()));
        if end <= w.start.max(inst.start.secs()) {
            if !plan.aggregation.is_point() {
                after_release += w.usage;
            }
            continue;
        }
        // A point plan's open window shows its value so far, recomputed as the seal will.
        let usage = if plan.aggregation.is_point() {
            let events = crate::store::points::window_events(tx, inst.key, w.start, plan.unique_by.as_deref())?;
            crate::model::Quantity(crate::model::point_value(plan.aggregation, &events)).floor_4dp().0 .0
        } else {
            w.usage
        };
        raw.push(Raw {
            window: w.start,
            begin: w.start.max(inst.start.secs()),
            end,
            state: "open",
            usage,
            sn: None,
            pkg: None,
            flagged: None,
        });
    }
    raw.sort_by_key(|r| (r.window, r.begin));
    let pkgs = packages::of_instance(tx, inst.key)?;
    let (covered, used) = if payg {
        // A record the store rejected drew nothing from its packages.
        let seen: Vec<(i64, Decimal)> =
            raw.iter().map(|r| (r.begin, if price::is_billed(r.state) && r.flagged.is_none() { r.usage } else { Decimal::ZERO })).collect();
        let (c, u) = quota::payg_cover(&pkgs, cfg.timezone, &seen);
        (Some(c), u)
    } else {
        (None, packages::usage_of_instance(tx, inst.key)?)
    };
    let priced = price_rows(plan, cfg.timezone, &inst.instance_id, from, raw, covered.as_deref()).map_err(|o| match o {
        Overflow::Charges => StoreError::Overflow(format!(
            "the charges of instance {:?} overflow a 96-bit decimal; check plan {:?}'s prices",
            inst.instance_id, plan.name
        )),
        Overflow::Totals => StoreError::Overflow(format!("the totals of instance {:?} overflow a 96-bit decimal", inst.instance_id)),
    })?;
    out.instances.push(InstanceTotal {
        instance_id: inst.instance_id.clone(),
        plan: plan.name.clone(),
        currency: plan.currency.clone(),
        unit: plan.unit.clone(),
        usage: priced.usage,
        charge: priced.charge,
        charge_2dp: pricing::truncate_2dp(priced.charge),
        unbillable: in_plan_unit(plan, inst.unbillable) + after_release,
        carried: in_plan_unit(plan, inst.carry + pkgs.iter().map(|p| p.carry).sum::<Decimal>()),
        over_quota: packages::over_quota(tx, inst.key)?,
        late_unbilled: if plan.aggregation.is_point() { crate::store::points::late_unbilled_of(tx, inst.key)? } else { 0 },
        late_unbilled_change: if plan.aggregation.is_level() {
            crate::model::weighted::hours_shown(crate::store::levels::late_change_of(tx, inst.key)?, 4)
        } else {
            Decimal::ZERO
        },
        packages: quota::periods(&pkgs, &used),
    });
    out.rows.extend(priced.rows);
    Ok(())
}

/// Prices one instance's rows, pure: `raw` in time order, `covered` the pay-per-use packages'
/// coverage of each row (same order), `from` the first window shown (UTC seconds; earlier rows
/// only accumulate step usage). Each row's charge is [`price::charges`] of its
/// [`price::billable`] usage; rows before `from` are left out, as are their usage and charge
/// from the sums. An error says which sum overflowed.
fn price_rows(
    plan: &Plan,
    tz: FixedTz,
    instance_id: &str,
    from: i64,
    raw: Vec<Raw>,
    covered: Option<&[Decimal]>,
) -> Result<Priced, Overflow> {
    let cov = |k: usize| covered.map(|c| c.get(k).copied().unwrap_or_default());
    let billable: Vec<(i64, Decimal)> = raw.iter().enumerate().map(|(k, r)| (r.window, billable(plan, r, cov(k)))).collect();
    let charges = price::charges(&plan.pricing, tz, &billable).ok_or(Overflow::Charges)?;
    let mut out = Priced { rows: Vec::new(), usage: Decimal::ZERO, charge: Decimal::ZERO };
    for (k, (r, charge)) in raw.into_iter().zip(charges).enumerate() {
        if r.window < from {
            continue; // counted for accumulation only
        }
        out.usage = out.usage.checked_add(r.usage).ok_or(Overflow::Totals)?;
        out.charge = out.charge.checked_add(charge).ok_or(Overflow::Totals)?;
        out.rows.push(PreviewRow {
            instance_id: instance_id.to_owned(),
            plan: plan.name.clone(),
            begin_time: Timestamp::from_secs(r.begin),
            end_time: Timestamp::from_secs(r.end),
            state: r.state,
            usage: r.usage,
            charge,
            charge_2dp: pricing::truncate_2dp(charge),
            metering_sn: r.sn,
            drawn: price::drawn(plan.package, r.state, r.usage),
            relate_pkg_instance: r.pkg,
            covered: cov(k),
            flagged: r.flagged,
        });
    }
    Ok(out)
}

/// What the store bills of a row: nothing of a flagged record (it refuses it), else
/// [`price::billable`].
fn billable(plan: &Plan, r: &Raw, covered: Option<Decimal>) -> Decimal {
    if r.flagged.is_some() {
        Decimal::ZERO
    } else {
        price::billable(plan.package, r.state, r.usage, covered)
    }
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// An instance's carry or unbillable amount in the plan's unit: a `weighted_sum` instance keeps
/// them in unit·seconds (see [`crate::model::weighted`]), shown here in unit·hours rounded to 9
/// decimals; other plans' as stored.
fn in_plan_unit(plan: &crate::config::Plan, amount: Decimal) -> Decimal {
    if plan.aggregation.is_level() {
        crate::model::weighted::hours_shown(amount, 9)
    } else {
        amount
    }
}

#[cfg(test)]
#[path = "rows_tests.rs"]
mod tests;
