//! Transient failures, lost answers and oversized batches: everything ends up billed exactly
//! once, and every resend is the stored bytes.

use crate::util::upload::*;
use crate::util::Env;
use meterd::mockstore::{Faults, LostAnswer};
use meterd::store::batches;

/// The first 3 requests get `500 MKT.0999`, then every 4th connection is dropped without an
/// answer. 2,500 records in batches of 500: requests 1–3 fail, 4 is dropped, 5–7 deliver, 8
/// is dropped, 9–10 deliver. All delivered; attempts counted on both sides; no wait longer
/// than `backoff_cap` (50ms); after 3 consecutive failures the fallback host is used.
#[test]
fn transient_failures_then_all_delivered() {
    let w = Env::for_upload();
    w.seed("flaky", 125, 20);
    let mut cfg = mock_config();
    cfg.faults = Faults { fail_first: 3, drop_every: 4, ..Faults::default() };
    let mock = Mock::start(cfg);
    w.configure(&Upload::to(&mock.endpoint()).batch_size(500));
    let up = w.cfg_owned();
    assert_eq!((up.upload.backoff_base.0.as_millis(), up.upload.backoff_cap.0.as_millis()), (10, 50));
    let report = w.upload_lib(&up, &key());

    assert_eq!((report.delivered, report.waiting, report.rejected), (2500, 0, 0), "{report:?}");
    assert_eq!(report.requests, 10, "{report:?}");
    assert_eq!(report.outcomes, counts(&[("delivered", 5), ("transient", 5)]));
    assert!(report.max_backoff_ms <= 50, "backoff exceeded the cap: {report:?}");
    assert!(report.used_fallback, "3 consecutive failures switch to upload.fallback: {report:?}");
    assert!(report.transient_error.is_none(), "{report:?}");

    let c = mock.counters();
    assert_eq!((c.requests, c.outcome("MKT.0999"), c.outcome("drop"), c.outcome("MKT.0000")), (10, 3, 2, 5));
    assert_eq!((c.records_billed, c.duplicates), (2500, 0), "failed and dropped requests bill nothing");
    assert_billed_once(&mock.ledger(), &w.records());
    assert_eq!(w.states(), counts(&[("delivered", 2500)]));
    assert_eq!(w.batch_attempts(), [5, 1, 1, 2, 1]);

    let received = mock.received();
    let stored: Vec<Vec<u8>> = w.batches().into_iter().map(|b| b.1).collect();
    let expected: Vec<&Vec<u8>> = [0, 0, 0, 0, 0, 1, 2, 3, 3, 4].iter().map(|&i| &stored[i]).collect();
    assert_eq!(received.iter().collect::<Vec<_>>(), expected, "each retry sends its batch's stored bytes");
}

/// When the retry budget (`upload.max_attempts`) runs out, the run ends with exit 3 and the
/// batch stays open (records `sending`); the next run resends the very same bytes.
#[test]
fn exhausted_retries_leave_the_batch_for_the_next_run() {
    let w = Env::for_upload();
    w.seed("later", 10, 10);
    let mut cfg = mock_config();
    cfg.faults = Faults { fail_first: 3, ..Faults::default() };
    let mock = Mock::start(cfg);
    w.configure(&Upload::to(&mock.endpoint()).max_attempts(2));
    let env = [("METERD_ISV_KEY", KEY)];

    let first = w.meterd(&["upload", "--now", NOW], &env).expect(3);
    assert!(first.stderr.contains("still failing after 2 attempts"), "{first:#?}");
    assert_eq!(first.report()["waiting"], 100);
    assert_eq!(w.states(), counts(&[("sending", 100)]));
    assert!(mock.ledger().is_empty());

    let second = w.meterd(&["upload", "--now", NOW], &env).expect(0);
    assert_eq!((second.report()["delivered"].as_u64(), second.report()["requests"].as_u64()), (Some(100), Some(2)));
    assert_eq!(w.states(), counts(&[("delivered", 100)]));
    assert_billed_once(&mock.ledger(), &w.records());
    let batches = w.batches();
    assert_eq!(batches.len(), 1, "no new batch: the open one was resent");
    let received = mock.received();
    assert_eq!(received.len(), 4);
    assert!(received.iter().all(|b| *b == batches[0].1), "all four attempts carry the stored bytes");
}

/// "Bill then fail": the store bills the batch but the answer is lost (an empty 500, or the
/// connection dropped). The retry sends the same bytes; the store answers success without
/// billing again, so each record is billed exactly once.
#[test]
fn bill_then_fail_resends_the_same_bytes_and_bills_once() {
    for how in [LostAnswer::Empty500, LostAnswer::Drop] {
        let w = Env::for_upload();
        w.seed("lost", 75, 20);
        let mut cfg = mock_config();
        cfg.faults = Faults { bill_then_fail_first: 1, bill_then_fail_how: how, ..Faults::default() };
        let mock = Mock::start(cfg);
        w.configure(&Upload::to(&mock.endpoint()));
        let report = w.upload_lib(&w.cfg_owned(), &key());

        assert_eq!((report.delivered, report.requests), (1500, 3), "{how:?}: {report:?}");
        assert_eq!(report.outcomes, counts(&[("delivered", 2), ("transient", 1)]), "{how:?}");
        let c = mock.counters();
        let label = if how == LostAnswer::Drop { "bill-then-drop" } else { "bill-then-500" };
        assert_eq!((c.requests, c.outcome(label), c.records_billed, c.duplicates), (3, 1, 1500, 1000), "{how:?}");

        let received = mock.received();
        let stored: Vec<Vec<u8>> = w.batches().into_iter().map(|b| b.1).collect();
        assert_eq!(stored.len(), 2);
        assert_eq!(received[0], stored[0], "{how:?}: first attempt sends the stored bytes");
        assert_eq!(received[1], received[0], "{how:?}: the retry after a lost answer resends the same bytes");
        assert_eq!(received[2], stored[1]);
        assert_billed_once(&mock.ledger(), &w.records());
        assert_eq!(w.states(), counts(&[("delivered", 1500)]));
    }
}

/// `MKT.9003`. The mock has no switch for a lower limit and `upload.batch_size` cannot exceed
/// 1000, so an over-large batch is planted in the store (as an older build or a hand-edited
/// database could leave it): an open batch of 1001 records, resent first. The store answers
/// 9003; the batch is split in halves (500 + 501) and the rest of the run uses batches of 500.
#[test]
fn too_many_records_halves_the_batch() {
    let w = Env::for_upload();
    w.seed("big", 87, 23);
    assert_eq!(w.records().len(), 2001);
    let planted = w
        .store()
        .write(|tx| {
            let recs = batches::next_pending(tx, 1001)?;
            let body = meterd::upload::body::join_records(&recs.iter().map(|r| r.body.as_slice()).collect::<Vec<_>>());
            batches::create(tx, &recs, body, 0)
        })
        .unwrap();
    assert_eq!(planted.records, 1001);

    let mock = Mock::start(mock_config());
    w.configure(&Upload::to(&mock.endpoint()));
    let report = w.upload_lib(&w.cfg_owned(), &key());

    assert_eq!((report.delivered, report.requests), (2001, 5), "{report:?}");
    assert_eq!(report.outcomes, counts(&[("delivered", 4), ("too_many", 1)]));
    let c = mock.counters();
    assert_eq!((c.outcome("MKT.9003"), c.outcome("MKT.0000"), c.records_billed), (1, 4, 2001));
    let shapes: Vec<(i64, String)> = w.batches().into_iter().map(|b| (b.2, b.3)).collect();
    let want = [(1001, "split"), (500, "delivered"), (501, "delivered"), (500, "delivered"), (500, "delivered")];
    assert_eq!(shapes, want.map(|(n, s)| (n, s.to_string())));
    assert_billed_once(&mock.ledger(), &w.records());
    assert_eq!(w.states(), counts(&[("delivered", 2001)]));
}
