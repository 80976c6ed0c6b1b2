//! The mock cloud store over real loopback HTTP: what it accepts, what it refuses with which
//! code, what it bills, and what each fault switch does. Also the uploader's client and
//! classifier against it, and the upload-body JSON Schema.

#[path = "mockstore/harness.rs"]
mod harness;

#[path = "mockstore/faults.rs"]
mod faults;

#[path = "mockstore/schema.rs"]
mod schema;

use harness::*;
use meterd::mockstore::read_entries;
use meterd::upload::{canonical_body, new_nonce, signature};

#[tokio::test]
async fn valid_batch_is_billed_and_written_to_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.ledger = Some(dir.path().join("ledger.jsonl"));
    let h = start(cfg).await;
    let records = recs(3);
    assert_eq!(code(&post_records(&h, &records).await), ok());
    let billed: Vec<_> = h.ledger().into_iter().map(|e| e.record).collect();
    assert_eq!(billed, records);
    let on_disk: Vec<_> = read_entries(&dir.path().join("ledger.jsonl")).unwrap().into_iter().map(|e| e.record).collect();
    assert_eq!(on_disk, records, "ledger file is written before the answer");
    let c = h.counters();
    assert_eq!((c.requests, c.records_billed, c.duplicates, c.outcome("MKT.0000")), (1, 3, 0, 1));
}

#[tokio::test]
async fn wrong_signature_is_mkt_0102() {
    let h = start(config()).await;
    let body = canonical_body(&recs(1));
    let (ts, nonce) = (now_ms(), new_nonce());
    let wrong_key = signature(&meterd::config::Secret::new("not-the-key"), ts, &nonce, &body);
    assert_eq!(code(&post_raw(&h, &body, ts, &nonce, &wrong_key).await), (400, "MKT.0102".into()));
    let other_body = signature(&key(), ts, &nonce, b"{\"usage_records\":[]}");
    assert_eq!(code(&post_raw(&h, &body, ts, &nonce, &other_body).await), (400, "MKT.0102".into()));
    assert!(h.ledger().is_empty());
}

#[tokio::test]
async fn stale_or_future_ts_is_refused() {
    let h = start(config()).await;
    let body = canonical_body(&recs(1));
    for ts in [now_ms() - 6 * 60 * 1000, now_ms() + 6 * 60 * 1000] {
        let nonce = new_nonce();
        let reply = post_raw(&h, &body, ts, &nonce, &signature(&key(), ts, &nonce, &body)).await;
        assert_eq!(code(&reply), (400, "MKT.0102".into()), "{reply:?}");
    }
    let ts = now_ms() - 4 * 60 * 1000;
    let nonce = new_nonce();
    assert_eq!(code(&post_raw(&h, &body, ts, &nonce, &signature(&key(), ts, &nonce, &body)).await), ok(), "4 minutes is within the window");
}

#[tokio::test]
async fn reused_nonce_is_refused() {
    let h = start(config()).await;
    let nonce = new_nonce();
    let first = canonical_body(&[rec(1)]);
    let ts = now_ms();
    assert_eq!(code(&post_raw(&h, &first, ts, &nonce, &signature(&key(), ts, &nonce, &first)).await), ok());
    let second = canonical_body(&[rec(2)]);
    let ts = now_ms() + 1;
    let reply = post_raw(&h, &second, ts, &nonce, &signature(&key(), ts, &nonce, &second)).await;
    assert_eq!(code(&reply), (400, "MKT.0102".into()));
    assert!(reply.unwrap().1.contains("nonce"));
    assert_eq!(h.ledger().len(), 1);
}

#[tokio::test]
async fn too_many_records_is_mkt_9003() {
    let h = start(config()).await;
    assert_eq!(code(&post_records(&h, &recs(1001)).await), (500, "MKT.9003".into()));
    assert!(h.ledger().is_empty());
    assert_eq!(code(&post_records(&h, &recs(1000)).await), ok());
    assert_eq!(h.ledger().len(), 1000);
}

#[tokio::test]
async fn unknown_instance_fails_the_whole_request() {
    let mut cfg = config();
    cfg.instances = Some(["inst-1".to_string(), "inst-2".to_string()].into());
    let h = start(cfg).await;
    assert_eq!(code(&post_records(&h, &recs(3)).await), (500, "MKT.9001".into()));
    assert!(h.ledger().is_empty(), "good records of a refused request are not billed");
    assert_eq!(code(&post_records(&h, &recs(2)).await), ok());
}

#[tokio::test]
async fn bad_usage_values_are_mkt_0100() {
    let h = start(config()).await;
    for raw in [r#""0""#, "0", r#""1.23456""#, "1.23456", r#""1e3""#, "1e3", r#""-1""#, r#""123456789""#] {
        assert_eq!(code(&post(&h, &body_with("usage_value", raw)).await), (500, "MKT.0100".into()), "usage_value {raw}");
    }
    assert_eq!(code(&post(&h, &body_with("usage_value", "12.3456")).await), ok(), "a JSON number with 4 decimals is fine");
    assert_eq!(h.ledger()[0].record.usage_value, "12.3456");
}

#[tokio::test]
async fn field_presence_and_format() {
    let h = start(config()).await;
    let cases = [
        ("extra", r#""x""#, (400, "MKT.0101")),
        ("instance_id", "null", (400, "MKT.0101")),
        ("relate_pkg_instance", "null", (400, "MKT.0101")),
        ("begin_time", r#""2022-08-09T08:00:00Z""#, (500, "MKT.0100")),
        ("metering_sn", &format!("{:?}", "s".repeat(65)), (500, "MKT.0100")),
        ("end_time", r#""20220809T070000Z""#, (500, "MKT.9002")),
    ];
    for (field, raw, (status, expected)) in cases {
        assert_eq!(code(&post(&h, &body_with(field, raw)).await), (status, expected.to_string()), "{field} = {raw}");
    }
    let missing = String::from_utf8(canonical_body(&[rec(1)])).unwrap().replace(r#""record_time":"20220809T091000Z","#, "");
    assert_eq!(code(&post(&h, missing.as_bytes()).await), (400, "MKT.0101".into()));
    assert_eq!(code(&post(&h, b"not json").await), (400, "MKT.0101".into()));
    assert!(h.ledger().is_empty());
}

#[tokio::test]
async fn begin_older_than_21_days_is_mkt_9004() {
    let h = start(config()).await; // now pinned at 2022-08-10T00:00Z
    assert_eq!(code(&post(&h, &body_with("begin_time", r#""20220719T230000Z""#)).await), (500, "MKT.9004".into()));
    assert_eq!(code(&post(&h, &body_with("begin_time", r#""20220720T000000Z""#)).await), ok(), "exactly 21 days is accepted");
}

#[tokio::test]
async fn duplicates_succeed_but_are_billed_once() {
    let h = start(config()).await;
    let body = canonical_body(&recs(2));
    assert_eq!(code(&post(&h, &body).await), ok());
    assert_eq!(code(&post(&h, &body).await), ok(), "same bytes, new ts/nonce/signature");
    let mut same_sn = rec(1);
    same_sn.begin_time = "20220809T083000Z".into();
    let mut same_period = rec(2);
    same_period.metering_sn = "another-serial".into();
    assert_eq!(code(&post_records(&h, &[same_sn, same_period, rec(3)]).await), ok());
    assert_eq!(h.ledger().iter().map(|e| e.record.clone()).collect::<Vec<_>>(), recs(3));
    let c = h.counters();
    assert_eq!((c.records_billed, c.duplicates), (3, 4));
}

#[tokio::test]
async fn other_paths_and_methods_are_not_served() {
    let h = start(config()).await;
    let url = format!("{}/api/other", h.endpoint());
    assert_eq!(reqwest::Client::new().post(url).body("{}").send().await.unwrap().status().as_u16(), 404);
    assert_eq!(reqwest::get(h.url()).await.unwrap().status().as_u16(), 405);
}
