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
//!
//! **The same on PostgreSQL** (issue 13). The lazy fold needs one thing of `seq`: an event
//! committed after a fold must have a `seq` above `windows_through`. Ingest runs in lanes
//! there (`store::pg_events`, "Ingest lanes"), side by side, so seq order is not commit order
//! across lanes: while lane 0 is still writing `seq` 101, lane 1 may have committed 102. A
//! fold that read the highest committed `seq` (102) and moved `windows_through` there would
//! leave lane 0's 101 below it, in neither `windows` nor the tail — lost. So the ingest
//! writers keep no sums of their own on PostgreSQL and fold in two steps
//! ([`fold_concurrently`]): a barrier under the writers' lock held exclusively (no lane is in
//! flight, so every `seq` up to the highest is committed, and every later lane transaction
//! numbers above it) reads the highest `seq` `S`; then, beside the lanes (the lock shared,
//! and the fold lock), the events in (`windows_through`, `S`] are summed from `events` and
//! added to `windows`, and `windows_through` becomes `S`, in one transaction. Every other
//! write (seal, release, copy) folds the whole tail under the exclusive lock ([`fold`]), where
//! no lane is in flight either. A reader's snapshot is consistent whatever it holds: it
//! reads `windows`, `windows_through` and the events after it from one snapshot, and a fold
//! changes the first two in one commit. Updating `windows` in every ingest transaction
//! instead (as before migration 6) cost about a third of the server's CPU per event: ~2 events
//! per window per transaction in the bench, against ~5 or more per window per fold; reading
//! the tail back at the fold costs the server far less (see `docs/performance-history.md`).
//! Stop-before-excess quotas never read `windows` (they read `package_usage`, written in the
//! event's own transaction), so the tail changes nothing at ingest.
//!
//! Folds write every window in one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE` on
//! PostgreSQL (`write_sums`), and one statement per window on SQLite.

use super::events::max_seq;
use super::sql::{params, Row, Tx};
use super::{dec, Result, StoreError};
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
    a.checked_add(b).ok_or_else(|| StoreError::Overflow("window usage overflows a 96-bit decimal".into()))
}

fn add_to(sums: &mut Sums, key: (i64, i64), usage: Decimal, events: u64) -> Result<()> {
    let e = sums.entry(key).or_default();
    e.0 = usage_sum(e.0, usage)?;
    e.1 += events;
    Ok(())
}

/// `windows_through`: every billable event with `seq` up to here is in `windows` (both
/// backends; see the module docs).
pub fn folded_through(tx: &Tx<'_>) -> Result<i64> {
    tx.one("SELECT windows_through FROM ingest_state WHERE id = 1", params![])
}

/// Adds the billable events with `seq > after` (of one instance, or all) to `sums`; returns
/// how many were added.
fn scan_tail(tx: &Tx<'_>, after: i64, instance: Option<i64>, sums: &mut Sums) -> Result<usize> {
    scan_range(tx, after, i64::MAX, instance, sums)
}

/// [`scan_tail`] of the events with `seq` in (`after`, `through`].
fn scan_range(tx: &Tx<'_>, after: i64, through: i64, instance: Option<i64>, sums: &mut Sums) -> Result<usize> {
    let mut n = 0;
    // The CAST types the parameter for PostgreSQL, which cannot infer it from `IS NULL`
    // (even with `instance_ref = ?2` beside it); on SQLite it changes nothing.
    tx.for_each(
        "SELECT instance_ref, billed_window, coalesce(billed_qty, qty) FROM events
         WHERE seq > ?1 AND seq <= ?3 AND billed_window IS NOT NULL AND (CAST(?2 AS BIGINT) IS NULL OR instance_ref = ?2)",
        params![after, instance, through],
        |r| {
            let q = r.with_str(2, dec)?;
            add_to(sums, (r.get(0)?, r.get(1)?), q, 1)?;
            n += 1;
            Ok(())
        },
    )?;
    Ok(n)
}

/// Adds `sums` to the stored totals, in key order (the table's, so writes stay on few pages):
/// on PostgreSQL in one statement ([`write_sums_pg`]), on SQLite one statement per window.
fn write_sums(tx: &Tx<'_>, sums: &Sums) -> Result<()> {
    if let Some(mut pg) = tx.pg() {
        return write_sums_pg(&mut pg, sums);
    }
    let mut keys: Vec<_> = sums.iter().map(|(&(key, start), &v)| ((start, key), v)).collect();
    keys.sort_unstable_by_key(|e| e.0);
    // One statement per window: insert it, or add to the stored total exactly. The columns are
    // qualified in DO UPDATE: PostgreSQL finds a bare `usage` ambiguous beside `excluded`.
    // Prepared once: the fold may write tens of thousands of windows in one transaction.
    let mut upsert = tx.prepare(
        "INSERT INTO windows (start_s, instance_ref, usage, events) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (start_s, instance_ref) DO UPDATE SET usage = meterd_decimal_add(windows.usage, excluded.usage), events = windows.events + excluded.events",
    )?;
    for ((start, key), (delta, count)) in keys {
        upsert.execute(params![start, key, delta.normalize().to_string(), count as i64])?;
    }
    Ok(())
}

/// [`write_sums`] on PostgreSQL: every window in one `INSERT … SELECT FROM unnest(…) ON
/// CONFLICT DO UPDATE` (one round trip per transaction, not one per window: a group of 1000
/// events over 1000 instances touches 1000 windows). The deltas travel as `numeric`, so the
/// sum stays exact; the keys are unique in `sums`, as one statement that updates a row twice
/// would fail.
fn write_sums_pg(pg: &mut super::sql::PgConn, sums: &Sums) -> Result<()> {
    if sums.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<_> = sums.iter().map(|(&(key, start), &(delta, count))| (start, key, delta.normalize(), count as i64)).collect();
    rows.sort_unstable_by_key(|r| (r.0, r.1));
    let starts: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let keys: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let deltas: Vec<Decimal> = rows.iter().map(|r| r.2).collect();
    let counts: Vec<i64> = rows.iter().map(|r| r.3).collect();
    let stmt = pg.prepared(
        "INSERT INTO windows (start_s, instance_ref, usage, events)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::numeric[], $4::bigint[])
         ON CONFLICT (start_s, instance_ref) DO UPDATE SET usage = meterd_decimal_add(windows.usage, excluded.usage), events = windows.events + excluded.events",
    )?;
    pg.client()?.execute(&stmt, &[&starts, &keys, &deltas, &counts])?;
    Ok(())
}

/// Folds the whole unfolded tail into `windows` (call inside a write transaction).
pub fn fold(tx: &Tx<'_>) -> Result<()> {
    let through = folded_through(tx)?;
    let last = max_seq(tx)?;
    if last <= through {
        return Ok(());
    }
    let mut sums = Sums::default();
    scan_tail(tx, through, None, &mut sums)?;
    write_sums(tx, &sums)?;
    set_folded_through(tx, last)
}

/// Folds the unfolded tail into `windows` beside the ingest lanes of a PostgreSQL store, in
/// two transactions (module docs): the barrier, under the writers' lock held exclusively,
/// reads the highest `seq`; the fold, under the lock shared and the fold lock, adds the events
/// up to it to `windows` and moves `windows_through` there. Returns whether it folded
/// anything (not when a seal or another fold got there first). On SQLite: [`fold`], in one
/// transaction.
///
/// Errors: the store's; nothing is half done (each transaction is all or nothing, and a
/// barrier alone changes nothing).
pub fn fold_concurrently(store: &mut super::Store) -> Result<bool> {
    if store.backend() == super::sql::Backend::Sqlite {
        return store.write(|tx| {
            let before = folded_through(tx)?;
            fold(tx)?;
            Ok(folded_through(tx)? > before)
        });
    }
    let through = store.write(max_seq)?;
    store.write_under(super::pg::Lock::Fold, |tx| fold_through(tx, through))
}

/// Adds the billable events with `seq` in (`windows_through`, `through`] to `windows` and
/// moves `windows_through` to `through`; nothing when it is there already. Every event with
/// `seq <= through` must be committed and visible (the barrier of [`fold_concurrently`]).
///
/// PostgreSQL only. The server sums the events and upserts the windows in one statement
/// ([`FOLD_ON_SERVER`]): reading ~131k rows back into the writer to sum them there cost the
/// lane doing the fold more time than the server's sum (measured: `docs/performance-history.md`,
/// session 28). `numeric` sums are exact; a total a 96-bit decimal cannot hold (which readers
/// could not read back) fails the fold, as [`usage_sum`] does, and nothing of it is kept.
fn fold_through(tx: &Tx<'_>, through: i64) -> Result<bool> {
    let folded = folded_through(tx)?;
    if through <= folded {
        return Ok(false);
    }
    let too_large: i64 = tx.one(FOLD_ON_SERVER, params![folded, through])?;
    if too_large > 0 {
        return Err(StoreError::Overflow(format!("{too_large} window totals would overflow a 96-bit decimal; nothing was folded")));
    }
    set_folded_through(tx, through)?;
    Ok(true)
}

/// [`fold_through`]'s statement (PostgreSQL): the billable events with `seq` in (`?1`, `?2`]
/// summed per window and added to `windows` (in key order, as [`write_sums_pg`] writes), and
/// how many totals then exceed a 96-bit decimal (its mantissa at its scale).
const FOLD_ON_SERVER: &str = "WITH up AS (
        INSERT INTO windows (start_s, instance_ref, usage, events)
        SELECT billed_window, instance_ref, trim_scale(sum(coalesce(billed_qty, qty))), count(*) FROM events
        WHERE seq > ?1 AND seq <= ?2 AND billed_window IS NOT NULL
        GROUP BY billed_window, instance_ref ORDER BY billed_window, instance_ref
        ON CONFLICT (start_s, instance_ref) DO UPDATE SET usage = meterd_decimal_add(windows.usage, excluded.usage), events = windows.events + excluded.events
        RETURNING usage
    )
    SELECT count(*) FROM up WHERE abs(usage) * power(10::numeric, scale(usage)) >= 79228162514264337593543950336";

/// Takes `usage` and `events` out of the stored total of one window (a late release moving
/// usage to `unbillable`, `store::lifecycle_release`); a window left without events is removed.
/// Call after [`fold`], in the same write transaction: the total must be stored. Errors:
/// `Corrupt` when the window is missing or would go below zero events.
pub fn subtract(tx: &Tx<'_>, instance_key: i64, start: i64, usage: Decimal, events: u64) -> Result<()> {
    let row = tx.query_opt(
        "SELECT instance_ref, start_s, usage, events FROM windows WHERE instance_ref = ?1 AND start_s = ?2",
        params![instance_key, start],
        window_row,
    )?;
    let w = row.filter(|w| w.events >= events).ok_or_else(|| {
        StoreError::Corrupt(format!("window {start} of instance {instance_key} holds fewer than the {events} events taken out of it"))
    })?;
    if w.events == events {
        tx.execute("DELETE FROM windows WHERE instance_ref = ?1 AND start_s = ?2", params![instance_key, start])?;
    } else {
        tx.execute(
            "UPDATE windows SET usage = ?3, events = ?4 WHERE instance_ref = ?1 AND start_s = ?2",
            params![instance_key, start, (w.usage - usage).normalize().to_string(), (w.events - events) as i64],
        )?;
    }
    Ok(())
}

/// Adds every billable event with `seq > after` to `windows`, and returns how many it added.
/// For `store::copy`: the source's unfolded tail, copied as events, becomes window totals on
/// the destination, which then starts with no tail. Call inside a write transaction.
pub fn fold_after(tx: &Tx<'_>, after: i64) -> Result<u64> {
    let mut sums = Sums::default();
    let n = scan_tail(tx, after, None, &mut sums)?;
    write_sums(tx, &sums)?;
    Ok(n as u64)
}

fn set_folded_through(tx: &Tx<'_>, seq: i64) -> Result<()> {
    tx.execute("UPDATE ingest_state SET windows_through = ?1 WHERE id = 1", params![seq])?;
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
    pub fn sync(&mut self, tx: &Tx<'_>, changed: bool) -> Result<()> {
        if !changed && !self.stale {
            return Ok(());
        }
        self.sync_to(tx, folded_through(tx)?, max_seq(tx)?)
    }

    /// [`Self::sync`] with `windows_through` (`through`) and the highest `seq` (`last`) already
    /// read in this write transaction (PostgreSQL reads them at every transaction, in one
    /// query with the instances' generation): nothing to do when both are what these sums
    /// last saw; a reload when someone folded (or the sums are stale); else a scan of the
    /// events appended since by other writers (other nodes).
    pub fn sync_to(&mut self, tx: &Tx<'_>, through: i64, last: i64) -> Result<()> {
        if !self.stale && through == self.through && last == self.seen {
            return Ok(());
        }
        if self.stale || through != self.through {
            self.reset(through);
        }
        if last > self.seen {
            scan_tail(tx, self.seen, None, &mut self.sums)?;
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
    pub fn maybe_fold(&self, tx: &Tx<'_>, last_seq: i64) -> Result<bool> {
        if self.events < self.fold_at {
            return Ok(false);
        }
        write_sums(tx, &self.sums)?;
        set_folded_through(tx, last_seq)?;
        Ok(true)
    }

    /// Adds the sums of one attempt at a transaction (`delta`, summed apart so that an attempt
    /// that is rolled back leaves these untouched) to the tail. Call in the write
    /// transaction that appends its events; a failed transaction must [`Self::invalidate`].
    pub fn absorb(&mut self, delta: TailSums) -> Result<()> {
        for (key, (usage, events)) in delta.sums {
            add_to(&mut self.sums, key, usage, events)?;
        }
        self.events += delta.events;
        Ok(())
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
    pub fn load(tx: &Tx<'_>) -> Result<Unfolded> {
        Self::scan(tx, None)
    }

    /// One instance's unfolded usage.
    pub fn load_instance(tx: &Tx<'_>, instance_key: i64) -> Result<Unfolded> {
        Self::scan(tx, Some(instance_key))
    }

    fn scan(tx: &Tx<'_>, instance: Option<i64>) -> Result<Unfolded> {
        let mut sums = Sums::default();
        scan_tail(tx, folded_through(tx)?, instance, &mut sums)?;
        let mut out = Unfolded::default();
        for ((key, start), v) in sums {
            out.0.entry(key).or_default().insert(start, v);
        }
        Ok(out)
    }
}

/// Windows of one instance with `start` in `[from, to)`, ordered by start: stored totals plus
/// the unfolded tail.
pub fn of_instance(tx: &Tx<'_>, instance_key: i64, from: i64, to: i64) -> Result<Vec<WindowRow>> {
    of_instance_with(tx, &Unfolded::load_instance(tx, instance_key)?, instance_key, from, to)
}

/// [`of_instance`] with a tail already loaded (by [`Unfolded::load`] in the same transaction).
/// An empty or inverted range (`from >= to`, e.g. a preview ending before the seal cursor)
/// holds no window: the answer is empty, never a panic.
pub fn of_instance_with(tx: &Tx<'_>, tail: &Unfolded, instance_key: i64, from: i64, to: i64) -> Result<Vec<WindowRow>> {
    if from >= to {
        return Ok(Vec::new());
    }
    let mut out = tx.query_map(
        "SELECT instance_ref, start_s, usage, events FROM windows WHERE instance_ref = ?1 AND start_s >= ?2 AND start_s < ?3 ORDER BY start_s",
        params![instance_key, from, to],
        window_row,
    )?;
    let Some(extra) = tail.0.get(&instance_key) else { return Ok(out) };
    let mut merged: BTreeMap<i64, WindowRow> = out.drain(..).map(|w| (w.start, w)).collect();
    for (&start, &(usage, events)) in extra.range(from..to) {
        let w = merged.entry(start).or_insert(WindowRow { instance_key, start, usage: Decimal::ZERO, events: 0 });
        w.usage = usage_sum(w.usage, usage)?;
        w.events += events;
    }
    Ok(merged.into_values().collect())
}

fn window_row(r: &Row<'_>) -> Result<WindowRow> {
    Ok(WindowRow { instance_key: r.get(0)?, start: r.get(1)?, usage: dec(&r.get::<String>(2)?)?, events: r.get::<i64>(3)? as u64 })
}

#[cfg(test)]
mod tests {
    use super::super::pg::Lock;
    use super::super::pg_events::{first_seq_after, Lane};
    use super::super::pg_schema::test_pg as pg;
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Appends one event of 1 unit to instance 1's window 0 under lane `lane` of 2, with the
    /// `seq` the lane gives out, and returns it; runs `before_commit` inside the transaction.
    fn append_in_lane(store: &mut super::super::Store, lane: u32, id: &str, before_commit: impl FnOnce()) -> i64 {
        store
            .write_under(Lock::Lane(lane), |tx| {
                let seq = first_seq_after(max_seq(tx)?, Lane { index: lane, count: 2 });
                tx.execute(
                    "INSERT INTO events (seq, instance_ref, event_id, time_ns, qty, billed_window, received_s) VALUES (?1, 1, ?2, 0, 1, 0, 0)",
                    params![seq, id],
                )?;
                before_commit();
                Ok(seq)
            })
            .unwrap()
    }

    /// What readers see for instance 1's window 0: folded total plus the unfolded tail.
    fn total(store: &mut super::super::Store) -> Decimal {
        store.read(|tx| Ok(of_instance(tx, 1, 0, 3600)?.iter().map(|w| w.usage).sum())).unwrap()
    }

    /// The lost event the barrier prevents: lane 1 is still writing `seq` 1 when lane 0 has
    /// committed `seq` 2. A fold beside them must not move `windows_through` to 2 before `seq` 1
    /// is committed, or that event ends up in neither `windows` nor the tail. The fold is
    /// started while lane 1's transaction is open and given time to finish; only then does lane
    /// 1 commit. Without the barrier of `fold_concurrently` (a plain read of the highest `seq`
    /// beside the lanes) the fold finishes in that time and the total is 1, not 2.
    #[test]
    fn a_fold_beside_the_lanes_never_skips_an_event_a_lane_is_still_writing() {
        let Some(cluster) = pg::PgCluster::shared() else { return };
        let url = cluster.fresh_db();
        let open = || super::super::Store::open(std::path::Path::new(&url)).unwrap();
        let mut setup = open();
        setup
            .write(|tx| {
                tx.execute("INSERT INTO instances (ref, instance_id, plan, start_ns, created_ns) VALUES (1, 'i-1', 'p', 0, 0)", params![])
                    .map(|_| ())
            })
            .unwrap();
        let (inserted_tx, inserted) = mpsc::channel();
        let (commit_tx, commit) = mpsc::channel::<()>();
        let mut slow = open();
        let lane1 = std::thread::spawn(move || {
            append_in_lane(&mut slow, 1, "slow", || {
                inserted_tx.send(()).unwrap();
                commit.recv().unwrap();
            })
        });
        inserted.recv().unwrap();
        let fast = append_in_lane(&mut open(), 0, "fast", || {});
        let mut folder = open();
        let fold = std::thread::spawn(move || fold_concurrently(&mut folder).unwrap());
        std::thread::sleep(Duration::from_millis(500));
        commit_tx.send(()).unwrap();
        let slow = lane1.join().unwrap();
        assert!(slow < fast, "lane 1 wrote below the seq lane 0 committed first ({slow} < {fast})");
        assert!(fold.join().unwrap(), "the fold folded");
        let mut reader = open();
        assert_eq!(total(&mut reader), Decimal::from(2), "both events are in the window total");
        assert_eq!(reader.read(folded_through).unwrap(), fast, "the fold reached the highest seq");
    }

    /// A statement of a lane's transaction that runs past `LANE_STATEMENT_TIMEOUT` (a node
    /// paused in the middle of its `COPY` holds its lane's lock, and with a seal queued behind
    /// it, the other lane too) fails the transaction, as "try again" (503), and frees the
    /// locks; the wait for the locks is not capped, and other writes are not capped at all.
    /// Without the cap the sleeping statement succeeds and the test fails.
    #[test]
    fn a_lane_statement_that_hangs_is_cut_off_and_answered_as_busy() {
        let Some(cluster) = pg::PgCluster::shared() else { return };
        let url = cluster.fresh_db();
        let mut store = super::super::Store::open(std::path::Path::new(&url)).unwrap();
        let started = std::time::Instant::now();
        let e = store.write_under(Lock::Lane(0), |tx| tx.one::<i64>("SELECT 1::bigint FROM pg_sleep(11)", params![])).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(11), "cut off before the sleep ended");
        assert_eq!(e.reason(), "busy", "{e}");
        assert!(e.is_unavailable(), "answered 503, retry: {e}");
        // The lock was released with the transaction: the next lane transaction runs.
        assert_eq!(store.write_under(Lock::Lane(0), |tx| tx.one::<i64>("SELECT 2::bigint", params![])).unwrap(), 2);
        // Outside the lanes no statement is capped (a seal or fold may run for long).
        assert_eq!(store.write(|tx| tx.one::<String>("SELECT current_setting('statement_timeout')", params![])).unwrap(), "0");
    }
}
