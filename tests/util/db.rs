//! Reading the store's SQLite file directly, to check what was really committed rather than
//! what an answer claimed. Queries use the column names of `schemas/store.sql`.

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::Path;

/// A read-only connection (WAL readers do not block the daemon's writer).
pub fn open_ro(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .unwrap_or_else(|e| panic!("open {} read-only: {e}", path.display()))
}

/// Number of stored events.
pub fn count_events(c: &Connection) -> i64 {
    c.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).expect("count events")
}

/// Number of stored events of one instance.
pub fn count_events_of(c: &Connection, instance_id: &str) -> i64 {
    c.query_row("SELECT count(*) FROM events e JOIN instances i ON i.ref = e.instance_ref WHERE i.instance_id = ?1", [instance_id], |r| {
        r.get(0)
    })
    .expect("count events of instance")
}

/// One stored event as (quantity text, time in UTC ns), if present.
pub fn event(c: &Connection, instance_id: &str, id: &str) -> Option<(String, i64)> {
    c.query_row(
        "SELECT e.qty, e.time_ns FROM events e JOIN instances i ON i.ref = e.instance_ref
         WHERE i.instance_id = ?1 AND e.event_id = ?2",
        params![instance_id, id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .expect("query event")
}

/// How many rows hold this (instance, id): must never exceed 1.
pub fn copies(c: &Connection, instance_id: &str, id: &str) -> i64 {
    c.query_row(
        "SELECT count(*) FROM events e JOIN instances i ON i.ref = e.instance_ref WHERE i.instance_id = ?1 AND e.event_id = ?2",
        params![instance_id, id],
        |r| r.get(0),
    )
    .expect("count copies")
}

/// Every stored (instance_id, event id, quantity text).
pub fn all_events(c: &Connection) -> Vec<(String, String, String)> {
    let mut stmt = c
        .prepare("SELECT i.instance_id, e.event_id, e.qty FROM events e JOIN instances i ON i.ref = e.instance_ref ORDER BY e.seq")
        .expect("prepare");
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).expect("query events");
    rows.map(|r| r.expect("row")).collect()
}

/// One instance's windows as (start in UTC seconds, usage text, event count): the stored
/// totals plus the events not yet folded into them (`seq > ingest_state.windows_through`, summed
/// here by the window that bills them), which is what every reader of meterd sees.
pub fn windows(c: &Connection, instance_id: &str) -> Vec<(i64, String, i64)> {
    let mut stmt = c
        .prepare(
            "SELECT w.start_s, w.usage, w.events FROM windows w JOIN instances i ON i.ref = w.instance_ref
             WHERE i.instance_id = ?1 ORDER BY w.start_s",
        )
        .expect("prepare");
    let rows =
        stmt.query_map([instance_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))).expect("query windows");
    let mut sums: std::collections::BTreeMap<i64, (i128, i64)> =
        rows.map(|r| r.expect("row")).map(|(s, u, n)| (s, (nanos(&u), n))).collect();
    let mut stmt = c
        .prepare(
            "SELECT e.billed_window, coalesce(e.billed_qty, e.qty) FROM events e JOIN instances i ON i.ref = e.instance_ref
             WHERE i.instance_id = ?1 AND e.billed_window IS NOT NULL AND e.seq > (SELECT windows_through FROM ingest_state)",
        )
        .expect("prepare tail");
    let tail = stmt.query_map([instance_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).expect("query tail");
    for (start, q) in tail.map(|r| r.expect("row")) {
        let e = sums.entry(start).or_default();
        e.0 += nanos(&q);
        e.1 += 1;
    }
    sums.into_iter().map(|(s, (u, n))| (s, decimal(u), n)).collect()
}

/// The usage text of the window starting at `start_s`, if any.
pub fn window_usage(c: &Connection, instance_id: &str, start_s: i64) -> Option<String> {
    windows(c, instance_id).into_iter().find(|w| w.0 == start_s).map(|w| w.1)
}

/// `PRAGMA integrity_check`, and meterd's own bookkeeping: the event count it keeps
/// (`ingest_state.events`) must equal the rows. "ok" when both hold.
pub fn integrity(c: &Connection) -> String {
    let sqlite: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check");
    let kept: i64 = c.query_row("SELECT events FROM ingest_state", [], |r| r.get(0)).expect("kept event count");
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
pub fn window_and_event_sums(c: &Connection, instance_id: &str) -> (i128, i128) {
    let w: i128 = windows(c, instance_id).iter().map(|w| nanos(&w.1)).sum();
    let e: i128 = all_events(c).iter().filter(|e| e.0 == instance_id).map(|e| nanos(&e.2)).sum();
    (w, e)
}
