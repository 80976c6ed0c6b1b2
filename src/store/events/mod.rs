//! Raw events, stored exactly once per (instance, id). The dedupe check and the insert happen
//! in the writer's transaction ([`super::dedupe::Dedupe::check`], then
//! [`super::dedupe::Dedupe::append`] through an [`append::Appender`]), so an acknowledged
//! event and its dedupe key commit together. Each row also keeps the window that
//! bills it (`billed_window`) and, when that is not the whole quantity, the billed part
//! (`billed_qty`), from which `windows` sums the unfolded tail. This file holds the read side;
//! [`append`] the SQLite write side.

pub mod append;

use super::sql::{params, Backend, Row, Tx};
use super::{Result, StoreError};
use crate::model::{Quantity, Timestamp};

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
///
/// On SQLite the events table has no index on (instance, id): the dedupe key runs find the
/// event ([`super::dedupe::find_seq`], SQLite's own structure). On PostgreSQL `events` is
/// unique on (instance_ref, event_id), and that index finds it.
pub fn get(tx: &Tx<'_>, instance_id: &str, event_id: &str) -> Result<Option<EventRow>> {
    let Some(key) = tx.query_opt("SELECT ref FROM instances WHERE instance_id = ?1", params![instance_id], |r| r.get::<i64>(0))? else {
        return Ok(None);
    };
    let seq = match tx.sqlite_conn() {
        Some(_) => super::dedupe::find_seq(tx, key, event_id)?,
        None => tx.query_opt("SELECT seq FROM events WHERE instance_ref = ?1 AND event_id = ?2", params![key, event_id], |r| r.get(0))?,
    };
    let Some(seq) = seq else { return Ok(None) };
    tx.query_opt(
        "SELECT i.instance_id, e.event_id, e.time_ns, e.qty, e.billed_window FROM events e JOIN instances i ON i.ref = e.instance_ref
         WHERE e.seq = ?1",
        params![seq],
        row_to_event,
    )
}

fn row_to_event(r: &Row<'_>) -> Result<EventRow> {
    let qty: String = r.get(3)?;
    Ok(EventRow {
        instance_id: r.get(0)?,
        event_id: r.get(1)?,
        time: Timestamp(r.get(2)?),
        quantity: Quantity::parse_stored(&qty).ok_or_else(|| StoreError::Corrupt(format!("event quantity {qty:?}")))?,
        billed_window: r.get(4)?,
    })
}

/// Count and exact quantity sum per instance key, in one pass over the events.
pub fn totals_all(tx: &Tx<'_>) -> Result<std::collections::HashMap<i64, (u64, Quantity)>> {
    let mut out = std::collections::HashMap::<i64, (u64, Quantity)>::new();
    tx.for_each("SELECT instance_ref, qty FROM events", params![], |r| {
        let q = r.with_str(1, |qty| Quantity::parse_stored(qty).ok_or_else(|| StoreError::Corrupt(format!("event quantity {qty:?}"))))?;
        let e = out.entry(r.get(0)?).or_insert((0, Quantity::ZERO));
        e.0 += 1;
        e.1 = e.1.checked_add(q).ok_or_else(|| StoreError::Overflow("sum overflows".into()))?;
        Ok(())
    })?;
    Ok(out)
}

/// The highest `seq` stored (0 when there are no events); the next event gets this + 1.
pub fn max_seq(tx: &Tx<'_>) -> Result<i64> {
    tx.one("SELECT coalesce(max(seq), 0) FROM events", params![])
}

/// The number of stored events the ingest writers keep (never a count of the rows):
/// `ingest_state.events`, plus on PostgreSQL what each ingest lane counted in its row of
/// `ingest_lanes` (`store::pg_events::count_appended`). Equal to the rows in a sound store.
pub fn kept_count(tx: &Tx<'_>) -> Result<i64> {
    match tx.backend() {
        Backend::Sqlite => tx.one("SELECT events FROM ingest_state WHERE id = 1", params![]),
        Backend::Postgres => tx.one(
            "SELECT (SELECT events FROM ingest_state WHERE id = 1) + (SELECT coalesce(sum(events), 0) FROM ingest_lanes)::bigint",
            params![],
        ),
    }
}

/// Total number of stored events.
///
/// On SQLite the ingest writer keeps the count in `ingest_state` with every append (see
/// `dedupe::Appender::finish`): count(*) would read every row. Several PostgreSQL nodes
/// ingest at once and one shared counter row would serialise them, so there the rows are
/// counted.
pub fn count(tx: &Tx<'_>) -> Result<u64> {
    match tx.backend() {
        Backend::Sqlite => Ok(tx.one::<i64>("SELECT events FROM ingest_state WHERE id = 1", params![])? as u64),
        Backend::Postgres => tx.one("SELECT count(*) FROM events", params![]),
    }
}
