//! Crash during ingest (issue 7, test 1). Concurrent clients post small NDJSON batches to the
//! real `meterd run` while it is SIGKILLed after a random number of acknowledgements, 100
//! rounds. Each client keeps its own log, Jepsen style: a `200` makes the batch ACKED, a
//! transport error (the process died) makes it INDETERMINATE, and an indeterminate batch is
//! re-sent, byte for byte, after the restart. After every kill: the file reopens,
//! `integrity_check` is `ok`, conservation holds, every acknowledged event is stored exactly
//! once with the quantity and time that were sent, nothing is stored that was never sent, and
//! an indeterminate request is all or nothing per ingest lane (a request of at most 10,000
//! events, as here, is one commit per lane: on SQLite one, on PostgreSQL the lanes of its
//! instances, `store::pg_events`), and its re-send finds exactly the events found stored as
//! duplicates.

use crate::common::{assert_sound, assert_status_clean, seed};
use crate::util::{db, ndjson, Env, Ev, Http, NOW};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::time::Duration;

const ROUNDS: usize = 100;
const INSTANCES: [&str; 3] = ["inst-a", "inst-b", "inst-c"];

/// One request as sent: its events' (instance, id) → (quantity text, time text), and its bytes.
#[derive(Clone, Debug)]
struct Batch {
    events: Vec<((String, String), (String, String))>,
    body: Vec<u8>,
    /// Indeterminate batches: how many of its events the store held after the kill.
    present: usize,
}

enum Reply {
    Acked(Batch),
    Indeterminate(Batch),
}

/// A random batch of 1–8 events; quantities carry up to 9 decimals, times span the open and
/// the already sealed windows (late events are carried), all within the accepted range.
fn batch(rng: &mut StdRng, tag: &str) -> Batch {
    let n = rng.random_range(1..=8);
    let mut events = Vec::with_capacity(n);
    let mut lines = Vec::with_capacity(n);
    for j in 0..n {
        let inst = INSTANCES[rng.random_range(0..INSTANCES.len())];
        let id = format!("{tag}-{j}");
        let qty = format!("{}.{:09}", rng.random_range(0..1000), rng.random_range(0..1_000_000_000u32));
        let secs_before: i64 = rng.random_range(-240..3 * 3600);
        let t = meterd::model::parse_rfc3339(NOW).unwrap().add_secs(-secs_before).to_rfc3339();
        lines.push(Ev::new(&id, inst, &qty, &t).json());
        events.push(((inst.to_string(), id), (qty, t)));
    }
    Batch { events, body: ndjson(&lines), present: 0 }
}

/// What the clients learnt, across rounds.
#[derive(Default)]
struct Log {
    /// Every event ever sent: key → (quantity, time).
    sent: BTreeMap<(String, String), (String, String)>,
    acked: BTreeSet<(String, String)>,
    acked_batches: Vec<Batch>,
    indeterminate: Vec<Batch>,
    resolved_present: u64,
    resolved_absent: u64,
    indeterminate_total: u64,
}

/// Quantity text as the store writes it (no trailing zeros).
fn normal(q: &str) -> String {
    let q = q.trim_end_matches('0').trim_end_matches('.');
    if q.is_empty() {
        "0".into()
    } else {
        q.to_string()
    }
}

fn check_after_kill(env: &Env, log: &mut Log, when: &str) {
    assert_sound(env, when);
    let c = env.db();
    assert_eq!(db::integrity(&c), "ok", "{when}");
    let mut stored = BTreeMap::new();
    let rows =
        c.rows("SELECT i.instance_id, e.event_id, e.qty, e.time_ns FROM events e JOIN instances i ON i.ref = e.instance_ref", &[], |r| {
            Ok(((r.get::<String>(0)?, r.get::<String>(1)?), (r.get::<String>(2)?, r.get::<i64>(3)?)))
        });
    for (k, v) in rows {
        assert!(stored.insert(k.clone(), v).is_none(), "{when}: {k:?} stored twice");
    }
    for k in &log.acked {
        let (qty, t) = &log.sent[k];
        let got = stored.get(k).unwrap_or_else(|| panic!("{when}: acknowledged event {k:?} lost"));
        assert_eq!(got, &(normal(qty), crate::util::ns(t)), "{when}: {k:?} stored with other values");
    }
    for k in stored.keys() {
        assert!(log.sent.contains_key(k), "{when}: {k:?} stored but never sent");
    }
    let lanes = db::ingest_lanes(&c);
    for b in &mut log.indeterminate {
        for lane in 0..lanes {
            let part: Vec<_> = b.events.iter().filter(|((inst, _), _)| meterd::store::pg_events::lane_of(inst, lanes) == lane).collect();
            let present = part.iter().filter(|(k, _)| stored.contains_key(k)).count();
            assert!(
                present == 0 || present == part.len(),
                "{when}: the part of a request in lane {lane} of {lanes} was half stored ({present} of {})",
                part.len()
            );
        }
        b.present = b.events.iter().filter(|(k, _)| stored.contains_key(k)).count();
    }
}

/// Re-sends the indeterminate batches (same bytes): each must now be stored exactly once.
fn resolve(http: &Http, log: &mut Log) {
    for b in std::mem::take(&mut log.indeterminate) {
        let r = http.events(b.body.clone()).ok();
        assert_eq!(r["rejected"], serde_json::json!([]), "{r}");
        let (acc, dup) = (r["accepted"].as_u64().unwrap(), r["duplicates"].as_u64().unwrap());
        assert_eq!(
            (acc, dup),
            ((b.events.len() - b.present) as u64, b.present as u64),
            "a retried request's known events are those found stored: {r}"
        );
        if dup > 0 {
            log.resolved_present += 1;
        } else {
            log.resolved_absent += 1;
        }
        log.acked.extend(b.events.iter().map(|(k, _)| k.clone()));
        log.acked_batches.push(b);
    }
}

/// One round: 2–3 clients post until `kill_after` events are acknowledged, then SIGKILL.
fn round(env: &Env, r: usize, rng: &mut StdRng, log: &mut Log) {
    let mut daemon = env.daemon();
    resolve(&daemon.http(), log);
    if !log.acked_batches.is_empty() {
        // An acknowledged request sent again is all duplicates.
        let b = &log.acked_batches[rng.random_range(0..log.acked_batches.len())];
        let v = daemon.http().events(b.body.clone()).ok();
        assert_eq!((v["accepted"].as_u64(), v["duplicates"].as_u64()), (Some(0), Some(b.events.len() as u64)), "{v}");
    }
    let clients = rng.random_range(2..=3);
    let kill_after = rng.random_range(0..=40);
    let (tx, rx) = mpsc::channel::<Reply>();
    let (stx, srx) = mpsc::channel::<Batch>();
    std::thread::scope(|s| {
        for c in 0..clients {
            let (tx, stx, addr) = (tx.clone(), stx.clone(), daemon.addr.clone());
            let mut crng = StdRng::seed_from_u64(rng.random());
            s.spawn(move || {
                let http = Http::new(&addr, None);
                for seq in 0.. {
                    let b = batch(&mut crng, &format!("r{r}-c{c}-{seq}"));
                    let _ = stx.send(b.clone()); // logged as sent before it leaves
                    match http.try_post("/v1/events", b.body.clone()) {
                        Ok(reply) if reply.status == 200 => {
                            let v = reply.json();
                            assert_eq!(v["accepted"].as_u64(), Some(b.events.len() as u64), "{v}");
                            let _ = tx.send(Reply::Acked(b));
                        }
                        Ok(reply) => panic!("unexpected HTTP {}: {}", reply.status, reply.text()),
                        Err(_) => {
                            let _ = tx.send(Reply::Indeterminate(b));
                            return;
                        }
                    }
                }
            });
        }
        drop(tx);
        let mut acked_now = 0;
        while acked_now < kill_after {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Reply::Acked(b)) => {
                    acked_now += b.events.len();
                    log.acked.extend(b.events.iter().map(|(k, _)| k.clone()));
                    log.acked_batches.push(b);
                }
                Ok(Reply::Indeterminate(_)) | Err(_) => panic!("round {r}: a client failed before the kill; log:\n{}", daemon.stderr()),
            }
        }
        daemon.kill();
    });
    drop(stx);
    for b in srx.try_iter() {
        for (k, v) in b.events {
            log.sent.insert(k, v);
        }
    }
    for reply in rx.try_iter() {
        match reply {
            Reply::Acked(b) => {
                log.acked.extend(b.events.iter().map(|(k, _)| k.clone()));
                log.acked_batches.push(b);
            }
            Reply::Indeterminate(b) => {
                log.indeterminate_total += 1;
                log.indeterminate.push(b);
            }
        }
    }
}

#[test]
fn sigkill_during_concurrent_ingest_loses_and_doubles_nothing() {
    let mut rng = StdRng::seed_from_u64(seed("sigkill_during_concurrent_ingest_loses_and_doubles_nothing"));
    let env = Env::new();
    for inst in INSTANCES {
        env.add_instance(inst, "calls", "2026-11-01T00:00:00Z");
    }
    let mut log = Log::default();
    for r in 0..ROUNDS {
        round(&env, r, &mut rng, &mut log);
        check_after_kill(&env, &mut log, &format!("after kill {r}"));
    }
    let daemon = env.daemon();
    resolve(&daemon.http(), &mut log);
    // Every event ever sent was acknowledged in the end; all re-sends are duplicates.
    for b in log.acked_batches.iter().step_by(3) {
        let v = daemon.http().events(b.body.clone()).ok();
        assert_eq!((v["accepted"].as_u64(), v["duplicates"].as_u64()), (Some(0), Some(b.events.len() as u64)), "{v}");
    }
    drop(daemon);
    check_after_kill(&env, &mut log, "at the end");
    assert_eq!(log.acked.len(), log.sent.len(), "after retries every sent event is acknowledged");
    let c = env.db();
    assert_eq!(db::count_events(&c) as usize, log.sent.len());
    assert_status_clean(&env, NOW);
    // Sealing everything later still balances.
    env.run(&["seal", "--now", "2026-11-24T12:00:00Z"]).success();
    assert_sound(&env, "after sealing");
    assert_status_clean(&env, "2026-11-24T12:00:00Z");
    eprintln!(
        "ingest crash: {ROUNDS} rounds, {} events acknowledged, lost 0, duplicates 0, {} indeterminate requests ({} found stored, {} not stored, all resolved by retry)",
        log.acked.len(),
        log.indeterminate_total,
        log.resolved_present,
        log.resolved_absent
    );
}

/// `METERD_FAULTS=ingest-after-commit`: the process dies after the commit, before any reply.
/// The client never heard back, so it retries the same request: duplicates, not double counts.
#[test]
fn death_between_commit_and_reply_makes_the_retry_a_duplicate() {
    let env = Env::new();
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    let body = ndjson(&(0..5).map(|i| Ev::new(&format!("e{i}"), "inst-a", "1.5", "2026-11-23T11:30:00Z").json()).collect::<Vec<_>>());
    let mut daemon = env.daemon_with(&[], &[("METERD_FAULTS", "ingest-after-commit")]);
    let reply = daemon.http().try_post("/v1/events", body.clone());
    assert!(reply.is_err(), "no answer may arrive: {:?}", reply.map(|r| r.text()));
    assert!(daemon.wait_exit(Duration::from_secs(10)).is_some(), "the process died");
    assert!(daemon.stderr().contains("crashing at ingest-after-commit"), "{}", daemon.stderr());
    drop(daemon);
    assert_sound(&env, "after the crash");
    let c = env.db();
    assert_eq!(db::count_events(&c), 5, "the commit happened before the crash");
    let before = db::windows(&c, "inst-a");

    let daemon = env.daemon();
    let v = daemon.http().events(body).ok();
    assert_eq!((v["accepted"].as_u64(), v["duplicates"].as_u64()), (Some(0), Some(5)), "{v}");
    assert_eq!(db::count_events(&c), 5);
    assert_eq!(db::windows(&c, "inst-a"), before, "window totals unchanged by the retry");
    assert_eq!(db::window_usage(&c, "inst-a", crate::util::ns("2026-11-23T11:00:00Z") / 1_000_000_000).as_deref(), Some("7.5"));
    drop(daemon);
    assert_sound(&env, "after the retry");
}
