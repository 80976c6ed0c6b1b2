//! `meterd upload` killed with SIGKILL while batches are in flight, then restarted: every
//! record is delivered and billed exactly once, open batches are resent byte-identical, and
//! the database is intact. Kill points are drawn from a seed, printed so a failure can be
//! replayed with `METERD_TEST_SEED=<seed>`.

use crate::util::upload::*;
use crate::util::{wait_for, Daemon, Env, PATIENCE};
use meterd::mockstore::read_entries;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::time::Duration;

const ROUNDS: usize = 4;

fn seed() -> u64 {
    match std::env::var("METERD_TEST_SEED") {
        Ok(s) => s.parse().expect("METERD_TEST_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    }
}

#[test]
fn sigkill_mid_upload_then_restart_delivers_each_record_once() {
    let base = Env::for_upload();
    base.seed("kill", 250, 20);
    assert_eq!(base.records().len(), 5000);
    let seed = seed();
    println!("sigkill test seed: {seed} (replay with METERD_TEST_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for round in 0..ROUNDS {
        let kill_after = rng.random_range(1..=5u64);
        let extra = Duration::from_millis(rng.random_range(0..250));
        println!("round {round}: SIGKILL once the mock has received request {kill_after}, {extra:?} later");
        round_with_kill(&base, kill_after, extra);
    }
}

fn round_with_kill(base: &Env, kill_after: u64, extra: Duration) {
    let w = Env::copy_of(base);
    let ledger = w.dir.path().join("ledger.jsonl");
    let env = [("METERD_ISV_KEY", KEY)];

    // 5 batches of 1000, each answered after 200ms.
    let mut cfg = mock_config();
    cfg.ledger = Some(ledger.clone());
    cfg.faults.latency = Duration::from_millis(200);
    let mut slow = Mock::start(cfg);
    w.configure(&Upload::to(&slow.endpoint()));
    let mut child = Daemon::spawn(w.command(&["upload", "--now", NOW], &env), w.dir.path());
    wait_for("the mock to receive the kill-point request", PATIENCE, || slow.counters().requests >= kill_after || child.exited());
    // The sleep is the test: SIGKILL lands at a random point after the kill-point request.
    std::thread::sleep(extra);
    child.kill();
    let before = slow.received();
    slow.stop();

    let store = w.store();
    store.integrity_check().unwrap();
    drop(store);
    let at_kill = w.states();
    let batches_at_kill = w.batches();
    let open: Vec<&Vec<u8>> = batches_at_kill.iter().filter(|b| b.3 == "open").map(|b| &b.1).collect();
    let done: HashSet<&Vec<u8>> = batches_at_kill.iter().filter(|b| b.3 == "delivered").map(|b| &b.1).collect();
    println!("  at kill: {at_kill:?}, {} open batch(es), {} billed", open.len(), read_entries(&ledger).map(|e| e.len()).unwrap_or(0));
    assert!(open.len() <= 1, "one batch in flight at a time");

    // Restart against a healthy store that reads the same ledger.
    let mut cfg = mock_config();
    cfg.ledger = Some(ledger.clone());
    let healthy = Mock::start(cfg);
    w.configure(&Upload::to(&healthy.endpoint()));
    let run = w.meterd(&["upload", "--now", NOW], &env).expect(0);
    let after = healthy.received();

    assert_eq!(w.states(), counts(&[("delivered", 5000)]), "{run:#?}");
    let records = w.records();
    assert_billed_once(&read_entries(&ledger).unwrap(), &records);
    assert_billed_once(&healthy.ledger(), &records);
    let all: Vec<Vec<u8>> = before.iter().chain(after.iter()).cloned().collect();
    assert_received_are_stored_batches(&all, &w);
    match open.first() {
        Some(in_flight) => assert_eq!(&after[0], *in_flight, "the batch in flight at the kill is resent first, byte-identical"),
        // The kill fell after a delivery's commit and before the next batch was cut (or after
        // the last): every batch sent before it is recorded delivered, and none is resent.
        None => assert!(
            before.iter().all(|b| done.contains(b)),
            "no batch was open at the kill, yet a batch sent before it is not recorded delivered"
        ),
    }
    assert!(after.iter().all(|b| !done.contains(b)), "a batch recorded as delivered was sent again");
    assert!(w.batches().iter().all(|b| b.3 == "delivered"), "no batch left open");
    let store = w.store();
    store.integrity_check().unwrap();
}
