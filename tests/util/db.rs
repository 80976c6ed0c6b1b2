//! Reading the store directly, to check what was really committed rather than what an answer
//! claimed, on either backend ([`Db`]: SQLite's file or the PostgreSQL database). Queries use the
//! column names of `schemas/store.sql` (the same in `schemas/store.postgres.sql`) in SQL both
//! engines accept.

pub use super::backend::Db;
use meterd::sql_params as params;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// A read-only connection (WAL readers do not block the daemon's writer).
pub fn open_ro(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .unwrap_or_else(|e| panic!("open {} read-only: {e}", path.display()))
}

/// Number of stored events.
pub fn count_events(c: &Db) -> i64 {
    c.one("SELECT count(*) FROM events", &[])
}

/// Number of stored events of one instance.
pub fn count_events_of(c: &Db, instance_id: &str) -> i64 {
    c.one("SELECT count(*) FROM events e JOIN instances i ON i.ref = e.instance_ref WHERE i.instance_id = ?1", params![instance_id])
}

/// One stored event as (quantity text, time in UTC ns), if present.
pub fn event(c: &Db, instance_id: &str, id: &str) -> Option<(String, i64)> {
    c.opt(
        "SELECT e.qty, e.time_ns FROM events e JOIN instances i ON i.ref = e.instance_ref
         WHERE i.instance_id = ?1 AND e.event_id = ?2",
        params![instance_id, id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// How many rows hold this (instance, id): must never exceed 1.
pub fn copies(c: &Db, instance_id: &str, id: &str) -> i64 {
    c.one(
        "SELECT count(*) FROM events e JOIN instances i ON i.ref = e.instance_ref WHERE i.instance_id = ?1 AND e.event_id = ?2",
        params![instance_id, id],
    )
}

/// Every stored (instance_id, event id, quantity text).
pub fn all_events(c: &Db) -> Vec<(String, String, String)> {
    c.rows("SELECT i.instance_id, e.event_id, e.qty FROM events e JOIN instances i ON i.ref = e.instance_ref ORDER BY e.seq", &[], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

/// One instance's windows as (start in UTC seconds, usage text, event count): the stored
/// totals plus the events not yet folded into them (`seq > ingest_state.windows_through`, summed
/// here by the window that bills them), which is what every reader of meterd sees — on both
/// backends (`meterd::store::windows`).
pub fn windows(c: &Db, instance_id: &str) -> Vec<(i64, String, i64)> {
    // One statement, so one snapshot: read as two, a fold between them (a daemon's seal)
    // showed the window neither in `windows` nor in the tail.
    let rows: Vec<(i64, String, i64)> = c.rows(
        "SELECT w.start_s, w.usage, w.events FROM windows w JOIN instances i ON i.ref = w.instance_ref
         WHERE i.instance_id = ?1
         UNION ALL
         SELECT e.billed_window, coalesce(e.billed_qty, e.qty), -1 FROM events e JOIN instances i ON i.ref = e.instance_ref
         WHERE i.instance_id = ?1 AND e.billed_window IS NOT NULL AND e.seq > (SELECT windows_through FROM ingest_state)",
        params![instance_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    );
    let mut sums: std::collections::BTreeMap<i64, (i128, i64)> = std::collections::BTreeMap::new();
    for (start, q, n) in rows {
        // A `windows` row counts its events; a tail row (-1) is one event.
        let e = sums.entry(start).or_default();
        e.0 += nanos(&q);
        e.1 += if n < 0 { 1 } else { n };
    }
    sums.into_iter().map(|(s, (u, n))| (s, decimal(u), n)).collect()
}

/// The usage text of the window starting at `start_s`, if any.
pub fn window_usage(c: &Db, instance_id: &str, start_s: i64) -> Option<String> {
    windows(c, instance_id).into_iter().find(|w| w.0 == start_s).map(|w| w.1)
}

/// The store's number of ingest lanes: 1 on SQLite (one writer), `ingest_state.lanes` on
/// PostgreSQL (`meterd::store::pg_events`, "Ingest lanes").
pub fn ingest_lanes(c: &Db) -> u32 {
    match c {
        Db::Sqlite(_) => 1,
        Db::Pg(_) => c.one::<i64>("SELECT lanes FROM ingest_state", &[]) as u32,
    }
}

/// `PRAGMA integrity_check` (SQLite; PostgreSQL has no such check, its own consistency is the
/// server's), and meterd's own bookkeeping: the event count it keeps (`ingest_state.events`,
/// plus on PostgreSQL each ingest lane's count in `ingest_lanes`) must equal the rows. "ok"
/// when both hold.
pub fn integrity(c: &Db) -> String {
    let sqlite: String = match c {
        Db::Sqlite(conn) => conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check"),
        Db::Pg(_) => "ok".to_string(),
    };
    let kept: i64 = match c {
        Db::Sqlite(_) => c.one("SELECT events FROM ingest_state", &[]),
        Db::Pg(_) => c.one("SELECT (SELECT events FROM ingest_state) + (SELECT sum(events) FROM ingest_lanes)::bigint", &[]),
    };
    let rows = count_events(c);
    if sqlite != "ok" || kept == rows {
        sqlite
    } else {
        format!("ingest_state.events = {kept} but events holds {rows} rows")
    }
}

/// Exact decimal text → integer nano-units (10⁻⁹), the smallest unit an event may carry.
/// Parsed by hand so the tests' arithmetic does not share code with meterd's.
pub fn nanos(text: &str) -> i128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(frac.len() <= 9 && !int.is_empty(), "not a 9-decimal quantity: {text:?}");
    let int: i128 = int.parse().unwrap_or_else(|_| panic!("bad integer part in {text:?}"));
    let frac: i128 = format!("{frac:0<9}").parse().unwrap_or_else(|_| panic!("bad fraction in {text:?}"));
    int * 1_000_000_000 + frac
}

/// Integer nano-units → the shortest exact decimal text (no trailing zeros, no exponent).
pub fn decimal(nanos: i128) -> String {
    assert!(nanos >= 0);
    let (int, frac) = (nanos / 1_000_000_000, nanos % 1_000_000_000);
    let frac = format!("{frac:09}");
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

/// Σ of every window's usage and Σ of every stored event's quantity of one instance, in
/// nano-units. The running totals must always equal the raw events they summarise.
pub fn window_and_event_sums(c: &Db, instance_id: &str) -> (i128, i128) {
    let w: i128 = windows(c, instance_id).iter().map(|w| nanos(&w.1)).sum();
    let e: i128 = all_events(c).iter().filter(|e| e.0 == instance_id).map(|e| nanos(&e.2)).sum();
    (w, e)
}
