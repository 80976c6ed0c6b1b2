//! Running usage totals per instance and window, kept as events commit so sealing never has to
//! rescan raw events.

use super::{dec, Result, StoreError};
use rusqlite::{params, Connection};
use rust_decimal::Decimal;

/// One window's usage so far.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    pub instance_key: i64,
    pub start: i64,
    pub usage: Decimal,
    pub events: u64,
}

/// Adds `delta` (from `count` events) to a window's running total.
pub fn add_usage(conn: &Connection, instance_key: i64, start: i64, delta: Decimal, count: u64) -> Result<()> {
    let mut get = conn.prepare_cached("SELECT usage, events FROM windows WHERE instance_ref = ?1 AND start_s = ?2")?;
    let mut rows = get.query(params![instance_key, start])?;
    let (usage, events, exists) = match rows.next()? {
        Some(r) => (dec(&r.get::<_, String>(0)?)?, r.get::<_, i64>(1)?, true),
        None => (Decimal::ZERO, 0, false),
    };
    drop(rows);
    let next = usage.checked_add(delta).ok_or_else(|| StoreError::Invalid("window usage overflows a 96-bit decimal".into()))?;
    // UPDATE in place when the row exists: REPLACE would delete and reinsert, rewriting the
    // `windows_by_instance` entry too.
    let sql = if exists {
        "UPDATE windows SET usage = ?3, events = ?4 WHERE start_s = ?2 AND instance_ref = ?1"
    } else {
        "INSERT INTO windows (instance_ref, start_s, usage, events) VALUES (?1, ?2, ?3, ?4)"
    };
    conn.prepare_cached(sql)?.execute(params![instance_key, start, next.normalize().to_string(), events + count as i64])?;
    Ok(())
}

/// Windows of all instances with `start` in `[from, to)`, ordered by instance then start.
pub fn between(conn: &Connection, from: i64, to: i64) -> Result<Vec<WindowRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT instance_ref, start_s, usage, events FROM windows WHERE start_s >= ?1 AND start_s < ?2 ORDER BY instance_ref, start_s",
    )?;
    let rows = stmt.query(params![from, to])?;
    collect(rows)
}

/// Windows of one instance with `start` in `[from, to)`, ordered by start.
pub fn of_instance(conn: &Connection, instance_key: i64, from: i64, to: i64) -> Result<Vec<WindowRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT instance_ref, start_s, usage, events FROM windows WHERE instance_ref = ?1 AND start_s >= ?2 AND start_s < ?3 ORDER BY start_s",
    )?;
    let rows = stmt.query(params![instance_key, from, to])?;
    collect(rows)
}

fn collect(mut rows: rusqlite::Rows<'_>) -> Result<Vec<WindowRow>> {
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(WindowRow {
            instance_key: r.get(0)?,
            start: r.get(1)?,
            usage: dec(&r.get::<_, String>(2)?)?,
            events: r.get::<_, i64>(3)? as u64,
        });
    }
    Ok(out)
}
