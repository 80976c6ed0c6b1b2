//! Usage totals per instance and window, so sealing and previews never sum raw events.
//!
//! The totals are folded in lazily, like an LSM tree's memtable (issue 6): updating one
//! `windows` row per event (or per window per transaction) cost more than the event's own
//! insert, since a busy seller's events spread over thousands of windows at once.
//!
//! - `windows` holds the usage of every billable event with `seq <= ingest_state.windows_through`.
//! - Events after that (the *unfolded tail*, at most about [`FOLD_EVENTS`]) are summed on
//!   demand from `events` itself: each carries the window that bills it (`billed_window`) and,
//!   when a stop-before-excess package left part of it unbilled, the billed part (`billed_qty`).
//! - The ingest writer keeps the tail's sums in memory ([`TailSums`]) and folds them into
//!   `windows` in one pass once the tail reaches [`FOLD_EVENTS`]; sealing folds the whole tail
//!   first in its own transaction ([`fold`]). Folding and advancing `windows_through` happen in
//!   one transaction, so `windows` + tail always equals the sum of the billable events.
//!
//! Readers get the sum through [`of_instance`] (one instance) or [`Unfolded::load`] +
//! [`of_instance_with`] (many instances, one tail scan).

use super::events::max_seq;
use super::{dec, Result, StoreError};
use rusqlite::{params, Connection};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

/// Unfolded events after which the ingest writer folds the tail into `windows`. Bounds what a
/// reader scans (~10 ms) against what a fold writes (one row per touched window).
pub const FOLD_EVENTS: usize = 131_072;

/// One window's usage so far.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    pub instance_key: i64,
    pub start: i64,
    pub usage: Decimal,
    pub events: u64,
}

/// (instance key, window start) → (usage, events).
pub type Sums = foldhash::HashMap<(i64, i64), (Decimal, u64)>;

/// `a + b` for window usage, which must not overflow a 96-bit decimal.
fn usage_sum(a: Decimal, b: Decimal) -> Result<Decimal> {
    a.checked_add(b).ok_or_else(|| StoreError::Invalid("window usage overflows a 96-bit decimal".into()))
}

fn add_to(sums: &mut Sums, key: (i64, i64), usage: Decimal, events: u64) -> Result<()> {
    let e = sums.entry(key).or_default();
    e.0 = usage_sum(e.0, usage)?;
    e.1 += events;
    Ok(())
}

/// `windows_through`: every billable event with `seq` up to here is in `windows`.
pub fn folded_through(conn: &Connection) -> Result<i64> {
    Ok(conn.prepare_cached("SELECT windows_through FROM ingest_state WHERE id = 1")?.query_row([], |r| r.get(0))?)
}

/// Adds the billable events with `seq > after` (of one instance, or all) to `sums`; returns
/// how many were added.
fn scan_tail(conn: &Connection, after: i64, instance: Option<i64>, sums: &mut Sums) -> Result<usize> {
    let mut stmt = conn.prepare_cached(
        "SELECT instance_ref, billed_window, coalesce(billed_qty, qty) FROM events
         WHERE seq > ?1 AND billed_window IS NOT NULL AND (?2 IS NULL OR instance_ref = ?2)",
    )?;
    let mut rows = stmt.query(params![after, instance])?;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        let q = dec(r.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?)?;
        add_to(sums, (r.get(0)?, r.get(1)?), q, 1)?;
        n += 1;
    }
    Ok(n)
}

/// Adds `sums` to the stored totals, in key order (the table's, so writes stay on few pages).
fn write_sums(conn: &Connection, sums: &Sums) -> Result<()> {
    let mut keys: Vec<_> = sums.iter().map(|(&(key, start), &v)| ((start, key), v)).collect();
    keys.sort_unstable_by_key(|e| e.0);
    // One statement per window: insert it, or add to the stored total exactly.
    let mut upsert = conn.prepare_cached(
        "INSERT INTO windows (start_s, instance_ref, usage, events) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (start_s, instance_ref) DO UPDATE SET usage = meterd_decimal_add(usage, excluded.usage), events = events + excluded.events",
    )?;
    for ((start, key), (delta, count)) in keys {
        upsert.execute(params![start, key, delta.normalize().to_string(), count as i64])?;
    }
    Ok(())
}

/// Folds the whole unfolded tail into `windows` (call inside a write transaction).
pub fn fold(conn: &Connection) -> Result<()> {
    let through = folded_through(conn)?;
    let last = max_seq(conn)?;
    if last <= through {
        return Ok(());
    }
    let mut sums = Sums::default();
    scan_tail(conn, through, None, &mut sums)?;
    write_sums(conn, &sums)?;
    set_folded_through(conn, last)
}

fn set_folded_through(conn: &Connection, seq: i64) -> Result<()> {
    conn.prepare_cached("UPDATE ingest_state SET windows_through = ?1 WHERE id = 1")?.execute([seq])?;
    Ok(())
}

/// The ingest writer's in-memory sums of the unfolded tail, kept equal to what
/// `scan_tail` would return for the database it last saw.
#[derive(Default)]
pub struct TailSums {
    /// `windows_through` these sums start after.
    through: i64,
    /// Highest `seq` included.
    seen: i64,
    /// Events summed (billable or not), to decide when to fold.
    events: usize,
    sums: Sums,
    /// Unknown (start, or after a failed transaction): reload at the next sync.
    stale: bool,
    /// Fold when the tail reaches this many events ([`FOLD_EVENTS`]).
    fold_at: usize,
}

impl TailSums {
    /// Empty and stale (loaded at the first sync); folds every `fold_at` events.
    pub fn new(fold_at: usize) -> TailSums {
        TailSums { stale: true, fold_at, ..TailSums::default() }
    }

    /// Catches up with the database when another connection may have committed (`changed`) or
    /// the sums are unknown: reloads when someone folded, else adds the events others appended.
    pub fn sync(&mut self, conn: &Connection, changed: bool) -> Result<()> {
        if !changed && !self.stale {
            return Ok(());
        }
        let through = folded_through(conn)?;
        if self.stale || through != self.through {
            self.reset(through);
        }
        let last = max_seq(conn)?;
        if last > self.seen {
            scan_tail(conn, self.seen, None, &mut self.sums)?;
            self.events += (last - self.seen) as usize;
            self.seen = last;
        }
        Ok(())
    }

    /// Adds an appended event billed `usage` in the window starting at `start` (call in the
    /// write transaction that appends it; a failed transaction must [`Self::invalidate`]).
    pub fn add(&mut self, key: i64, start: i64, usage: Decimal) -> Result<()> {
        add_to(&mut self.sums, (key, start), usage, 1)
    }

    /// Counts an appended event (billable or not) towards the next fold.
    pub fn appended(&mut self) {
        self.events += 1;
    }

    /// Folds the tail (events up to `last_seq`) into `windows` when it is long enough. Returns
    /// whether it did; pass that to [`Self::committed`] after the commit.
    pub fn maybe_fold(&self, conn: &Connection, last_seq: i64) -> Result<bool> {
        if self.events < self.fold_at {
            return Ok(false);
        }
        write_sums(conn, &self.sums)?;
        set_folded_through(conn, last_seq)?;
        Ok(true)
    }

    /// The transaction committed: its events are in the tail, or, when it folded, in `windows`.
    pub fn committed(&mut self, folded: bool, last_seq: i64) {
        if folded {
            self.reset(last_seq);
        } else {
            self.seen = self.seen.max(last_seq);
        }
    }

    /// Empty, starting after `through` (fresh: not stale).
    fn reset(&mut self, through: i64) {
        *self = TailSums { through, seen: through, fold_at: self.fold_at, ..TailSums::default() };
    }

    /// The transaction failed: rebuild from the database next time.
    pub fn invalidate(&mut self) {
        self.stale = true;
    }
}

/// The unfolded tail summed per instance, for readers.
#[derive(Default)]
pub struct Unfolded(HashMap<i64, BTreeMap<i64, (Decimal, u64)>>);

impl Unfolded {
    /// Every instance's unfolded usage (one scan of the tail).
    pub fn load(conn: &Connection) -> Result<Unfolded> {
        Self::scan(conn, None)
    }

    /// One instance's unfolded usage.
    pub fn load_instance(conn: &Connection, instance_key: i64) -> Result<Unfolded> {
        Self::scan(conn, Some(instance_key))
    }

    fn scan(conn: &Connection, instance: Option<i64>) -> Result<Unfolded> {
        let mut sums = Sums::default();
        scan_tail(conn, folded_through(conn)?, instance, &mut sums)?;
        let mut out = Unfolded::default();
        for ((key, start), v) in sums {
            out.0.entry(key).or_default().insert(start, v);
        }
        Ok(out)
    }
}

/// Windows of one instance with `start` in `[from, to)`, ordered by start: stored totals plus
/// the unfolded tail.
pub fn of_instance(conn: &Connection, instance_key: i64, from: i64, to: i64) -> Result<Vec<WindowRow>> {
    of_instance_with(conn, &Unfolded::load_instance(conn, instance_key)?, instance_key, from, to)
}

/// [`of_instance`] with a tail already loaded (by [`Unfolded::load`] in the same transaction).
/// An empty or inverted range (`from >= to`, e.g. a preview ending before the seal cursor)
/// holds no window: the answer is empty, never a panic.
pub fn of_instance_with(conn: &Connection, tail: &Unfolded, instance_key: i64, from: i64, to: i64) -> Result<Vec<WindowRow>> {
    if from >= to {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT instance_ref, start_s, usage, events FROM windows WHERE instance_ref = ?1 AND start_s >= ?2 AND start_s < ?3 ORDER BY start_s",
    )?;
    let mut out = collect(stmt.query(params![instance_key, from, to])?)?;
    let Some(extra) = tail.0.get(&instance_key) else { return Ok(out) };
    let mut merged: BTreeMap<i64, WindowRow> = out.drain(..).map(|w| (w.start, w)).collect();
    for (&start, &(usage, events)) in extra.range(from..to) {
        let w = merged.entry(start).or_insert(WindowRow { instance_key, start, usage: Decimal::ZERO, events: 0 });
        w.usage = usage_sum(w.usage, usage)?;
        w.events += events;
    }
    Ok(merged.into_values().collect())
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
