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
//! 3. [`PgEvents::finish`], before `COMMIT`: the held rows in one binary `COPY` into `events`
//!    (plus `event_props` and `window_events` rows); then [`count_appended`] adds them to the
//!    `ingest_state` count and reads the instances' generation, in one round trip.
//!
//! **Optimistic mode** ([`PgEvents::begin`] with `optimistic`): most batches hold only new keys,
//! and the lookup of step 1 found nothing for them while costing as much server time as the
//! insert. In this mode step 1 is skipped and every key is taken as not stored; step 3 checks
//! that: the `COPY` fails on `events_key` if a key it writes is stored, and the keys that were
//! taken as new but not written (a new event the rules refused: quota, missing plan, too old…)
//! are looked up there (usually none, then no query). If either finds a stored key,
//! [`PgEvents::finish`] answers [`Finish::KeyStored`] and the caller rolls the transaction back
//! and decides the whole group again in lookup mode, in a new transaction, with fresh in-memory
//! state (`collector::writer`): duplicates and conflicts are then named exactly as in lookup
//! mode. Nothing decided in optimistic mode is answered unless the check passed.
//!
//! **Why the lookup is the truth.** Every write transaction holds the writers' advisory lock
//! (`store::pg`), so between the lookup and the insert no other node can store a key: the
//! insert is a plain `COPY` (no `ON CONFLICT`, whose speculative insertion costs a second
//! descent of the unique index and a WAL record per row), and a key stored anyway (in lookup
//! mode) violates `events_key`, which fails the transaction ([`StoreError::Corrupt`]; nothing is
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
    /// No lookup: every key is taken as not stored, and [`PgEvents::finish`] checks it.
    optimistic: bool,
    /// Optimistic mode: the keys [`PgEvents::check`] answered new (some are then held).
    assumed: Vec<(i64, String)>,
    /// How many stored keys the lookups found (0 in optimistic mode).
    found: usize,
}

/// What [`PgEvents::finish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Finish {
    /// Every held event is written (nothing else is needed).
    Stored,
    /// Optimistic mode only: a key taken as new is stored. The transaction has written part of
    /// the batch or is failed: roll back to before the attempt and decide it again in lookup
    /// mode.
    KeyStored,
}

fn no_pg() -> StoreError {
    StoreError::Internal("the PostgreSQL event path was called on a SQLite store".into())
}

/// Whether `e` is a unique violation of the event key `events_key`.
fn is_key_violation(e: &postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| *d.code() == postgres::error::SqlState::UNIQUE_VIOLATION && d.constraint() == Some("events_key"))
}

/// What is stored under the keys (`refs[i]`, `ids[i]`): one probe of the unique index per key.
fn stored(tx: &Tx<'_>, refs: &[i64], ids: &[String]) -> Result<Vec<((i64, String), Stored)>> {
    if refs.is_empty() {
        return Ok(Vec::new());
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
    let mut out = Vec::new();
    for row in pg.client().query(&stmt, &[&refs, &ids])? {
        out.push(((row.try_get(0)?, row.try_get(1)?), (row.try_get(2)?, row.try_get(3)?, row.try_get(4)?)));
    }
    Ok(out)
}

/// What the ingest writer reads first in every PostgreSQL transaction, under the writers' lock,
/// in one round trip: `ingest_state.windows_through`, `ingest_state.instances_gen` and the
/// highest stored `seq` (0 when there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub windows_through: i64,
    pub instances_gen: i64,
    pub last_seq: i64,
}

/// Reads the [`Head`] of the store (inside a write transaction, so nothing moves after).
pub fn head(tx: &Tx<'_>) -> Result<Head> {
    tx.query_row(
        "SELECT windows_through, instances_gen, (SELECT coalesce(max(seq), 0) FROM events) FROM ingest_state WHERE id = 1",
        super::sql::params![],
        |r| Ok(Head { windows_through: r.get(0)?, instances_gen: r.get(1)?, last_seq: r.get(2)? }),
    )
}

impl PgEvents {
    /// Begins the event work of a transaction (inside it: the seq it reads is final);
    /// `optimistic`: skip the lookups and check at [`PgEvents::finish`] (module docs).
    pub fn begin(tx: &Tx<'_>, optimistic: bool) -> Result<PgEvents> {
        Ok(PgEvents::begin_after(super::events::max_seq(tx)?, optimistic))
    }

    /// [`PgEvents::begin`] with the highest stored `seq` (`last`) already read in this
    /// transaction, under the writers' lock (the ingest writer reads it with `ingest_state`).
    pub fn begin_after(last: i64, optimistic: bool) -> PgEvents {
        PgEvents { known: HashMap::new(), held: Vec::new(), next_seq: last + 1, optimistic, assumed: Vec::new(), found: 0 }
    }

    /// The `seq` of the last event held so far (the highest stored one when none is held).
    pub fn last_seq(&self) -> i64 {
        self.next_seq - 1
    }

    /// How many stored keys the lookups of this transaction found (0 in optimistic mode).
    pub fn found(&self) -> usize {
        self.found
    }

    /// Loads what is stored under `keys` (instance key, event id) not looked up yet; nothing in
    /// optimistic mode.
    pub fn lookup<'k>(&mut self, tx: &Tx<'_>, keys: impl Iterator<Item = (i64, &'k str)>) -> Result<()> {
        if self.optimistic {
            return Ok(());
        }
        let (mut refs, mut ids) = (Vec::new(), Vec::new());
        for (k, id) in keys {
            if !self.known.contains_key(&(k, id.to_owned())) {
                refs.push(k);
                ids.push(id.to_owned());
            }
        }
        for (key, stored) in stored(tx, &refs, &ids)? {
            self.found += 1;
            self.known.insert(key, stored);
        }
        Ok(())
    }

    /// Whether an event with this key is new, a duplicate or a conflict. The key must have been
    /// looked up ([`PgEvents::lookup`]) in this transaction; in optimistic mode a key not held
    /// is new, and is checked by [`PgEvents::finish`].
    pub fn check(&mut self, instance_key: i64, event_id: &str, time: Timestamp, quantity: Quantity, props: Option<&str>) -> InsertOutcome {
        match self.known.get(&(instance_key, event_id.to_owned())) {
            None => {
                if self.optimistic {
                    self.assumed.push((instance_key, event_id.to_owned()));
                }
                InsertOutcome::Inserted
            }
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

    /// Writes every held event (and its properties and point-window index rows); the caller
    /// then counts them ([`count_appended`]). Call once, before `COMMIT`. In optimistic mode first checks
    /// that no key taken as new is stored ([`Finish::KeyStored`] if one is; module docs).
    pub fn finish(self, tx: &Tx<'_>) -> Result<Finish> {
        if self.optimistic {
            // Keys answered new but not written (a rule refused the event): looked up now.
            let (refs, ids): (Vec<i64>, Vec<String>) = self.assumed.iter().filter(|k| !self.known.contains_key(*k)).cloned().unzip();
            if !stored(tx, &refs, &ids)?.is_empty() {
                return Ok(Finish::KeyStored);
            }
        }
        if self.held.is_empty() {
            return Ok(Finish::Stored);
        }
        let n = self.held.len();
        let first = self.next_seq - n as i64;
        let seqs: Vec<i64> = (first..self.next_seq).collect();
        let mut pg = tx.pg().ok_or_else(no_pg)?;
        // A plain binary COPY, not `INSERT … ON CONFLICT DO NOTHING`: under the writers' lock
        // the lookup is the truth (or optimistic mode checks it here), and the speculative
        // insertion of ON CONFLICT costs one more descent of the unique index and one more WAL
        // record per row. A stored key fails the statement on `events_key`, and so the
        // transaction: optimistic mode decides again, lookup mode refuses the batch.
        match copy_events(pg.client(), &self.held, first) {
            Ok(()) => {}
            Err(e) if is_key_violation(&e) && self.optimistic => return Ok(Finish::KeyStored),
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
        Ok(Finish::Stored)
    }
}

/// Counts `appended` new events in `ingest_state.events` and reads `ingest_state.instances_gen`
/// after the transaction's own changes, in one round trip (the last statement of an ingest
/// transaction before `COMMIT`).
pub fn count_appended(tx: &Tx<'_>, appended: i64) -> Result<i64> {
    let mut pg = tx.pg().ok_or_else(no_pg)?;
    let stmt = pg.prepared("UPDATE ingest_state SET events = events + $1 WHERE id = 1 RETURNING instances_gen")?;
    let row = pg.client().query_one(&stmt, &[&appended])?;
    Ok(row.try_get(0)?)
}

/// The `COPY` of [`copy_events`].
const COPY_EVENTS: &str =
    "COPY events (seq, instance_ref, event_id, time_ns, qty, billed_window, billed_qty, received_s) FROM STDIN BINARY";

/// Writes `held` into `events` with seqs `first`, `first + 1`, … in one binary `COPY`.
///
/// The `COPY` goes as text (`copy_in` parses it again each time) rather than as a statement
/// prepared once: that would save one round trip per transaction, but `pg_stat_statements`
/// then counts only the first execution, and the `COPY` is most of the server's time — the
/// bench's statement profile (`METERD_BENCH_PGSS=1`) must show it. Measured: no difference
/// within the noise (2026-11-30, four alternated runs).
fn copy_events(client: &mut postgres::Client, held: &[PgNewEvent], first: i64) -> std::result::Result<(), postgres::Error> {
    use postgres::binary_copy::BinaryCopyInWriter;
    use postgres::types::{ToSql, Type};
    let sink = client.copy_in(COPY_EVENTS)?;
    let types = [Type::INT8, Type::INT8, Type::TEXT, Type::INT8, Type::NUMERIC, Type::INT8, Type::NUMERIC, Type::INT8];
    let mut w = BinaryCopyInWriter::new(sink, &types);
    for (e, seq) in held.iter().zip(first..) {
        let row: [&(dyn ToSql + Sync); 8] =
            [&seq, &e.instance_key, &e.event_id, &e.time.0, &e.quantity.0, &e.billed_window, &e.billed_qty, &e.received.secs()];
        w.write(&row)?;
    }
    w.finish()?;
    Ok(())
}
