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
