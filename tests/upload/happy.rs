//! The happy path, and the stored canonical bodies against the JSON Schema.

use crate::util::upload::*;
use crate::util::Env;

/// 2,500 sealed records, batch size 1000 → exactly 3 requests (1000, 1000, 500); every record
/// billed once with its sealed values; every record `delivered`; the bytes sent are the stored
/// batch bodies, in order.
#[test]
fn happy_path_2500_records_in_three_requests() {
    let w = Env::for_upload();
    w.seed("happy", 125, 20);
    let rows = w.records();
    assert_eq!(rows.len(), 2500);
    assert_eq!(w.states(), counts(&[("pending", 2500)]));
    if crate::util::backend::PG {
        // The seal copies each pending record's bytes into its queue row (PG migration 9),
        // where a cut reads them (`store::batches::next_pending`).
        let copied: i64 =
            w.db().one("SELECT count(*) FROM upload_queue q JOIN records r ON r.metering_sn = q.metering_sn WHERE q.body = r.body", &[]);
        assert_eq!(copied, 2500);
    }

    let mock = Mock::start(mock_config());
    w.configure(&Upload::to(&mock.endpoint()));
    let report = w.upload_lib(&w.cfg_owned(), &key());

    assert_eq!((report.delivered, report.rejected, report.expired, report.waiting), (2500, 0, 0, 0), "{report:?}");
    assert_eq!(report.requests, 3, "{report:?}");
    assert_eq!(report.outcomes, counts(&[("delivered", 3)]));
    assert!(!report.used_fallback && report.config_error.is_none() && report.transient_error.is_none(), "{report:?}");

    let c = mock.counters();
    assert_eq!((c.requests, c.records_billed, c.duplicates, c.outcome("MKT.0000")), (3, 2500, 0, 3));
    assert_billed_once(&mock.ledger(), &rows);
    assert_eq!(w.states(), counts(&[("delivered", 2500)]));

    let batches = w.batches();
    let shapes: Vec<(i64, &str)> = batches.iter().map(|b| (b.2, b.3.as_str())).collect();
    assert_eq!(shapes, [(1000, "delivered"), (1000, "delivered"), (500, "delivered")]);
    let stored: Vec<Vec<u8>> = batches.into_iter().map(|b| b.1).collect();
    assert_eq!(mock.received(), stored, "the bytes sent are the stored batch bodies, in order");
}

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/usage-record.schema.json")).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

/// Every `batches.body` written by a real upload — whole batches and the halves of a bisected
/// one — is valid against `schemas/usage-record.schema.json`, and is the canonical form the
/// store is signed over (re-serialising the parsed records gives the same bytes).
#[test]
fn stored_batch_bodies_validate_against_the_schema() {
    let w = Env::for_upload();
    w.seed("schema", 30, 5);
    // One record the store refuses, so the batch is split and the halves are stored too.
    let mut cfg = mock_config();
    let ids: Vec<String> = (1..30).map(|i| format!("schema-{i:04}")).collect();
    cfg.instances = Some(ids.into_iter().collect());
    let mock = Mock::start(cfg);
    w.configure(&Upload::to(&mock.endpoint()).batch_size(64));
    let report = w.upload_lib(&w.cfg_owned(), &key());
    assert_eq!((report.delivered, report.rejected), (145, 5), "{report:?}");

    let v = schema();
    let batches = w.batches();
    assert!(batches.len() > 3 && batches.iter().any(|b| b.3 == "split"), "expected bisected batches: {}", batches.len());
    for (id, body, n, _) in &batches {
        let value: serde_json::Value = serde_json::from_slice(body).unwrap();
        let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "batch {id}: {errors:?}\n{}", preview(body));
        let recs = meterd::upload::parse_body(body).unwrap();
        assert_eq!(recs.len() as i64, *n);
        assert_eq!(&meterd::upload::canonical_body(&recs), body, "batch {id} is not in canonical form");
    }
    for row in w.records() {
        let one = format!("{{\"usage_records\":[{}]}}", String::from_utf8(row.body.clone()).unwrap());
        assert!(v.is_valid(&serde_json::from_str(&one).unwrap()), "{one}");
    }
}

/// For each batch in id order: its `created_ns` and the stamps (`updated_ns`) its records rows
/// carry. A delivery transaction cuts the next batch and, when it applies, stamps the records
/// rows it writes with the same clock reading; the background apply (PostgreSQL) stamps them
/// with the reading of the delivery that woke it; the run's last apply with its own, later.
fn stamps_by_batch(w: &Env) -> Vec<(i64, i64, Vec<i64>)> {
    let created: Vec<(i64, i64)> = w.db().rows("SELECT id, created_ns FROM batches ORDER BY id", &[], |r| Ok((r.get(0)?, r.get(1)?)));
    let stamps: Vec<(i64, i64)> =
        w.db().rows("SELECT DISTINCT batch_id, updated_ns FROM records ORDER BY batch_id, updated_ns", &[], |r| Ok((r.get(0)?, r.get(1)?)));
    created.into_iter().map(|(id, at)| (id, at, stamps.iter().filter(|s| s.0 == id).map(|s| s.1).collect())).collect()
}

/// A backlog longer than one apply (`upload::run::APPLY_DELIVERIES_AFTER`, 16,384 records):
/// the records rows of the first 17 batches are written while the run is still sending — on
/// SQLite in the delivery transaction that reaches the count, on PostgreSQL by the background
/// apply it wakes (`upload::applier`) — both stamped with that delivery's clock reading, which
/// is the 18th batch's `created_ns` (cut in the same transaction). Were the mid-run apply never
/// made (an applier never woken, or its writes lost), the run's last apply would stamp them
/// all, later.
#[test]
fn a_backlog_longer_than_one_apply_is_applied_while_the_run_goes_on() {
    let w = Env::for_upload();
    w.seed("long", 500, 36);
    let mock = Mock::start(mock_config());
    w.configure(&Upload::to(&mock.endpoint()));
    let report = w.upload_lib(&w.cfg_owned(), &key());
    assert_eq!((report.delivered, report.rejected, report.waiting, report.requests), (18_000, 0, 0, 18), "{report:?}");
    assert_eq!(mock.counters().records_billed, 18_000);
    assert_eq!(w.states(), counts(&[("delivered", 18_000)]));
    let left: i64 = w.db().one("SELECT count(*) FROM upload_queue", &[]);
    assert_eq!(left, 0, "every applied record left the queue");
    let batches = stamps_by_batch(&w);
    assert_eq!(batches.len(), 18);
    let woken_at = batches[17].1;
    for (id, _, stamps) in &batches[..17] {
        assert_eq!(stamps, &[woken_at], "batch {id}: applied during the run, by the apply the 17th delivery made or woke");
    }
    // The last batch: by the run's last apply, or by the background one when it began after
    // that batch's delivery.
    assert!(batches[17].2.len() == 1 && batches[17].2[0] >= woken_at, "{batches:?}");
}

/// The background apply fails (`METERD_FAULTS=apply-beside-fails`, as a lost second connection
/// would): the run applies in its delivery transactions instead, so the first 17 batches are
/// still applied during the run — by the delivery of the 18th or 19th batch (whichever first
/// sees the failure), stamped with the next batch's `created_ns`; on SQLite, where no applier
/// runs, by the 17th's. Without the fallback, on PostgreSQL only the run's last apply would
/// write them, stamped with no batch's `created_ns`. Each answer takes 100 ms, so the failure
/// is seen long before the last delivery.
#[test]
fn a_failing_background_apply_falls_back_to_the_delivery_transactions() {
    let w = Env::for_upload();
    w.seed("fall", 500, 40);
    let mut cfg = mock_config();
    cfg.faults.latency = std::time::Duration::from_millis(100);
    let mock = Mock::start(cfg);
    w.configure(&Upload::to(&mock.endpoint()));
    let run = w.meterd(&["upload", "--now", NOW], &[("METERD_ISV_KEY", KEY), ("METERD_FAULTS", "apply-beside-fails")]).expect(0);
    assert_eq!(run.report()["delivered"], 20_000, "{run:#?}");
    if crate::util::backend::PG {
        assert!(run.stderr.contains("the background apply of delivered batches failed"), "{run:#?}");
    }
    assert_eq!(mock.counters().records_billed, 20_000);
    assert_eq!(w.states(), counts(&[("delivered", 20_000)]));
    let batches = stamps_by_batch(&w);
    assert_eq!(batches.len(), 20);
    let stamp = batches[0].2.clone();
    let by = batches.iter().position(|b| stamp == [b.1]);
    assert!(matches!(by, Some(17..=19)), "the first batches were applied by the delivery that cut batch {by:?}: {batches:?}");
    for (id, _, stamps) in &batches[..17] {
        assert_eq!(stamps, &stamp, "batch {id}");
    }
}
