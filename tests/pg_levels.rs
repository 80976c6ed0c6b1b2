//! `store::levels` (weighted_sum, issue 14) runs the same statements on both backends: the
//! level before a window, a window's events in level order, the next window's events, what a
//! record's seal saw, and the signed late change — on a SQLite file and on a real PostgreSQL
//! server (skipped when none is installed, as the other PostgreSQL tests are). The seal of a
//! weighted_sum instance and its chained audit give the same records on both.

#[path = "util/pg.rs"]
mod pg;

use meterd::store::levels;
use meterd::store::sql::{params, Tx};
use meterd::store::{Store, StoreError};
use rust_decimal::Decimal;
use std::path::Path;

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// Writes an instance, four events of it over three hour windows (one tie broken by id, one
/// late event indexed by its own window) and one record; returns the instance key.
fn fill(tx: &Tx<'_>) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO instances (instance_id, plan, start_ns, created_ns) VALUES (?1, ?2, ?3, ?4)",
        params!["i-1", "disk", 0_i64, 0_i64],
    )?;
    let key: i64 = tx.one("SELECT ref FROM instances WHERE instance_id = ?1", params!["i-1"])?;
    let h = 3600_i64;
    // (seq, window, time s, id, qty)
    let evs = [(1_i64, 0_i64, 600_i64, "a", "5"), (2, h, h + 60, "c", "7"), (3, h, h + 60, "b", "9"), (4, 3 * h, 3 * h + 1, "d", "1.5")];
    for (seq, w, t, id, q) in evs {
        tx.execute(
            "INSERT INTO events (seq, instance_ref, event_id, time_ns, qty, billed_window, received_s) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![seq, key, id, t * 1_000_000_000, dec(q), w, 0_i64],
        )?;
        tx.execute("INSERT INTO window_events (instance_ref, window_start, seq) VALUES (?1, ?2, ?3)", params![key, w, seq])?;
    }
    tx.execute(
        "INSERT INTO records (metering_sn, instance_ref, window_start, begin_s, end_s, usage_value, window_usage, carry_in, carry_out,
                              record_time_s, body, state, updated_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params!["sn-1", key, 0_i64, 0_i64, h, dec("2.5"), dec("9000"), dec("0"), dec("0.28"), h, vec![1_u8], "zero", 0_i64],
    )?;
    Ok(key)
}

fn check(store: &mut Store) {
    let key = store.write(fill).unwrap_or_else(|e| panic!("{e}"));
    let h = 3600_i64;
    store
        .write(|tx| {
            assert_eq!(levels::max_seq(tx)?, 4);
            assert_eq!(levels::level_before(tx, key, 0, 4)?, Decimal::ZERO, "before the first event");
            // Window 1 h holds "b" and "c" at the same time: "c" (greater id) is last.
            assert_eq!(levels::level_before(tx, key, 2 * h, 4)?, dec("7"));
            assert_eq!(levels::level_before(tx, key, 2 * h, 2)?, dec("7"), "seq 3 not seen");
            assert_eq!(levels::level_before(tx, key, 2 * h, 1)?, dec("5"), "only seq 1 seen");
            let ids: Vec<String> = levels::events_between(tx, key, 0, 4 * h, 4)?.into_iter().map(|(_, e)| e.id).collect();
            assert_eq!(ids, ["a", "b", "c", "d"], "by window, then level order");
            let next: Vec<String> = levels::next_window_events(tx, key, h)?.into_iter().map(|e| e.id).collect();
            assert_eq!(next, ["d"]);
            levels::set_seen(tx, 0, "sn-1", 4, 2)?;
            let sealed = levels::sealed_of_instance(tx, key)?;
            assert_eq!((sealed.len(), sealed[0].seen, sealed[0].value, sealed[0].carry_out), (1, Some((4, 2)), dec("2.5"), dec("0.28")));
            levels::add_late_change(tx, key, dec("3600"))?;
            levels::add_late_change(tx, key, dec("-5400.5"))?;
            assert_eq!(levels::late_change_of(tx, key)?, dec("-1800.5"));
            assert_eq!(levels::late_changes(tx)?, vec![("i-1".to_string(), dec("-1800.5"))]);
            levels::add_late_change(tx, key, dec("1800.5"))?;
            assert_eq!(levels::late_changes(tx)?, vec![], "back to 0: not listed");
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn levels_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    check(&mut Store::open(&dir.path().join("t.db")).unwrap());
}

#[test]
fn levels_on_postgres() {
    let Some(pg) = pg::PgCluster::shared() else { return };
    check(&mut Store::open(Path::new(&pg.fresh_db())).unwrap());
}

const PLAN: &str =
    "[[plan]]\nname = \"disk\"\nfactor = \"gb\"\nperiod = \"hour\"\npricing = \"fixed\"\nprice = \"1\"\naggregation = \"weighted_sum\"\n";

/// Seals `store` (events written as the ingest writer writes a weighted_sum plan's) and returns
/// (begin, value, carry-out) of every record; the audit must hold.
fn seal_and_audit(store: &mut Store) -> Vec<(i64, String, String)> {
    let cfg = meterd::config::Config::from_toml_str(PLAN).unwrap();
    let t0 = meterd::model::parse_rfc3339("2026-11-23T00:00:00Z").unwrap();
    let h = 3600_i64;
    store
        .write(|tx| {
            let inst = meterd::store::instances::add(tx, "i-1", "disk", t0, t0)?;
            // (window offset h, time offset s, id, qty): a level at a window's start, one
            // held through hours without events, then 10 GB for 1 s and 0.001 GB for 3599 s
            // (13.599 GB·s: 0.0037 GB·h and 0.279 GB·s carried).
            let evs = [(10, 0, "a", "20"), (10, 1800, "b", "10"), (13, 1, "c", "0.001")];
            for (k, (w, off, id, q)) in evs.into_iter().enumerate() {
                let (w, at) = (t0.secs() + w * h, t0.secs() + w * h + off);
                tx.execute(
                    "INSERT INTO events (seq, instance_ref, event_id, time_ns, qty, billed_window, received_s) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![k as i64 + 1, inst.key, id, at * 1_000_000_000, dec(q), w, 0_i64],
                )?;
                tx.execute("INSERT INTO window_events (instance_ref, window_start, seq) VALUES (?1, ?2, ?3)", params![inst.key, w, k as i64 + 1])?;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    meterd::seal::seal(store, &cfg, t0.add_secs(15 * h + 360)).unwrap_or_else(|e| panic!("{e}"));
    let balances = meterd::audit::balances_with(store, &|_| (meterd::model::Aggregation::WeightedSum, None)).unwrap();
    assert!(balances.iter().all(|b| b.holds()), "{balances:?}");
    store
        .read(|tx| {
            tx.query_map("SELECT begin_s, usage_value, carry_out FROM records ORDER BY begin_s", params![], |r| {
                Ok((
                    r.get::<i64>(0)? - t0.secs(),
                    r.get::<Decimal>(1)?.normalize().to_string(),
                    r.get::<Decimal>(2)?.normalize().to_string(),
                ))
            })
        })
        .unwrap()
}

fn expected_records() -> Vec<(i64, String, String)> {
    let h = 3600_i64;
    [(10, "15", "0"), (11, "10", "0"), (12, "10", "0"), (13, "0.0037", "0.279"), (14, "0.001", "0.279")]
        .into_iter()
        .map(|(w, v, c)| (w * h, v.to_string(), c.to_string()))
        .collect()
}

#[test]
fn weighted_seal_and_audit_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(seal_and_audit(&mut Store::open(&dir.path().join("t.db")).unwrap()), expected_records());
}

#[test]
fn weighted_seal_and_audit_on_postgres() {
    let Some(pg) = pg::PgCluster::shared() else { return };
    assert_eq!(seal_and_audit(&mut Store::open(Path::new(&pg.fresh_db())).unwrap()), expected_records());
}

/// Ingest of weighted_sum events through the collector: two late events of one instance in one
/// request — the second's neighbour in level order is the first, held back by the transaction
/// (SQLite writes it before the read; PostgreSQL holds it in memory until `COMMIT`) — report the
/// same sealed changes on both backends, and the next seal bills the level they set.
fn ingest_late(db: &Path) {
    let cfg =
        std::sync::Arc::new(meterd::config::Config::from_toml_str(&format!("[collector]\nauto_register = \"disk\"\n{PLAN}")).unwrap());
    let at = |hms: &str| -> meterd::model::Timestamp { format!("2026-11-23T{hms}Z").parse().unwrap() };
    let line = |id: &str, q: &str, t: &str| format!(r#"{{"id":"{id}","instance_id":"i-1","quantity":"{q}","time":"2026-11-23T{t}Z"}}"#);
    let c = meterd::collector::Collector::start(db, cfg.clone(), Box::new(|_, _| {})).unwrap();
    assert_eq!(c.ingest_body(line("a", "5", "09:30:00").as_bytes(), at("09:31:00")).unwrap().accepted, 1);
    drop(c);
    let mut s = Store::open(db).unwrap();
    meterd::seal::seal(&mut s, &cfg, at("10:06:00")).unwrap();
    drop(s);
    let c = meterd::collector::Collector::start(db, cfg.clone(), Box::new(|_, _| {})).unwrap();
    let body = [line("n", "2", "09:50:00"), line("late", "8", "09:40:00")].join("\n");
    let r = c.ingest_body(body.as_bytes(), at("10:20:00")).unwrap();
    drop(c);
    // n: 2 instead of 5 from 09:50 to the cursor (10:00) = −0.5 GB·h; late: 8 instead of 5 from
    // 09:40 until n at 09:50 = +0.5 GB·h.
    let changes: Vec<(String, Option<String>)> = r.late_unbilled.iter().map(|l| (l.id.clone(), l.unbilled_change.clone())).collect();
    assert_eq!(changes, vec![("n".into(), Some("-0.5".into())), ("late".into(), Some("0.5".into()))], "{r:?}");
    let mut s = Store::open(db).unwrap();
    meterd::seal::seal(&mut s, &cfg, at("11:06:00")).unwrap();
    let values: Vec<String> = s
        .read(|tx| {
            tx.query_map("SELECT usage_value FROM records ORDER BY begin_s", params![], |r| {
                Ok(r.get::<Decimal>(0)?.normalize().to_string())
            })
        })
        .unwrap();
    assert_eq!(values, ["2.5", "2"], "the sealed 09:00 record stays; 10:00 bills the late level 2");
    let balances = meterd::audit::balances_with(&mut s, &|_| (meterd::model::Aggregation::WeightedSum, None)).unwrap();
    assert!(balances.iter().all(|b| b.holds()), "{balances:?}");
    let late: Decimal = s
        .read(|tx| {
            let key: i64 = tx.one("SELECT ref FROM instances WHERE instance_id = ?1", params!["i-1"])?;
            levels::late_change_of(tx, key)
        })
        .unwrap();
    assert_eq!(late, Decimal::ZERO, "−1800 + 1800 GB·s");
}

#[test]
fn weighted_late_ingest_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    ingest_late(&dir.path().join("t.db"));
}

#[test]
fn weighted_late_ingest_on_postgres() {
    let Some(pg) = pg::PgCluster::shared() else { return };
    ingest_late(Path::new(&pg.fresh_db()));
}
