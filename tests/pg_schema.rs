//! The PostgreSQL schema (`src/store/pg_schema.rs`) against a real server from the test
//! harness: migration gives the known version and the SQLite store's tables, columns, keys,
//! references and indexes under the same names (less SQLite's dedupe runs, plus the unique
//! event key), so a SQLite migration without its PostgreSQL twin fails here; it is idempotent and safe when six
//! nodes start at once; a store migrated by a newer meterd is refused; `numeric` keeps 28-digit
//! decimals exactly; the event key dedupes `INSERT … ON CONFLICT DO NOTHING`; and
//! `meterd_decimal_add` and the generation triggers behave as on SQLite.

#[path = "util/pg.rs"]
mod pg;

use meterd::store::pg_schema::{migrate, PgSchemaError, PG_MIGRATIONS};
use pg::PgCluster;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::{Arc, Barrier};

const KNOWN: u32 = PG_MIGRATIONS.len() as u32;
/// SQLite-only: the dedupe runs of src/store/dedupe/.
const SQLITE_ONLY: &[&str] = &["key_runs", "key_blocks"];
/// PostgreSQL-only: the version table.
const PG_ONLY: &[&str] = &["meterd_schema", "batch_ranges", "ingest_lanes"];
/// Columns PostgreSQL adds to a table both have: the store's number of ingest lanes
/// (`store::pg_events`, "Ingest lanes"; SQLite has one writer).
const PG_ONLY_COLUMNS: &[(&str, &str)] = &[("ingest_state", "lanes")];

/// A fresh database, migrated.
fn migrated(pg: &PgCluster) -> postgres::Client {
    let mut c = pg::connect(&pg.fresh_db());
    assert_eq!(migrate(&mut c).unwrap(), KNOWN);
    // Writes here are a current meterd's (`store::pg::begin_write` says so per transaction);
    // old writers are refused (`store::pg_schema`).
    c.batch_execute(&format!("SET meterd.writer_schema = '{KNOWN}'")).unwrap();
    c
}

fn pg_columns(c: &mut postgres::Client) -> Columns {
    let mut out = Columns::new();
    for row in c
        .query(
            "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
            &[],
        )
        .unwrap()
    {
        out.entry(row.get(0)).or_default().push((row.get(1), row.get(2)));
    }
    out
}

/// Table → [(column, type)], in column order.
type Columns = BTreeMap<String, Vec<(String, String)>>;

/// The SQLite store's tables → [(column, declared type)], and its named indexes.
fn sqlite_schema() -> (Columns, BTreeSet<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(meterd::store::Store::open(&path).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    let mut tables = BTreeMap::new();
    let names: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for t in names {
        let cols: Vec<(String, String)> = c
            .prepare(&format!("SELECT name, type FROM pragma_table_info('{t}') ORDER BY cid"))
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        tables.insert(t, cols);
    }
    let indexes = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (tables, indexes)
}

#[test]
fn migration_gives_the_known_version_and_the_sqlite_tables_under_the_same_names() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut c = migrated(pg);
    let versions: Vec<i32> = c.query("SELECT version FROM meterd_schema ORDER BY version", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=KNOWN as i32).collect::<Vec<_>>());

    let (sqlite, sqlite_indexes) = sqlite_schema();
    let pg_tables = pg_columns(&mut c);
    let expect: BTreeSet<&str> =
        sqlite.keys().map(String::as_str).filter(|t| !SQLITE_ONLY.contains(t)).chain(PG_ONLY.iter().copied()).collect();
    assert_eq!(pg_tables.keys().map(String::as_str).collect::<BTreeSet<_>>(), expect);

    for (table, cols) in sqlite.iter().filter(|(t, _)| !SQLITE_ONLY.contains(&t.as_str())) {
        let pg_cols: Vec<(String, String)> =
            pg_tables[table].iter().filter(|(name, _)| !PG_ONLY_COLUMNS.contains(&(table.as_str(), name.as_str()))).cloned().collect();
        let pg_cols = &pg_cols;
        let names = |v: &Vec<(String, String)>| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(pg_cols), names(cols), "columns of {table}");
        for ((name, sqlite_type), (_, pg_type)) in cols.iter().zip(pg_cols) {
            let ok = match sqlite_type.as_str() {
                "INTEGER" => pg_type == "bigint",
                "BLOB" => pg_type == "bytea",
                "TEXT" => pg_type == "text" || pg_type == "numeric",
                other => panic!("{table}.{name}: unexpected SQLite type {other}"),
            };
            assert!(ok, "{table}.{name}: SQLite {sqlite_type} became {pg_type}");
        }
    }

    // Every column SQLite keeps as exact decimal text is numeric; nothing is floating point.
    let decimals = [
        ("instances", "carry"),
        ("instances", "unbillable"),
        ("instances", "late_change"),
        ("events", "qty"),
        ("events", "billed_qty"),
        ("windows", "usage"),
        ("records", "usage_value"),
        ("records", "window_usage"),
        ("records", "carry_in"),
        ("records", "carry_out"),
        ("packages", "quota"),
        ("packages", "carry"),
        ("package_usage", "used"),
        ("segments", "usage"),
        ("over_quota", "usage"),
    ];
    let numeric: BTreeSet<(String, String)> = pg_tables
        .iter()
        .flat_map(|(t, cols)| cols.iter().filter(|(_, ty)| ty == "numeric").map(move |(n, _)| (t.clone(), n.clone())))
        .collect();
    let expected: BTreeSet<(String, String)> = decimals.iter().map(|(t, n)| (t.to_string(), n.to_string())).collect();
    assert_eq!(numeric, expected);
    assert!(pg_tables.values().flatten().all(|(_, ty)| !ty.contains("double") && ty != "real"));

    // The same named indexes (partial ones with the same predicate), less the dedupe runs'.
    let pg_indexes: BTreeMap<String, String> = c
        .query("SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'public'", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Upload's differences (PG migrations 7, 8 and 10, see `store::pg_schema`): no index on the
    // `records.batch_id` an applied delivery writes; one of the queue's pending rows; no index
    // on the queue's `batch_id` (batches' key ranges instead, `batch_ranges`).
    for name in &sqlite_indexes {
        assert_eq!(pg_indexes.contains_key(name), name != "records_by_batch" && name != "upload_queue_by_batch", "index {name}");
    }
    assert!(pg_indexes["upload_queue_pending"].contains("(window_start, metering_sn) WHERE (batch_id IS NULL)"));
    assert!(pg_indexes["batches_open"].contains("WHERE (state = 'open'::text)"), "{}", pg_indexes["batches_open"]);
    assert!(pg_indexes["events_key"].contains("UNIQUE INDEX events_key ON public.events USING btree (instance_ref, event_id)"));
}

#[test]
fn migrating_twice_changes_nothing() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut c = migrated(pg);
    c.batch_execute("INSERT INTO meta (key, value) VALUES ('kept', 'yes')").unwrap();
    assert_eq!(migrate(&mut c).unwrap(), KNOWN);
    let n: i64 = c.query_one("SELECT count(*) FROM meterd_schema", &[]).unwrap().get(0);
    assert_eq!(n, KNOWN as i64);
    let v: String = c.query_one("SELECT value FROM meta WHERE key = 'kept'", &[]).unwrap().get(0);
    assert_eq!(v, "yes");
}

#[test]
fn six_nodes_migrating_at_once_migrate_once() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db();
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = pg::connect(&url);
                barrier.wait();
                migrate(&mut c).map_err(|e| e.to_string())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), Ok(KNOWN));
    }
    let mut c = pg::connect(&url);
    let rows: Vec<(i32, i64)> = c
        .query("SELECT version, count(*) FROM meterd_schema GROUP BY version ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, (1..=KNOWN as i32).map(|v| (v, 1)).collect::<Vec<_>>(), "each version recorded once");
    let state: i64 = c.query_one("SELECT count(*) FROM ingest_state", &[]).unwrap().get(0);
    assert_eq!(state, 1, "migration 1 ran once");
}

#[test]
fn a_store_migrated_by_a_newer_meterd_is_refused() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut c = migrated(pg);
    let future = KNOWN as i32 + 1;
    c.execute("INSERT INTO meterd_schema (version, applied_ns, meterd) VALUES ($1, 0, '99.0.0')", &[&future]).unwrap();
    let err = migrate(&mut c).unwrap_err();
    assert!(matches!(err, PgSchemaError::TooNew { found, known } if found == future as u32 && known == KNOWN), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&future.to_string()) && msg.contains(&KNOWN.to_string()) && msg.contains("upgrade meterd"), "{msg}");
    // The refused migration left the connection usable and the store as it was.
    let n: i64 = c.query_one("SELECT count(*) FROM meterd_schema", &[]).unwrap().get(0);
    assert_eq!(n, KNOWN as i64 + 1);
}

#[test]
fn numeric_keeps_28_digit_decimals_exactly() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut c = migrated(pg);
    c.batch_execute("INSERT INTO instances (instance_id, plan, start_ns, created_ns) VALUES ('i', 'p', 0, 0)").unwrap();
    let values = ["1234567890.123456789012345678", "0.0000000000000000000000000001", "7922816251426433759354395033.5", "-12.5000", "0"];
    for (i, text) in values.iter().enumerate() {
        let d = Decimal::from_str(text).unwrap();
        c.execute(
            "INSERT INTO events (instance_ref, event_id, time_ns, qty, received_s) VALUES (1, $1, 0, $2, 0)",
            &[&format!("e{i}"), &d],
        )
        .unwrap();
        let back: Decimal = c.query_one("SELECT qty FROM events WHERE event_id = $1", &[&format!("e{i}")]).unwrap().get(0);
        assert_eq!(back, d);
        assert_eq!(back.to_string(), d.to_string(), "scale kept for {text}");
    }
}

#[test]
fn the_event_key_turns_a_second_insert_into_nothing() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut c = migrated(pg);
    c.batch_execute("INSERT INTO instances (instance_id, plan, start_ns, created_ns) VALUES ('a', 'p', 0, 0), ('b', 'p', 0, 0)").unwrap();
    let insert = "INSERT INTO events (instance_ref, event_id, time_ns, qty, received_s) VALUES ($1, $2, 0, $3, 0)
                  ON CONFLICT (instance_ref, event_id) DO NOTHING RETURNING seq";
    let one = Decimal::ONE;
    let first = c.query(insert, &[&1i64, &"req-1", &one]).unwrap();
    assert_eq!(first.len(), 1);
    let again = c.query(insert, &[&1i64, &"req-1", &Decimal::TWO]).unwrap();
    assert_eq!(again.len(), 0, "a second (instance_ref, event_id) was stored");
    let other_instance = c.query(insert, &[&2i64, &"req-1", &one]).unwrap();
    assert_eq!(other_instance.len(), 1, "the same id under another instance is another event");
    let seqs: Vec<i64> = c.query("SELECT seq FROM events ORDER BY seq", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(seqs.len(), 2);
    assert!(seqs[0] < seqs[1], "seq is assigned in insert order: {seqs:?}");
    // Without ON CONFLICT the key is a hard error.
    let err =
        c.execute("INSERT INTO events (instance_ref, event_id, time_ns, qty, received_s) VALUES (1, 'req-1', 0, 1, 0)", &[]).unwrap_err();
    assert_eq!(err.code(), Some(&postgres::error::SqlState::UNIQUE_VIOLATION));
}

#[test]
fn meterd_decimal_add_is_exact_and_normalized() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut c = migrated(pg);
    let add = |c: &mut postgres::Client, a: &str, b: &str| -> String {
        let (a, b) = (Decimal::from_str(a).unwrap(), Decimal::from_str(b).unwrap());
        c.query_one("SELECT meterd_decimal_add($1, $2)", &[&a, &b]).unwrap().get::<_, Decimal>(0).to_string()
    };
    assert_eq!(add(&mut c, "0.1", "0.2"), "0.3");
    assert_eq!(add(&mut c, "9999999999999999.9999", "0.0001"), "10000000000000000");
    assert_eq!(add(&mut c, "1.50", "1.50"), "3", "normalized like the SQLite function");
    assert_eq!(add(&mut c, "0.0000000000000000000000000001", "1"), "1.0000000000000000000000000001");

    // The window upsert of src/store/windows.rs. PostgreSQL calls an unqualified `usage` in
    // DO UPDATE ambiguous (target row or `excluded`); qualified with the table name, as here,
    // the statement runs on both backends.
    c.batch_execute("INSERT INTO instances (instance_id, plan, start_ns, created_ns) VALUES ('i', 'p', 0, 0)").unwrap();
    let upsert = "INSERT INTO windows (start_s, instance_ref, usage, events) VALUES ($1, $2, $3, $4)
                  ON CONFLICT (start_s, instance_ref)
                  DO UPDATE SET usage = meterd_decimal_add(windows.usage, excluded.usage), events = windows.events + excluded.events";
    for q in ["0.1", "0.2", "1.70"] {
        c.execute(upsert, &[&3600i64, &1i64, &Decimal::from_str(q).unwrap(), &1i64]).unwrap();
    }
    let row = c.query_one("SELECT usage, events FROM windows", &[]).unwrap();
    assert_eq!((row.get::<_, Decimal>(0).to_string(), row.get::<_, i64>(1)), ("2".to_string(), 3));
}

#[test]
fn changes_to_what_the_writer_caches_bump_the_generation() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut c = migrated(pg);
    let gen = |c: &mut postgres::Client| -> i64 { c.query_one("SELECT instances_gen FROM ingest_state WHERE id = 1", &[]).unwrap().get(0) };
    let g0 = gen(&mut c);
    let steps = [
        "INSERT INTO instances (instance_id, plan, start_ns, created_ns) VALUES ('i', 'p', 0, 0)",
        "UPDATE instances SET sealed_until = 3600",
        "INSERT INTO instance_status (instance_ref, at_ns, status, recorded_ns) VALUES (1, 5, 'FREEZE', 5)",
        "INSERT INTO packages (package_id, instance_ref, quota, from_ns, to_ns, reset, created_ns) VALUES ('pk', 1, 10, 0, 9, 'none', 0)",
        "INSERT INTO package_usage (package_id, period_s, used) VALUES ('pk', 0, 1)",
        "UPDATE package_usage SET used = 2",
        "DELETE FROM instance_status",
    ];
    let mut last = g0;
    for s in steps {
        c.batch_execute(s).unwrap();
        let now = gen(&mut c);
        assert!(now > last, "{s} did not bump instances_gen");
        last = now;
    }
    c.batch_execute(
        "INSERT INTO meta (key, value) VALUES ('k', 'v'); INSERT INTO windows (start_s, instance_ref, usage, events) VALUES (0, 1, 1, 1)",
    )
    .unwrap();
    assert_eq!(gen(&mut c), last, "tables the writer does not cache leave the generation alone");
}

/// (table, "PRIMARY KEY" | "UNIQUE" | "REFERENCES table(column)", columns).
type Key = (String, String, Vec<String>);

fn sqlite_keys() -> BTreeSet<Key> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(meterd::store::Store::open(&path).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    let strings = |sql: &str| -> Vec<String> { c.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect() };
    let mut keys = BTreeSet::new();
    for t in strings("SELECT name FROM sqlite_master WHERE type = 'table'") {
        if SQLITE_ONLY.contains(&t.as_str()) {
            continue;
        }
        keys.insert((
            t.clone(),
            "PRIMARY KEY".to_string(),
            strings(&format!("SELECT name FROM pragma_table_info('{t}') WHERE pk > 0 ORDER BY pk")),
        ));
        for index in strings(&format!("SELECT name FROM pragma_index_list('{t}') WHERE origin = 'u'")) {
            keys.insert((
                t.clone(),
                "UNIQUE".to_string(),
                strings(&format!("SELECT name FROM pragma_index_info('{index}') ORDER BY seqno")),
            ));
        }
        for (from, table, to) in c
            .prepare(&format!("SELECT \"from\", \"table\", \"to\" FROM pragma_foreign_key_list('{t}')"))
            .unwrap()
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .unwrap()
            .map(Result::unwrap)
        {
            keys.insert((t.clone(), format!("REFERENCES {table}({to})"), vec![from]));
        }
    }
    keys
}

fn pg_keys(c: &mut postgres::Client) -> BTreeSet<Key> {
    let mut keys = BTreeSet::new();
    let rows = c
        .query(
            "SELECT cl.relname::text, c.contype::text, fcl.relname::text,
                    array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
                    array(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                          JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)
             FROM pg_constraint c JOIN pg_class cl ON cl.oid = c.conrelid LEFT JOIN pg_class fcl ON fcl.oid = c.confrelid
             JOIN pg_namespace ns ON ns.oid = cl.relnamespace
             WHERE ns.nspname = 'public' AND c.contype IN ('p', 'u', 'f')",
            &[],
        )
        .unwrap();
    for r in rows {
        let (table, kind, cols): (String, String, Vec<String>) = (r.get(0), r.get(1), r.get(3));
        let kind = match kind.as_str() {
            "p" => "PRIMARY KEY".to_string(),
            "u" => "UNIQUE".to_string(),
            _ => format!("REFERENCES {}({})", r.get::<_, String>(2), r.get::<_, Vec<String>>(4).join(", ")),
        };
        keys.insert((table, kind, cols));
    }
    keys
}

#[test]
fn keys_and_references_are_those_of_the_sqlite_schema_plus_the_event_key() {
    let Some(pg) = PgCluster::shared() else { return };
    let mut c = migrated(pg);
    let mut expected = sqlite_keys();
    expected.insert(("events".into(), "UNIQUE".into(), vec!["instance_ref".into(), "event_id".into()]));
    // Dropped by PG migration 7: `batches::create` alone writes it, with the id it just inserted.
    assert!(expected.remove(&("upload_queue".into(), "REFERENCES batches(id)".into(), vec!["batch_id".into()])));
    let found: BTreeSet<Key> = pg_keys(&mut c).into_iter().filter(|(t, _, _)| !PG_ONLY.contains(&t.as_str())).collect();
    let missing: Vec<&Key> = expected.difference(&found).collect();
    let extra: Vec<&Key> = found.difference(&expected).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing on PostgreSQL: {missing:?}\nonly on PostgreSQL: {extra:?}");
}
