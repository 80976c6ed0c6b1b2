//! The settings that cut an instance's windows, as this store remembers them (issue 12, kind 7).
//!
//! Window boundaries are decided at ingest (each event keeps the window that bills it) and
//! sealed records are immutable, so the `timezone` (day windows, month accumulation and
//! package resets) and each plan's `period` must not change under stored usage; nor may a plan's
//! `aggregation` (issue 14: a window's value is fixed at ingest for `sum`/`count` and recomputed
//! at seal from the window's events for the others). They live in `meta` under
//! `setting.timezone`, `setting.period.<plan>` and `setting.aggregation.<plan>`; [`crate::settings`] compares
//! them with the config when a command opens the store. No migration is needed: a store
//! written by an older meterd has none of these keys, and the first open after the upgrade
//! records the configured values (they are the ones its windows were cut with).

use super::sql::{params, Tx};
use super::{meta, Result};
use crate::model::Timestamp;
use std::collections::BTreeMap;

const TIMEZONE: &str = "setting.timezone";
const PERIOD_PREFIX: &str = "setting.period.";
const AGGREGATION_PREFIX: &str = "setting.aggregation.";

/// The remembered settings: the zone and each plan's period, as their text forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remembered {
    pub timezone: Option<String>,
    /// Plan name → `"hour"` or `"day"`.
    pub periods: BTreeMap<String, String>,
    /// Plan name → its aggregation's config spelling (`"sum"`, `"max"`, …).
    pub aggregations: BTreeMap<String, String>,
}

/// Reads what the store remembers.
pub fn remembered(tx: &Tx<'_>) -> Result<Remembered> {
    let timezone = meta::get(tx, TIMEZONE)?;
    Ok(Remembered { timezone, periods: by_plan(tx, PERIOD_PREFIX)?, aggregations: by_plan(tx, AGGREGATION_PREFIX)? })
}

/// The `meta` entries under `prefix` (which ends in `.`), keyed by the plan name after it.
fn by_plan(tx: &Tx<'_>, prefix: &str) -> Result<BTreeMap<String, String>> {
    // Every key starting with `prefix` sorts in [prefix, prefix with its final '.' as '/')
    // (byte order on both backends: the PostgreSQL cluster is C-collated).
    let end = format!("{}/", &prefix[..prefix.len() - 1]);
    let mut out = BTreeMap::new();
    tx.for_each("SELECT key, value FROM meta WHERE key >= ?1 AND key < ?2", params![prefix, end], |r| {
        let k: String = r.get(0)?;
        out.insert(k[prefix.len()..].to_string(), r.get(1)?);
        Ok(())
    })?;
    Ok(out)
}

pub fn remember_timezone(tx: &Tx<'_>, zone: &str) -> Result<()> {
    meta::set(tx, TIMEZONE, zone)
}

pub fn remember_period(tx: &Tx<'_>, plan: &str, period: &str) -> Result<()> {
    meta::set(tx, &format!("{PERIOD_PREFIX}{plan}"), period)
}

pub fn remember_aggregation(tx: &Tx<'_>, plan: &str, aggregation: &str) -> Result<()> {
    meta::set(tx, &format!("{AGGREGATION_PREFIX}{plan}"), aggregation)
}

/// Whether the instance `instance_key` has windows cut already: usage folded into a window, a record,
/// an event not yet folded, or a seal cursor that moved. Indexed lookups, plus at most one
/// scan of the unfolded tail (≤ the fold size; see [`super::windows`]).
pub fn is_cut(tx: &Tx<'_>, instance_key: i64, sealed_until: i64) -> Result<bool> {
    if sealed_until > 0 {
        return Ok(true);
    }
    let probe = |sql: &str| -> Result<bool> { Ok(tx.query_opt(sql, params![instance_key], |_| Ok(()))?.is_some()) };
    Ok(probe("SELECT 1 FROM windows WHERE instance_ref = ?1 LIMIT 1")?
        || probe("SELECT 1 FROM records WHERE instance_ref = ?1 LIMIT 1")?
        || probe("SELECT 1 FROM events WHERE seq > (SELECT windows_through FROM ingest_state WHERE id = 1) AND instance_ref = ?1 LIMIT 1")?)
}

/// Whether usage of the instance `instance_key` is billed in a window starting at or after `from`
/// (UTC seconds): folded window totals or events not yet folded.
pub fn has_usage_from(tx: &Tx<'_>, instance_key: i64, from: i64) -> Result<bool> {
    let folded = tx
        .query_opt("SELECT 1 FROM windows WHERE instance_ref = ?1 AND start_s >= ?2 LIMIT 1", params![instance_key, from], |_| Ok(()))?
        .is_some();
    if folded {
        return Ok(folded);
    }
    let tail = tx
        .query_opt(
            "SELECT 1 FROM events WHERE seq > (SELECT windows_through FROM ingest_state WHERE id = 1) AND instance_ref = ?1 AND billed_window >= ?2 LIMIT 1",
            params![instance_key, from],
            |_| Ok(()),
        )?
        .is_some();
    Ok(tail)
}

/// Packages with a monthly or yearly reset still valid at `now`, as (package id, instance id):
/// their quota periods follow the zone.
pub fn resetting_packages(tx: &Tx<'_>, now: Timestamp) -> Result<Vec<(String, String)>> {
    tx.query_map(
        &format!(
            "SELECT p.package_id, i.instance_id FROM packages p JOIN instances i ON i.ref = p.instance_ref WHERE p.reset <> 'none' AND p.to_ns > ?1 ORDER BY {}",
            tx.by_bytes("p.package_id")
        ),
        params![now.0],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Switches an instance to another plan (the caller checked that this is safe).
pub fn set_plan(tx: &Tx<'_>, instance_key: i64, plan: &str) -> Result<()> {
    tx.execute("UPDATE instances SET plan = ?2 WHERE ref = ?1", params![instance_key, plan])?;
    Ok(())
}
