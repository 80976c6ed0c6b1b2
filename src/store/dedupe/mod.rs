//! Exact dedupe of events by (instance, id) without a random-order index on the hot path.
//!
//! A unique index on a random key (UUIDs) costs about one dirtied page per insert once the index
//! outgrows the cache, so durable ingest collapses as the table grows. Instead:
//!
//! - `events` is append-only in arrival order (`seq`), with no index; inserts fill one page
//!   after another.
//! - Each key has a 64-bit hash ([`key_hash`]). The keys of the events appended since the last
//!   flush are held in memory (`recent`: hash → seq). Every [`FLUSH_EVENTS`] events, inside an
//!   ingest transaction, they are written *sorted* as one new run `gen`, packed
//!   [`BLOCK_KEYS`] to a row of `key_blocks` (12 bytes a key: ~13 bytes of database per event,
//!   and a few hundred row inserts per run instead of one index insert per key). `key_runs`
//!   records each run and the last `seq` it covers.
//! - A Bloom filter over every flushed hash says "certainly not flushed" for almost every new
//!   key. Otherwise (a duplicate, a retry, or a ~0.2% false positive) each run is probed: the
//!   one block that may hold the hash is found by `(gen, first_hash)` and binary-searched.
//! - Every hash match is verified exactly against the stored event (`instance_ref`,
//!   `event_id`), so a hash collision never merges two events: the answer is exact.
//!
//! The memory state is derived from the database: [`Dedupe::load`] rebuilds it, and
//! [`Dedupe::sync`], called right after `BEGIN IMMEDIATE`, notices (by `PRAGMA data_version`)
//! when another connection committed — e.g. a one-shot `meterd ingest` next to the daemon —
//! and catches up with its events and runs before deciding anything. Changes made inside a
//! transaction are remembered and undone by [`Dedupe::rolled_back`] if it does not commit.
//!
//! Files: this one holds [`Dedupe`], the writer's state and its decisions; `bloom` the
//! in-memory filter; `runs` the on-disk sorted key runs and the pinned [`key_hash`]; the
//! appender that writes the events themselves lives with them, in
//! [`crate::store::events::append`] (re-exported here for the writer).
//!
//! The API takes the store's [`Tx`] and finds the SQLite connection under it here, so no
//! caller above `store/` names the driver; on a PostgreSQL transaction every function answers
//! [`StoreError::Internal`] (that backend dedupes by its unique index, `store::pg_events`).

mod bloom;
mod runs;

pub use crate::store::events::append::{appender, Appender, NewEvent};
pub use runs::{key_hash, BLOCK_KEYS};

use super::{InsertOutcome, Result, StoreError};
use crate::model::{Quantity, Timestamp};
use crate::store::sql::Tx;
use bloom::Bloom;
use runs::{probe_runs, runs};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;

/// Keys held in memory before they are flushed as one sorted run (~8 MiB of map).
pub const FLUSH_EVENTS: usize = 262_144;

/// `recent` is keyed by hashes that are already uniformly mixed: no need to hash them again.
#[derive(Default)]
struct Identity(u64);

impl std::hash::Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only i64 keys")
    }
    fn write_i64(&mut self, n: i64) {
        self.0 = n as u64;
    }
}

type RecentMap = HashMap<i64, i64, std::hash::BuildHasherDefault<Identity>>;

/// The writer's dedupe state (see the module docs).
pub struct Dedupe {
    /// hash → seq of events appended after the last run (`seq > flushed_through`).
    recent: RecentMap,
    /// True 64-bit collisions among `recent` (astronomically rare; kept exact anyway).
    recent_more: Vec<(i64, i64)>,
    /// Every hash of runs `0..gens`.
    bloom: Bloom,
    /// Runs loaded into `bloom`: generations `0..gens` of `key_runs`.
    gens: i64,
    /// Every event with `seq <= flushed_through` is in runs `0..gens`.
    flushed_through: i64,
    /// Highest `seq` reflected in `recent` (or covered by a run).
    last_seq: i64,
    /// `PRAGMA data_version` when memory last matched the database; -1: unknown, resync.
    data_version: i64,
    /// A run written by the open transaction: applied to memory on commit.
    flushed: Option<(Vec<i64>, i64)>,
    /// Unflushed keys that trigger a flush ([`FLUSH_EVENTS`]; small in tests).
    flush_at: usize,
}

impl Dedupe {
    /// Builds the state from the database (at writer start).
    pub fn load(tx: &Tx<'_>) -> Result<Dedupe> {
        Self::load_flushing_at(tx, FLUSH_EVENTS)
    }

    /// [`Self::load`], flushing a run every `flush_at` keys instead of [`FLUSH_EVENTS`].
    pub fn load_flushing_at(tx: &Tx<'_>, flush_at: usize) -> Result<Dedupe> {
        let mut d = Dedupe {
            recent: RecentMap::with_capacity_and_hasher(flush_at.min(FLUSH_EVENTS), Default::default()),
            recent_more: Vec::new(),
            bloom: Bloom::with_capacity(0),
            gens: 0,
            flushed_through: 0,
            last_seq: 0,
            data_version: -1,
            flushed: None,
            flush_at,
        };
        d.sync(tx)?;
        Ok(d)
    }

    /// Catches up with what other connections committed. Call first in every write transaction.
    /// Returns whether anything may have changed since the last call (so caches of other
    /// tables must be dropped too).
    pub fn sync(&mut self, tx: &Tx<'_>) -> Result<bool> {
        let conn = sqlite(tx)?;
        let dv: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if dv == self.data_version {
            return Ok(false);
        }
        let (gens, keys, through) = runs(conn)?;
        if gens != self.gens {
            if self.gens == 0 || keys as usize > self.bloom.capacity {
                self.bloom = Bloom::with_capacity(2 * keys as usize);
                self.gens = 0;
            }
            let bloom = &mut self.bloom;
            runs::each_hash(conn, self.gens, |h| bloom.insert(h))?;
            self.gens = gens;
            self.flushed_through = through;
            self.recent.retain(|_, seq| *seq > through);
            self.recent_more.retain(|(_, seq)| *seq > through);
            self.last_seq = self.last_seq.max(through);
        }
        let max_seq = super::events::max_seq(tx)?;
        if max_seq > self.last_seq {
            let mut stmt = conn.prepare("SELECT seq, instance_ref, event_id FROM events WHERE seq > ?1 ORDER BY seq")?;
            let mut rows = stmt.query([self.last_seq])?;
            while let Some(r) = rows.next()? {
                let seq: i64 = r.get(0)?;
                let h = key_hash(r.get(1)?, r.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?);
                self.remember(h, seq);
            }
            self.last_seq = max_seq;
        }
        self.data_version = dv;
        Ok(true)
    }

    /// The highest `seq` this state reflects (after the latest [`Self::append`]).
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    fn remember(&mut self, h: i64, seq: i64) {
        if let Some(prev) = self.recent.insert(h, seq) {
            self.recent_more.push((h, prev));
        }
    }

    /// Probes many keys (instance key, event id) at once: hashes them, warms the filter's
    /// blocks in one pass, then probes (see [`Probe`]).
    pub fn probe_many<'e>(&self, keys: impl Iterator<Item = Option<(i64, &'e str)>>) -> Vec<Option<Probe>> {
        let hashed: Vec<Option<(i64, i64)>> = keys.map(|k| k.map(|(key, id)| (key, key_hash(key, id)))).collect();
        std::hint::black_box(self.bloom.warm(hashed.iter().flatten().map(|(_, h)| *h)));
        hashed.into_iter().map(|k| k.map(|(instance_key, h)| Probe { instance_key, h, maybe_flushed: self.bloom.may_contain(h) })).collect()
    }

    /// Probes the in-memory filter for a key (see [`Probe`]).
    pub fn probe(&self, instance_key: i64, event_id: &str) -> Probe {
        let h = key_hash(instance_key, event_id);
        Probe { instance_key, h, maybe_flushed: self.bloom.may_contain(h) }
    }

    /// Seqs of stored events whose key hash is `p.h` (candidates; verify exactly).
    fn candidates(&self, conn: &Connection, p: Probe) -> Result<Vec<i64>> {
        let h = p.h;
        let mut out: Vec<i64> = self.recent.get(&h).copied().into_iter().collect();
        if !self.recent_more.is_empty() {
            out.extend(self.recent_more.iter().filter(|(k, _)| *k == h).map(|(_, s)| *s));
        }
        if p.maybe_flushed {
            probe_runs(conn, self.gens, h, &mut out)?;
        }
        Ok(out)
    }

    /// The stored (time, quantity) of the event with this key, if any.
    pub fn find(&self, tx: &Tx<'_>, instance_key: i64, event_id: &str) -> Result<Option<(Timestamp, Quantity)>> {
        let conn = sqlite(tx)?;
        let candidates = self.candidates(conn, self.probe(instance_key, event_id))?;
        Ok(verify(conn, candidates, instance_key, event_id)?.map(|v| (v.time, v.quantity)))
    }

    /// Whether the key probed by `p` is new, or a duplicate or conflict of the stored event:
    /// a duplicate has the same time, quantity and properties (`props`, canonical form).
    /// Events `app` holds back are written first when a candidate must be read.
    pub fn check(
        &self,
        app: &mut Appender<'_>,
        p: Probe,
        event_id: &str,
        time: Timestamp,
        quantity: Quantity,
        props: Option<&str>,
    ) -> Result<InsertOutcome> {
        let candidates = self.candidates(app.conn, p)?;
        if !candidates.is_empty() {
            app.flush()?;
        }
        Ok(match verify(app.conn, candidates, p.instance_key, event_id)? {
            None => InsertOutcome::Inserted,
            Some(v) if v.time == time && v.quantity == quantity && v.props.as_deref() == props => InsertOutcome::Duplicate,
            Some(v) => InsertOutcome::Conflict { stored_quantity: v.quantity, stored_time: v.time, stored_properties: v.props },
        })
    }

    /// Appends an event of the instance probed by `p` whose key [`Self::check`] found new, in
    /// the same transaction.
    pub fn append(&mut self, app: &mut Appender<'_>, p: Probe, ev: NewEvent<'_>) -> Result<i64> {
        let seq = app.push(p.instance_key, ev)?;
        self.remember(p.h, seq);
        self.last_seq = seq;
        Ok(seq)
    }

    /// [`Self::check`], then [`Self::append`] when new (billing the whole quantity).
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        tx: &Tx<'_>,
        instance_key: i64,
        event_id: &str,
        time: Timestamp,
        quantity: Quantity,
        billed_window: Option<i64>,
        received: Timestamp,
    ) -> Result<InsertOutcome> {
        let p = self.probe(instance_key, event_id);
        let mut app = appender(tx)?;
        let outcome = self.check(&mut app, p, event_id, time, quantity, None)?;
        if outcome == InsertOutcome::Inserted {
            self.append(
                &mut app,
                p,
                NewEvent { event_id, time, quantity, billed_window, billed_qty: None, received, props: None, point_window: None },
            )?;
        }
        app.finish()?;
        Ok(outcome)
    }

    /// Writes the in-memory keys as one sorted run when there are enough of them. Call at the
    /// end of a write transaction, before `COMMIT`.
    pub fn maybe_flush(&mut self, tx: &Tx<'_>) -> Result<()> {
        if self.recent.len() + self.recent_more.len() < self.flush_at {
            return Ok(());
        }
        let mut run: Vec<(i64, i64)> = self.recent.iter().map(|(h, s)| (*h, *s)).chain(self.recent_more.iter().copied()).collect();
        run.sort_unstable();
        let gen = self.gens;
        runs::write(sqlite(tx)?, gen, &run, self.last_seq)?;
        self.flushed = Some((run.into_iter().map(|(h, _)| h).collect(), self.last_seq));
        Ok(())
    }

    /// The transaction committed (our own commit does not change `data_version`).
    pub fn committed(&mut self) {
        let Some((hashes, through)) = self.flushed.take() else { return };
        self.flushed_through = through;
        self.recent.clear();
        self.recent_more.clear();
        if self.bloom.keys + hashes.len() > self.bloom.capacity {
            // Too full to stay selective: rebuild it twice as large from `key_blocks` on the
            // next sync.
            self.gens = 0;
            self.data_version = -1;
            return;
        }
        for h in hashes {
            self.bloom.insert(h);
        }
        self.gens += 1;
    }

    /// The transaction did not commit: drop the unflushed keys; the next sync reloads them
    /// from the database (at most [`FLUSH_EVENTS`] rows). The Bloom filter only ever holds
    /// committed runs, so it stays.
    pub fn rolled_back(&mut self) {
        self.flushed = None;
        self.recent.clear();
        self.recent_more.clear();
        self.last_seq = self.flushed_through;
        self.data_version = -1;
    }
}

/// What the writer knows of a key before looking at the database: its hash and whether any
/// flushed run may hold it. [`Dedupe::probe`] is cheap but for one likely cache miss (the Bloom
/// filter), so the writer probes a whole request first, where the misses overlap.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub instance_key: i64,
    h: i64,
    maybe_flushed: bool,
}

/// A stored event found by its key: what the identity check compares.
struct Stored {
    seq: i64,
    time: Timestamp,
    quantity: Quantity,
    /// Canonical properties, if it has any.
    props: Option<String>,
}

fn verify(conn: &Connection, candidates: Vec<i64>, instance_key: i64, event_id: &str) -> Result<Option<Stored>> {
    if candidates.is_empty() {
        return Ok(None);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT e.instance_ref, e.event_id, e.time_ns, e.qty, p.props FROM events e LEFT JOIN event_props p ON p.seq = e.seq WHERE e.seq = ?1",
    )?;
    for seq in candidates {
        let mut rows = stmt.query([seq])?;
        let Some(r) = rows.next()? else { continue };
        if r.get::<_, i64>(0)? == instance_key && r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)? == event_id {
            let qty = r.get_ref(3)?.as_str().map_err(rusqlite::Error::from)?;
            let q = Quantity::parse_stored(qty).ok_or_else(|| StoreError::Corrupt(format!("event quantity {qty:?}")))?;
            return Ok(Some(Stored { seq, time: Timestamp(r.get(2)?), quantity: q, props: r.get(4)? }));
        }
    }
    Ok(None)
}

/// The seq of the stored event with this key, without a writer's memory: probes every run,
/// then scans the unflushed events (at most about [`FLUSH_EVENTS`]). For tools and tests.
pub fn find_seq(tx: &Tx<'_>, instance_key: i64, event_id: &str) -> Result<Option<i64>> {
    let conn = sqlite(tx)?;
    let (gens, _, through) = runs(conn)?;
    let mut candidates = Vec::new();
    probe_runs(conn, gens, key_hash(instance_key, event_id), &mut candidates)?;
    // The unflushed tail is searched exactly; run matches are verified like the writer's.
    let mut stmt = conn.prepare_cached("SELECT seq FROM events WHERE seq > ?1 AND instance_ref = ?2 AND event_id = ?3")?;
    if let Some(seq) = stmt.query_row(params![through, instance_key, event_id], |r| r.get(0)).optional()? {
        return Ok(Some(seq));
    }
    Ok(verify(conn, candidates, instance_key, event_id)?.map(|v| v.seq))
}

/// The SQLite connection under `tx`: this structure exists on SQLite only (PostgreSQL dedupes by
/// its unique index, `store::pg_events`). Errors: [`StoreError::Internal`] on a PostgreSQL
/// transaction — a caller took the wrong backend's path.
fn sqlite<'c>(tx: &Tx<'c>) -> Result<&'c Connection> {
    tx.sqlite_conn().ok_or_else(|| StoreError::Internal("the SQLite dedupe ran on a PostgreSQL store".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::{instances, Store};

    fn q(s: &str) -> Quantity {
        Quantity::parse_event(s).unwrap()
    }

    fn ins(store: &mut Store, d: &mut Dedupe, key: i64, id: &str, t: i64, qty: &str) -> InsertOutcome {
        let r = store.write(|tx| {
            d.sync(tx)?;
            let out = d.insert(tx, key, id, Timestamp(t), q(qty), Some(0), Timestamp(0))?;
            d.maybe_flush(tx)?;
            Ok(out)
        });
        match r {
            Ok(o) => {
                d.committed();
                o
            }
            Err(e) => {
                d.rolled_back();
                panic!("{e}")
            }
        }
    }

    fn setup() -> (tempfile::TempDir, std::path::PathBuf, i64) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        let mut s = Store::open(&p).unwrap();
        let key = s.write(|tx| instances::add(tx, "i-1", "calls", Timestamp(0), Timestamp(0))).unwrap().key;
        (dir, p, key)
    }

    #[test]
    fn duplicate_and_conflict_across_runs_and_restarts() {
        let (_dir, p, key) = setup();
        let mut s = Store::open(&p).unwrap();
        let mut d = s.read(Dedupe::load).unwrap();
        d.flush_at = 3;
        for i in 0..10 {
            assert_eq!(ins(&mut s, &mut d, key, &format!("e{i}"), i, "1.5"), InsertOutcome::Inserted);
        }
        assert!(d.gens >= 2, "keys were flushed in runs");
        for i in 0..10 {
            assert_eq!(ins(&mut s, &mut d, key, &format!("e{i}"), i, "1.5"), InsertOutcome::Duplicate, "e{i}");
        }
        match ins(&mut s, &mut d, key, "e1", 1, "2") {
            InsertOutcome::Conflict { stored_quantity, stored_time, .. } => {
                assert_eq!((stored_quantity, stored_time), (q("1.5"), Timestamp(1)))
            }
            other => panic!("{other:?}"),
        }
        // A fresh writer (restart) rebuilds the same answers from the database.
        let mut d2 = s.read(Dedupe::load).unwrap();
        for i in 0..10 {
            assert_eq!(ins(&mut s, &mut d2, key, &format!("e{i}"), i, "1.5"), InsertOutcome::Duplicate);
        }
        assert_eq!(ins(&mut s, &mut d2, key, "new", 0, "1"), InsertOutcome::Inserted);
        assert_eq!(
            crate::store::events::get(&crate::store::sql::Tx::sqlite(s.sqlite("t").unwrap()), "i-1", "e4").unwrap().unwrap().quantity,
            q("1.5")
        );
        assert_eq!(
            crate::store::events::get(&crate::store::sql::Tx::sqlite(s.sqlite("t").unwrap()), "i-1", "new").unwrap().unwrap().quantity,
            q("1")
        );
        assert_eq!(crate::store::events::get(&crate::store::sql::Tx::sqlite(s.sqlite("t").unwrap()), "i-1", "nope").unwrap(), None);
    }

    #[test]
    fn two_writers_on_one_database_see_each_other() {
        let (_dir, p, key) = setup();
        let (mut s1, mut s2) = (Store::open(&p).unwrap(), Store::open(&p).unwrap());
        let mut d1 = s1.read(Dedupe::load).unwrap();
        let mut d2 = s2.read(Dedupe::load).unwrap();
        d1.flush_at = 2;
        d2.flush_at = 3;
        for i in 0..12 {
            let id = format!("e{i}");
            let (a, b) = if i % 2 == 0 { (&mut s1, &mut d1) } else { (&mut s2, &mut d2) };
            assert_eq!(ins(a, b, key, &id, i, "1"), InsertOutcome::Inserted);
            let (a, b) = if i % 2 == 0 { (&mut s2, &mut d2) } else { (&mut s1, &mut d1) };
            assert_eq!(ins(a, b, key, &id, i, "1"), InsertOutcome::Duplicate, "{id} seen by the other writer");
        }
        for i in 0..12 {
            assert_eq!(ins(&mut s1, &mut d1, key, &format!("e{i}"), i, "1"), InsertOutcome::Duplicate);
            assert_eq!(ins(&mut s2, &mut d2, key, &format!("e{i}"), i, "1"), InsertOutcome::Duplicate);
        }
        assert_eq!(crate::store::events::count(&crate::store::sql::Tx::sqlite(s1.sqlite("t").unwrap())).unwrap(), 12);
    }

    #[test]
    fn a_rolled_back_insert_is_forgotten() {
        let (_dir, p, key) = setup();
        let mut s = Store::open(&p).unwrap();
        let mut d = s.read(Dedupe::load).unwrap();
        d.flush_at = 1;
        assert_eq!(ins(&mut s, &mut d, key, "kept", 0, "1"), InsertOutcome::Inserted);
        let r: Result<()> = s.write(|tx| {
            d.sync(tx)?;
            d.insert(tx, key, "lost", Timestamp(0), q("1"), Some(0), Timestamp(0))?;
            d.maybe_flush(tx)?;
            Err(StoreError::Invalid("boom".into()))
        });
        assert!(r.is_err());
        d.rolled_back();
        assert_eq!(ins(&mut s, &mut d, key, "lost", 5, "2"), InsertOutcome::Inserted);
        assert_eq!(ins(&mut s, &mut d, key, "kept", 0, "1"), InsertOutcome::Duplicate);
    }

    #[test]
    fn a_run_of_many_blocks_answers_every_key() {
        let (_dir, p, key) = setup();
        let mut s = Store::open(&p).unwrap();
        let mut d = s.read(|tx| Dedupe::load_flushing_at(tx, 1000)).unwrap();
        let r = s.write(|tx| {
            for i in 0..1000 {
                d.insert(tx, key, &format!("k{i}"), Timestamp(i), q("1"), Some(0), Timestamp(0))?;
            }
            d.maybe_flush(tx)
        });
        r.unwrap();
        d.committed();
        let blocks: i64 = s.sqlite("t").unwrap().query_row("SELECT count(*) FROM key_blocks", [], |r| r.get(0)).unwrap();
        assert!(blocks >= 4, "{blocks} blocks");
        let mut fresh = s.read(Dedupe::load).unwrap();
        for i in (0..1000).step_by(7) {
            assert_eq!(ins(&mut s, &mut fresh, key, &format!("k{i}"), i, "1"), InsertOutcome::Duplicate, "k{i}");
            assert_eq!(find_seq(&crate::store::sql::Tx::sqlite(s.sqlite("t").unwrap()), key, &format!("k{i}")).unwrap(), Some(i + 1));
        }
        assert_eq!(find_seq(&crate::store::sql::Tx::sqlite(s.sqlite("t").unwrap()), key, "k-none").unwrap(), None);
    }
}
