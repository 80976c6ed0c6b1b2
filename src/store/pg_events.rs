//! Exactly-once event storage on PostgreSQL: the counterpart of SQLite's Bloom filter, key runs
//! and appender (`dedupe.rs`), built on the unique key `events (instance_ref, event_id)`.
//!
//! One ingest transaction ([`PgEvents`]) works in three steps, each one round trip per request
//! rather than one per event:
//!
//! 1. [`PgEvents::lookup`]: the stored time, quantity and properties of every key of a request
//!    whose instance is known, in one `SELECT … FROM unnest($1, $2) CROSS JOIN LATERAL (…)`:
//!    one probe of the unique index per key, a plan that does not depend on the table's size.
//! 2. [`PgEvents::check`] per event: stored → duplicate (same quantity, time and properties) or
//!    conflict; new → inserted, unless an earlier event of the same transaction had the same key
//!    (then that one is the stored event). [`PgEvents::append`] holds the new row back.
//! 3. [`PgEvents::finish`], before `COMMIT`: the held rows in one `INSERT … SELECT FROM unnest(…)`
//!    (plus `event_props` and `window_events` rows, and the `ingest_state` count).
//!
//! **Why the lookup is the truth.** Every write transaction holds the writers' advisory lock
//! (`store::pg`), so between the lookup and the insert no other node can store a key: the
//! insert is a plain `INSERT` (no `ON CONFLICT`, whose speculative insertion costs a second
//! descent of the unique index and a WAL record per row), and a key stored anyway violates
//! `events_key`, which fails the transaction ([`StoreError::Corrupt`]; nothing is
//! acknowledged) rather than counting the event as stored. Events get their
//! `seq` from this transaction (max + 1 onwards, as on SQLite): under the lock, seq order is
//! commit order.

use super::events::InsertOutcome;
use super::sql::Tx;
use super::{Result, StoreError};
use crate::model::{Quantity, Timestamp};
use rust_decimal::Decimal;
use std::collections::HashMap;

/// A stored event's identity fields: (time ns, quantity, canonical properties).
type Stored = (i64, Decimal, Option<String>);

/// An event to store (see `dedupe::NewEvent`, whose fields these are).
#[derive(Debug, Clone)]
pub struct PgNewEvent {
    pub instance_key: i64,
    pub event_id: String,
    pub time: Timestamp,
    pub quantity: Quantity,
    pub billed_window: Option<i64>,
    pub billed_qty: Option<Decimal>,
    pub received: Timestamp,
    pub props: Option<String>,
    pub point_window: Option<i64>,
}

/// The event work of one PostgreSQL ingest transaction (module docs).
pub struct PgEvents {
    /// Keys looked up in this transaction, and what is stored (or held back) under them.
    known: HashMap<(i64, String), Stored>,
    held: Vec<PgNewEvent>,
    next_seq: i64,
}

fn no_pg() -> StoreError {
    StoreError::Internal("the PostgreSQL event path was called on a SQLite store".into())
}

/// Whether `e` is a unique violation of the event key `events_key`.
fn is_key_violation(e: &postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| *d.code() == postgres::error::SqlState::UNIQUE_VIOLATION && d.constraint() == Some("events_key"))
}

impl PgEvents {
    /// Begins the event work of a transaction (inside it: the seq it reads is final).
    pub fn begin(tx: &Tx<'_>) -> Result<PgEvents> {
        let next_seq = tx.one::<i64>("SELECT COALESCE(MAX(seq), 0) FROM events", super::sql::params![])? + 1;
        Ok(PgEvents { known: HashMap::new(), held: Vec::new(), next_seq })
    }

    /// Loads what is stored under `keys` (instance key, event id) not looked up yet.
    pub fn lookup<'k>(&mut self, tx: &Tx<'_>, keys: impl Iterator<Item = (i64, &'k str)>) -> Result<()> {
        let (mut refs, mut ids) = (Vec::new(), Vec::new());
        for (k, id) in keys {
            if !self.known.contains_key(&(k, id.to_owned())) {
                refs.push(k);
                ids.push(id.to_owned());
            }
        }
        if refs.is_empty() {
            return Ok(());
        }
        let mut pg = tx.pg().ok_or_else(no_pg)?;
        // One probe of the unique index per key, whatever the planner believes: a plain join
        // was planned once per connection (a prepared statement's generic plan), while `events`
        // was still empty, as a hash join over a scan of the whole table, and kept — every
        // batch then read every stored event. `LATERAL … LIMIT 1` (the key is unique) cannot
        // be flattened into a join, and the properties' subquery is an index probe too.
        let stmt = pg.prepared(
            "SELECT e.instance_ref, e.event_id, e.time_ns, e.qty, (SELECT p.props FROM event_props p WHERE p.seq = e.seq)
             FROM unnest($1::bigint[], $2::text[]) AS k(r, id)
             CROSS JOIN LATERAL (SELECT * FROM events e WHERE e.instance_ref = k.r AND e.event_id = k.id LIMIT 1) e",
        )?;
        for row in pg.client().query(&stmt, &[&refs, &ids])? {
            let key: (i64, String) = (row.try_get(0)?, row.try_get(1)?);
            self.known.insert(key, (row.try_get(2)?, row.try_get(3)?, row.try_get(4)?));
        }
        Ok(())
    }

    /// Whether an event with this key is new, a duplicate or a conflict. The key must have been
    /// looked up ([`PgEvents::lookup`]) in this transaction.
    pub fn check(&self, instance_key: i64, event_id: &str, time: Timestamp, quantity: Quantity, props: Option<&str>) -> InsertOutcome {
        match self.known.get(&(instance_key, event_id.to_owned())) {
            None => InsertOutcome::Inserted,
            Some((t, q, p)) if *t == time.0 && *q == quantity.0 && p.as_deref() == props => InsertOutcome::Duplicate,
            Some((t, q, p)) => {
                InsertOutcome::Conflict { stored_quantity: Quantity(*q), stored_time: Timestamp(*t), stored_properties: p.clone() }
            }
        }
    }

    /// Holds a new event back for [`PgEvents::finish`]; returns the seq it will have.
    /// The events of `instance_key` held back so far (not yet in `events`): a read inside the
    /// transaction that must see them (a `weighted_sum` late event's neighbours) adds them.
    pub fn held_of(&self, instance_key: i64) -> impl Iterator<Item = &PgNewEvent> {
        self.held.iter().filter(move |e| e.instance_key == instance_key)
    }

    pub fn append(&mut self, ev: PgNewEvent) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.known.insert((ev.instance_key, ev.event_id.clone()), (ev.time.0, ev.quantity.0, ev.props.clone()));
        self.held.push(ev);
        seq
    }

    /// Writes every held event (and its properties and point-window index rows), and counts
    /// them in `ingest_state`. Call once, last, before `COMMIT`.
    pub fn finish(self, tx: &Tx<'_>) -> Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let n = self.held.len();
        let first = self.next_seq - n as i64;
        let seqs: Vec<i64> = (first..self.next_seq).collect();
        let col = |f: fn(&PgNewEvent) -> i64| self.held.iter().map(f).collect::<Vec<i64>>();
        let refs = col(|e| e.instance_key);
        let times = col(|e| e.time.0);
        let received = col(|e| e.received.secs());
        let ids: Vec<&str> = self.held.iter().map(|e| e.event_id.as_str()).collect();
        let qtys: Vec<Decimal> = self.held.iter().map(|e| e.quantity.0).collect();
        let windows: Vec<Option<i64>> = self.held.iter().map(|e| e.billed_window).collect();
        let billed: Vec<Option<Decimal>> = self.held.iter().map(|e| e.billed_qty).collect();
        let mut pg = tx.pg().ok_or_else(no_pg)?;
        // A plain INSERT, not `ON CONFLICT DO NOTHING`: under the writers' lock the lookup is
        // the truth, and the speculative insertion of ON CONFLICT costs one more descent of the
        // unique index and one more WAL record per row. A key stored anyway (impossible under
        // the lock) fails the statement on `events_key`, and so the whole transaction.
        let stmt = pg.prepared(
            "INSERT INTO events (seq, instance_ref, event_id, time_ns, qty, billed_window, billed_qty, received_s)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::numeric[], $6::bigint[], $7::numeric[], $8::bigint[])",
        )?;
        match pg.client().execute(&stmt, &[&seqs, &refs, &ids, &times, &qtys, &windows, &billed, &received]) {
            Ok(_) => {}
            Err(e) if is_key_violation(&e) => {
                // Never acknowledge what was not stored by this transaction.
                return Err(StoreError::Corrupt(format!(
                    "a new event of this batch was already stored by another writer ({}); nothing of this batch is acknowledged",
                    e.as_db_error().map_or("", |d| d.message())
                )));
            }
            Err(e) => return Err(e.into()),
        }
        let (mut pseq, mut props) = (Vec::new(), Vec::new());
        let (mut wref, mut wstart, mut wseq) = (Vec::new(), Vec::new(), Vec::new());
        for (e, seq) in self.held.iter().zip(&seqs) {
            if let Some(p) = &e.props {
                pseq.push(*seq);
                props.push(p.as_str());
            }
            if let Some(w) = e.point_window {
                wref.push(e.instance_key);
                wstart.push(w);
                wseq.push(*seq);
            }
        }
        if !pseq.is_empty() {
            let stmt = pg.prepared("INSERT INTO event_props (seq, props) SELECT * FROM unnest($1::bigint[], $2::text[])")?;
            pg.client().execute(&stmt, &[&pseq, &props])?;
        }
        if !wseq.is_empty() {
            let stmt = pg.prepared(
                "INSERT INTO window_events (instance_ref, window_start, seq) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])",
            )?;
            pg.client().execute(&stmt, &[&wref, &wstart, &wseq])?;
        }
        let stmt = pg.prepared("UPDATE ingest_state SET events = events + $1 WHERE id = 1")?;
        pg.client().execute(&stmt, &[&(n as i64)])?;
        Ok(())
    }
}
