//! Two daemons on one database upload at once: every batch is sent by exactly one of them, so
//! `meterd_records_delivered_total` summed over both equals what the store billed.

use super::util::mock::{mock_config, Mock};
use super::util::{self, example_config_with, Env, Ev};
use std::time::{Duration, Instant};

const KEY: &str = "uploaders-test-key-0123456789";
const INSTANCES: usize = 6;
const HOURS: usize = 6;

/// The mock store answering each request after `latency`, so uploads overlap.
fn mock(latency: Duration) -> Mock {
    let mut cfg = mock_config(KEY, util::NOW);
    cfg.faults.latency = latency;
    Mock::start(cfg)
}

/// An environment whose config points at `mock`, with `INSTANCES × HOURS` sealed records.
fn seeded(mock: &Mock, batch_size: usize) -> (Env, usize) {
    let endpoint = mock.endpoint();
    let env = Env::with_config(&example_config_with(&[
        ("endpoint = \"https://mkt.myhuaweicloud.com\"", &format!("endpoint = {endpoint:?}")),
        ("# fallback = \"https://mkt.myhuaweicloud.cn\"", "fallback = \"\""),
        ("batch_size = 1000", &format!("batch_size = {batch_size}")),
        ("upload = \"30 */5 * * * *\"", "upload = \"* * * * * *\""),
    ]));
    let mut lines = Vec::new();
    for i in 0..INSTANCES {
        let inst = format!("inst-{i}");
        env.add_instance(&inst, "calls", "2026-11-01T00:00:00Z");
        for h in 0..HOURS {
            lines.push(Ev::new(&format!("e{i}-{h}"), &inst, "2", &format!("2026-11-23T{:02}:10:00Z", 4 + h)).json());
        }
    }
    env.ingest_file("events.ndjson", &util::ndjson(&lines)).success();
    env.run(&["seal", "--now", util::NOW]).success();
    (env, INSTANCES * HOURS)
}

/// The store refuses our key (MKT.0102): readiness names the upload loop until the key is right.
#[test]
fn an_upload_configuration_error_fails_readiness() {
    let mock = mock(Duration::ZERO);
    let (env, _) = seeded(&mock, 1000);
    let d = env.daemon_with(&[], &[("METERD_ISV_KEY", "not-the-key-0123456789")]);
    let r = super::wait_reply(&d, "/readyz", "the upload failure", |r| super::failing(r).contains(&"upload".to_string()));
    assert_eq!(r.status, 503);
    assert!(r.text().contains("configuration error"), "{}", r.text());
    assert!(super::metric(&d, "meterd_upload_failures_total{reason=\"config_error\"}").unwrap_or(0.0) >= 1.0);
    assert_eq!(d.http().get("/healthz").status, 200);
    assert!(mock.ledger().is_empty(), "nothing billed with a wrong key");
}

#[test]
fn two_daemons_never_send_one_batch_and_their_delivered_counts_add_up() {
    let mock = mock(Duration::from_millis(150));
    let (env, total) = seeded(&mock, 1);

    // The second starts while the first is in the middle of its run: the first always has an
    // open batch in flight (the next one is cut when one is delivered), which the second's run
    // finds at its start.
    let a = env.daemon_with(&[], &[("METERD_ISV_KEY", KEY)]);
    util::wait_for("the first daemon's first upload request", Duration::from_secs(15), || mock.counters().requests >= 1);
    let b = env.daemon_with(&[], &[("METERD_ISV_KEY", KEY)]);
    let start = Instant::now();
    loop {
        let s = a.http().get("/v1/status").ok();
        if s["records"]["delivered"] == total as u64 && s["backlog"] == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "not all delivered: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Both count a delivery before committing it, so once all are delivered the two counters
    // hold them all; poll until they reach the total (a double count shows as more).
    let delivered = |d: &util::Daemon| super::metric(d, "meterd_records_delivered_total").unwrap_or(0.0) as usize;
    util::wait_for("both daemons' delivered counters", Duration::from_secs(15), || delivered(&a) + delivered(&b) >= total);
    let (da, db) = (delivered(&a), delivered(&b));
    let ledger = mock.ledger();
    assert_eq!(ledger.len(), total, "the store billed each record once");
    let received = mock.received();
    assert_eq!(received.len(), total, "each one-record batch was sent exactly once (no two daemons sent the same batch)");
    assert_eq!(da + db, total, "delivered counts of the two daemons ({da} + {db}) add up to what the store billed");
}
