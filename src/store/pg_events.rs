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
//! 3. [`PgEvents::append`] encodes each new event as a binary `COPY` row at once and sends
//!    the rows about every 64 KiB into a `COPY` into `events` that stays open while the writer
//!    decides the rest (`store::pg_copy`): the server inserts them meanwhile. A point plan's
//!    events are held back instead (a read of their window adds them, [`PgEvents::held_of`]).
//!    [`PgEvents::finish`], before `COMMIT`, sends the rest, ends the `COPY` and writes the
//!    `event_props` and `window_events` rows; then [`count_appended`] adds the events to the
//!    `ingest_state` count and reads the instances' generation, in one round trip.
//!
//! **Optimistic mode** ([`PgEvents::begin`] with `optimistic`): most batches hold only new keys,
//! and the lookup of step 1 found nothing for them while costing as much server time as the
//! insert. In this mode step 1 is skipped and every key is taken as not stored; step 3 checks
//! that: the `COPY` fails on `events_key` if a key it writes is stored, and the keys that were
//! taken as new but not written (a new event the rules refused: quota, missing plan, too old…)
//! are looked up there (usually none, then no query). The `COPY` ends at the first statement
//! after the rows were sent, so a stored key can surface as the error of a statement in the
//! middle of the group (loading an instance): [`PgEvents::stored_key_or`] tells the writer it
//! means the same. If either finds a stored key,
//! [`PgEvents::finish`] answers [`Finish::KeyStored`] and the caller rolls the transaction back
//! and decides the whole group again in lookup mode, in a new transaction, with fresh in-memory
//! state (`collector::writer`): duplicates and conflicts are then named exactly as in lookup
//! mode. Nothing decided in optimistic mode is answered unless the check passed.
//!
//! **Ingest lanes.** One backend inserting events is the limit of a single writer (its CPU, in
//! the unique index mostly), so ingest runs in [`Lane`]s: the store says how many
//! (`ingest_state.lanes`, [`lanes`]), every event goes to lane [`lane_of`]`(instance_id)` on
//! every node, and each lane has a writer thread and a connection of its own on each node
//! (`collector::writer`). A lane's transaction holds the writers' lock *shared* and its lane's
//! lock exclusively (`store::pg::Lock::Lane`): lanes run side by side, one transaction per lane
//! at a time across all nodes, and every other write (seal, instance changes, upload but its
//! deliveries and background applies: `store::pg::Lock`) waits for all of them as before. The events of one instance, its package use, quota and instance
//! row are only ever written by its lane, so each lane decides as a single writer did. A
//! request whose events span lanes commits in one transaction per lane (`collector`): when one
//! fails, nothing of the request is acknowledged, though another lane may have stored its part,
//! which the resend answers as duplicates — as for any request whose answer was lost.
//!
//! `seq`: a lane's transaction reads the highest stored `seq` (`max`, under its locks) and
//! numbers its events upwards from there in steps of `lanes`, on the lane's own residue
//! (`seq ≡ lane (mod lanes)`, [`PgEvents::begin_in_lane`]): two lanes that read the same
//! `max` at once never give out the same `seq`, and every transaction that begins after
//! another committed numbers above it. Seq order is no longer commit order *across* lanes (a
//! lane may commit below a `seq` another lane committed first); within a lane it still is.
//! What relied on it is the fold of the unfolded tail, which now goes through a barrier
//! (`store::windows::fold_concurrently`). Writes other than ingest hold the writers' lock
//! exclusively, so they see no lane in flight and number from max + 1 as before.
//!
//! **Why the lookup is the truth.** Every write transaction that stores events of an instance
//! holds that instance's lane lock or the writers' lock exclusively (`store::pg`), so between
//! the lookup and the insert no other node can store a key of it: the
//! insert is a plain `COPY` (no `ON CONFLICT`, whose speculative insertion costs a second
//! descent of the unique index and a WAL record per row), and a key stored anyway (in lookup
//! mode) violates `events_key`, which fails the transaction ([`StoreError::Corrupt`]; nothing is
//! acknowledged) rather than counting the event as stored.

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
    /// New events of point plans, held back until [`PgEvents::finish`] (a read of their
    /// window adds them: [`PgEvents::held_of`]); every other new event is streamed at once.
    held: Vec<(i64, PgNewEvent)>,
    /// Rows encoded for the `COPY` and not sent yet (sent every [`STREAM_BYTES`]).
    rows: bytes::BytesMut,
    /// The properties and point-window index rows of the new events, written at the end.
    props: (Vec<i64>, Vec<String>),
    points: (Vec<i64>, Vec<i64>, Vec<i64>),
    next_seq: i64,
    /// How far apart this transaction's `seq`s are: the store's number of lanes.
    stride: i64,
    /// The `seq` of the last event held so far (the highest stored one when none is held).
    last_seq: i64,
    /// Events held so far.
    appended: i64,
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
    for row in pg.client()?.query(&stmt, &[&refs, &ids])? {
        out.push(((row.try_get(0)?, row.try_get(1)?), (row.try_get(2)?, row.try_get(3)?, row.try_get(4)?)));
    }
    Ok(out)
}

/// What the ingest writer reads first in every PostgreSQL transaction, under its lane's locks,
/// in one round trip: `ingest_state.windows_through`, `ingest_state.instances_gen`, the
/// highest stored `seq` (0 when there is none) and `ingest_state.lanes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub windows_through: i64,
    pub instances_gen: i64,
    pub last_seq: i64,
    pub lanes: u32,
}

/// Reads the [`Head`] of the store (inside a write transaction, so nothing of its lane moves
/// after; other lanes may commit meanwhile).
pub fn head(tx: &Tx<'_>) -> Result<Head> {
    tx.query_row(
        "SELECT windows_through, instances_gen, (SELECT coalesce(max(seq), 0) FROM events), lanes FROM ingest_state WHERE id = 1",
        super::sql::params![],
        |r| Ok(Head { windows_through: r.get(0)?, instances_gen: r.get(1)?, last_seq: r.get(2)?, lanes: r.get::<i64>(3)? as u32 }),
    )
}

/// One ingest lane of a store with `count` lanes (module docs, "Ingest lanes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    /// `0..count`.
    pub index: u32,
    /// The store's number of lanes, `1..=64`.
    pub count: u32,
}

impl Lane {
    /// The one lane of a store written by one writer at a time (SQLite, or writes under the
    /// writers' lock).
    pub const ONLY: Lane = Lane { index: 0, count: 1 };
}

/// The store's number of ingest lanes (`ingest_state.lanes`, `1..=64`).
pub fn lanes(tx: &Tx<'_>) -> Result<u32> {
    let n: i64 = tx.one("SELECT lanes FROM ingest_state WHERE id = 1", super::sql::params![])?;
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=64).contains(n))
        .ok_or_else(|| StoreError::Corrupt(format!("ingest_state.lanes is {n}, not 1 to 64")))
}

/// The lane of an instance's events in a store with `lanes` lanes: FNV-1a (64 bits) of the
/// instance id's bytes, modulo `lanes`. Every node must agree on it, so it is fixed forever
/// (a test pins its values).
pub fn lane_of(instance_id: &str, lanes: u32) -> u32 {
    let h = instance_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    (h % u64::from(lanes.max(1))) as u32
}

/// The first `seq` lane `lane` gives out after the highest stored `last`: the smallest value
/// above `last` on the lane's residue (module docs, "Ingest lanes").
pub fn first_seq_after(last: i64, lane: Lane) -> i64 {
    let n = i64::from(lane.count.max(1));
    let s = last + 1;
    s + (i64::from(lane.index) - s.rem_euclid(n)).rem_euclid(n)
}

impl PgEvents {
    /// Begins the event work of a transaction (inside it: the seq it reads is final);
    /// `optimistic`: skip the lookups and check at [`PgEvents::finish`] (module docs).
    pub fn begin(tx: &Tx<'_>, optimistic: bool) -> Result<PgEvents> {
        Ok(PgEvents::begin_after(super::events::max_seq(tx)?, optimistic))
    }

    /// [`PgEvents::begin`] with the highest stored `seq` (`last`) already read in this
    /// transaction, under the writers' lock.
    pub fn begin_after(last: i64, optimistic: bool) -> PgEvents {
        PgEvents::begin_in_lane(last, Lane::ONLY, optimistic)
    }

    /// [`PgEvents::begin_after`] in a transaction of `lane` (under its locks, which read
    /// `last`): its events get `seq`s from [`first_seq_after`] in steps of the lane count.
    pub fn begin_in_lane(last: i64, lane: Lane, optimistic: bool) -> PgEvents {
        PgEvents {
            stride: i64::from(lane.count.max(1)),
            last_seq: last,
            appended: 0,
            known: HashMap::new(),
            held: Vec::new(),
            rows: bytes::BytesMut::new(),
            props: (Vec::new(), Vec::new()),
            points: (Vec::new(), Vec::new(), Vec::new()),
            next_seq: first_seq_after(last, lane),
            optimistic,
            assumed: Vec::new(),
            found: 0,
        }
    }

    /// The `seq` of the last event held so far (the highest stored one when none is held).
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// How many new events were held so far.
    pub fn appended(&self) -> i64 {
        self.appended
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

    /// The new events of point plans of `instance_key` held back so far (not yet in `events`):
    /// a read inside the transaction that must see them (a `weighted_sum` late event's
    /// neighbours, read through `window_events`) adds them. Other new events are streamed to
    /// the server at once, and no such read looks for them.
    pub fn held_of(&self, instance_key: i64) -> impl Iterator<Item = &PgNewEvent> {
        self.held.iter().map(|(_, e)| e).filter(move |e| e.instance_key == instance_key)
    }

    /// Stores a new event; returns its seq. An event of a point plan is held back until
    /// [`PgEvents::finish`]; any other is encoded for the `COPY` at once, and about every
    /// `STREAM_BYTES` (64 KiB) the encoded rows go to the server, which inserts them while the writer
    /// decides the next ones (`store::pg_copy`). Whether the server took them is known when
    /// the `COPY` ends: at the next statement of the transaction, or in [`PgEvents::finish`].
    pub fn append(&mut self, tx: &Tx<'_>, ev: PgNewEvent) -> Result<i64> {
        let seq = self.next_seq;
        self.next_seq += self.stride;
        self.last_seq = seq;
        self.appended += 1;
        self.known.insert((ev.instance_key, ev.event_id.clone()), (ev.time.0, ev.quantity.0, ev.props.clone()));
        if let Some(p) = &ev.props {
            self.props.0.push(seq);
            self.props.1.push(p.clone());
        }
        if let Some(w) = ev.point_window {
            self.points.0.push(ev.instance_key);
            self.points.1.push(w);
            self.points.2.push(seq);
            self.held.push((seq, ev));
            return Ok(seq);
        }
        encode_row(&mut self.rows, seq, &ev)?;
        if self.rows.len() >= STREAM_BYTES {
            self.send(tx)?;
        }
        Ok(seq)
    }

    /// Sends the encoded rows into the `COPY` (opening it when needed).
    fn send(&mut self, tx: &Tx<'_>) -> Result<()> {
        let mut pg = tx.pg().ok_or_else(no_pg)?;
        pg.copy_rows(COPY_EVENTS, COPY_HEADER, COPY_TRAILER, &self.rows)?;
        self.rows.clear();
        Ok(())
    }

    /// What an error of a statement in this transaction means for the batch: a stored key met
    /// by the streamed `COPY` (it ends at the next statement, whose error it then is) is
    /// `Ok(())` in optimistic mode — decide the group again, [`Finish::KeyStored`] — and
    /// [`StoreError::Corrupt`] in lookup mode, as in [`PgEvents::finish`]; any other error is
    /// returned as it is.
    pub fn stored_key_or(&self, e: StoreError) -> Result<()> {
        match &e {
            StoreError::Postgres(pe) if is_key_violation(pe) && self.optimistic => Ok(()),
            StoreError::Postgres(pe) if is_key_violation(pe) => Err(StoreError::Corrupt(format!(
                "a new event of this batch was already stored by another writer ({}); nothing of this batch is acknowledged",
                pe.as_db_error().map_or("", |d| d.message())
            ))),
            _ => Err(e),
        }
    }

    /// Writes every new event not written yet (the held ones and the rows not yet sent), ends
    /// the `COPY`, and writes the properties and point-window index rows; the caller then
    /// counts them ([`count_appended`]). Call once, before `COMMIT`. In optimistic mode first
    /// checks that no key taken as new is stored ([`Finish::KeyStored`] if one is; module docs).
    pub fn finish(mut self, tx: &Tx<'_>) -> Result<Finish> {
        if self.optimistic {
            // Keys answered new but not written (a rule refused the event): looked up now.
            let (refs, ids): (Vec<i64>, Vec<String>) = self.assumed.iter().filter(|k| !self.known.contains_key(*k)).cloned().unzip();
            match stored(tx, &refs, &ids) {
                Ok(found) if !found.is_empty() => return Ok(Finish::KeyStored),
                Ok(_) => {}
                Err(e) => return self.stored_key_or(e).map(|()| Finish::KeyStored),
            }
        }
        for (seq, e) in std::mem::take(&mut self.held) {
            encode_row(&mut self.rows, seq, &e)?;
        }
        if !self.rows.is_empty() {
            self.send(tx)?;
        }
        // A plain binary COPY, not `INSERT … ON CONFLICT DO NOTHING`: under the writers' lock
        // the lookup is the truth (or optimistic mode checks it here), and the speculative
        // insertion of ON CONFLICT costs one more descent of the unique index and one more WAL
        // record per row. A stored key fails the statement on `events_key`, and so the
        // transaction: optimistic mode decides again, lookup mode refuses the batch.
        let mut pg = tx.pg().ok_or_else(no_pg)?;
        if let Err(e) = pg.end_copy() {
            return self.stored_key_or(e).map(|()| Finish::KeyStored);
        }
        let (pseq, props) = &self.props;
        if !pseq.is_empty() {
            pg.execute_typed("INSERT INTO event_props (seq, props) SELECT * FROM unnest($1::bigint[], $2::text[])", &[pseq, props])?;
        }
        let (wref, wstart, wseq) = &self.points;
        if !wseq.is_empty() {
            pg.execute_typed(
                "INSERT INTO window_events (instance_ref, window_start, seq) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])",
                &[wref, wstart, wseq],
            )?;
        }
        Ok(Finish::Stored)
    }
}

/// Counts `appended` new events in the lane's row of `ingest_lanes` (never the shared
/// `ingest_state` row, which would make the lanes wait for each other's `COMMIT`) and reads
/// `ingest_state.instances_gen` after the transaction's own changes, in one round trip (the
/// last statement of an ingest transaction before `COMMIT`).
pub fn count_appended(tx: &Tx<'_>, lane: Lane, appended: i64) -> Result<i64> {
    let mut pg = tx.pg().ok_or_else(no_pg)?;
    let stmt = pg.prepared(
        "UPDATE ingest_lanes SET events = events + $2 WHERE lane = $1 RETURNING (SELECT instances_gen FROM ingest_state WHERE id = 1)",
    )?;
    let row = pg.client()?.query_one(&stmt, &[&i64::from(lane.index), &appended])?;
    Ok(row.try_get(0)?)
}

/// The `COPY` every new event goes through (binary format).
///
/// It is sent as text (`copy_in` parses it again at each opening, once per transaction) rather
/// than as a statement prepared once: that would save one round trip per transaction, but
/// `pg_stat_statements` then counts only the first execution, and the `COPY` is most of the
/// server's time — the bench's statement profile (`METERD_BENCH_PGSS=1`) must show it.
/// Measured: no difference within the noise (2026-11-30, four alternated runs).
const COPY_EVENTS: &str =
    "COPY events (seq, instance_ref, event_id, time_ns, qty, billed_window, billed_qty, received_s) FROM STDIN BINARY";

/// The binary `COPY` format's header: signature, flags (none), header extension length (0).
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The binary `COPY` format's trailer: a field count of -1.
const COPY_TRAILER: &[u8] = &[0xff, 0xff];

/// Encoded rows sent to the server at a time: large enough that sending costs little of the
/// writer's time, small enough that the server starts on the first rows early (the writer
/// decides about 600 events meanwhile).
const STREAM_BYTES: usize = 64 * 1024;

/// Appends one `events` row to `buf` in the binary `COPY` format: the field count, then each
/// field as its length (-1 for NULL) and its binary value, as `postgres-types` encodes it.
fn encode_row(buf: &mut bytes::BytesMut, seq: i64, e: &PgNewEvent) -> Result<()> {
    use bytes::BufMut;
    use postgres::types::{IsNull, ToSql, Type};
    fn field(buf: &mut bytes::BytesMut, v: &(dyn ToSql + Sync), ty: &Type) -> Result<()> {
        let at = buf.len();
        buf.put_i32(0);
        let len = match v.to_sql_checked(ty, buf).map_err(|e| StoreError::Internal(format!("encoding an event for COPY: {e}")))? {
            IsNull::Yes => -1,
            IsNull::No => i32::try_from(buf.len() - at - 4).map_err(|_| StoreError::Internal("an event field over 2 GiB".into()))?,
        };
        buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
    buf.put_i16(8);
    field(buf, &seq, &Type::INT8)?;
    field(buf, &e.instance_key, &Type::INT8)?;
    field(buf, &e.event_id, &Type::TEXT)?;
    field(buf, &e.time.0, &Type::INT8)?;
    field(buf, &e.quantity.0, &Type::NUMERIC)?;
    field(buf, &e.billed_window, &Type::INT8)?;
    field(buf, &e.billed_qty, &Type::NUMERIC)?;
    field(buf, &e.received.secs(), &Type::INT8)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every node must send an instance's events to the same lane, whatever its build: these
    /// values are the contract (FNV-1a of the id's bytes), not whatever the code computes.
    #[test]
    fn the_lane_of_an_instance_is_fixed_forever() {
        let fnv = |s: &str| {
            let mut h: u64 = 14_695_981_039_346_656_037;
            for b in s.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(1_099_511_628_211);
            }
            h
        };
        assert_eq!(fnv(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv("a"), 0xaf63_dc4c_8601_ec8c, "the published FNV-1a 64 vector for \"a\"");
        for id in ["", "a", "i-1", "i-2", "inst-000042", "实例-7"] {
            for lanes in [1, 2, 3, 4, 64] {
                assert_eq!(lane_of(id, lanes), (fnv(id) % lanes as u64) as u32, "{id} over {lanes} lanes");
            }
        }
        assert_eq!([lane_of("i-1", 2), lane_of("i-2", 2), lane_of("i-3", 2), lane_of("i-4", 2)], [0, 1, 0, 1]);
        assert_eq!(lane_of("anything", 1), 0);
    }

    /// Two lanes that read the same highest `seq` give out disjoint `seq`s, each above it and
    /// on its own residue; one lane alone numbers from max + 1 as before.
    #[test]
    fn lanes_number_above_the_highest_seq_on_their_own_residue() {
        for last in [0_i64, 1, 2, 7, 100, 101] {
            let mut given = std::collections::HashSet::new();
            for index in 0..3 {
                let lane = Lane { index, count: 3 };
                let first = first_seq_after(last, lane);
                assert!(first > last && first <= last + 3, "lane {index} after {last}: {first}");
                assert_eq!(first.rem_euclid(3), i64::from(index));
                let mut ev = PgEvents::begin_in_lane(last, lane, true);
                assert_eq!(ev.last_seq(), last, "nothing held yet");
                for _ in 0..5 {
                    assert!(given.insert(ev.next_seq), "seq {} given twice", ev.next_seq);
                    ev.next_seq += ev.stride;
                }
            }
            assert_eq!(first_seq_after(last, Lane::ONLY), last + 1);
        }
    }
}
