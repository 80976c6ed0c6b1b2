//! `meterd store copy` (issue 13), with the real binary on real SQLite files and a real
//! PostgreSQL server (tests/util/pg.rs): a store with events (with properties), a point plan,
//! packages, a freeze, sealed, delivered, mid-upload and rejected records goes SQLite →
//! PostgreSQL → SQLite with every row (table dumps compared) and its audit; every event resent
//! after a copy is a duplicate on both backends; a non-empty destination is refused (exit 2,
//! naming what is there); the password is never printed; every table and column of the
//! PostgreSQL schema is copied or deliberately skipped.

#[path = "util/mod.rs"]
mod util;

use meterd::store::copy::{SKIPPED, TABLES};
use meterd::store::sql::{params, Value};
use meterd::store::Store;
use std::path::Path;
use util::pg::{self, PgCluster};
use util::{Env, Ev, Run, NOW};

const CALLS: &str = "6a1f0c3e-1d2b-4c5a-8e9f-0a1b2c3d4e5f";
const USERS: &str = "7b2e1d4f-2e3c-4d6b-9fa0-1b2c3d4e5f60";

/// `meterd --config … --db DB ARGS`.
fn run_on(env: &Env, db: &str, args: &[&str]) -> Run {
    let mut c = std::process::Command::new(util::bin());
    c.arg("--config").arg(&env.config).arg("--db").arg(db).current_dir(env.dir.path());
    c.env_remove("METERD_CONFIG").env_remove("METERD_DB").env_remove("PGPASSWORD").env("RUST_LOG", "warn");
    c.args(args).stdin(std::process::Stdio::null());
    Run::from(c.output().expect("spawn meterd"))
}

fn copy(env: &Env, from: &str, to: &str) -> Run {
    run_on(env, env.db.to_str().unwrap(), &["store", "copy", "--from", from, "--to", to])
}

fn open(db: &str) -> Store {
    Store::open(Path::new(db)).unwrap_or_else(|e| panic!("open {db}: {e}"))
}

/// A decimal zero as "0": PostgreSQL's driver keeps every decimal's scale except zero's
/// ("0.0000" arrives as 0; the value is the same). Every other text is compared as it is.
fn zero(text: String) -> String {
    match text.parse::<rust_decimal::Decimal>() {
        Ok(d) if d.is_zero() => "0".into(),
        _ => text,
    }
}

/// Every copied table as sorted text lines (decimals as their exact text on both backends).
fn dump(db: &str) -> Vec<(String, Vec<String>)> {
    let mut s = open(db);
    s.read(|tx| {
        let mut out = Vec::new();
        for t in TABLES {
            let cols = t.columns.join(", ");
            let mut rows: Vec<String> = tx.query_map(&format!("SELECT {cols} FROM {}", t.name), params![], |r| {
                let mut line = Vec::new();
                for i in 0..t.columns.len() {
                    line.push(match r.value(i)? {
                        Value::Null => "NULL".to_string(),
                        Value::Int(i) => i.to_string(),
                        Value::Text(s) => format!("{:?}", zero(s)),
                        Value::Dec(d) => format!("{:?}", zero(d.to_string())),
                        Value::Blob(b) => format!("x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
                    });
                }
                Ok(line.join("|"))
            })?;
            rows.sort();
            out.push((t.name.to_string(), rows));
        }
        Ok(out)
    })
    .unwrap()
}

/// The conservation audit with the plans' own rules (`users` counts unique users).
fn audit(env: &Env, db: &str) -> Vec<meterd::audit::Balance> {
    let cfg = env.cfg();
    let rule = |plan: &str| cfg.plan(plan).map_or((Default::default(), None), |p| (p.aggregation, p.unique_by.clone()));
    let mut b = meterd::audit::balances_with(&mut open(db), &rule).unwrap();
    b.sort_by(|x, y| x.instance_id.cmp(&y.instance_id));
    b
}

fn events_file(env: &Env) -> std::path::PathBuf {
    let mut lines = Vec::new();
    for i in 0..40 {
        let t = format!("2026-11-22T{:02}:{:02}:00Z", 8 + i / 10, (i * 7) % 60);
        lines.push(Ev::new(&format!("c-{i}"), CALLS, &format!("{}.{:02}", i % 4, i), &t).json());
        lines.push(Ev::new(&format!("u-{i}"), USERS, "1", &t).set("properties", &format!(r#"{{"user":"user-{}"}}"#, i % 7)).json());
    }
    let path = env.dir.path().join("events.ndjson");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// The fixture store: instances of a sum and a point plan, events with properties, a package
/// with usage, a freeze, sealed records, one delivered, one mid-upload in an open batch (with
/// a stale claim), one rejected; then more events that stay in SQLite's unfolded tail.
fn fixture(env: &Env) {
    env.add_instance(CALLS, "calls", "2026-11-01T00:00:00Z");
    env.add_instance(USERS, "users", "2026-11-01T00:00:00Z");
    env.run(&["package", "add", CALLS, "pk-1", "--quota", "25", "--from", "2026-11-01T00:00:00Z", "--to", "2026-12-01T00:00:00Z"])
        .success();
    let file = events_file(env);
    let r = env.run(&["ingest", "--now", NOW, file.to_str().unwrap()]);
    r.success();
    assert!(r.stdout.contains("\"accepted\":80"), "{}", r.stdout);
    env.run(&["instance", "freeze", USERS, "--at", "2026-11-22T20:00:00Z"]).success();
    env.run(&["seal", "--now", NOW]).success();
    // Upload states, written as the uploader leaves them.
    let c = rusqlite::Connection::open(&env.db).unwrap();
    let sns: Vec<(String, i64)> = c
        .prepare("SELECT metering_sn, window_start FROM records WHERE state = 'pending' ORDER BY metering_sn")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(sns.len() >= 3, "the fixture needs three pending records: {sns:?}");
    c.execute_batch(&format!(
        "UPDATE records SET state = 'delivered', attempts = 1 WHERE metering_sn = '{d}';
         INSERT INTO batches (id, body, records, state, attempts, created_ns) VALUES (7, x'00ff7b2262617463682231', 1, 'delivered', 1, 1);
         INSERT INTO batches (id, body, records, state, attempts, created_ns, last_error, claimed_by, claim_until_ns)
           VALUES (9, x'7b227265636f726473223a5b5d7d0a', 1, 'open', 2, 2, 'timeout', '1:00000000000000ab', 9223372036854775000);
         UPDATE records SET state = 'sending', batch_id = 9, attempts = 2 WHERE metering_sn = '{s}';
         UPDATE upload_queue SET batch_id = 9 WHERE metering_sn = '{s}';
         UPDATE records SET state = 'rejected', attempts = 1 WHERE metering_sn = '{r}';
         INSERT INTO rejected (id, metering_sn, code, message, at_ns, body) VALUES (4, '{r}', 'MKT.0199', 'bad unit', 3, x'7b7d');
         INSERT INTO package_usage (package_id, period_s, used) VALUES ('pk-1', 1793491200, '12.3400');
         INSERT INTO segments (instance_ref, window_start, begin_s, package_id, usage) VALUES (1, 1795334400, 1795334400, 'pk-1', '12.34');
         INSERT INTO over_quota (instance_ref, usage) VALUES (1, '0.0000');
         INSERT INTO notify_outbox (id, target, state, kind, instance_id, body, created_ns, attempts, next_ns, last_attempt_ns, last_error)
           VALUES ('ntf_00000000000000000000000000000001', 'app', 'quota:pk-1:1793491200:0.8', 'quota.crossed', '{CALLS}', '{{\"id\":1}}', 5, 2, 6, 5, 'HTTP 503');
         INSERT INTO notify_outbox (id, target, state, kind, instance_id, body, created_ns, attempts, delivered_ns)
           VALUES ('ntf_00000000000000000000000000000002', 'app', 'readiness:n1:lost:7', 'readiness.lost', NULL, '{{}}', 7, 1, 8);",
        d = sns[0].0,
        s = sns[1].0,
        r = sns[2].0,
    ))
    .unwrap();
    // Late events after the seal: SQLite keeps them unfolded unless the tail grows.
    let late =
        [Ev::new("late-1", CALLS, "0.5", "2026-11-23T11:10:00Z").json(), Ev::new("late-2", CALLS, "0.25", "2026-11-23T11:20:00Z").json()];
    let path = env.dir.path().join("late.ndjson");
    std::fs::write(&path, late.join("\n")).unwrap();
    env.run(&["ingest", "--now", NOW, path.to_str().unwrap()]).success();
}

/// Resends every event of the fixture; all must be duplicates.
fn assert_resend_is_duplicate(env: &Env, db: &str) {
    let file = events_file(env);
    let r = run_on(env, db, &["ingest", "--now", NOW, file.to_str().unwrap()]);
    r.success();
    assert!(r.stdout.contains("\"accepted\":0") && r.stdout.contains("\"duplicates\":80"), "on {db}: {}", r.stdout);
}

#[test]
fn sqlite_to_postgres_and_back_keeps_every_row_and_the_audit() {
    let Some(pg) = PgCluster::shared() else { return };
    let env = Env::with_config(&util::example_config_with(&[("# package = \"stop\"", "package = \"payg\"")]));
    fixture(&env);
    let src = env.db.to_str().unwrap().to_string();
    let url = pg.fresh_db();
    let back = env.dir.path().join("back.db").to_str().unwrap().to_string();

    let there = copy(&env, &src, &url);
    there.success();
    assert!(there.stdout.contains("audit: equal on both sides"), "{}", there.stdout);
    assert!(there.stdout.contains("events") && there.stdout.contains("82 rows"), "{}", there.stdout);
    let home = copy(&env, &url, &back);
    home.success();
    assert!(home.stdout.contains("audit: equal on both sides"), "{}", home.stdout);
    assert!(!home.stderr.contains("warning"), "no node runs on the source: {}", home.stderr);
    for r in [&there, &home] {
        assert!(!r.stdout.contains(pg.password()) && !r.stderr.contains(pg.password()), "the password is never printed");
        assert!(r.stdout.contains("postgres://meterd:***@"), "the URL is shown redacted: {}", r.stdout);
    }

    // The audits agree on all three stores.
    let a = audit(&env, &src);
    assert_eq!(a.len(), 2);
    assert!(a.iter().all(|b| b.holds()), "{a:?}");
    assert_eq!(audit(&env, &url), a);
    assert_eq!(audit(&env, &back), a);

    // Every row of every table: the source's tail is folded on the destinations (the same
    // totals), and upload claims of the old store's processes are cleared.
    let mut s = open(&src);
    s.write(meterd::store::windows::fold).unwrap();
    s.write(|tx| tx.execute("UPDATE batches SET claimed_by = NULL, claim_until_ns = NULL", params![])).unwrap();
    drop(s);
    let expected = dump(&src);
    let empty: Vec<&str> = expected.iter().filter(|(_, rows)| rows.is_empty()).map(|(t, _)| t.as_str()).collect();
    assert!(empty.is_empty(), "the fixture fills every table; empty: {empty:?}");
    for (what, db) in [("SQLite → PostgreSQL", &url), ("PostgreSQL → SQLite", &back)] {
        for ((table, want), (_, got)) in expected.iter().zip(dump(db)) {
            let missing: Vec<&String> = want.iter().filter(|r| !got.contains(r)).collect();
            let extra: Vec<&String> = got.iter().filter(|r| !want.contains(r)).collect();
            assert!(missing.is_empty() && extra.is_empty(), "{what}: table {table}: missing {missing:?}, extra {extra:?}");
        }
    }
    // The open batch keeps its bytes, so a resend from the new store is byte-identical.
    let mut b = open(&back);
    let body: Vec<u8> = b.read(|tx| tx.one("SELECT body FROM batches WHERE id = 9 AND state = 'open'", params![])).unwrap();
    assert_eq!(body, b"{\"records\":[]}\n");

    // Identity sequences moved past the copied keys: new rows get new keys.
    let mut p = open(&url);
    let max_ref: i64 = p.read(|tx| tx.one("SELECT max(ref) FROM instances", params![])).unwrap();
    let run = run_on(&env, &url, &["instance", "add", "new-one", "--plan", "calls", "--start", "2026-11-01T00:00:00Z"]);
    run.success();
    let new_ref: i64 = p.read(|tx| tx.one("SELECT ref FROM instances WHERE instance_id = 'new-one'", params![])).unwrap();
    assert!(new_ref > max_ref, "{new_ref} > {max_ref}");
    // On PostgreSQL the open batch's queue row is read through the batch's key range, which
    // the copy rebuilds (`batch_ranges`, PG migration 10): it is still the batch's, and every
    // record reads the state it reads on the source.
    let (members, states) =
        p.read(|tx| Ok((meterd::store::records::in_batch(tx, 9)?.len(), meterd::store::records::count_by_state(tx)?))).unwrap();
    assert_eq!(members, 1, "the open batch's record");
    assert_eq!(states, open(&src).read(meterd::store::records::count_by_state).unwrap(), "the states the source reads");
    assert!(states.iter().any(|(s, _)| *s == meterd::store::records::RecordState::Sending), "{states:?}");

    // Every event resent after the copy is a duplicate, on both backends.
    assert_resend_is_duplicate(&env, &back);
    assert_resend_is_duplicate(&env, &url);
    // On SQLite the copied events form one dedupe run, as the writer would have flushed them.
    let runs: (i64, i64) =
        b.read(|tx| tx.query_row("SELECT count(*), max(through_seq) FROM key_runs", params![], |r| Ok((r.get(0)?, r.get(1)?)))).unwrap();
    let max_seq: i64 = b.read(|tx| tx.one("SELECT max(seq) FROM events", params![])).unwrap();
    assert_eq!(runs, (1, max_seq));
}

#[test]
fn a_destination_with_data_is_refused_and_left_alone() {
    let Some(pg) = PgCluster::shared() else { return };
    let env = Env::new();
    env.add_instance(CALLS, "calls", "2026-11-01T00:00:00Z");
    let src = env.db.to_str().unwrap().to_string();
    let url = pg.fresh_db();
    copy(&env, &src, &url).success();
    let before = dump(&url);
    let again = copy(&env, &src, &url);
    again.code(2);
    assert!(
        again.stderr.contains("not empty") && again.stderr.contains("instances: 1 row") && !again.stderr.contains("1 rows"),
        "{}",
        again.stderr
    );
    assert!(!again.stderr.contains(pg.password()) && !again.stdout.contains(pg.password()));
    assert_eq!(dump(&url), before, "nothing was written");
    // A SQLite destination with data too.
    let other = env.dir.path().join("other.db");
    std::fs::copy(&env.db, &other).unwrap();
    let r = copy(&env, &url, other.to_str().unwrap());
    r.code(2);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);
    // A source that does not exist is a usage error, never an empty store copied.
    let r = copy(&env, env.dir.path().join("nope.db").to_str().unwrap(), env.dir.path().join("x.db").to_str().unwrap());
    r.code(2);
    // A wrong password is configuration (exit 2, as for every other command), and is not shown.
    let wrong = url.replacen(pg.password(), "not-the-password", 1);
    assert_ne!(wrong, url);
    let r = copy(&env, &src, &wrong);
    r.code(2);
    assert!(r.stderr.contains("password"), "{}", r.stderr);
    assert!(!r.stderr.contains("not-the-password") && !r.stdout.contains("not-the-password"), "{}", r.stderr);
}

/// A table or column added to the PostgreSQL schema must be copied or listed as skipped.
#[test]
fn every_postgres_table_and_column_is_copied_or_skipped() {
    let Some(pg) = PgCluster::shared() else { return };
    let url = pg.fresh_db();
    drop(open(&url));
    let mut c = pg::connect(&url);
    let tables: Vec<String> = c
        .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() > 10, "{tables:?}");
    for name in tables {
        let copied = TABLES.iter().find(|t| t.name == name);
        assert!(copied.is_some() || SKIPPED.iter().any(|(n, _)| *n == name), "table {name} is neither copied nor skipped");
        if let Some(t) = copied {
            let mut cols: Vec<String> = c
                .query(
                    "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1",
                    &[&name],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut ours: Vec<String> = t.columns.iter().map(|c| c.to_string()).collect();
            cols.sort();
            ours.sort();
            assert_eq!(ours, cols, "columns of {name}");
        }
    }
}

/// A copy of a shared store that nodes are still running on is warned about, naming them: what
/// they acknowledge after the copy's snapshot is not in it (new-user trial).
#[test]
fn a_copy_of_a_shared_store_with_live_nodes_warns_naming_them() {
    let Some(pg) = PgCluster::shared() else { return };
    let env = Env::new();
    let url = pg.fresh_db();
    let mut s = open(&url);
    s.write(|tx| meterd::store::lease::heartbeat(tx, "node-live", "0.1.0", 1, true)).unwrap();
    drop(s);
    let out = copy(&env, &url, env.dir.path().join("snap.db").to_str().unwrap());
    out.success();
    assert!(out.stderr.contains("warning: 1 node(s) were seen on the source") && out.stderr.contains("node-live"), "{}", out.stderr);
}
