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

/// A backlog longer than one apply (`upload::run::APPLY_DELIVERIES_AFTER`, 16,384 records):
/// the records rows of the first batches are written while the run is still sending (on
/// SQLite in the delivery transaction that reaches the threshold; on PostgreSQL by the
/// background apply on a second connection, `upload::applier`), the rest by the run's last
/// apply. Both stamp the rows they write with their own clock reading, so the rows carry
/// exactly two stamps, the first 17 batches' the earlier. Were the mid-run apply never made (an
/// applier never woken, or its writes lost), every row would carry the last apply's stamp.
#[test]
fn a_backlog_longer_than_one_apply_is_applied_while_the_run_goes_on() {
    let w = Env::for_upload();
    w.seed("long", 500, 36);
    // Each answer takes 250 ms: the apply woken after the 17th batch has begun (and chosen the
    // batches it applies) long before the 18th is delivered.
    let mut cfg = mock_config();
    cfg.faults.latency = std::time::Duration::from_millis(250);
    let mock = Mock::start(cfg);
    w.configure(&Upload::to(&mock.endpoint()));
    let report = w.upload_lib(&w.cfg_owned(), &key());
    assert_eq!((report.delivered, report.rejected, report.waiting, report.requests), (18_000, 0, 0, 18), "{report:?}");
    assert_eq!(mock.counters().records_billed, 18_000);
    assert_eq!(w.states(), counts(&[("delivered", 18_000)]));
    let left: i64 = w.db().one("SELECT count(*) FROM upload_queue", &[]);
    assert_eq!(left, 0, "every applied record left the queue");
    // (stamp, first batch, last batch, records) per stamp, earliest first.
    let stamps: Vec<(i64, i64, i64, i64)> = w.db().rows(
        "SELECT updated_ns, min(batch_id), max(batch_id), count(*) FROM records GROUP BY updated_ns ORDER BY updated_ns",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    );
    let ids: Vec<i64> = w.batches().iter().map(|b| b.0).collect();
    assert_eq!(stamps.len(), 2, "one apply during the run, one at its end: {stamps:?}");
    let (during, end) = (stamps[0], stamps[1]);
    assert_eq!((during.1, during.2, during.3), (ids[0], ids[16], 17_000), "the first 17 batches, applied during the run: {stamps:?}");
    assert_eq!((end.1, end.2, end.3), (ids[17], ids[17], 1_000), "the last batch, applied at the end: {stamps:?}");
}
