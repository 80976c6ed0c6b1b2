//! The event appender of the ingest writer (SQLite): the write side of `events`. The writer
//! checks each key with [`crate::store::dedupe::Dedupe::check`], then appends the new ones
//! here in the same transaction, so an acknowledged event and its dedupe key commit together.
//!
//! Events are buffered and written `APPEND_ROWS` at a time with one multi-row `INSERT`;
//! each gets its `seq` up front (the transaction is the only writer), checked when written.
//! Properties go to `event_props` and a point plan's window to `window_events`, keyed by that
//! seq. PostgreSQL appends through `store::pg_events` instead.

use crate::model::{Quantity, Timestamp};
use crate::store::{Result, StoreError};
use rusqlite::{params, Connection};

/// Events per multi-row `INSERT`: one statement execution (bind, step, reset) per 64 events
/// instead of per event cuts SQLite's share of ingest by about a sixth.
const APPEND_ROWS: usize = 64;
const INSERT_COLUMNS: &str = "INSERT INTO events (instance_ref, event_id, time_ns, qty, billed_window, billed_qty, received_s) VALUES ";

/// An event to append (its instance comes with the dedupe [`crate::store::dedupe::Probe`]).
pub struct NewEvent<'e> {
    pub event_id: &'e str,
    pub time: Timestamp,
    pub quantity: Quantity,
    /// Start of the window that bills it; `None` when no window can (unbillable).
    pub billed_window: Option<i64>,
    /// The part its window bills, when that is not the whole quantity.
    pub billed_qty: Option<rust_decimal::Decimal>,
    pub received: Timestamp,
    /// Canonical properties ([`crate::model::Properties::canonical`]), written to
    /// `event_props` only when present.
    pub props: Option<&'e str>,
    /// For a point plan's event (`max`, `latest`, `unique_count`): the window it counts in,
    /// written to `window_events` so the seal reads the window's events by index.
    pub point_window: Option<i64>,
}

/// One event waiting in an [`Appender`]; its strings are reused from row to row.
#[derive(Default)]
struct Row {
    instance_key: i64,
    event_id: String,
    time: i64,
    qty: String,
    billed_window: Option<i64>,
    billed_qty: Option<String>,
    received: i64,
}

/// The event inserts of one write transaction. Events are held back and written
/// `APPEND_ROWS` at a time with statements prepared once per transaction; each gets the seq
/// it will have (SQLite gives a new row max(seq) + 1, and this transaction is the only writer),
/// which is checked when the rows are written.
///
/// Invariant: everything pushed is written by [`Appender::flush`] before anything reads
/// `events` in the same transaction and before `COMMIT` — [`crate::store::dedupe::Dedupe::check`] flushes before
/// verifying a candidate, and the writer calls [`Appender::finish`] at the end of every transaction.
pub struct Appender<'c> {
    /// The transaction's connection; [`crate::store::dedupe::Dedupe::check`] reads candidates through it.
    pub(crate) conn: &'c Connection,
    one: rusqlite::CachedStatement<'c>,
    many: rusqlite::CachedStatement<'c>,
    rows: Vec<Row>,
    /// Rows of `rows` in use.
    held: usize,
    /// Events written so far (added to `ingest_state.events` by [`Appender::finish`]).
    written: i64,
    /// The seq the next pushed event gets.
    next_seq: i64,
}

/// The appender of a write transaction (call after every other connection's rows are visible,
/// i.e. inside the transaction).
///
/// Errors: [`crate::store::StoreError::Internal`] on a PostgreSQL transaction (this appender is
/// SQLite's; PostgreSQL appends in `store::pg_events`), or a failed statement.
pub fn appender<'c>(tx: &crate::store::sql::Tx<'c>) -> Result<Appender<'c>> {
    let conn =
        tx.sqlite_conn().ok_or_else(|| crate::store::StoreError::Internal("the SQLite appender ran on a PostgreSQL store".into()))?;
    let next_seq = super::max_seq(tx)? + 1;
    let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; APPEND_ROWS].join(", ");
    Ok(Appender {
        conn,
        one: conn.prepare_cached(&format!("{INSERT_COLUMNS}(?, ?, ?, ?, ?, ?, ?)"))?,
        many: conn.prepare_cached(&format!("{INSERT_COLUMNS}{values}"))?,
        rows: (0..APPEND_ROWS).map(|_| Row::default()).collect(),
        held: 0,
        written: 0,
        next_seq,
    })
}

impl Appender<'_> {
    /// Writes every event held back and counts what this transaction appended. Call once, last,
    /// before `COMMIT`.
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        if self.written > 0 {
            self.conn.prepare_cached("UPDATE ingest_state SET events = events + ?1 WHERE id = 1")?.execute([self.written])?;
        }
        Ok(())
    }

    /// Holds an event back for writing; returns its seq.
    pub(crate) fn push(&mut self, instance_key: i64, ev: NewEvent<'_>) -> Result<i64> {
        let NewEvent { event_id, time, quantity, billed_window, billed_qty, received, props, point_window } = ev;
        if self.held == APPEND_ROWS {
            self.flush()?;
        }
        if let Some(props) = props {
            // Its own table, keyed by the seq the event will get (no FK: the row is written
            // before the held-back event, in the same transaction).
            self.conn.prepare_cached("INSERT INTO event_props (seq, props) VALUES (?1, ?2)")?.execute(params![self.next_seq, props])?;
        }
        if let Some(w) = point_window {
            self.conn
                .prepare_cached("INSERT INTO window_events (instance_ref, window_start, seq) VALUES (?1, ?2, ?3)")?
                .execute(params![instance_key, w, self.next_seq])?;
        }
        let row = &mut self.rows[self.held];
        row.instance_key = instance_key;
        row.event_id.clear();
        row.event_id.push_str(event_id);
        row.time = time.0;
        row.qty.clear();
        quantity.write_plain(&mut row.qty);
        row.billed_window = billed_window;
        row.billed_qty = billed_qty.map(|q| q.normalize().to_string());
        row.received = received.secs();
        self.held += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Writes every event held back.
    pub fn flush(&mut self) -> Result<()> {
        let rows = &self.rows[..self.held];
        if rows.is_empty() {
            return Ok(());
        }
        let bind = |stmt: &mut rusqlite::Statement<'_>, at: usize, r: &Row| -> rusqlite::Result<()> {
            stmt.raw_bind_parameter(at + 1, r.instance_key)?;
            stmt.raw_bind_parameter(at + 2, r.event_id.as_str())?;
            stmt.raw_bind_parameter(at + 3, r.time)?;
            stmt.raw_bind_parameter(at + 4, r.qty.as_str())?;
            stmt.raw_bind_parameter(at + 5, r.billed_window)?;
            stmt.raw_bind_parameter(at + 6, r.billed_qty.as_deref())?;
            stmt.raw_bind_parameter(at + 7, r.received)
        };
        if rows.len() == APPEND_ROWS {
            for (i, r) in rows.iter().enumerate() {
                bind(&mut self.many, 7 * i, r)?;
            }
            self.many.raw_execute()?;
        } else {
            for r in rows {
                bind(&mut self.one, 0, r)?;
                self.one.raw_execute()?;
            }
        }
        let expected = self.next_seq - 1;
        let got = self.conn.last_insert_rowid();
        self.written += rows.len() as i64;
        self.held = 0;
        if got != expected {
            return Err(StoreError::Corrupt(format!("events were given seqs up to {got}, expected {expected}; nothing is committed")));
        }
        Ok(())
    }
}
