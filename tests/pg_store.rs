//! The store on a real PostgreSQL server (issue 13): `Store::open` with a `postgres://` URL
//! connects and migrates, statements written once run through `store::sql::Tx` with exact
//! decimals, writers from several connections serialise on the writers' lock, the sealer lease
//! and its fencing hold across connections, exactly-once event storage (`store::pg_events`)
//! finds duplicates and conflicts, the password never shows, and a restarted server is
//! reconnected to by itself.

#[path = "util/pg.rs"]
mod pg;
#[path = "util/plans.rs"]
mod plans;

use meterd::model::{Quantity, Timestamp};
use meterd::store::lease::{self, Acquired};
use meterd::store::pg_events::{self, Finish, PgEvents, PgNewEvent};
use meterd::store::sql::{params, Backend};
use meterd::store::{InsertOutcome, Store, StoreError};
use pg::PgCluster;
use rust_decimal::Decimal;
use std::path::Path;
use std::time::Duration;

/// The shared hourly `calls` plan (at 0.002 per call) with auto-registration, as the ingest
/// and seal tests here use it.
fn calls_plan() -> String {
    format!("\n[collector]\nauto_register = \"calls\"\n{}", plans::calls_plan("0.002"))
}

fn open(url: &str) -> Store {
    Store::open(Path::new(url)).unwrap()
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// Every window's usage and event count as readers see them, by instance id and start:
/// `windows` plus the events not folded into it yet (`meterd::store::windows`: PostgreSQL
/// keeps an unfolded tail too).
const WINDOW_TOTALS: &str = "SELECT i.instance_id, sum(u.usage), sum(u.events)::bigint FROM (
        SELECT instance_ref, start_s, usage, events FROM windows
        UNION ALL
        SELECT instance_ref, billed_window, coalesce(billed_qty, qty), 1 FROM events
        WHERE billed_window IS NOT NULL AND seq > (SELECT windows_through FROM ingest_state WHERE id = 1)
    ) u JOIN instances i ON i.ref = u.instance_ref GROUP BY i.instance_id, u.start_s ORDER BY i.instance_id, u.start_s";

#[test]
fn a_postgres_url_opens_a_migrated_store_and_statements_run_with_exact_decimals() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db();
    let mut s = open(&url);
    assert_eq!(s.backend(), Backend::Postgres);
    assert!(!format!("{s:?}").contains(pg.password()), "the password never shows: {s:?}");
    let big = dec("1234567890123456789.123456789");
    s.write(|tx| {
        tx.execute(
            "INSERT INTO instances (instance_id, plan, start_ns, created_ns) VALUES (?1, ?2, ?3, ?4)",
            params!["i-1", "api", 0_i64, 0_i64],
        )
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let key: i64 = s.read(|tx| tx.one("SELECT ref FROM instances WHERE instance_id = ?1", params!["i-1"])).unwrap();
    s.write(|tx| {
        tx.execute("INSERT INTO windows (instance_ref, start_s, usage, events) VALUES (?1, ?2, ?3, ?4)", params![key, 3600_i64, big, 1_i64])?;
        // The exact sum of the store's own function, as on SQLite.
        tx.execute(
            "INSERT INTO windows (instance_ref, start_s, usage, events) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (start_s, instance_ref) DO UPDATE SET usage = meterd_decimal_add(windows.usage, excluded.usage), events = windows.events + excluded.events",
            params![key, 3600_i64, "0.000000001", 1_i64],
        )
    })
    .unwrap();
    let (usage, events): (Decimal, i64) = s
        .read(|tx| tx.query_row("SELECT usage, events FROM windows WHERE instance_ref = ?1", params![key], |r| Ok((r.get(0)?, r.get(1)?))))
        .unwrap();
    assert_eq!((usage, events), (dec("1234567890123456789.12345679"), 2));
    // Text of a numeric column reads as the decimal SQLite would hold.
    let text: String = s.read(|tx| tx.one("SELECT usage FROM windows", params![])).unwrap();
    assert_eq!(text, "1234567890123456789.12345679");
    // A second open migrates nothing and sees the same data.
    let mut again = open(&url);
    assert_eq!(again.read(|tx| tx.one::<i64>("SELECT count(*) FROM windows", params![])).unwrap(), 1);
}

#[test]
fn writers_on_several_connections_never_lose_an_update() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db();
    open(&url).write(|tx| tx.execute("INSERT INTO meta (key, value) VALUES ('n', '0')", params![])).unwrap();
    // Read-modify-write in Rust, as the store's functions do: only the writers' lock makes it safe.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut s = open(&url);
                for _ in 0..25 {
                    s.write(|tx| {
                        let n: String = tx.one("SELECT value FROM meta WHERE key = 'n'", params![])?;
                        let next = n.parse::<i64>().unwrap() + 1;
                        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'n'", params![next.to_string()])
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let n: String = open(&url).read(|tx| tx.one("SELECT value FROM meta WHERE key = 'n'", params![])).unwrap();
    assert_eq!(n, "100");
}

#[test]
fn the_sealer_lease_fences_a_node_that_lost_it_across_connections() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db();
    let (mut a, mut b) = (open(&url), open(&url));
    let ttl = Duration::from_millis(300);
    let Acquired::Held(fa) = a.write(|tx| lease::acquire(tx, lease::SEALER, "a", None, ttl)).unwrap() else { panic!("free lease") };
    assert!(matches!(b.write(|tx| lease::acquire(tx, lease::SEALER, "b", None, ttl)).unwrap(), Acquired::Busy(r) if r.holder == "a"));
    // The sleep is the test: past the 300 ms lease, b may take it.
    std::thread::sleep(Duration::from_millis(350));
    let Acquired::Held(fb) = b.write(|tx| lease::acquire(tx, lease::SEALER, "b", None, ttl)).unwrap() else { panic!("expired lease") };
    assert_eq!(fb.epoch, fa.epoch + 1);
    a.set_fence(Some(fa));
    let e = a.write(|tx| tx.execute("INSERT INTO meta (key, value) VALUES ('by', 'a')", params![])).unwrap_err();
    assert!(matches!(e, StoreError::Fenced { ref holder, .. } if holder == "b"), "{e}");
    b.set_fence(Some(fb));
    b.write(|tx| tx.execute("INSERT INTO meta (key, value) VALUES ('by', 'b')", params![])).unwrap();
    let by: Vec<String> = b.read(|tx| tx.query_map("SELECT value FROM meta WHERE key = 'by'", params![], |r| r.get(0))).unwrap();
    assert_eq!(by, vec!["b".to_string()]);
    b.write(|tx| lease::heartbeat(tx, "b", "0.1.0", 1, true)).unwrap();
    let seen = b.read(|tx| lease::nodes_seen(tx, Duration::from_secs(60))).unwrap();
    assert_eq!(seen.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), vec!["b"]);
}

fn new_event(key: i64, id: &str, qty: &str) -> PgNewEvent {
    PgNewEvent {
        instance_key: key,
        event_id: id.into(),
        time: Timestamp::from_secs(7200),
        quantity: Quantity(dec(qty)),
        billed_window: Some(7200),
        billed_qty: None,
        received: Timestamp::from_secs(7300),
        props: None,
        point_window: None,
    }
}

#[test]
fn events_are_stored_once_and_conflicts_are_named() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut s = open(&pg.fresh_db());
    let t = Timestamp::from_secs(7200);
    s.write(|tx| {
        let mut ev = PgEvents::begin(tx, false)?;
        ev.lookup(tx, [(1, "e1"), (1, "e2")].into_iter())?;
        assert_eq!(ev.check(1, "e1", t, Quantity(dec("1.5")), None), InsertOutcome::Inserted);
        ev.append(tx, new_event(1, "e1", "1.5"))?;
        // The same key again in the same transaction is the event just held.
        assert_eq!(ev.check(1, "e1", t, Quantity(dec("1.50")), None), InsertOutcome::Duplicate);
        ev.append(tx, new_event(1, "e2", "2"))?;
        assert_eq!(ev.finish(tx)?, Finish::Stored);
        pg_events::count_appended(tx, pg_events::Lane::ONLY, 2).map(|_| ())
    })
    .unwrap();
    s.write(|tx| {
        let mut ev = PgEvents::begin(tx, false)?;
        ev.lookup(tx, [(1, "e1"), (1, "e2"), (1, "e3")].into_iter())?;
        assert_eq!(ev.check(1, "e1", t, Quantity(dec("1.5")), None), InsertOutcome::Duplicate);
        assert!(matches!(ev.check(1, "e2", t, Quantity(dec("3")), None), InsertOutcome::Conflict { stored_quantity, .. } if stored_quantity.0 == dec("2")));
        assert_eq!(ev.check(1, "e3", t, Quantity(dec("1")), None), InsertOutcome::Inserted);
        ev.append(tx, new_event(1, "e3", "1"))?;
        assert_eq!(ev.finish(tx)?, Finish::Stored);
        pg_events::count_appended(tx, pg_events::Lane::ONLY, 1).map(|_| ())
    })
    .unwrap();
    let (n, seqs): (i64, Vec<i64>) = s
        .read(|tx| {
            Ok((meterd::store::events::kept_count(tx)?, tx.query_map("SELECT seq FROM events ORDER BY seq", params![], |r| r.get(0))?))
        })
        .unwrap();
    assert_eq!((n, seqs), (3, vec![1, 2, 3]));
    // A row another writer stored under a held key fails the whole transaction.
    let e = s
        .write(|tx| {
            let mut ev = PgEvents::begin(tx, false)?;
            ev.append(tx, new_event(1, "e1", "1.5"))?;
            ev.append(tx, new_event(1, "e4", "1"))?;
            ev.finish(tx).map(|f| assert_eq!(f, Finish::Stored))
        })
        .unwrap_err();
    assert!(e.to_string().contains("already stored"), "{e}");
    assert_eq!(s.read(|tx| tx.one::<i64>("SELECT count(*) FROM events", params![])).unwrap(), 3);
}

/// Optimistic mode skips the lookup and checks at `finish`: a held key that is stored fails the
/// `COPY` and a key taken as new but not held (a rule refused the event) is looked up; either
/// answers `KeyStored` (the caller rolls back and decides again), and a batch of new keys is
/// stored as in lookup mode.
#[test]
fn optimistic_events_are_checked_when_finished() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut s = open(&pg.fresh_db());
    let t = Timestamp::from_secs(7200);
    s.write(|tx| {
        let mut ev = PgEvents::begin(tx, true)?;
        ev.lookup(tx, [(1, "e1"), (1, "e2")].into_iter())?;
        assert_eq!(ev.check(1, "e1", t, Quantity(dec("1.5")), None), InsertOutcome::Inserted);
        ev.append(tx, new_event(1, "e1", "1.5"))?;
        assert_eq!(ev.check(1, "e1", t, Quantity(dec("1.5")), None), InsertOutcome::Duplicate);
        ev.append(tx, new_event(1, "e2", "2"))?;
        assert_eq!(ev.found(), 0);
        ev.finish(tx).map(|f| assert_eq!(f, Finish::Stored))
    })
    .unwrap();
    // A stored key among the written ones: the COPY fails, and the attempt says so.
    let f = s
        .write(|tx| {
            tx.pg().expect("a PostgreSQL store").batch("SAVEPOINT t")?;
            let mut ev = PgEvents::begin(tx, true)?;
            ev.lookup(tx, [(1, "e3"), (1, "e1")].into_iter())?;
            for id in ["e3", "e1"] {
                assert_eq!(ev.check(1, id, t, Quantity(dec("1")), None), InsertOutcome::Inserted);
                ev.append(tx, new_event(1, id, "1"))?;
            }
            let f = ev.finish(tx)?;
            tx.pg().expect("a PostgreSQL store").batch("ROLLBACK TO SAVEPOINT t")?;
            Ok(f)
        })
        .unwrap();
    assert_eq!(f, Finish::KeyStored);
    // A stored key taken as new but then refused by a rule (not written): looked up at finish.
    let f = s
        .write(|tx| {
            let mut ev = PgEvents::begin(tx, true)?;
            assert_eq!(ev.check(1, "e2", t, Quantity(dec("2")), None), InsertOutcome::Inserted);
            assert_eq!(ev.check(1, "e4", t, Quantity(dec("4")), None), InsertOutcome::Inserted);
            ev.append(tx, new_event(1, "e4", "4"))?;
            ev.finish(tx)
        })
        .unwrap();
    assert_eq!(f, Finish::KeyStored);
    let ids: Vec<String> = s.read(|tx| tx.query_map("SELECT event_id FROM events ORDER BY seq", params![], |r| r.get(0))).unwrap();
    assert_eq!(ids, vec!["e1".to_string(), "e2".to_string()]);
}

/// The collector's optimistic path on PostgreSQL falls back to the lookup whenever a batch
/// holds a stored key: a batch mixing new, duplicate and conflicting keys, a batch of only
/// duplicates, and a resend of a stored event that is now too old to be taken as new all get
/// the verdicts of the lookup, and the windows hold exactly the accepted events.
#[test]
fn a_batch_with_stored_keys_gets_the_lookup_verdicts() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db();
    let cfg = std::sync::Arc::new(meterd::config::Config::from_toml_str(&calls_plan()).unwrap());
    let now: Timestamp = "2026-11-20T10:30:00Z".parse().unwrap();
    let line =
        |id: &str, inst: &str, q: &str| format!(r#"{{"id":"{id}","instance_id":"{inst}","quantity":"{q}","time":"2026-11-20T09:10:00Z"}}"#);
    let c = meterd::collector::Collector::start(Path::new(&url), cfg.clone(), Box::new(|_, _| {})).unwrap();
    let first = [line("e1", "i-1", "1.25"), line("e2", "i-1", "2"), line("e3", "i-2", "5")].join("\n");
    let r = c.ingest_body(first.as_bytes(), now).unwrap();
    assert_eq!((r.accepted, r.duplicates, r.rejected.len()), (3, 0, 0), "{r:?}");
    // New keys (one of a new instance), a duplicate, a conflict, and a key twice in the batch.
    let mixed = [
        line("e4", "i-1", "0.5"),
        line("e1", "i-1", "1.25"),
        line("e2", "i-1", "7"),
        line("e5", "i-3", "3"),
        line("e4", "i-1", "0.5"),
        line("e6", "i-2", "1"),
    ]
    .join("\n");
    let r = c.ingest_body(mixed.as_bytes(), now).unwrap();
    assert_eq!((r.accepted, r.duplicates, r.rejected.len()), (3, 2, 1), "{r:?}");
    assert_eq!(r.rejected[0].id.as_deref(), Some("e2"), "{r:?}");
    assert!(r.rejected[0].error.contains("already stored with quantity 2"), "{r:?}");
    // Only duplicates (the writer now starts with the lookup), then new keys again.
    let r = c.ingest_body(first.as_bytes(), now).unwrap();
    assert_eq!((r.accepted, r.duplicates, r.rejected.len()), (0, 3, 0), "{r:?}");
    let r = c.ingest_body(line("e7", "i-1", "1").as_bytes(), now).unwrap();
    assert_eq!((r.accepted, r.duplicates), (1, 0), "{r:?}");
    // A resend 30 days later (past max_age) is still the stored event, not a too-old new one.
    let later = Timestamp::from_secs(now.secs() + 30 * 86_400);
    let r = c.ingest_body(line("e3", "i-2", "5").as_bytes(), later).unwrap();
    assert_eq!((r.accepted, r.duplicates, r.rejected.len()), (0, 1, 0), "{r:?}");
    let mut s = open(&url);
    let (totals, events, counted): (Vec<(String, Decimal, i64)>, i64, i64) = s
        .read(|tx| {
            Ok((
                tx.query_map(WINDOW_TOTALS, params![], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?,
                tx.one("SELECT count(*) FROM events", params![])?,
                meterd::store::events::kept_count(tx)?,
            ))
        })
        .unwrap();
    assert_eq!(totals, vec![("i-1".into(), dec("4.75"), 4), ("i-2".into(), dec("6"), 2), ("i-3".into(), dec("3"), 1)]);
    assert_eq!((events, counted), (7, 7));
}

/// Event ids are opaque: `events.event_id` compares bytes (collation "C", PG migration 5), as
/// SQLite does, whatever locale the database was created with.
#[test]
fn event_ids_compare_bytewise() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut s = open(&pg.fresh_db());
    let collation: Option<String> = s
        .read(|tx| {
            tx.one(
                "SELECT collation_name::text FROM information_schema.columns WHERE table_name = 'events' AND column_name = 'event_id'",
                params![],
            )
        })
        .unwrap();
    assert_eq!(collation.as_deref(), Some("C"));
}

/// Runs `meterd --config CFG --db DB ARGS…` in `dir`; panics unless it exits 0; returns stdout.
fn meterd_ok(dir: &Path, db: &str, args: &[&str]) -> String {
    let cfg = dir.join("meterd.toml");
    let out = meterd_in(dir, db, &[&["--config", cfg.to_str().unwrap()], args].concat());
    assert!(out.status.success(), "meterd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The instance ids `instance list` and `preview` (rows, then per-instance totals) show, in
/// their order, after registering `ids` and one event for each.
fn listed_ids(dir: &Path, db: &str, ids: &[&str]) -> Vec<Vec<String>> {
    for id in ids {
        meterd_ok(dir, db, &["instance", "add", id, "--plan", "calls", "--start", "2026-11-20T00:00:00Z"]);
    }
    let events: Vec<String> =
        ids.iter().map(|id| format!(r#"{{"id":"e1","instance_id":"{id}","quantity":"1","time":"2026-11-20T09:10:00Z"}}"#)).collect();
    std::fs::write(dir.join("events.ndjson"), events.join("\n")).unwrap();
    meterd_ok(dir, db, &["ingest", "events.ndjson", "--now", "2026-11-20T10:30:00Z"]);
    let json = |args: &[&str]| serde_json::from_str::<serde_json::Value>(&meterd_ok(dir, db, args)).unwrap();
    let ids_of = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|o| o["instance_id"].as_str().unwrap().to_string()).collect()
    };
    let preview = json(&["preview", "--format", "json"]);
    vec![ids_of(&json(&["instance", "list", "--format", "json"])), ids_of(&preview["rows"]), ids_of(&preview["instances"])]
}

/// On a database whose default collation is not C (ICU `en-US`, where `i-B` sorts after
/// `i-a`), listings still order instance ids by their bytes, as SQLite and a C database do
/// (new-user trial: `instance list` and `preview` followed the database's locale).
#[test]
fn listings_order_ids_by_bytes_whatever_the_database_collation() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db_with("TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'");
    let ids = ["i-b", "i-_", "i-B", "i-a", "i-A"];
    let mut by_bytes: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    by_bytes.sort();
    assert_eq!(by_bytes, ["i-A", "i-B", "i-_", "i-a", "i-b"]);
    // The database really sorts text another way, so the test can fail.
    let by_collation: Vec<String> = pg::connect(&url)
        .query("SELECT x FROM unnest($1::text[]) AS x ORDER BY x", &[&by_bytes])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_ne!(by_collation, by_bytes, "the database's collation sorts as C does");
    let sqlite = tempfile::tempdir().unwrap();
    let postgres = tempfile::tempdir().unwrap();
    for dir in [&sqlite, &postgres] {
        std::fs::write(dir.path().join("meterd.toml"), plans::calls_plan("0.002")).unwrap();
    }
    let on_sqlite = listed_ids(sqlite.path(), sqlite.path().join("meterd.db").to_str().unwrap(), &ids);
    assert_eq!(on_sqlite, vec![by_bytes.clone(); 3], "instance list, preview rows, preview instances");
    assert_eq!(listed_ids(postgres.path(), &url, &ids), on_sqlite);
}

/// The lookup probes the unique index once per key however its plan was made: with the plan
/// made while `events` was empty (the connection's first batches), a join planned as a hash
/// join over a scan of the whole table read every stored event at every later batch.
#[test]
fn the_lookup_probes_the_key_index_even_with_a_plan_made_on_an_empty_table() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut s = open(&pg.fresh_db());
    let scans = |tx: &meterd::store::sql::Tx<'_>| {
        tx.one::<i64>("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'events'", params![])
    };
    s.write(|tx| {
        // A prepared statement's generic plan, as a connection gets after a few executions.
        tx.pg().expect("a PostgreSQL store").batch("SET plan_cache_mode = force_generic_plan")?;
        let mut ev = PgEvents::begin(tx, false)?;
        ev.lookup(tx, [(1, "k0")].into_iter())?;
        for i in 0..2000 {
            ev.append(tx, new_event(1, &format!("k{i}"), "1"))?;
        }
        ev.finish(tx).map(|f| assert_eq!(f, Finish::Stored))
    })
    .unwrap();
    s.write(|tx| {
        let mut ev = PgEvents::begin(tx, false)?;
        let ids: Vec<String> = (1990..2010).map(|i| format!("k{i}")).collect();
        let before = scans(tx)?;
        ev.lookup(tx, ids.iter().map(|id| (1, id.as_str())))?;
        assert_eq!(scans(tx)? - before, 0, "the lookup scanned the whole events table");
        assert_eq!(ev.check(1, "k1995", Timestamp::from_secs(7200), Quantity(dec("1")), None), InsertOutcome::Duplicate);
        assert_eq!(ev.check(1, "k2005", Timestamp::from_secs(7200), Quantity(dec("1")), None), InsertOutcome::Inserted);
        Ok(())
    })
    .unwrap();
}

/// Every ingest transaction adds to the `windows` rows of its events: the pages keep room, so
/// such an update stays on its page (HOT: no new entry in either of the table's indexes).
#[test]
fn window_updates_stay_on_their_page() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut s = open(&pg.fresh_db());
    let n = 1000_i64;
    // One window each, then one update of each, in two transactions, as ingest does.
    let add = |tx: &meterd::store::sql::Tx<'_>| -> Result<(i64, i64), StoreError> {
        let key: i64 = tx.one("SELECT ref FROM instances", params![])?;
        let mut pg = tx.pg().expect("a PostgreSQL store");
        let stmt = pg.prepared(
            "INSERT INTO windows (start_s, instance_ref, usage, events) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::numeric[], $4::bigint[])
             ON CONFLICT (start_s, instance_ref) DO UPDATE SET usage = meterd_decimal_add(windows.usage, excluded.usage), events = windows.events + excluded.events",
        )?;
        let starts: Vec<i64> = (0..n).map(|i| i * 3600).collect();
        let (keys, usage, events) = (vec![key; n as usize], vec![dec("1.5"); n as usize], vec![1_i64; n as usize]);
        pg.client()?.execute(&stmt, &[&starts, &keys, &usage, &events])?;
        let row = pg.client()?.query_one("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'windows'", &[])?;
        Ok((row.get(0), row.get(1)))
    };
    s.write(|tx| {
        tx.execute("INSERT INTO instances (instance_id, plan, start_ns, created_ns) VALUES ('i-1', 'api', 0, 0)", params![])?;
        add(tx)
    })
    .unwrap();
    let (upd, hot) = s.write(|tx| add(tx)).unwrap();
    assert_eq!(upd, n);
    assert!(hot * 10 >= n * 9, "{hot} of {n} window updates were HOT");
    let usage: Decimal = s.read(|tx| tx.one("SELECT sum(usage) FROM windows", params![])).unwrap();
    assert_eq!(usage, dec("3000"));
}

/// A server restarted while the connection sat idle: the next transaction finds the old
/// connection dead at its `BEGIN` (nothing sent yet) and runs on a new one, without an error
/// (new-user trial: the first request after a restart got a 503, the daemon's upload an ERROR).
#[test]
fn a_server_restarted_while_idle_costs_the_next_transaction_nothing() {
    let Some(pg) = PgCluster::start() else { return };
    let mut s = open(&pg.fresh_db());
    s.write(|tx| tx.execute("INSERT INTO meta (key, value) VALUES ('a', '1')", params![])).unwrap();
    pg.restart();
    s.write(|tx| tx.execute("INSERT INTO meta (key, value) VALUES ('b', '1')", params![])).expect("the first write after a restart");
    pg.restart();
    let n: i64 =
        s.read(|tx| tx.one("SELECT count(*) FROM meta WHERE key IN ('a', 'b')", params![])).expect("the first read after a restart");
    assert_eq!(n, 2);
}

#[test]
fn a_restarted_server_is_reconnected_to_by_itself() {
    let Some(pg) = PgCluster::start() else { return };
    let mut s = open(&pg.fresh_db());
    s.write(|tx| tx.execute("INSERT INTO meta (key, value) VALUES ('a', '1')", params![])).unwrap();
    pg.stop();
    let e = s.write(|tx| tx.execute("INSERT INTO meta (key, value) VALUES ('b', '1')", params![])).unwrap_err();
    assert!(e.is_unavailable(), "a stopped server is a 503, not bad input: {e} ({})", e.reason());
    pg.restart();
    s.write(|tx| tx.execute("INSERT INTO meta (key, value) VALUES ('c', '1')", params![])).unwrap();
    let keys: Vec<String> =
        s.read(|tx| tx.query_map("SELECT key FROM meta WHERE key IN ('a', 'b', 'c') ORDER BY key", params![], |r| r.get(0))).unwrap();
    assert_eq!(keys, vec!["a".to_string(), "c".to_string()]);
}

/// The whole pipeline's store side on PostgreSQL: the collector ingests (duplicates and
/// conflicts judged by the unique key, window totals written in the same transaction), a
/// second collector on the same database sees the first one's events, and the seal turns the
/// window into one exact record.
#[test]
fn ingest_and_seal_run_on_postgres() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db();
    let cfg = std::sync::Arc::new(meterd::config::Config::from_toml_str(&calls_plan()).unwrap());
    let now: Timestamp = "2026-11-20T10:30:00Z".parse().unwrap();
    let line = |id: &str, inst: &str, q: &str, t: &str| format!(r#"{{"id":"{id}","instance_id":"{inst}","quantity":"{q}","time":"{t}"}}"#);
    let body = [
        line("e1", "i-1", "1.25", "2026-11-20T09:10:00Z"),
        line("e2", "i-1", "2", "2026-11-20T09:20:00Z"),
        line("e1", "i-1", "1.25", "2026-11-20T09:10:00Z"),
        line("e3", "i-2", "0.000000001", "2026-11-20T09:59:59Z"),
    ]
    .join("\n");
    let a = meterd::collector::Collector::start(Path::new(&url), cfg.clone(), Box::new(|_, _| {})).unwrap();
    let r = a.ingest_body(body.as_bytes(), now).unwrap();
    assert_eq!((r.accepted, r.duplicates, r.rejected.len()), (3, 1, 0), "{r:?}");
    // Another node's collector: the same events are duplicates there, a changed one a conflict.
    let b = meterd::collector::Collector::start(Path::new(&url), cfg.clone(), Box::new(|_, _| {})).unwrap();
    let again = [
        line("e2", "i-1", "2", "2026-11-20T09:20:00Z"),
        line("e2", "i-1", "3", "2026-11-20T09:20:00Z"),
        line("e4", "i-1", "4", "2026-11-20T09:40:00Z"),
    ]
    .join("\n");
    let r = b.ingest_body(again.as_bytes(), now).unwrap();
    assert_eq!((r.accepted, r.duplicates, r.rejected.len()), (1, 1, 1), "{r:?}");
    let mut s = open(&url);
    let totals: Vec<(String, Decimal, i64)> =
        s.read(|tx| tx.query_map(WINDOW_TOTALS, params![], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))).unwrap();
    assert_eq!(totals, vec![("i-1".into(), dec("7.25"), 3), ("i-2".into(), dec("0.000000001"), 1)]);
    let report = meterd::seal::seal(&mut s, &cfg, now).unwrap();
    assert_eq!((report.records, report.zero), (2, 1), "i-2's usage floors to 0 (a zero record) and is carried: {report:?}");
    let recs = s.read(meterd::store::records::all).unwrap();
    // By instance id: the two instances' events take different ingest lanes, so which was
    // registered first (its key, the records' order) depends on which lane committed first.
    let mut by_id = recs.iter().map(|r| (r.instance_id.as_str(), r.usage_value)).collect::<Vec<_>>();
    by_id.sort();
    assert_eq!(by_id, vec![("i-1", dec("7.25")), ("i-2", dec("0"))]);
    let balances = meterd::audit::balances(&mut s).unwrap();
    assert_eq!(balances.len(), 2);
    assert!(balances.iter().all(|b| b.holds() && b.settled()), "conservation holds on PostgreSQL: {balances:?}");
}

fn meterd(dir: &Path, db: &str) -> std::process::Output {
    meterd_in(dir, db, &["status"])
}

/// `meterd --db DB ARGS…` in `dir`, with no store or config from the environment.
fn meterd_in(dir: &Path, db: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_meterd"));
    cmd.current_dir(dir).env_remove("METERD_CONFIG").env_remove("METERD_DB").env_remove("PGPASSWORD").args(["--db", db]).args(args);
    cmd.output().unwrap()
}

/// A wrong password, a missing database and a libpq `key=value` string are configuration errors (exit 2: a restart cannot fix them), and none of the
/// messages repeats the password; the libpq string never becomes a SQLite file.
#[test]
fn configuration_errors_of_a_postgres_store_are_exit_2_and_never_show_the_password() {
    let Some(pg) = PgCluster::shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = pg.fresh_db();
    let wrong = url.replacen(pg.password(), "not-the-password", 1);
    let missing_db = format!("{}/no_such_database", url.rsplit_once('/').unwrap().0);
    let conninfo = format!("host=127.0.0.1 port={} user=meterd password={} dbname=meterd", pg.port(), pg.password());
    for db in [wrong.as_str(), missing_db.as_str(), conninfo.as_str()] {
        let out = meterd(dir.path(), db);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{db}: {stderr}");
        assert!(!stderr.contains(pg.password()) && !stderr.contains("not-the-password"), "{stderr}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no SQLite file made of a connection string");
    assert_eq!(meterd(dir.path(), &url).status.code(), Some(0));
}

/// The password's sources in order — the URL, `PGPASSWORD`, `[store] password_file` — as the
/// README gives them (new-user trial): a password file that is not used is not read (it was,
/// and a missing one failed every command with exit 2 while `PGPASSWORD` held the password); a
/// wrong password names the source it came from; no password at all names all three; a
/// password file others may read is warned about, as `upload.key_file` is.
#[test]
fn the_password_comes_from_the_url_then_pgpassword_then_the_file_and_errors_name_the_source() {
    let Some(pg) = PgCluster::shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url_without_password(&pg.fresh_db_name());
    let file = dir.path().join("pg.password");
    let cfg = dir.path().join("meterd.toml");
    let config = |pw_file: &Path| std::fs::write(&cfg, format!("[store]\npassword_file = {:?}\n", pw_file.to_str().unwrap())).unwrap();
    let run = |envs: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_meterd"));
        cmd.current_dir(dir.path()).env_remove("METERD_DB").env_remove("PGPASSWORD").env("RUST_LOG", "warn");
        cmd.envs(envs.iter().copied()).args(["--config", cfg.to_str().unwrap(), "--db", &url, "status"]);
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // PGPASSWORD right, the configured file missing: the file is not needed, so not read.
    config(&dir.path().join("missing.password"));
    let (code, stderr) = run(&[("PGPASSWORD", pg.password())]);
    assert_eq!(code, Some(0), "{stderr}");
    // PGPASSWORD wrong: the message says the password came from PGPASSWORD.
    let (code, stderr) = run(&[("PGPASSWORD", "not-the-password")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("which came from PGPASSWORD"), "{stderr}");
    // The file alone, right but readable by others: works, with a warning naming the file.
    std::fs::write(&file, format!("{}\n", pg.password())).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    config(&file);
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("`store.password_file`") && stderr.contains("chmod 600"), "{stderr}");
    // The file wrong: the message names the file as the source.
    std::fs::write(&file, "not-the-password\n").unwrap();
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("which came from `store.password_file`"), "{stderr}");
    // No password anywhere: every source is named.
    std::fs::write(&cfg, "").unwrap();
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no password was given") && stderr.contains("PGPASSWORD"), "{stderr}");
    assert!(!stderr.contains(pg.password()), "{stderr}");
}

/// `METERD_DB` in an environment file is how the README deploys a shared store: no help text
/// shows its value (clap printed `[env: METERD_DB=postgres://meterd:PASSWORD@…]`).
#[test]
fn help_never_shows_the_url_in_meterd_db() {
    let secret = "PGPASS-777-never-shown";
    for args in [&["--help"][..], &["status", "--help"], &["help", "run"], &["run", "-h"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_meterd"))
            .args(args)
            .env("METERD_DB", format!("postgres://meterd:{secret}@db.example:5432/meterd"))
            .output()
            .unwrap();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(all.contains("METERD_DB"), "{args:?}: the variable is still named: {all}");
        assert!(!all.contains(secret) && !all.contains("db.example"), "{args:?}: {all}");
    }
}

/// A server that accepts the connection and never answers does not hang meterd: the open
/// fails within the connect timeout, with a message that says what happened.
#[test]
fn a_silent_server_fails_the_open_instead_of_hanging() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _hold = std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(2).collect();
        // The sleep is the test: the server holds the connections and never answers.
        std::thread::sleep(Duration::from_secs(40));
        drop(held);
    });
    let started = std::time::Instant::now();
    let e = Store::open(Path::new(&format!("postgres://meterd:pw@127.0.0.1:{port}/meterd"))).unwrap_err();
    assert!(started.elapsed() < meterd::store::pg::CONNECT_TIMEOUT + Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(e.to_string().contains("did not complete the handshake"), "{e}");
}

/// A server that refuses the connection (nothing listens on its port) is named by host and
/// port — never by the password or the URL's user info — with what to check, and the command
/// ends with exit 3 (unreachable: a runtime failure, retry once the server is up).
#[test]
fn a_refused_connection_names_the_host_and_port_not_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = meterd(dir.path(), &format!("postgres://meterd:pw-s3cret@127.0.0.1:{port}/billing"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("PostgreSQL server 127.0.0.1:{port}")), "names the host and port: {stderr}");
    assert!(stderr.to_lowercase().contains("refused") && stderr.contains("--db"), "says what happened and what to check: {stderr}");
    assert!(!stderr.contains("pw-s3cret") && !stderr.contains("meterd:pw") && !stderr.contains("postgres://"), "{stderr}");
}

/// Seals a day of 30 hourly instances (one frozen for three hours, one released mid-day, one
/// with a package, remainders carried from hour to hour) on `db` and sealing again; returns
/// what the store holds afterwards, and the PostgreSQL round trips the first seal took.
fn seal_a_day(db: &str) -> (Vec<String>, Option<u64>) {
    use meterd::store::lifecycle::{self, Status};
    use meterd::store::{instances, packages, records};
    let cfg = meterd::config::Config::from_toml_str(&calls_plan()).unwrap();
    let day: Timestamp = "2026-11-19T00:00:00Z".parse().unwrap();
    let at = |h: i64| Timestamp::from_secs(day.secs() + h * 3600);
    let mut s = open(db);
    s.write(|tx| {
        for i in 0..30 {
            instances::add(tx, &format!("i-{i:02}"), "calls", day, day)?;
        }
        lifecycle::set_status(tx, "i-00", Status::Freeze, at(5), day)?;
        lifecycle::set_status(tx, "i-00", Status::Unfreeze, at(8), day)?;
        instances::release(tx, "i-01", at(20), &|_| meterd::store::lifecycle_release::Billing::Additive)?;
        let pkg = packages::NewPackage {
            package_id: "pkg-2".into(),
            quota: dec("100"),
            from: day,
            to: at(48),
            reset: meterd::model::Reset::None,
        };
        packages::add(tx, "i-02", &pkg, day)?;
        Ok(())
    })
    .unwrap();
    let mut body = Vec::new();
    for i in 0..30 {
        for h in 0..24 {
            let q = if (i + h) % 3 == 0 { "0.00007" } else { "1.25" };
            body.push(format!(r#"{{"id":"e{i}-{h}","instance_id":"i-{i:02}","quantity":"{q}","time":"2026-11-19T{h:02}:01:00Z"}}"#));
        }
    }
    let now = at(25);
    let c = meterd::collector::Collector::start(Path::new(db), std::sync::Arc::new(cfg.clone()), Box::new(|_, _| {})).unwrap();
    let r = c.ingest_body(body.join("\n").as_bytes(), now).unwrap();
    // i-00's hours 5–7 (frozen) and i-01's hours 20–23 (released) are refused at ingest.
    assert_eq!((r.accepted, r.rejected.len()), (713, 7), "{r:?}");
    drop(c);
    let trips = |s: &mut Store| s.read(|tx| Ok(tx.pg().map(|c| c.round_trips()))).unwrap();
    let before = trips(&mut s);
    let first = meterd::seal::seal(&mut s, &cfg, now).unwrap();
    let used = trips(&mut s).zip(before).map(|(a, b)| a - b);
    let again = meterd::seal::seal(&mut s, &cfg, now).unwrap();
    let mut out = vec![format!("{first:?}"), format!("{again:?}")];
    for r in s.read(records::all).unwrap() {
        out.push(format!(
            "{} {} {}..{} v={} w={} in={} out={} {:?} {}",
            r.instance_id,
            r.metering_sn,
            r.begin,
            r.end,
            r.usage_value,
            r.window_usage,
            r.carry_in,
            r.carry_out,
            r.state,
            String::from_utf8_lossy(&r.body)
        ));
    }
    for i in s.read(instances::list).unwrap() {
        out.push(format!("{} sealed_until={} carry={} unbillable={}", i.instance_id, i.sealed_until, i.carry, i.unbillable));
    }
    out.push(format!("waiting {}", s.read(records::waiting).unwrap()));
    (out, used)
}

#[test]
fn a_seal_on_postgres_writes_what_sqlite_writes_in_a_few_statements_per_transaction() {
    let Some(pg) = PgCluster::shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (on_sqlite, _) = seal_a_day(dir.path().join("t.db").to_str().unwrap());
    let (on_pg, trips) = seal_a_day(&pg.fresh_db());
    assert!(on_sqlite[0].contains("records: 7"), "the day is sealed: {}", on_sqlite[0]);
    assert!(on_sqlite[1].contains("records: 0"), "a second seal writes nothing: {}", on_sqlite[1]);
    assert_eq!(on_pg, on_sqlite, "the same records, cursors and carries on both backends");
    // Per record, the old seal sent two statements (record, queue row) and five per
    // instance; a set-based chunk sends a fixed handful (and prepares each once).
    let trips = trips.expect("round trips are counted on PostgreSQL");
    assert!(trips <= 40, "{trips} round trips to seal 30 instances × 24 windows");
}

/// New events go to the server in a `COPY` left open between statements (`store::pg_copy`).
/// When the transaction fails while that `COPY` is open and has met a stored key, the rollback
/// drops the `COPY` instead of ending it (ending it would fail, and `ROLLBACK` would never be
/// sent): the connection is usable again at once, and nothing of the transaction is stored.
#[test]
fn a_transaction_failing_with_a_failed_copy_open_rolls_back_and_the_store_goes_on() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut s = open(&pg.fresh_db());
    s.write(|tx| {
        let mut ev = PgEvents::begin(tx, true)?;
        ev.append(tx, new_event(1, "stored", "1"))?;
        assert_eq!(ev.finish(tx)?, Finish::Stored);
        pg_events::count_appended(tx, pg_events::Lane::ONLY, 1).map(|_| ())
    })
    .unwrap();
    let e = s
        .write(|tx| {
            let mut ev = PgEvents::begin(tx, true)?;
            // The stored key first, then enough rows (> 64 KiB) that the COPY is open and sent.
            ev.append(tx, new_event(1, "stored", "1"))?;
            for i in 0..2000 {
                ev.append(tx, new_event(1, &format!("n{i}"), "1"))?;
            }
            Err::<(), _>(StoreError::Internal("the writer gave up".into()))
        })
        .unwrap_err();
    assert!(e.to_string().contains("gave up"), "{e}");
    let (n, rows): (i64, i64) =
        s.write(|tx| Ok((meterd::store::events::kept_count(tx)?, tx.one("SELECT count(*) FROM events", params![])?))).unwrap();
    assert_eq!((n, rows), (1, 1));
}

/// `meterd init` on a PostgreSQL URL opens the store as every other command does: without a
/// password it is a configuration error (exit 2) that says where a password may come from (it
/// was exit 3 with the driver's bare message), and with one it says it prepared the store in
/// the existing database rather than "created" it.
#[test]
fn init_on_postgresql_without_a_password_is_exit_2_with_advice() {
    let Some(pg) = PgCluster::shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url_without_password(&pg.fresh_db_name());
    let init = |envs: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_meterd"));
        cmd.current_dir(dir.path()).env_remove("METERD_DB").env_remove("METERD_CONFIG").env_remove("PGPASSWORD").env("RUST_LOG", "warn");
        cmd.envs(envs.iter().copied()).args(["--db", &url, "init", "--force"]);
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, _, stderr) = init(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no password was given") && stderr.contains("PGPASSWORD"), "{stderr}");
    let (code, stdout, stderr) = init(&[("PGPASSWORD", pg.password())]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("prepared the store in"), "{stdout}");
}
