//! Store outage (issue 7, test 3). The primary host fails its first 20 requests and drops the
//! connection of every 3rd one without answering; the fallback host is down for its first 6
//! requests, then healthy. `meterd upload` is run the way cron would run it until nothing
//! waits: the first run outlasts its retry budget (exit 3, records stay queued), a later run
//! delivers the rest. Every record is billed exactly once across both hosts, the fallback host
//! did the billing, no single backoff wait exceeded `upload.backoff_cap`, and every request
//! carried the bytes of a stored batch.

use crate::common::{assert_billed_once, assert_sound, batch_bodies, records, start_mock, upload, upload_config};
use crate::util::{ndjson, Env, Ev, NOW};
use meterd::mockstore::Faults;

/// `upload.backoff_cap` in the config below, in milliseconds.
const CAP_MS: u64 = 40;

#[test]
fn long_outage_with_drops_fails_over_and_delivers_everything_once() {
    let primary = start_mock(NOW, Faults { fail_first: 20, drop_every: 3, ..Faults::default() });
    let fallback = start_mock(NOW, Faults { fail_first: 6, ..Faults::default() });
    let env = Env::with_config(&upload_config(
        &primary.endpoint(),
        &fallback.endpoint(),
        &[
            ("batch_size = 1000", "batch_size = 4"),
            ("max_attempts = 8", "max_attempts = 4"),
            ("fallback_after = 3", "fallback_after = 2"),
            ("timeout = \"30s\"", "timeout = \"5s\""),
        ],
    ));
    let mut lines = Vec::new();
    for i in 0..3 {
        let inst = format!("inst-{i}");
        env.add_instance(&inst, "calls", "2026-11-01T00:00:00Z");
        for h in 4..10 {
            lines.push(Ev::new(&format!("{inst}-{h}"), &inst, "2.5", &format!("2026-11-23T{h:02}:30:00Z")).json());
        }
    }
    env.ingest_file("events.ndjson", &ndjson(&lines)).success();
    env.run(&["seal", "--now", NOW]).success();
    let total = records(&env).len();
    assert_eq!(total, 18);

    let mut runs = Vec::new();
    for run in 1..=6 {
        let o = upload(&env, NOW, &[]);
        let report = o.json();
        assert!(report["max_backoff_ms"].as_u64().unwrap() <= CAP_MS, "run {run}: backoff above its cap: {report}");
        assert!(matches!(o.code, Some(0) | Some(3)), "run {run}: {o:?}");
        if o.code == Some(3) {
            assert!(o.stderr.contains("stays queued"), "run {run}: exit 3 says the records wait: {}", o.stderr);
        }
        assert_sound(&env, &format!("after upload run {run}"));
        runs.push((o.code, report.clone()));
        if report["waiting"] == 0 {
            break;
        }
    }
    assert_eq!(runs[0].0, Some(3), "the outage outlasted the first run's retry budget: {runs:?}");
    assert_eq!(runs[0].1["used_fallback"], true, "{runs:?}");
    let last = runs.last().unwrap();
    assert_eq!((last.0, &last.1["waiting"]), (Some(0), &serde_json::json!(0)), "everything delivered after recovery: {runs:?}");

    let (p, f) = (primary.ledger(), fallback.ledger());
    assert!(!f.is_empty(), "the fallback host billed records");
    let pc = primary.handle().counters();
    assert!(pc.outcome("drop") > 0 && pc.outcome("MKT.0999") > 0, "the primary failed and dropped: {pc:?}");
    let all: Vec<_> = p.iter().chain(f.iter()).cloned().collect();
    assert_billed_once(&all);
    assert_eq!(all.len(), total, "every record billed once across both hosts");
    assert!(records(&env).iter().all(|r| r.1 == "delivered"));
    let stored = batch_bodies(&env);
    for body in primary.received().iter().chain(fallback.received().iter()) {
        assert!(stored.contains(body), "every attempt sent the stored bytes of a batch");
    }
    eprintln!(
        "outage: {} upload runs, primary {} requests ({:?}), fallback {} requests, {} records billed once",
        runs.len(),
        pc.requests,
        pc.outcomes,
        fallback.handle().counters().requests,
        all.len()
    );
}
