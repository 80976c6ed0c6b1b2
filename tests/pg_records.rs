//! The upload side of the store — `store::records`, `store::batches`, `store::claims` and
//! `store::points` — on a real PostgreSQL server from the test harness and on a SQLite file,
//! through the same script: every function runs, and both backends give the same transcript
//! (states, counts, batch ids and sizes, exact decimals, the rejected log). Catches SQL that
//! only one engine accepts (`INDEXED BY`, `WHERE 1`, `last_insert_rowid()`, a parameter
//! PostgreSQL cannot type) and a decimal that reads back differently.

#[path = "util/pg.rs"]
mod pg;
#[path = "util/pg_both.rs"]
mod pg_both;

use meterd::model::UsageRecord;
use meterd::store::records::{self, NewRecord, RecordState};
use meterd::store::sql::{params, Tx};
use meterd::store::{batches, claims, dead_letters, points, StoreError};
use rust_decimal::Decimal;

type Result<T> = std::result::Result<T, StoreError>;

/// Runs the script on `tx`; returns its transcript.
fn script(tx: &Tx<'_>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut log = |what: &str, v: String| out.push(format!("{what}: {v}"));
    let inst: i64 =
        tx.one("INSERT INTO instances (instance_id, plan, start_ns, created_ns) VALUES ('i-1', 'p', 0, 0) RETURNING ref", params![])?;
    let mut sns = Vec::new();
    for h in 0..=5_i64 {
        let sn = format!("sn-{h:04}");
        let state = if h == 5 { RecordState::Zero } else { RecordState::Pending };
        let record = UsageRecord {
            begin_time: format!("b{h}"),
            end_time: format!("e{h}"),
            instance_id: "i-1".into(),
            metering_sn: sn.clone(),
            record_time: "r".into(),
            relate_pkg_instance: (h == 1).then(|| "pkg".to_string()),
            usage_value: if h == 5 { "0".into() } else { "1.5".into() },
        };
        let carry_out: Decimal = if h == 2 { "0.00003".parse().unwrap() } else { Decimal::ZERO };
        let (begin, end) = (h * 3600, h * 3600 + 3600);
        let rec = NewRecord {
            instance_key: inst,
            window_start: begin,
            begin,
            end,
            window_usage: "1.50".parse().unwrap(),
            carry_in: Decimal::ZERO,
            carry_out,
            record_time: end,
            record,
            state,
        };
        records::insert(tx, &rec, 1)?;
        sns.push(sn);
    }
    let states = |tx: &Tx<'_>| -> Result<String> { Ok(format!("{:?}", records::count_by_state(tx)?)) };
    log("sealed", states(tx)?);
    let all = records::all(tx)?;
    log(
        "all",
        format!(
            "{:?}",
            all.iter().map(|r| (&r.metering_sn, r.usage_value, r.window_usage, r.carry_out, &r.relate_pkg)).collect::<Vec<_>>()
        ),
    );
    log("of_instance", format!("{}", records::of_instance(tx, inst, 3600, 7200)?.len()));
    log("pending_before", format!("{}", records::pending_before(tx, 7200)?.len()));
    log("waiting", format!("{}", records::waiting(tx)?));
    log("dropped", points::dropped(tx, inst)?.to_string());

    // Members read earlier are reused only while the same records are pending.
    let read = batches::next_pending(tx, 2)?;
    let mut tagged = read.clone();
    tagged[0].body = b"tag".to_vec();
    assert_eq!(batches::next_pending_reusing(tx, 2, tagged.clone())?, tagged);
    assert_eq!(batches::next_pending_reusing(tx, 3, tagged)?.len(), 3);

    let cut = batches::next_pending(tx, 3)?;
    let a = batches::create(tx, &cut, body(&cut), 2)?;
    log("cut", format!("batch {} of {}", a.id, a.records));
    log("sending", states(tx)?);
    log(
        "unsent/pending/members/open",
        format!(
            "{} {} {} {}",
            records::unsent(tx, 100)?.len(),
            records::pending(tx, 100)?.len(),
            batches::members(tx, a.id)?.len(),
            batches::open(tx)?.len()
        ),
    );
    let summaries = records::summaries_of_instance(tx, inst, i64::MIN, i64::MAX)?;
    log("summaries", format!("{:?}", summaries.iter().map(|s| (s.state, s.usage_value)).collect::<Vec<_>>()));

    let me = claims::Holder::this_process();
    // Pid 1 runs on every Linux host, so on SQLite too this holder is alive within its lease.
    let other = claims::Holder("1:ff".into());
    claims::claim(tx, a.id, &other, 100)?;
    log("claimed by another", format!("{}", claims::claim_open(tx, &me, 200, false)?.len()));
    claims::release(tx, &other)?;
    log("released", format!("{}", claims::claim_open(tx, &me, 200, false)?.len()));

    batches::attempted(tx, a.id, Some("boom"))?;
    batches::attempted(tx, a.id, None)?;
    batches::attempt_delivered(tx, a.id)?;
    log("delivered", format!("{} unsettled {}", states(tx)?, batches::unapplied_deliveries(tx)?));
    log("settled", format!("{}", batches::apply_deliveries(tx, 3)?));
    let stored = |tx: &Tx<'_>, sn: &str| -> Result<String> {
        tx.query_row("SELECT state, batch_id FROM records WHERE metering_sn = ?1", params![sn], |r| {
            Ok(format!("{} {:?}", r.get::<String>(0)?, r.get::<Option<i64>>(1)?))
        })
    };
    log("stored", stored(tx, &sns[0])?);

    let rest = batches::next_pending(tx, 10)?;
    let b = batches::create(tx, &rest, body(&rest), 4)?;
    let (h1, h2) = batches::split(tx, b.id)?;
    let (h1, h2) = (batches::create(tx, &h1, body(&h1), 5)?, batches::create(tx, &h2, body(&h2), 5)?);
    batches::abandon(tx, h1.id)?;
    log("split and abandoned", format!("{} {} {}", h1.id, h2.id, states(tx)?));
    log("rejected", format!("{:?}", dead_letters::refuse_batch(tx, h2.id, "MKT.9001", "bad", 6)?));
    log("stored", stored(tx, &sns[4])?);
    let err = dead_letters::requeue(tx, &sns[3], 7).unwrap_err().to_string();
    log("requeue pending", err);
    dead_letters::requeue(tx, &sns[4], 7)?;
    log("log", format!("{:?}", dead_letters::list(tx)?));

    // Not in key order: marked record by record.
    let rest = batches::next_pending(tx, 10)?;
    let rev: Vec<_> = rest.iter().rev().cloned().collect();
    let c = batches::create(tx, &rev, body(&rev), 8)?;
    dead_letters::refuse_record(tx, &sns[3], "EXPIRED", "late", b"{}", 9)?;
    log("expired", format!("{} {}", c.records, stored(tx, &sns[3])?));
    log("final", states(tx)?);

    let seq: i64 = tx.one(
        "INSERT INTO events (instance_ref, event_id, time_ns, qty, billed_window, received_s) VALUES (?1, 'e1', 5, '2.25', 0, 0) RETURNING seq",
        params![inst],
    )?;
    tx.execute("INSERT INTO window_events (instance_ref, window_start, seq) VALUES (?1, 0, ?2)", params![inst, seq])?;
    tx.execute("INSERT INTO event_props (seq, props) VALUES (?1, ?2)", params![seq, r#"{"user":"a"}"#])?;
    log("window events", format!("{:?}", points::window_events(tx, inst, 0, Some("user"))?));
    points::add_late_unbilled(tx, inst, 3)?;
    log("late", format!("{} {:?}", points::late_unbilled_of(tx, inst)?, points::late_unbilled(tx)?));
    Ok(out)
}

#[test]
fn the_upload_side_of_the_store_answers_the_same_on_postgresql_and_sqlite() {
    let Some((on_pg, on_sqlite)) = pg_both::on_both(script) else { return };
    assert_eq!(on_pg, on_sqlite);
    // The transcript says what it checked: a sample of it.
    assert!(on_sqlite.iter().any(|l| l == "dropped: 0.00003"), "{on_sqlite:#?}");
    assert!(on_sqlite.iter().any(|l| l == "claimed by another: 0"), "{on_sqlite:#?}");
}

/// A batch's request body, joined from its members' stored bytes as the upload driver does.
fn body(recs: &[batches::Member]) -> Vec<u8> {
    meterd::upload::body::join_records(&recs.iter().map(|r| r.body.as_slice()).collect::<Vec<_>>())
}

/// `n` pending records as a seal lays them out (one window of many instances, side by side),
/// each with its own instance, written through `records::insert` into `conn`, committed.
fn seal_side_by_side(conn: &mut meterd::store::sql::PgConn, n: i64) {
    conn.batch("BEGIN").unwrap();
    let tx = Tx::postgres(conn);
    for i in 0..n {
        let inst: i64 = tx
            .one(
                "INSERT INTO instances (instance_id, plan, start_ns, created_ns) VALUES (?1, 'p', 0, 0) RETURNING ref",
                params![format!("i-{i}")],
            )
            .unwrap();
        let record = UsageRecord {
            begin_time: "2026-11-30T00:00:00Z".into(),
            end_time: "2026-11-30T01:00:00Z".into(),
            instance_id: format!("i-{i}"),
            metering_sn: format!("sn-{i:04}-0123456789abcdef0123456789abcdef"),
            record_time: "2026-11-30T01:00:00Z".into(),
            relate_pkg_instance: None,
            usage_value: "1.5".into(),
        };
        let one: Decimal = "1.5".parse().unwrap();
        let rec = NewRecord {
            instance_key: inst,
            window_start: 0,
            begin: 0,
            end: 3600,
            window_usage: one,
            carry_in: Decimal::ZERO,
            carry_out: Decimal::ZERO,
            record_time: 3600,
            record,
            state: RecordState::Pending,
        };
        records::insert(&tx, &rec, 1).unwrap();
    }
    conn.batch("COMMIT").unwrap();
}

/// A fresh migrated database on the shared cluster, as a connection that writes as this build.
fn pg_conn() -> Option<meterd::store::sql::PgConn> {
    let pg = pg::PgCluster::shared()?;
    let mut client = pg::connect(&pg.fresh_db());
    meterd::store::pg_schema::migrate(&mut client).unwrap();
    // Writes as this build's (`store::pg::begin_write`): an older writer's are refused.
    client.batch_execute(&format!("SET meterd.writer_schema = '{}'", meterd::store::pg_schema::PG_MIGRATIONS.len())).unwrap();
    Some(meterd::store::sql::PgConn::new(client))
}

/// Scans this transaction started on `relation` (PostgreSQL's own counter: index scans of an
/// index, sequential scans of a table).
fn scans(tx: &Tx<'_>, relation: &str) -> i64 {
    tx.one(&format!("SELECT pg_stat_get_xact_numscans('{relation}'::regclass)"), params![]).unwrap()
}

/// Applying a delivery writes each record's row once; on PostgreSQL that update must stay on
/// the row's page (HOT: no new index entries), which needs no index on what it writes
/// (`records_by_batch` was one) and room on the page (`fillfactor`): PG migration 7. Records
/// laid out as a seal writes them (one window of many instances, side by side), then cut,
/// delivered and applied in one transaction, whose own counters say how each row was updated.
#[test]
fn applying_a_delivery_on_postgresql_updates_every_record_on_its_page() {
    let Some(mut conn) = pg_conn() else { return };
    let n = 200_i64;
    seal_side_by_side(&mut conn, n);
    conn.batch("BEGIN").unwrap();
    let tx = Tx::postgres(&mut conn);
    let cut = batches::next_pending(&tx, n as usize).unwrap();
    let b = batches::create(&tx, &cut, body(&cut), 2).unwrap();
    batches::attempt_delivered(&tx, b.id).unwrap();
    assert_eq!(batches::apply_deliveries(&tx, 3).unwrap(), n as u64);
    let (updated, hot): (i64, i64) = tx
        .query_row(
            "SELECT pg_stat_get_xact_tuples_updated('records'::regclass), pg_stat_get_xact_tuples_hot_updated('records'::regclass)",
            params![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    conn.batch("COMMIT").unwrap();
    assert_eq!((updated, hot), (n, n), "every record's row updated once, each on its own page (HOT)");
}

/// On PostgreSQL a cut reads its members' bytes from their queue rows (PG migration 9: the
/// seal copies them there), not by a probe of `records` per record; a queue row without them
/// (queued before migration 9, requeued, copied from another store) gets its record's bytes.
/// An apply reads each delivered batch's state once, not once per record, and leaves nothing
/// of an open batch applied. PostgreSQL's own per-transaction counters say which indexes ran.
#[test]
fn on_postgresql_a_cut_reads_bodies_from_the_queue_and_an_apply_reads_each_batch_once() {
    let Some(mut conn) = pg_conn() else { return };
    let n = 200_i64;
    seal_side_by_side(&mut conn, n);
    conn.batch("BEGIN").unwrap();
    let tx = Tx::postgres(&mut conn);
    let with_body: i64 = tx
        .one("SELECT count(*) FROM upload_queue q JOIN records r ON r.metering_sn = q.metering_sn WHERE q.body = r.body", params![])
        .unwrap();
    assert_eq!(with_body, n, "the seal copies each pending record's bytes into its queue row");
    tx.execute("UPDATE upload_queue SET body = NULL WHERE metering_sn IN ('sn-0007-0123456789abcdef0123456789abcdef', 'sn-0150-0123456789abcdef0123456789abcdef')", params![])
        .unwrap();
    let stored: Vec<(String, Vec<u8>)> = tx
        .query_map("SELECT metering_sn, body FROM records ORDER BY window_start, metering_sn", params![], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();

    let record_reads = |tx: &Tx<'_>| (scans(tx, "records"), scans(tx, "records_pkey"));
    let before = record_reads(&tx);
    let cut = batches::next_pending(&tx, n as usize).unwrap();
    let after = record_reads(&tx);
    assert_eq!((after.0 - before.0, after.1 - before.1), (0, 2), "no scan of records; only the two queue rows without bytes probe theirs");
    let read: Vec<(String, Vec<u8>)> = cut.iter().map(|m| (m.metering_sn.clone(), m.body.clone())).collect();
    assert_eq!(read, stored, "the bytes read are the records' bytes, in key order");

    // Two batches: the first delivered, the second still open.
    let a = batches::create(&tx, &cut[..120], body(&cut[..120]), 2).unwrap();
    let b = batches::create(&tx, &cut[120..], body(&cut[120..]), 2).unwrap();
    batches::attempt_delivered(&tx, a.id).unwrap();
    let batch_scans = |tx: &Tx<'_>| ["batches", "batches_pkey", "batches_state", "batches_open"].iter().map(|i| scans(tx, i)).sum::<i64>();
    let before = batch_scans(&tx);
    assert_eq!(batches::apply_deliveries(&tx, 3).unwrap(), 120);
    let lookups = batch_scans(&tx) - before;
    assert!(lookups <= 2, "{lookups} scans of batches to apply 120 records of one batch");
    let states = records::count_by_state(&tx).unwrap();
    assert_eq!(states, [(RecordState::Delivered, 120), (RecordState::Sending, 80)]);
    assert_eq!(batches::apply_deliveries(&tx, 4).unwrap(), 0, "an open batch is not applied");
    batches::attempt_delivered(&tx, b.id).unwrap();
    assert_eq!(batches::apply_deliveries(&tx, 5).unwrap(), 80);
    let left: i64 = tx.one("SELECT count(*) FROM upload_queue", params![]).unwrap();
    let named: i64 =
        tx.one("SELECT count(*) FROM records WHERE state = 'delivered' AND batch_id IN (?1, ?2)", params![a.id, b.id]).unwrap();
    conn.batch("COMMIT").unwrap();
    assert_eq!((left, named), (0, n));
}

/// Serials of records, in order.
fn sns_of(recs: &[records::RecordRow]) -> Vec<String> {
    recs.iter().map(|r| r.metering_sn.clone()).collect()
}

/// PG migration 11: `upload_queue` has no index on `batch_id`; every reader of a batch's queue
/// rows scans its key range (`batch_ranges`) and keeps the rows naming the batch. Ranges here
/// overlap on purpose: a batch of every other record (cut row by row, its range padded to the
/// window) holds the rows of the batches cut after it, and a split's halves lie inside the
/// range the split batch had. Members, counts by state, the apply and an abandon each touch
/// exactly their own batch's rows, and a range lives exactly as long as its batch's queue rows.
#[test]
fn on_postgresql_a_batch_is_read_over_its_key_range_and_only_its_own_rows_count() {
    let Some(mut conn) = pg_conn() else { return };
    let n = 40_usize;
    seal_side_by_side(&mut conn, n as i64);
    conn.batch("BEGIN").unwrap();
    let tx = Tx::postgres(&mut conn);
    let ranges = |tx: &Tx<'_>| -> i64 { tx.one("SELECT count(*) FROM batch_ranges", params![]).unwrap() };
    let sn = |m: &[batches::Member]| m.iter().map(|m| m.metering_sn.clone()).collect::<Vec<_>>();
    let cut = batches::next_pending(&tx, n).unwrap();
    let evens: Vec<batches::Member> = cut.iter().step_by(2).cloned().collect();
    let a = batches::create(&tx, &evens, body(&evens), 2).unwrap();
    let odds = batches::next_pending(&tx, n).unwrap();
    assert_eq!(odds.len(), 20);
    let b = batches::create(&tx, &odds[..10], body(&odds[..10]), 2).unwrap();
    assert_eq!(ranges(&tx), 2);
    assert_eq!(records::count_by_state(&tx).unwrap(), [(RecordState::Pending, 10), (RecordState::Sending, 30)]);
    assert_eq!(sns_of(&records::in_batch(&tx, a.id).unwrap()), sn(&evens), "the padded range holds b's rows too; only a's count");
    assert_eq!(sns_of(&records::in_batch(&tx, b.id).unwrap()), sn(&odds[..10]));

    // b is split into two halves: both inside the range b had, which is gone with b's rows.
    let (h1, h2) = batches::split(&tx, b.id).unwrap();
    let (c1, c2) = (batches::create(&tx, &h1, body(&h1), 3).unwrap(), batches::create(&tx, &h2, body(&h2), 3).unwrap());
    assert_eq!(ranges(&tx), 3, "a, c1, c2");
    assert!(records::in_batch(&tx, b.id).unwrap().is_empty());
    assert_eq!(sns_of(&records::in_batch(&tx, c2.id).unwrap()), sn(&odds[5..10]));

    // a is delivered and applied: its 20 rows only, though its range holds c1's and c2's.
    batches::attempt_delivered(&tx, a.id).unwrap();
    assert_eq!(batches::unapplied_deliveries(&tx).unwrap(), 20);
    assert_eq!(
        records::count_by_state(&tx).unwrap(),
        [(RecordState::Delivered, 20), (RecordState::Pending, 10), (RecordState::Sending, 10)]
    );
    assert_eq!(batches::apply_deliveries(&tx, 4).unwrap(), 20);
    assert_eq!(batches::unapplied_deliveries(&tx).unwrap(), 0);
    assert_eq!(ranges(&tx), 2, "c1, c2");
    assert_eq!(sns_of(&records::in_batch(&tx, a.id).unwrap()), sn(&evens), "an applied batch still knows its records");

    // c1 is abandoned (its records pending again), c2 delivered: the queue ends as it began.
    batches::abandon(&tx, c1.id).unwrap();
    assert_eq!(
        records::count_by_state(&tx).unwrap(),
        [(RecordState::Delivered, 20), (RecordState::Pending, 15), (RecordState::Sending, 5)]
    );
    assert_eq!(sn(&batches::next_pending(&tx, n).unwrap())[..5], sn(&odds[..5]));
    batches::attempt_delivered(&tx, c2.id).unwrap();
    assert_eq!(batches::apply_deliveries(&tx, 5).unwrap(), 5);
    assert_eq!(ranges(&tx), 0, "no batch has queue rows");
    assert_eq!(records::count_by_state(&tx).unwrap(), [(RecordState::Delivered, 25), (RecordState::Pending, 15)]);
    let left: i64 = tx.one("SELECT count(*) FROM upload_queue WHERE batch_id IS NOT NULL", params![]).unwrap();
    conn.batch("COMMIT").unwrap();
    assert_eq!(left, 0);
}

/// PG migration 11 converts a store cut by the build before (queue rows found by
/// `upload_queue_by_batch`): batches in every state, with and without queue rows. Each batch
/// that has queue rows gets a range padded to whole windows; afterwards members, counts, a
/// split, the apply and a rejection read exactly what they read before.
#[test]
fn migration_11_gives_each_batch_with_queue_rows_a_range_and_loses_none() {
    let Some(pg) = pg::PgCluster::shared() else { return };
    let mut client = pg::connect(&pg.fresh_db());
    client.batch_execute(meterd::store::pg_schema::VERSION_TABLE).unwrap();
    let known = meterd::store::pg_schema::PG_MIGRATIONS;
    let before = known.iter().position(|m| m.contains("CREATE TABLE batch_ranges")).unwrap();
    for (i, m) in known[..before].iter().enumerate() {
        client.batch_execute(m).unwrap();
        client.execute("INSERT INTO meterd_schema VALUES ($1, 0, 'test')", &[&(i as i32 + 1)]).unwrap();
    }
    // Records in windows 0, 3600 and 7200 (three instances each); batches as the build before
    // left them: 1 delivered and applied (no queue rows), 2 open, 3 delivered not yet applied,
    // 4 split (its halves are 5 and 6, open), 7 abandoned; the rest pending.
    client
        .batch_execute(&format!(
            "SET meterd.writer_schema = '{before}';
             INSERT INTO instances (ref, instance_id, plan, start_ns, created_ns) VALUES (1, 'i-1', 'p', 0, 0), (2, 'i-2', 'p', 0, 0), (3, 'i-3', 'p', 0, 0);
             INSERT INTO records (metering_sn, instance_ref, window_start, begin_s, end_s, usage_value, window_usage, carry_in, carry_out,
                                  record_time_s, body, state, batch_id, updated_ns)
                 SELECT 'sn-' || w || '-' || i, i, w * 3600, w * 3600, w * 3600 + 3600, 1, 1, 0, 0, w * 3600 + 3600,
                        convert_to('{{\"sn\":\"sn-' || w || '-' || i || '\"}}', 'UTF8'), CASE WHEN w = 0 AND i = 1 THEN 'delivered' ELSE 'pending' END,
                        CASE WHEN w = 0 AND i = 1 THEN 1 END, 0
                 FROM generate_series(0, 2) w, generate_series(1, 3) i;
             INSERT INTO batches (id, body, records, state, created_ns) VALUES
                 (1, 'x', 1, 'delivered', 0), (2, 'x', 2, 'open', 0), (3, 'x', 2, 'delivered', 0), (4, 'x', 2, 'split', 0),
                 (5, 'x', 1, 'open', 0), (6, 'x', 1, 'open', 0), (7, 'x', 1, 'abandoned', 0);
             SELECT setval(pg_get_serial_sequence('batches', 'id'), 7);
             INSERT INTO upload_queue (window_start, metering_sn, batch_id) VALUES
                 (0, 'sn-0-2', 2), (0, 'sn-0-3', 3), (3600, 'sn-1-1', 3), (3600, 'sn-1-2', 2),
                 (3600, 'sn-1-3', 5), (7200, 'sn-2-1', 6), (7200, 'sn-2-2', NULL), (7200, 'sn-2-3', NULL);"
        ))
        .unwrap();
    assert_eq!(meterd::store::pg_schema::migrate(&mut client).unwrap(), known.len() as u32);
    let ranges: Vec<(i64, i64, String, i64, String)> = client
        .query("SELECT batch_id, first_ws, first_sn, last_ws, last_sn FROM batch_ranges ORDER BY batch_id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let e = String::new;
    assert_eq!(
        ranges,
        [(2, 0, e(), 3601, e()), (3, 0, e(), 3601, e()), (5, 3600, e(), 3601, e()), (6, 7200, e(), 7201, e())],
        "one padded range per batch with queue rows"
    );
    client.batch_execute(&format!("SET meterd.writer_schema = '{}'", known.len())).unwrap();
    let mut conn = meterd::store::sql::PgConn::new(client);
    conn.batch("BEGIN").unwrap();
    let tx = Tx::postgres(&mut conn);
    assert_eq!(
        records::count_by_state(&tx).unwrap(),
        [(RecordState::Delivered, 3), (RecordState::Pending, 2), (RecordState::Sending, 4)],
        "1 applied + 3's two; 2's, 5's and 6's"
    );
    assert_eq!(batches::unapplied_deliveries(&tx).unwrap(), 2);
    assert_eq!(sns_of(&records::in_batch(&tx, 2).unwrap()), ["sn-0-2", "sn-1-2"]);
    assert_eq!(sns_of(&records::in_batch(&tx, 3).unwrap()), ["sn-0-3", "sn-1-1"]);
    assert_eq!(sns_of(&records::in_batch(&tx, 1).unwrap()), ["sn-0-1"]);
    assert!(records::in_batch(&tx, 4).unwrap().is_empty() && records::in_batch(&tx, 7).unwrap().is_empty());
    assert_eq!(batches::apply_deliveries(&tx, 1).unwrap(), 2, "3's records, not 2's in the same range");
    let (h1, h2) = batches::split(&tx, 2).unwrap();
    assert_eq!((h1.len(), h2.len()), (1, 1));
    let c = batches::create(&tx, &h2, body(&h2), 2).unwrap();
    let rejected = dead_letters::refuse_batch(&tx, 5, "MKT.9001", "bad", 3).unwrap();
    assert_eq!(rejected, ["sn-1-3"]);
    assert_eq!(
        records::count_by_state(&tx).unwrap(),
        [(RecordState::Delivered, 3), (RecordState::Pending, 3), (RecordState::Rejected, 1), (RecordState::Sending, 2)],
        "sn-0-2 pending again; sn-1-2 in {}, sn-2-1 in 6",
        c.id
    );
    batches::attempt_delivered(&tx, c.id).unwrap();
    batches::attempt_delivered(&tx, 6).unwrap();
    assert_eq!(batches::apply_deliveries(&tx, 4).unwrap(), 2);
    let left: Vec<String> =
        tx.query_map("SELECT metering_sn FROM upload_queue ORDER BY window_start, metering_sn", params![], |r| r.get(0)).unwrap();
    let ranges_left: i64 = tx.one("SELECT count(*) FROM batch_ranges", params![]).unwrap();
    conn.batch("COMMIT").unwrap();
    assert_eq!(left, ["sn-0-2", "sn-2-2", "sn-2-3"]);
    assert_eq!(ranges_left, 0, "the rejected batch's range went at the apply");
}

/// The uploader reads the next batch's records while a request is in flight and cuts them in
/// the delivery transaction without reading the queue's keys again
/// (`batches::cut_read_ahead`), but only while they are still the first pending records and
/// exactly the pending ones of their key range: a record pending before them (here a batch
/// given back) or one of them no longer pending makes the cut read the queue again, and
/// leaves no batch behind. `records::waiting` counts the pending rows and the open batches'
/// rows, not a delivered batch's.
#[test]
fn on_postgresql_a_cut_takes_the_records_read_ahead_only_while_they_are_first() {
    let Some(mut conn) = pg_conn() else { return };
    seal_side_by_side(&mut conn, 30);
    conn.batch("BEGIN").unwrap();
    let tx = Tx::postgres(&mut conn);
    let sn = |m: &[batches::Member]| m.iter().map(|m| m.metering_sn.clone()).collect::<Vec<_>>();
    let batch_rows = |tx: &Tx<'_>| -> i64 { tx.one("SELECT count(*) FROM batches", params![]).unwrap() };
    let first = batches::next_pending(&tx, 10).unwrap();
    let a = batches::create(&tx, &first, body(&first), 1).unwrap();

    // Still first: cut as read, with the body made from them.
    let read = batches::next_pending(&tx, 10).unwrap();
    let b = match batches::cut_read_ahead(&tx, 10, read.clone(), body, 2).unwrap() {
        batches::ReadAhead::Cut(b) => b,
        other => panic!("the records read ahead are still first: {other:?}"),
    };
    assert_eq!((b.records, &b.body), (10, &body(&read)));
    assert_eq!(sns_of(&records::in_batch(&tx, b.id).unwrap()), sn(&read));
    assert_eq!(records::waiting(&tx).unwrap(), 30);

    // A batch given back puts its records before the ones read ahead: read again.
    let read = batches::next_pending(&tx, 10).unwrap();
    batches::abandon(&tx, a.id).unwrap();
    let before = batch_rows(&tx);
    match batches::cut_read_ahead(&tx, 10, read.clone(), body, 3).unwrap() {
        batches::ReadAhead::Pending(recs) => assert_eq!(sn(&recs), sn(&first)),
        other => panic!("a record is pending before those read ahead: {other:?}"),
    }
    assert_eq!(batch_rows(&tx), before, "nothing was cut");

    // One of the records read ahead is no longer pending: read again.
    let read = batches::next_pending(&tx, 20).unwrap();
    assert_eq!(read.len(), 20);
    let c = batches::create(&tx, &read[..1], body(&read[..1]), 4).unwrap();
    let before = batch_rows(&tx);
    match batches::cut_read_ahead(&tx, 20, read.clone(), body, 4).unwrap() {
        batches::ReadAhead::Pending(recs) => assert_eq!(sn(&recs), sn(&read[1..])),
        other => panic!("a record read ahead is in batch {}: {other:?}", c.id),
    }
    assert_eq!(batch_rows(&tx), before, "nothing was cut");
    assert_eq!(records::count_by_state(&tx).unwrap(), [(RecordState::Pending, 19), (RecordState::Sending, 11)]);

    // Delivered (not yet applied): no longer waiting.
    batches::attempt_delivered(&tx, b.id).unwrap();
    assert_eq!(records::waiting(&tx).unwrap(), 20);

    // PG migration 12: a body large enough to be compressed is compressed with lz4 where the
    // server has it (Debian's build does).
    let rest = batches::next_pending(&tx, 19).unwrap();
    let d = batches::create(&tx, &rest, body(&rest), 5).unwrap();
    assert!(d.body.len() > 2048, "{} bytes: too small to be compressed", d.body.len());
    let lz4: bool = tx.one("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'", params![]).unwrap();
    let method: Option<String> = tx.one("SELECT pg_column_compression(body) FROM batches WHERE id = ?1", params![d.id]).unwrap();
    assert_eq!(method.as_deref(), Some(if lz4 { "lz4" } else { "pglz" }));
    conn.batch("COMMIT").unwrap();
}
