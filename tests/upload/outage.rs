//! A cloud-store outage seen by `meterd upload`, both sides the real binary (`meterd
//! mock-store` with its fault flags and a ledger file): a batch that runs out of attempts stops
//! the run, so no later batch is cut or sent before it, and the next run delivers the oldest
//! batch first, with the same bytes, then the rest, each record billed once and in order.

use crate::util::upload::*;
use crate::util::{Daemon, Env};
use meterd::mockstore::{read_entries, LedgerEntry};
use std::path::Path;

/// 100 records in batches of 25, 3 attempts per batch and run.
const BATCH: usize = 25;
const ATTEMPTS: u32 = 3;

/// An environment with 100 sealed records and a mock store binary started with `faults`,
/// billing into `ledger.jsonl` in the test's directory; the config points at it.
fn outage(prefix: &str, faults: &[&str]) -> (Env, Daemon) {
    let w = Env::for_upload();
    w.seed(prefix, 10, 10);
    assert_eq!(w.records().len(), 100);
    let mock = start_mock(&w, faults);
    (w, mock)
}

/// `meterd mock-store --ledger DIR/ledger.jsonl FAULTS…`, with the config aimed at it.
fn start_mock(w: &Env, faults: &[&str]) -> Daemon {
    let ledger = ledger_path(w.dir.path());
    let args: Vec<&str> = ["--ledger", ledger.to_str().unwrap()].into_iter().chain(faults.iter().copied()).collect();
    let (mock, endpoint) = mock_binary(w.dir.path(), &args);
    w.configure(&Upload::to(&endpoint).batch_size(BATCH).max_attempts(ATTEMPTS));
    mock
}

fn ledger_path(dir: &Path) -> std::path::PathBuf {
    dir.join("ledger.jsonl")
}

/// What the mock billed, in billing order (nothing when it never wrote its ledger).
fn ledger(w: &Env) -> Vec<LedgerEntry> {
    let path = ledger_path(w.dir.path());
    if path.exists() {
        read_entries(&path).unwrap()
    } else {
        Vec::new()
    }
}

/// Lines of a log holding `needle`.
fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// The first run of an outage: only the oldest batch was cut and sent, `ATTEMPTS` times, and
/// the run ended with exit 3 and the batch queued; the last attempt's line gives up instead
/// of promising a retry; `status` names the error.
fn assert_first_run_stopped_at_the_oldest_batch(w: &Env, first: &crate::util::Run) {
    let report = first.report();
    assert_eq!(report["requests"].as_u64(), Some(ATTEMPTS as u64), "only the oldest batch was attempted: {first:#?}");
    assert_eq!(report["outcomes"]["transient"].as_u64(), Some(ATTEMPTS as u64), "{first:#?}");
    assert_eq!(report["waiting"].as_u64(), Some(100), "{first:#?}");
    assert!(
        first.stderr.contains(&format!("still failing after {ATTEMPTS} attempts"))
            && first.stderr.contains("stays queued for the next run"),
        "{first:#?}"
    );
    let batches = w.batches();
    assert_eq!(
        batches.len(),
        1,
        "no later batch was cut in the failing run: {:?}",
        batches.iter().map(|b| (b.0, b.2, &b.3)).collect::<Vec<_>>()
    );
    assert_eq!(batches[0].2, BATCH as i64);
    assert_eq!(w.batch_attempts(), [ATTEMPTS as i64]);
    assert_eq!(w.states(), counts(&[("sending", BATCH as u64), ("pending", 100 - BATCH as u64)]));
    assert!(ledger(w).is_empty(), "nothing billed during the outage");

    let attempts = lines_with(&first.stderr, "upload attempt failed");
    assert_eq!(attempts, ATTEMPTS as usize, "{}", first.stderr);
    let batch = format!("batch={}", batches[0].0);
    assert_eq!(
        lines_with(&first.stderr, &batch),
        lines_with(&first.stderr, "batch="),
        "every attempt was the oldest batch's: {}",
        first.stderr
    );
    assert_eq!(lines_with(&first.stderr, "will retry"), ATTEMPTS as usize - 1, "{}", first.stderr);
    let last = first.stderr.lines().rfind(|l| l.contains("upload attempt failed")).unwrap();
    assert!(!last.contains("will retry") && last.contains("gives up for this run") && last.contains("stays queued"), "{last}");
    assert!(last.contains("ERROR"), "records left undelivered are an ERROR (README, log levels): {last}");

    let status = w.meterd(&["status", "--now", NOW], &[]).expect(0);
    let line = status.stdout.lines().find(|l| l.starts_with("last error")).unwrap_or_else(|| panic!("{status:#?}"));
    assert!(line.contains("still failing after"), "{line}");
}

/// The run after the store came back: everything delivered, the oldest batch first and with
/// the bytes cut in the failing run; the store billed every record exactly once, in the
/// order of the upload queue (oldest window first).
fn assert_next_run_delivered_in_order(w: &Env, next: &crate::util::Run, oldest: &[u8]) {
    assert_eq!(next.report()["delivered"].as_u64(), Some(100), "{next:#?}");
    assert_eq!(w.states(), counts(&[("delivered", 100)]));
    let batches = w.batches();
    assert_eq!(batches.len(), 100 / BATCH, "{:?}", batches.iter().map(|b| (b.0, b.2, &b.3)).collect::<Vec<_>>());
    assert_eq!(batches[0].1, oldest, "the oldest batch was resent with its stored bytes");
    let billed = ledger(w);
    assert_billed_once(&billed, &w.records());
    let sent: Vec<String> = batches.iter().flat_map(|b| meterd::upload::parse_body(&b.1).unwrap()).map(|r| r.metering_sn).collect();
    let order: Vec<String> = billed.iter().map(|e| e.record.metering_sn.clone()).collect();
    assert_eq!(order, sent, "billed batch by batch in the order they were cut, the oldest first");
    let begins: Vec<&str> = billed.iter().map(|e| e.record.begin_time.as_str()).collect();
    assert!(begins.windows(2).all(|p| p[0] <= p[1]), "records billed oldest first: {begins:?}");
}

/// The store fails every request of the first run (`--fail-every 1`): the run tries the
/// oldest batch `ATTEMPTS` times — the mock saw exactly those requests — and stops, with no
/// later batch cut or sent (before the fix it went on and cut and tried all four batches).
/// The store recovers (restarted without faults, same ledger): the next run delivers all
/// records, the oldest batch first with the same bytes, each billed exactly once.
#[test]
fn an_outage_stops_the_run_at_the_oldest_batch_and_the_next_run_delivers_in_order() {
    let (w, mock) = outage("down", &["--fail-every", "1"]);
    let env = [("METERD_ISV_KEY", KEY)];

    let first = w.meterd(&["upload", "--now", NOW], &env).expect(3);
    let mock_log = mock.finish();
    assert_eq!(lines_with(&mock_log, "mock-store: injected fault"), ATTEMPTS as usize, "requests the store saw:\n{mock_log}");
    assert_first_run_stopped_at_the_oldest_batch(&w, &first);
    let oldest = w.batches()[0].1.clone();

    let mock = start_mock(&w, &[]);
    let next = w.meterd(&["upload", "--now", NOW], &env).expect(0);
    assert_eq!(next.report()["requests"].as_u64(), Some((100 / BATCH) as u64), "one request per batch: {next:#?}");
    let mock_log = mock.finish();
    assert_eq!(lines_with(&mock_log, "mock-store: accepted"), 100 / BATCH, "{mock_log}");
    assert_eq!(lines_with(&mock_log, "mock-store: injected fault"), 0, "{mock_log}");
    assert_next_run_delivered_in_order(&w, &next, &oldest);
    let status = w.meterd(&["status", "--now", NOW], &[]).expect(0);
    assert!(status.stdout.lines().any(|l| l.starts_with("last error") && l.ends_with(" -")), "a clean run clears the error: {status:#?}");
}

/// The store comes back in the middle of the first run (`--fail-first 4`, one request more
/// than a batch's attempts): the run stops after the oldest batch's third failure, so the
/// store never bills a later batch while the oldest waits (before the fix, the next batch
/// failed once, was billed at its second attempt, and so were the two after it). The next
/// run meets one last failure, then delivers the oldest batch first and the rest in order.
#[test]
fn a_store_back_mid_run_never_bills_a_later_batch_before_the_oldest() {
    let (w, mock) = outage("flap", &["--fail-first", &(ATTEMPTS + 1).to_string()]);
    let env = [("METERD_ISV_KEY", KEY)];

    let first = w.meterd(&["upload", "--now", NOW], &env).expect(3);
    assert_first_run_stopped_at_the_oldest_batch(&w, &first);
    let oldest = w.batches()[0].1.clone();

    let next = w.meterd(&["upload", "--now", NOW], &env).expect(0);
    let report = next.report();
    assert_eq!(
        (report["requests"].as_u64(), report["outcomes"]["transient"].as_u64()),
        (Some((100 / BATCH) as u64 + 1), Some(1)),
        "{next:#?}"
    );
    let mock_log = mock.finish();
    assert_eq!(lines_with(&mock_log, "mock-store: injected fault"), ATTEMPTS as usize + 1, "{mock_log}");
    assert_next_run_delivered_in_order(&w, &next, &oldest);
}
