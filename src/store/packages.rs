//! Prepaid packages (design §4.2): the packages of each instance, what each has used per reset
//! period, the window segments of stop-before-excess instances, and usage beyond every quota.
//!
//! Invariants: a package id is registered once, for one instance, and is never an instance id;
//! Σ segment usage of a window = the window's usage for stop instances (both written in the
//! ingest transaction); `package_usage` only grows, but for a late release giving back the
//! draws of usage after it (`store::lifecycle_release_stop`). Amounts are exact decimal text
//! (`numeric` on PostgreSQL). Statements run through [`Tx`], in SQL that means the same on both
//! backends: a row is replaced with `INSERT … ON CONFLICT (key) DO UPDATE` (SQLite's
//! `INSERT OR REPLACE` is its own; these tables have no other unique key and nothing refers to
//! their rows, so the two do the same here, and the `instances_gen` triggers fire once either
//! way: the insert's, or the update's).

use super::sql::{params, Param, Row, Tx};
use super::{dec, instances, Result, StoreError};
use crate::model::{Package, Reset, Timestamp};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// A package to register.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPackage {
    pub package_id: String,
    pub quota: Decimal,
    pub from: Timestamp,
    pub to: Timestamp,
    pub reset: Reset,
}

/// One segment of a stop instance's window: usage drawn from one package, from `begin` to the
/// next segment's begin (or the window's end).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub begin: i64,
    pub package_id: String,
    pub usage: Decimal,
}

const COLUMNS: &str = "package_id, instance_ref, quota, from_ns, to_ns, reset, carry";

fn from_row(r: &Row<'_>) -> Result<Package> {
    let reset: String = r.get(5)?;
    Ok(Package {
        package_id: r.get(0)?,
        instance_key: r.get(1)?,
        quota: dec(&r.get::<String>(2)?)?,
        from: Timestamp(r.get(3)?),
        to: Timestamp(r.get(4)?),
        reset: Reset::parse(&reset).ok_or_else(|| StoreError::Corrupt(format!("package reset {reset:?}")))?,
        carry: dec(&r.get::<String>(6)?)?,
    })
}

fn query(tx: &Tx<'_>, where_sql: &str, p: &[&dyn Param]) -> Result<Vec<Package>> {
    tx.query_map(&format!("SELECT {COLUMNS} FROM packages WHERE {where_sql}"), p, from_row)
}

/// The packages of one instance, by package id.
pub fn of_instance(tx: &Tx<'_>, instance_key: i64) -> Result<Vec<Package>> {
    query(tx, &format!("instance_ref = ?1 ORDER BY {}", tx.by_bytes("package_id")), params![instance_key])
}

/// One package by id.
pub fn get(tx: &Tx<'_>, package_id: &str) -> Result<Option<Package>> {
    Ok(query(tx, "package_id = ?1", params![package_id])?.pop())
}

/// Registers a package for an instance. The same package again with the same values is a
/// no-op; with other values it is an error naming both, for another instance an error naming
/// that instance. [`register`] also tells which.
pub fn add(tx: &Tx<'_>, instance_id: &str, p: &NewPackage, now: Timestamp) -> Result<Package> {
    register(tx, instance_id, p, now).map(|r| r.package)
}

/// What [`register`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The package as stored.
    pub package: Package,
    /// `false` when it was registered already for the same instance with the same values:
    /// nothing changed (so `meterd package add` says so instead of "registered" again).
    pub new: bool,
}

/// [`add`], saying whether the package is new.
pub fn register(tx: &Tx<'_>, instance_id: &str, p: &NewPackage, now: Timestamp) -> Result<Registered> {
    let inst = instances::get(tx, instance_id)?.ok_or_else(|| instances::unknown(instance_id))?;
    if p.to <= p.from {
        return Err(StoreError::Invalid(format!("package {:?}: `to` {} is not after `from` {}", p.package_id, p.to, p.from)));
    }
    if instances::get(tx, &p.package_id)?.is_some() {
        return Err(StoreError::Invalid(format!(
            "{:?} is registered as an instance; a package instance id cannot be a pay-per-use instance too",
            p.package_id
        )));
    }
    if let Some(old) = get(tx, &p.package_id)? {
        if old.instance_key != inst.key {
            let owner = instance_id_of(tx, old.instance_key)?;
            return Err(StoreError::Invalid(format!(
                "package {:?} belongs to instance {owner:?}; package ids are unique across instances: choose another id",
                old.package_id
            )));
        }
        if old.quota == p.quota && old.from == p.from && old.to == p.to && old.reset == p.reset {
            return Ok(Registered { package: old, new: false });
        }
        return Err(StoreError::Invalid(format!(
            "package {:?} of {instance_id:?} is already registered with quota {}, {} to {}, reset {}; it cannot change to quota {}, {} to {}, reset {}: register a new package id instead",
            old.package_id,
            old.quota,
            old.from,
            old.to,
            old.reset.as_str(),
            p.quota.normalize(),
            p.from,
            p.to,
            p.reset.as_str()
        )));
    }
    tx.execute(
        "INSERT INTO packages (package_id, instance_ref, quota, from_ns, to_ns, reset, created_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![p.package_id, inst.key, p.quota.normalize().to_string(), p.from.0, p.to.0, p.reset.as_str(), now.0],
    )?;
    let package = get(tx, &p.package_id)?.ok_or_else(|| StoreError::Corrupt("package vanished after insert".into()))?;
    Ok(Registered { package, new: true })
}

/// The cloud store id of the instance with key `instance_key` (a package's owner).
fn instance_id_of(tx: &Tx<'_>, instance_key: i64) -> Result<String> {
    tx.query_opt("SELECT instance_id FROM instances WHERE ref = ?1", params![instance_key], |r| r.get(0))?
        .ok_or_else(|| StoreError::Corrupt(format!("a package refers to instance key {instance_key}, which does not exist")))
}

/// The events of one instance billed in a window (the ones a stop-before-excess plan drew from
/// its packages at ingest), in commit order: (time, quantity). Reads
/// every event of the instance: on SQLite a scan of `events` (no index by instance), on
/// PostgreSQL through the `events_key` index; for `meterd package list --now`, not for a hot
/// path.
pub fn billed_events(tx: &Tx<'_>, instance_key: i64) -> Result<Vec<(Timestamp, Decimal)>> {
    tx.query_map(
        "SELECT time_ns, qty FROM events WHERE instance_ref = ?1 AND billed_window IS NOT NULL ORDER BY seq",
        params![instance_key],
        |r| Ok((Timestamp(r.get(0)?), dec(&r.get::<String>(1)?)?)),
    )
}

/// What a package has used in the reset period starting at `period`.
pub fn used(tx: &Tx<'_>, package_id: &str, period: i64) -> Result<Decimal> {
    let text: Option<String> =
        tx.query_opt("SELECT used FROM package_usage WHERE package_id = ?1 AND period_s = ?2", params![package_id, period], |r| r.get(0))?;
    text.map_or(Ok(Decimal::ZERO), |t| dec(&t))
}

/// Every (package id, period start) → used of one instance.
pub fn usage_of_instance(tx: &Tx<'_>, instance_key: i64) -> Result<BTreeMap<(String, i64), Decimal>> {
    let mut out = BTreeMap::new();
    tx.for_each(
        "SELECT u.package_id, u.period_s, u.used FROM package_usage u JOIN packages p ON p.package_id = u.package_id
         WHERE p.instance_ref = ?1",
        params![instance_key],
        |r| {
            out.insert((r.get::<String>(0)?, r.get::<i64>(1)?), dec(&r.get::<String>(2)?)?);
            Ok(())
        },
    )?;
    Ok(out)
}

/// Sets what a package has used in a period.
pub fn set_used(tx: &Tx<'_>, package_id: &str, period: i64, used: Decimal) -> Result<()> {
    tx.execute(
        "INSERT INTO package_usage (package_id, period_s, used) VALUES (?1, ?2, ?3)
         ON CONFLICT (package_id, period_s) DO UPDATE SET used = excluded.used",
        params![package_id, period, used.normalize().to_string()],
    )?;
    Ok(())
}

/// The segments of one window, by begin.
pub fn segments(tx: &Tx<'_>, instance_key: i64, window_start: i64) -> Result<Vec<Segment>> {
    tx.query_map(
        "SELECT begin_s, package_id, usage FROM segments WHERE instance_ref = ?1 AND window_start = ?2 ORDER BY begin_s",
        params![instance_key, window_start],
        segment,
    )
}

fn segment(r: &Row<'_>) -> Result<Segment> {
    Ok(Segment { begin: r.get(0)?, package_id: r.get(1)?, usage: dec(&r.get::<String>(2)?)? })
}

/// The latest segment of one window.
pub fn last_segment(tx: &Tx<'_>, instance_key: i64, window_start: i64) -> Result<Option<Segment>> {
    tx.query_opt(
        "SELECT begin_s, package_id, usage FROM segments WHERE instance_ref = ?1 AND window_start = ?2 ORDER BY begin_s DESC LIMIT 1",
        params![instance_key, window_start],
        segment,
    )
}

/// Writes a segment (new, or with its grown usage).
pub fn put_segment(tx: &Tx<'_>, instance_key: i64, window_start: i64, s: &Segment) -> Result<()> {
    tx.execute(
        "INSERT INTO segments (instance_ref, window_start, begin_s, package_id, usage) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (instance_ref, window_start, begin_s) DO UPDATE SET package_id = excluded.package_id, usage = excluded.usage",
        params![instance_key, window_start, s.begin, s.package_id, s.usage.normalize().to_string()],
    )?;
    Ok(())
}

/// Usage of an instance that no package covered (stop-before-excess: never billed).
pub fn over_quota(tx: &Tx<'_>, instance_key: i64) -> Result<Decimal> {
    let text: Option<String> = tx.query_opt("SELECT usage FROM over_quota WHERE instance_ref = ?1", params![instance_key], |r| r.get(0))?;
    text.map_or(Ok(Decimal::ZERO), |t| dec(&t))
}

/// Adds usage beyond every quota.
pub fn add_over_quota(tx: &Tx<'_>, instance_key: i64, amount: Decimal) -> Result<()> {
    let next =
        over_quota(tx, instance_key)?.checked_add(amount).ok_or_else(|| StoreError::Overflow("over-quota usage overflows".into()))?;
    tx.execute(
        "INSERT INTO over_quota (instance_ref, usage) VALUES (?1, ?2) ON CONFLICT (instance_ref) DO UPDATE SET usage = excluded.usage",
        params![instance_key, next.normalize().to_string()],
    )?;
    Ok(())
}

/// Stores the remainder carried to a package's next record.
pub fn set_carry(tx: &Tx<'_>, package_id: &str, carry: Decimal) -> Result<()> {
    tx.execute("UPDATE packages SET carry = ?2 WHERE package_id = ?1", params![package_id, carry.normalize().to_string()])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// The upserts that replaced `INSERT OR REPLACE` replace the row's values, and the
    /// `instances_gen` triggers bump the generation once per write, as the replace did.
    #[test]
    fn rewriting_usage_segments_and_over_quota_replaces_the_row_and_bumps_the_generation_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("t.db")).unwrap();
        s.write(|tx| {
            let key = instances::add(tx, "i-1", "p", Timestamp::from_secs(0), Timestamp(1))?.key;
            let p = NewPackage {
                package_id: "pk-1".into(),
                quota: "10".parse().unwrap(),
                from: Timestamp::from_secs(0),
                to: Timestamp::from_secs(86_400),
                reset: Reset::None,
            };
            add(tx, "i-1", &p, Timestamp(1))?;
            for used_now in ["1.5", "2.25000"] {
                let gen = instances::generation(tx)?;
                set_used(tx, "pk-1", 0, used_now.parse().unwrap())?;
                assert_eq!(instances::generation(tx)?, gen + 1);
            }
            assert_eq!(used(tx, "pk-1", 0)?, "2.25".parse::<Decimal>().unwrap());
            assert_eq!(tx.one::<String>("SELECT used FROM package_usage WHERE package_id = 'pk-1'", super::params![])?, "2.25");
            for usage in ["1", "3.5"] {
                put_segment(tx, key, 0, &Segment { begin: 60, package_id: "pk-1".into(), usage: usage.parse().unwrap() })?;
            }
            assert_eq!(segments(tx, key, 0)?, vec![Segment { begin: 60, package_id: "pk-1".into(), usage: "3.5".parse().unwrap() }]);
            assert_eq!(last_segment(tx, key, 0)?.map(|s| s.usage), Some("3.5".parse().unwrap()));
            add_over_quota(tx, key, "0.5".parse().unwrap())?;
            add_over_quota(tx, key, "0.25".parse().unwrap())?;
            assert_eq!(over_quota(tx, key)?, "0.75".parse::<Decimal>().unwrap());
            Ok(())
        })
        .unwrap();
    }
}
