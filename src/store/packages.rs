//! Prepaid packages (design §4.2): the packages of each instance, what each has used per reset
//! period, the window segments of stop-before-excess instances, and usage beyond every quota.
//!
//! Invariants: a package id is registered once, for one instance, and is never an instance id;
//! Σ segment usage of a window = the window's usage for stop instances (both written in the
//! ingest transaction); `package_usage` only grows. Amounts are exact decimal text.

use super::{dec, instances, Result, StoreError};
use crate::model::{Package, Reset, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, Row};
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

fn from_row(r: &Row<'_>) -> rusqlite::Result<(Package, String, String, String)> {
    Ok((
        Package {
            package_id: r.get(0)?,
            instance_key: r.get(1)?,
            quota: Decimal::ZERO,
            from: Timestamp(r.get(3)?),
            to: Timestamp(r.get(4)?),
            reset: Reset::None,
            carry: Decimal::ZERO,
        },
        r.get(2)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn finish((mut p, quota, reset, carry): (Package, String, String, String)) -> Result<Package> {
    p.quota = dec(&quota)?;
    p.reset = Reset::parse(&reset).ok_or_else(|| StoreError::Corrupt(format!("package reset {reset:?}")))?;
    p.carry = dec(&carry)?;
    Ok(p)
}

fn query(conn: &Connection, where_sql: &str, p: impl rusqlite::Params) -> Result<Vec<Package>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM packages WHERE {where_sql}"))?;
    let rows = stmt.query_map(p, from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// The packages of one instance, by package id.
pub fn of_instance(conn: &Connection, instance_key: i64) -> Result<Vec<Package>> {
    query(conn, "instance_ref = ?1 ORDER BY package_id", [instance_key])
}

/// One package by id.
pub fn get(conn: &Connection, package_id: &str) -> Result<Option<Package>> {
    Ok(query(conn, "package_id = ?1", [package_id])?.pop())
}

/// Registers a package for an instance. The same package again with the same values is a
/// no-op; with other values, or for another instance, it is an error naming both.
pub fn add(conn: &Connection, instance_id: &str, p: &NewPackage, now: Timestamp) -> Result<Package> {
    let inst = instances::get(conn, instance_id)?.ok_or_else(|| instances::unknown(instance_id))?;
    if p.to <= p.from {
        return Err(StoreError::Invalid(format!("package {:?}: `to` {} is not after `from` {}", p.package_id, p.to, p.from)));
    }
    if instances::get(conn, &p.package_id)?.is_some() {
        return Err(StoreError::Invalid(format!(
            "{:?} is registered as an instance; a package instance id cannot be a pay-per-use instance too",
            p.package_id
        )));
    }
    if let Some(old) = get(conn, &p.package_id)? {
        let same = old.instance_key == inst.key && old.quota == p.quota && old.from == p.from && old.to == p.to && old.reset == p.reset;
        if same {
            return Ok(old);
        }
        return Err(StoreError::Invalid(format!(
            "package {:?} is already registered (quota {}, {} to {}, reset {}) and cannot change; register a new package id instead",
            old.package_id,
            old.quota,
            old.from,
            old.to,
            old.reset.as_str()
        )));
    }
    conn.prepare_cached(
        "INSERT INTO packages (package_id, instance_ref, quota, from_ns, to_ns, reset, created_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![p.package_id, inst.key, p.quota.normalize().to_string(), p.from.0, p.to.0, p.reset.as_str(), now.0])?;
    get(conn, &p.package_id)?.ok_or_else(|| StoreError::Corrupt("package vanished after insert".into()))
}

/// What a package has used in the reset period starting at `period`.
pub fn used(conn: &Connection, package_id: &str, period: i64) -> Result<Decimal> {
    let text: Option<String> = conn
        .prepare_cached("SELECT used FROM package_usage WHERE package_id = ?1 AND period_s = ?2")?
        .query_row(params![package_id, period], |r| r.get(0))
        .optional()?;
    text.map_or(Ok(Decimal::ZERO), |t| dec(&t))
}

/// Every (package id, period start) → used of one instance.
pub fn usage_of_instance(conn: &Connection, instance_key: i64) -> Result<BTreeMap<(String, i64), Decimal>> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.package_id, u.period_s, u.used FROM package_usage u JOIN packages p ON p.package_id = u.package_id
         WHERE p.instance_ref = ?1",
    )?;
    let rows = stmt.query_map([instance_key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))?;
    let mut out = BTreeMap::new();
    for r in rows {
        let (id, period, used) = r?;
        out.insert((id, period), dec(&used)?);
    }
    Ok(out)
}

/// Sets what a package has used in a period.
pub fn set_used(conn: &Connection, package_id: &str, period: i64, used: Decimal) -> Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO package_usage (package_id, period_s, used) VALUES (?1, ?2, ?3)")?.execute(params![
        package_id,
        period,
        used.normalize().to_string()
    ])?;
    Ok(())
}

/// The segments of one window, by begin.
pub fn segments(conn: &Connection, instance_key: i64, window_start: i64) -> Result<Vec<Segment>> {
    let mut stmt = conn
        .prepare_cached("SELECT begin_s, package_id, usage FROM segments WHERE instance_ref = ?1 AND window_start = ?2 ORDER BY begin_s")?;
    let rows = stmt.query_map(params![instance_key, window_start], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?)))?;
    let mut out = Vec::new();
    for r in rows {
        let (begin, package_id, usage) = r?;
        out.push(Segment { begin, package_id, usage: dec(&usage)? });
    }
    Ok(out)
}

/// The latest segment of one window.
pub fn last_segment(conn: &Connection, instance_key: i64, window_start: i64) -> Result<Option<Segment>> {
    let row: Option<(i64, String, String)> = conn
        .prepare_cached(
            "SELECT begin_s, package_id, usage FROM segments WHERE instance_ref = ?1 AND window_start = ?2 ORDER BY begin_s DESC LIMIT 1",
        )?
        .query_row(params![instance_key, window_start], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    row.map(|(begin, package_id, usage)| Ok(Segment { begin, package_id, usage: dec(&usage)? })).transpose()
}

/// Writes a segment (new, or with its grown usage).
pub fn put_segment(conn: &Connection, instance_key: i64, window_start: i64, s: &Segment) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO segments (instance_ref, window_start, begin_s, package_id, usage) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![instance_key, window_start, s.begin, s.package_id, s.usage.normalize().to_string()])?;
    Ok(())
}

/// Usage of an instance that no package covered (stop-before-excess: never billed).
pub fn over_quota(conn: &Connection, instance_key: i64) -> Result<Decimal> {
    let text: Option<String> =
        conn.prepare_cached("SELECT usage FROM over_quota WHERE instance_ref = ?1")?.query_row([instance_key], |r| r.get(0)).optional()?;
    text.map_or(Ok(Decimal::ZERO), |t| dec(&t))
}

/// Adds usage beyond every quota.
pub fn add_over_quota(conn: &Connection, instance_key: i64, amount: Decimal) -> Result<()> {
    let next =
        over_quota(conn, instance_key)?.checked_add(amount).ok_or_else(|| StoreError::Invalid("over-quota usage overflows".into()))?;
    conn.prepare_cached("INSERT OR REPLACE INTO over_quota (instance_ref, usage) VALUES (?1, ?2)")?
        .execute(params![instance_key, next.normalize().to_string()])?;
    Ok(())
}

/// Stores the remainder carried to a package's next record.
pub fn set_carry(conn: &Connection, package_id: &str, carry: Decimal) -> Result<()> {
    conn.prepare_cached("UPDATE packages SET carry = ?2 WHERE package_id = ?1")?
        .execute(params![package_id, carry.normalize().to_string()])?;
    Ok(())
}
