//! Preview: what each record (and each open window so far) will cost, before anything is sent.
//!
//! One row per instance and window: sealed records with their delivery state, then open
//! windows (not yet sealed) with the usage so far. Step charges accumulate in time order over
//! the accumulation period, counting every earlier record of the period — also ones already
//! delivered and ones before `from` — so the preview shows what the store will bill.

pub mod html;

use crate::config::Config;
use crate::model::Timestamp;
use crate::pricing;
use crate::store::records::{self, RecordState};
use crate::store::{instances, windows, InstanceRow, Store, StoreError};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// Which rows to show: window start in `[from, to)`, optionally one instance.
#[derive(Debug, Clone, Default)]
pub struct PreviewQuery {
    pub instance: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

/// One window of one instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreviewRow {
    pub instance_id: String,
    pub plan: String,
    pub begin_time: Timestamp,
    pub end_time: Timestamp,
    /// `open|sealed|sending|delivered|rejected|zero`.
    pub state: &'static str,
    #[serde(with = "rust_decimal::serde::str")]
    pub usage: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub charge: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub charge_2dp: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metering_sn: Option<String>,
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
    /// Late usage of a released instance that no record can bill.
    #[serde(with = "rust_decimal::serde::str")]
    pub unbillable: Decimal,
    /// Remainder below 0.0001 (or capped excess) waiting for the next record.
    #[serde(with = "rust_decimal::serde::str")]
    pub carried: Decimal,
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
        let mut all = instances::list(tx)?;
        if let Some(id) = &q.instance {
            all.retain(|i| &i.instance_id == id);
            if all.is_empty() {
                return Err(StoreError::Invalid(format!("instance {id:?} is not registered")));
            }
        }
        let mut out = Preview { rows: Vec::new(), instances: Vec::new(), totals: Vec::new() };
        for inst in &all {
            instance_rows(tx, cfg, inst, q, &mut out)?;
        }
        let mut by_cur: BTreeMap<String, Decimal> = BTreeMap::new();
        for t in &out.instances {
            *by_cur.entry(t.currency.clone()).or_default() += t.charge;
        }
        out.totals = by_cur
            .into_iter()
            .map(|(currency, charge)| CurrencyTotal { currency, charge, charge_2dp: pricing::truncate_2dp(charge) })
            .collect();
        Ok(out)
    })
}

/// (window start, begin, end, state, usage, sn) before pricing.
struct Raw {
    window: i64,
    begin: i64,
    end: i64,
    state: &'static str,
    usage: Decimal,
    sn: Option<String>,
}

fn instance_rows(
    tx: &rusqlite::Connection,
    cfg: &Config,
    inst: &InstanceRow,
    q: &PreviewQuery,
    out: &mut Preview,
) -> Result<(), StoreError> {
    let Some(plan) = cfg.plan(&inst.plan) else {
        return Err(StoreError::Invalid(format!("instance {:?} uses plan {:?}, which is not in the config", inst.instance_id, inst.plan)));
    };
    let from = q.from.map_or(i64::MIN, |t| t.secs());
    let to = q.to.map_or(i64::MAX, |t| t.secs());
    // Step pricing needs every earlier row of the accumulation period that holds `from`.
    let load_from = match pricing::accumulates(&plan.pricing) {
        Some(acc) if from != i64::MIN => pricing::accumulation_start(acc, cfg.timezone, from),
        _ => from,
    };
    let mut raw: Vec<Raw> = records::of_instance(tx, inst.key, load_from, to)?
        .into_iter()
        .map(|r| Raw {
            window: r.window_start,
            begin: r.begin,
            end: r.end,
            state: match r.state {
                RecordState::Pending => "sealed",
                s => s.as_str(),
            },
            usage: r.usage_value,
            sn: Some(r.metering_sn),
        })
        .collect();
    for w in windows::of_instance(tx, inst.key, inst.sealed_until.max(load_from), to)? {
        let end = cfg.timezone.window_end(plan.period, w.start);
        let end = inst.release.map_or(end, |r| end.min(r.secs()));
        raw.push(Raw { window: w.start, begin: w.start.max(inst.start.secs()), end, state: "open", usage: w.usage, sn: None });
    }
    raw.sort_by_key(|r| (r.window, r.begin));
    let mut total = InstanceTotal {
        instance_id: inst.instance_id.clone(),
        plan: plan.name.clone(),
        currency: plan.currency.clone(),
        unit: plan.unit.clone(),
        usage: Decimal::ZERO,
        charge: Decimal::ZERO,
        charge_2dp: Decimal::ZERO,
        unbillable: inst.unbillable,
        carried: inst.carry,
    };
    let mut acc: Option<(i64, Decimal)> = None;
    for r in raw {
        let before = match pricing::accumulates(&plan.pricing) {
            Some(a) => {
                let key = pricing::accumulation_start(a, cfg.timezone, r.window);
                match acc {
                    Some((k, b)) if k == key => b,
                    _ => Decimal::ZERO,
                }
            }
            None => Decimal::ZERO,
        };
        let charge = pricing::charge(&plan.pricing, before, r.usage).ok_or_else(|| StoreError::Invalid("charge overflows".into()))?;
        if let Some(a) = pricing::accumulates(&plan.pricing) {
            acc = Some((pricing::accumulation_start(a, cfg.timezone, r.window), before + r.usage));
        }
        if r.window < from {
            continue; // counted for accumulation only
        }
        total.usage += r.usage;
        total.charge += charge;
        out.rows.push(PreviewRow {
            instance_id: inst.instance_id.clone(),
            plan: plan.name.clone(),
            begin_time: Timestamp::from_secs(r.begin),
            end_time: Timestamp::from_secs(r.end),
            state: r.state,
            usage: r.usage,
            charge,
            charge_2dp: pricing::truncate_2dp(charge),
            metering_sn: r.sn,
        });
    }
    total.charge_2dp = pricing::truncate_2dp(total.charge);
    out.instances.push(total);
    Ok(())
}
