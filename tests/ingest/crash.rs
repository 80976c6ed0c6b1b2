//! kill -9 after 200: an acknowledged event survives the process being killed at any moment.
//! The real binary serves `meterd run`; clients post concurrently and record the ids of every
//! `200`; the process gets SIGKILL right after an acknowledgement, with other requests still in
//! flight. After each kill the database must be sound, hold every acknowledged event exactly
//! once, hold nothing that was never sent, and its window totals must equal its events (a
//! commit is all or nothing). A restart then sees every acknowledged event as a duplicate.

use crate::util::{db, ndjson, Env, Ev, Http};
use std::collections::BTreeSet;
use std::sync::{mpsc, Mutex};

const THREADS: usize = 4;
const BATCH: usize = 8;
/// Acknowledged events to wait for before each kill.
const ACKS_BEFORE_KILL: usize = 200;

fn event(id: &str, k: usize) -> String {
    let t = format!("2026-11-23T{:02}:{:02}:{:02}Z", 6 + k % 5, (k / 5) % 60, k % 60);
    Ev::new(id, "inst-a", &format!("{}.000000001", k % 100), &t).json()
}

/// What the store holds after a crash, checked against what clients sent and were told.
fn check_after_kill(env: &Env, acked: &BTreeSet<String>, sent: &BTreeSet<String>) {
    // Open as a restarted meterd would (WAL recovery, migrations check), then inspect.
    let store = meterd::store::Store::open(&env.db).expect("the store reopens after SIGKILL");
    store.integrity_check().expect("integrity_check = ok");
    drop(store);
    let c = env.db();
    assert_eq!(db::integrity(&c), "ok");
    let stored: Vec<String> = db::all_events(&c).into_iter().map(|e| e.1).collect();
    let unique: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(unique.len(), stored.len(), "no event is stored twice");
    let lost: Vec<_> = acked.difference(&unique).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost after SIGKILL: {lost:?}", lost.len());
    let invented: Vec<_> = unique.difference(sent).collect();
    assert!(invented.is_empty(), "stored but never sent: {invented:?}");
    let (w, e) = db::window_and_event_sums(&c, "inst-a");
    assert_eq!(w, e, "window totals match the committed events exactly");
}

/// One round: concurrent posting, SIGKILL right after the ACKS_BEFORE_KILL-th acknowledgement.
fn round(env: &Env, r: usize, acked: &mut BTreeSet<String>, sent: &Mutex<BTreeSet<String>>) {
    let mut daemon = env.daemon();
    let (tx, rx) = mpsc::channel::<Vec<String>>();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (tx, addr) = (tx.clone(), daemon.addr.clone());
            s.spawn(move || {
                let http = Http::new(&addr, None);
                for seq in 0.. {
                    let ids: Vec<String> = (0..BATCH).map(|j| format!("r{r}-t{t}-{seq}-{j}")).collect();
                    let body: Vec<String> = ids.iter().enumerate().map(|(j, id)| event(id, seq * BATCH + j + t)).collect();
                    sent.lock().unwrap().extend(ids.iter().cloned());
                    match http.try_post("/v1/events", ndjson(&body)) {
                        Ok(reply) if reply.status == 200 => {
                            assert_eq!(reply.json()["accepted"], BATCH, "{}", reply.text());
                            let _ = tx.send(ids);
                        }
                        Ok(reply) => panic!("unexpected HTTP {}: {}", reply.status, reply.text()),
                        Err(_) => return, // the daemon is gone
                    }
                }
            });
        }
        drop(tx);
        let mut n = 0;
        while n < ACKS_BEFORE_KILL {
            let ids = rx.recv().unwrap_or_else(|_| panic!("every sender stopped early; daemon log:\n{}", daemon.stderr()));
            n += ids.len();
            acked.extend(ids);
        }
        daemon.kill();
    });
    // Answers that arrived while the kill was under way are acknowledgements too.
    acked.extend(rx.try_iter().flatten());
    eprintln!("round {r}: acked {} sent {}", acked.len(), sent.lock().unwrap().len());
}

#[test]
fn sigkill_right_after_200_loses_nothing_acknowledged() {
    let env = Env::new();
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    let mut acked = BTreeSet::new();
    let sent = Mutex::new(BTreeSet::new());

    // The plainest case: one event, 200, SIGKILL at once.
    let mut daemon = env.daemon();
    let first = event("first", 0);
    sent.lock().unwrap().insert("first".to_string());
    assert_eq!(daemon.http().events(first).ok()["accepted"], 1);
    daemon.kill();
    acked.insert("first".to_string());
    check_after_kill(&env, &acked, &sent.lock().unwrap());

    for r in 0..5 {
        round(&env, r, &mut acked, &sent);
        check_after_kill(&env, &acked, &sent.lock().unwrap());
    }
    assert!(acked.len() > 5 * ACKS_BEFORE_KILL);

    // After a restart every acknowledged event is known: re-sending stores nothing new.
    let daemon = env.daemon();
    let http = daemon.http();
    let acked_list: Vec<&String> = acked.iter().collect();
    let mut duplicates = 0;
    for chunk in acked_list.chunks(200) {
        let body: Vec<String> = chunk.iter().map(|id| resend(&env, id)).collect();
        let r = http.events(ndjson(&body)).ok();
        assert_eq!(r["accepted"], 0, "{r}");
        assert!(r["rejected"].as_array().unwrap().is_empty(), "{r}");
        duplicates += r["duplicates"].as_u64().unwrap();
    }
    assert_eq!(duplicates, acked.len() as u64);
    let c = env.db();
    assert_eq!(db::integrity(&c), "ok");
}

/// The exact event that was sent under `id`, rebuilt from the id (same quantity and time).
fn resend(env: &Env, id: &str) -> String {
    let _ = env;
    if id == "first" {
        return event("first", 0);
    }
    let parts: Vec<usize> = id.split('-').map(|p| p.trim_start_matches(['r', 't']).parse().unwrap()).collect();
    let (t, seq, j) = (parts[1], parts[2], parts[3]);
    event(id, seq * BATCH + j + t)
}
