//! Raw events, stored exactly once per (instance, id). The dedupe check and the insert happen
//! in the writer's transaction ([`super::dedupe::Dedupe::check`], then
//! [`super::dedupe::Dedupe::append`] through an [`super::dedupe::Appender`]), so an
//! acknowledged event and its dedupe key commit together. Each row also keeps the window that
//! bills it (`billed_window`) and, when that is not the whole quantity, the billed part
//! (`billed_qty`), from which `windows` sums the unfolded tail. This file holds the read side.

use super::{Result, StoreError};
use crate::model::{Quantity, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};

/// What happened to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// Already stored with the same quantity, time and properties.
    Duplicate,
    /// Already stored with a different quantity, time or properties.
    Conflict {
        stored_quantity: Quantity,
        stored_time: Timestamp,
        /// The stored properties (canonical JSON), if any.
        stored_properties: Option<String>,
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

/// Looks one event up by key.
pub fn get(conn: &Connection, instance_id: &str, event_id: &str) -> Result<Option<EventRow>> {
    let Some(key) = conn
        .prepare_cached("SELECT ref FROM instances WHERE instance_id = ?1")?
        .query_row([instance_id], |r| r.get::<_, i64>(0))
        .optional()?
    else {
        return Ok(None);
    };
    let Some(seq) = super::dedupe::find_seq(conn, key, event_id)? else { return Ok(None) };
    let mut stmt = conn.prepare_cached(
        "SELECT i.instance_id, e.event_id, e.time_ns, e.qty, e.billed_window FROM events e JOIN instances i ON i.ref = e.instance_ref
         WHERE e.seq = ?1",
    )?;
    let row = stmt.query_row(params![seq], row_to_event).optional()?;
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

/// Count and exact quantity sum per instance key, in one pass over the events.
pub fn totals_all(conn: &Connection) -> Result<std::collections::HashMap<i64, (u64, Quantity)>> {
    let mut stmt = conn.prepare_cached("SELECT instance_ref, qty FROM events")?;
    let mut rows = stmt.query([])?;
    let mut out = std::collections::HashMap::<i64, (u64, Quantity)>::new();
    while let Some(r) = rows.next()? {
        let qty = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
        let q = Quantity::parse_stored(qty).ok_or_else(|| StoreError::Corrupt(format!("event quantity {qty:?}")))?;
        let e = out.entry(r.get(0)?).or_insert((0, Quantity::ZERO));
        e.0 += 1;
        e.1 = e.1.checked_add(q).ok_or_else(|| StoreError::Invalid("sum overflows".into()))?;
    }
    Ok(out)
}

/// Total number of stored events.
/// The highest `seq` stored (0 when there are no events); the next event gets this + 1.
pub fn max_seq(conn: &Connection) -> Result<i64> {
    Ok(conn.prepare_cached("SELECT coalesce(max(seq), 0) FROM events")?.query_row([], |r| r.get(0))?)
}

pub fn count(conn: &Connection) -> Result<u64> {
    // Kept with every append (see `dedupe::Appender::finish`): count(*) would read every row.
    Ok(conn.query_row("SELECT events FROM ingest_state WHERE id = 1", [], |r| r.get::<_, i64>(0))? as u64)
}
