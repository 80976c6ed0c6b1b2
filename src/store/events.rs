//! Raw events, stored exactly once per (instance, id). The dedupe check and the insert happen
//! in the caller's transaction, so an acknowledged event and its dedupe key commit together.

use super::{Result, StoreError};
use crate::model::{Quantity, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};

/// What happened to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// Already stored with the same quantity and time.
    Duplicate,
    /// Already stored with a different quantity or time.
    Conflict {
        stored_quantity: Quantity,
        stored_time: Timestamp,
    },
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub instance_id: String,
    pub event_id: String,
    pub time: Timestamp,
    pub quantity: Quantity,
    pub billed_window: Option<i64>,
}

/// Inserts one event unless its key is already stored; compares with the stored one if so.
pub fn insert(
    conn: &Connection,
    instance_key: i64,
    event_id: &str,
    time: Timestamp,
    quantity: Quantity,
    billed_window: Option<i64>,
    received: Timestamp,
) -> Result<InsertOutcome> {
    let qty = quantity.to_string();
    let n = conn
        .prepare_cached(
            "INSERT INTO events (instance_ref, event_id, time_ns, qty, billed_window, received_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (instance_ref, event_id) DO NOTHING",
        )?
        .execute(params![instance_key, event_id, time.0, qty, billed_window, received.0])?;
    if n == 1 {
        return Ok(InsertOutcome::Inserted);
    }
    let (stored_time, stored_qty): (i64, String) = conn
        .prepare_cached("SELECT time_ns, qty FROM events WHERE instance_ref = ?1 AND event_id = ?2")?
        .query_row(params![instance_key, event_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let stored_quantity =
        Quantity::parse_stored(&stored_qty).ok_or_else(|| StoreError::Corrupt(format!("event quantity {stored_qty:?}")))?;
    if stored_time == time.0 && stored_quantity == quantity {
        Ok(InsertOutcome::Duplicate)
    } else {
        Ok(InsertOutcome::Conflict { stored_quantity, stored_time: Timestamp(stored_time) })
    }
}

/// Looks one event up by key.
pub fn get(conn: &Connection, instance_id: &str, event_id: &str) -> Result<Option<EventRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT i.instance_id, e.event_id, e.time_ns, e.qty, e.billed_window FROM events e JOIN instances i ON i.ref = e.instance_ref
         WHERE i.instance_id = ?1 AND e.event_id = ?2",
    )?;
    let row = stmt.query_row(params![instance_id, event_id], row_to_event).optional()?;
    row.transpose()
}

fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<EventRow>> {
    let qty: String = r.get(3)?;
    Ok(Ok(EventRow {
        instance_id: r.get(0)?,
        event_id: r.get(1)?,
        time: Timestamp(r.get(2)?),
        quantity: match Quantity::parse_stored(&qty) {
            Some(q) => q,
            None => return Ok(Err(StoreError::Corrupt(format!("event quantity {qty:?}")))),
        },
        billed_window: r.get(4)?,
    }))
}

/// Count of stored events and the exact sum of their quantities for one instance.
pub fn totals(conn: &Connection, instance_key: i64) -> Result<(u64, Quantity)> {
    let mut stmt = conn.prepare_cached("SELECT qty FROM events WHERE instance_ref = ?1")?;
    let mut rows = stmt.query([instance_key])?;
    let (mut n, mut sum) = (0u64, Quantity::ZERO);
    while let Some(r) = rows.next()? {
        let q: String = r.get(0)?;
        let q = Quantity::parse_stored(&q).ok_or_else(|| StoreError::Corrupt(format!("event quantity {q:?}")))?;
        sum = sum.checked_add(q).ok_or_else(|| StoreError::Invalid("sum overflows".into()))?;
        n += 1;
    }
    Ok((n, sum))
}

/// Total number of stored events.
pub fn count(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))? as u64)
}
