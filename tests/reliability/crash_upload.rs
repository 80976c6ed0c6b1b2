//! Crash during upload between "the store billed" and "the local commit" (issue 7, test 2).
//! `METERD_FAULTS=upload-after-response` aborts `meterd upload` right after the store answered
//! its first request, before the outcome is written down. Twice. The store has billed the first
//! batch, the local store still shows it in flight. A clean rerun resends that batch — the very
//! same bytes, which is what makes the store's first-record-wins dedupe safe — and then the
//! rest. The mock's ledger bills every record exactly once, by `metering_sn` and by
//! (instance, period), and the local store shows every record delivered.

use crate::common::{
    assert_billed_once, assert_sound, assert_status_clean, batch_bodies, records, start_mock, upload, upload_config, Mock,
};
use crate::util::{ndjson, Env, Ev, NOW};
use meterd::mockstore::Faults;
use std::collections::BTreeSet;

const INSTANCES: usize = 4;
/// Hours 07–10 before NOW (12:00): closed, so sealed at NOW.
const HOURS: [u32; 4] = [7, 8, 9, 10];

fn setup(mock: &Mock) -> Env {
    let env = Env::with_config(&upload_config(&mock.endpoint(), &mock.endpoint(), &[("batch_size = 1000", "batch_size = 5")]));
    let mut lines = Vec::new();
    for i in 0..INSTANCES {
        let inst = format!("inst-{i}");
        env.add_instance(&inst, "calls", "2026-11-01T00:00:00Z");
        for h in HOURS {
            lines.push(Ev::new(&format!("{inst}-{h}"), &inst, &format!("{}.25", i + 1), &format!("2026-11-23T{h:02}:10:00Z")).json());
        }
    }
    env.ingest_file("events.ndjson", &ndjson(&lines)).success();
    let sealed = env.run(&["seal", "--now", NOW]).success().json();
    assert_eq!(sealed["records"], INSTANCES * HOURS.len(), "{sealed}");
    env
}

#[test]
fn death_after_the_store_billed_resends_the_same_bytes_and_bills_once() {
    let mock = start_mock(NOW, Faults::default());
    let env = setup(&mock);
    let total = INSTANCES * HOURS.len();

    for attempt in 1..=2 {
        let o = upload(&env, NOW, &[("METERD_FAULTS", "upload-after-response")]);
        assert_eq!(o.signal, Some(6), "attempt {attempt}: upload must abort (SIGABRT) after the store answered: {o:?}");
        assert!(o.stderr.contains("crashing at upload-after-response"), "{}", o.stderr);
        assert_eq!(mock.ledger().len(), 5, "attempt {attempt}: the store billed the first batch of 5 once");
        assert_eq!(mock.received().len(), attempt);
        assert_sound(&env, "after the upload crash");
        let states: Vec<String> = records(&env).into_iter().map(|r| r.1).collect();
        assert_eq!(states.iter().filter(|s| *s == "sending").count(), 5, "{states:?}");
        assert_eq!(states.iter().filter(|s| *s == "pending").count(), total - 5, "{states:?}");
    }
    assert_eq!(mock.handle().counters().duplicates, 5, "the second attempt was answered as duplicates, not billed");

    let o = upload(&env, NOW, &[]);
    assert_eq!(o.code, Some(0), "{o:?}");
    let report = o.json();
    assert_eq!(report["delivered"], total, "{report}");
    assert_eq!(report["waiting"], 0, "{report}");

    let received: Vec<String> = mock.received().iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
    assert_eq!(received[1], received[0], "the retry after the crash carried the same body bytes");
    assert_eq!(received[2], received[0], "the clean rerun resent the open batch first, byte-identical");
    let stored = batch_bodies(&env);
    for (n, body) in mock.received().iter().enumerate() {
        assert!(stored.contains(body), "request {n} sent bytes that are not a stored batch body");
    }

    let ledger = mock.ledger();
    assert_billed_once(&ledger);
    assert_eq!(ledger.len(), total, "every record billed");
    let local = records(&env);
    assert!(local.iter().all(|r| r.1 == "delivered"), "{local:?}");
    let billed: BTreeSet<(String, String)> = ledger.iter().map(|e| (e.record.metering_sn.clone(), e.record.usage_value.clone())).collect();
    let sealed: BTreeSet<(String, String)> = local.into_iter().map(|r| (r.0, r.2)).collect();
    assert_eq!(billed, sealed, "the store billed exactly the sealed records, with their sealed values");
    assert_sound(&env, "at the end");
    assert_status_clean(&env, NOW);
}
