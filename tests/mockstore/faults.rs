//! Each fault switch does what it says; and the uploader's client + classifier read the
//! mock's answers as design §6 requires.

use super::harness::*;
use meterd::mockstore::{cli, Faults, LostAnswer, MockStoreArgs};
use meterd::upload::{canonical_body, classify, http_client, new_nonce, request_url, send, Action, Response};
use std::time::{Duration, Instant};

fn with_faults(faults: Faults) -> meterd::mockstore::MockConfig {
    let mut cfg = config();
    cfg.faults = faults;
    cfg
}

fn is_internal(r: &Reply) -> bool {
    code(r) == (500, "MKT.0999".to_string())
}

#[tokio::test]
async fn fail_first_then_succeed() {
    let h = start(with_faults(Faults { fail_first: 2, ..Faults::default() })).await;
    let body = canonical_body(&recs(1));
    assert!(is_internal(&post(&h, &body).await));
    assert!(is_internal(&post(&h, &body).await));
    assert!(h.ledger().is_empty(), "failed requests bill nothing");
    assert_eq!(code(&post(&h, &body).await), ok());
    assert_eq!(h.ledger().len(), 1);
}

#[tokio::test]
async fn fail_every_kth() {
    let h = start(with_faults(Faults { fail_every: 3, ..Faults::default() })).await;
    let mut pattern = Vec::new();
    for i in 1..=6 {
        pattern.push(is_internal(&post_records(&h, &[rec(i)]).await));
    }
    assert_eq!(pattern, [false, false, true, false, false, true]);
    assert_eq!(h.ledger().len(), 4);
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let h = start(with_faults(Faults { latency: Duration::from_millis(300), ..Faults::default() })).await;
    let started = Instant::now();
    assert_eq!(code(&post_records(&h, &recs(1)).await), ok());
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
}

#[tokio::test]
async fn drop_first_and_every_close_without_answer() {
    let h = start(with_faults(Faults { drop_first: 1, drop_every: 3, ..Faults::default() })).await;
    let body = canonical_body(&recs(1));
    let replies: Vec<Reply> = vec![post(&h, &body).await, post(&h, &body).await, post(&h, &body).await, post(&h, &body).await];
    let dropped: Vec<bool> = replies.iter().map(Result::is_err).collect();
    assert_eq!(dropped, [true, false, true, false], "{replies:?}");
    assert_eq!(h.counters().outcome("drop"), 2);
    assert_eq!(h.ledger().len(), 1);
}

#[tokio::test]
async fn bill_then_500_bills_and_answers_500_without_body() {
    let h = start(with_faults(Faults { bill_then_fail_first: 1, ..Faults::default() })).await;
    let body = canonical_body(&recs(2));
    assert_eq!(post(&h, &body).await, Ok((500, String::new())));
    assert_eq!(h.ledger().len(), 2, "billed although the answer was lost");
    assert_eq!(code(&post(&h, &body).await), ok(), "the retry is a duplicate");
    let c = h.counters();
    assert_eq!((c.records_billed, c.duplicates, c.outcome("bill-then-500")), (2, 2, 1));
}

#[tokio::test]
async fn bill_then_drop_every_kth() {
    let how = LostAnswer::Drop;
    let h = start(with_faults(Faults { bill_then_fail_every: 2, bill_then_fail_how: how, ..Faults::default() })).await;
    assert_eq!(code(&post_records(&h, &[rec(1)]).await), ok());
    assert!(post_records(&h, &[rec(2)]).await.is_err(), "second request: billed, connection dropped");
    assert_eq!(h.ledger().len(), 2);
    assert_eq!(h.counters().outcome("bill-then-drop"), 1);
}

#[tokio::test]
async fn bill_then_fail_does_not_bill_invalid_requests() {
    let h = start(with_faults(Faults { bill_then_fail_first: 1, ..Faults::default() })).await;
    assert_eq!(code(&post(&h, &body_with("usage_value", r#""0""#)).await), (500, "MKT.0100".into()));
    assert!(h.ledger().is_empty());
}

/// The uploader's one-attempt client and classifier against the mock: the loop a driver runs.
#[tokio::test]
async fn client_and_classifier_against_the_mock() {
    let h = start(with_faults(Faults { fail_first: 1, drop_every: 3, ..Faults::default() })).await;
    let http = http_client(Duration::from_secs(5)).unwrap();
    let url = request_url(&h.endpoint(), meterd::mockstore::DEFAULT_PATH).unwrap();
    let body = canonical_body(&recs(2));
    let attempt = |body: Vec<u8>, k: meterd::config::Secret| {
        let (http, url) = (http.clone(), url.clone());
        async move { classify(&send(&http, &url, &k, &body, now_ms(), &new_nonce()).await) }
    };
    assert!(matches!(attempt(body.clone(), key()).await, Action::Transient { .. }), "request 1: MKT.0999");
    assert_eq!(attempt(body.clone(), key()).await, Action::Delivered, "request 2");
    assert!(matches!(attempt(body.clone(), key()).await, Action::Transient { .. }), "request 3: dropped");
    let wrong = attempt(body.clone(), meterd::config::Secret::new("wrong")).await;
    assert!(matches!(&wrong, Action::ConfigError { code, .. } if code == "MKT.0102"), "{wrong:?}");
    let bad = attempt(body_with("usage_value", r#""0""#), key()).await;
    assert!(matches!(&bad, Action::RecordError { code, .. } if code == "MKT.0100"), "{bad:?}");
    assert!(matches!(attempt(body.clone(), key()).await, Action::Transient { .. }), "request 6: dropped");
    assert_eq!(attempt(canonical_body(&recs(1001)), key()).await, Action::TooManyRecords);
    assert_eq!(h.ledger().len(), 2);
}

#[tokio::test]
async fn client_reports_timeouts_and_refused_connections() {
    let h = start(with_faults(Faults { latency: Duration::from_millis(800), ..Faults::default() })).await;
    let http = http_client(Duration::from_millis(150)).unwrap();
    let url = request_url(&h.endpoint(), meterd::mockstore::DEFAULT_PATH).unwrap();
    assert_eq!(send(&http, &url, &key(), b"{}", now_ms(), &new_nonce()).await, Response::Timeout);
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = request_url(&format!("http://{}", closed.local_addr().unwrap()), "/x").unwrap();
    drop(closed);
    assert!(matches!(send(&http, &dead, &key(), b"{}", now_ms(), &new_nonce()).await, Response::Transport(_)));
}

#[tokio::test]
async fn cli_serves_on_a_free_port_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    std::env::set_var("METERD_TEST_CLI_KEY", KEY); // unique name; no other test reads it
    let args = MockStoreArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        key_env: "METERD_TEST_CLI_KEY".into(),
        ledger: Some(ledger.clone()),
        instances: None,
        packages: None,
        path: meterd::mockstore::DEFAULT_PATH.into(),
        now: Some(meterd::model::parse_rfc3339(NOW).unwrap()),
        fail_first: 0,
        fail_every: 0,
        latency_ms: 0,
        drop_first: 0,
        drop_every: 0,
        bill_then_fail_first: 0,
        bill_then_fail_every: 0,
        bill_then_fail_how: LostAnswer::Empty500,
    };
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cli::serve_until(
        args,
        move |a| {
            let _ = addr_tx.send(a);
        },
        async move { drop(stop_rx.await) },
    ));
    let addr = addr_rx.await.unwrap();
    assert_ne!(addr.port(), 0);
    let http = http_client(Duration::from_secs(5)).unwrap();
    let url = request_url(&format!("http://{addr}"), meterd::mockstore::DEFAULT_PATH).unwrap();
    let body = canonical_body(&recs(1));
    assert_eq!(classify(&send(&http, &url, &key(), &body, now_ms(), &new_nonce()).await), Action::Delivered);
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert_eq!(meterd::mockstore::read_entries(&ledger).unwrap().len(), 1);
    assert!(matches!(send(&http, &url, &key(), &body, now_ms(), &new_nonce()).await, Response::Transport(_)), "stopped");
}
