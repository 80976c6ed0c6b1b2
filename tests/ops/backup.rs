//! `meterd backup` of a live store: taken while a daemon ingests over HTTP, restored by the
//! README's recipe (stop, move the database and its WAL aside, copy the backup in), it holds
//! every event acknowledged before the backup began and passes the conservation audit; a
//! second backup onto the same file is refused (exit 2) and leaves it alone.

use super::util::{db, wait_for, Env, Ev, NOW, PATIENCE};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const INSTANCE: &str = "0b6f2c1e-5a4d-4e8f-9c3b-2d1a0f9e8d7c";
const BATCH: usize = 20;

fn id(n: usize) -> String {
    format!("bk-{n}")
}

#[test]
fn backup_while_ingesting_then_restore() {
    let env = Env::new();
    env.add_instance(INSTANCE, "calls", "2026-11-01T00:00:00Z");
    let mut daemon = env.daemon();
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let poster = {
        let (acked, stop, addr) = (acked.clone(), stop.clone(), daemon.addr.clone());
        std::thread::spawn(move || {
            let http = super::util::Http::new(&addr, None);
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let events: Vec<String> = (n..n + BATCH)
                    .map(|i| Ev::new(&id(i), INSTANCE, "1.5", &format!("2026-11-23T{:02}:{:02}:00Z", 9 + (i / 60) % 2, i % 60)).json())
                    .collect();
                let reply = http.events(super::util::ndjson(&events)).ok();
                assert_eq!(reply["accepted"], BATCH as u64, "{reply}");
                n += BATCH;
                acked.store(n, Ordering::SeqCst);
            }
        })
    };
    wait_for("400 events acknowledged before the backup", PATIENCE, || acked.load(Ordering::SeqCst) >= 400);
    let before = acked.load(Ordering::SeqCst);
    let dest = env.dir.path().join("backup.db");
    let out = env.run(&["backup", dest.to_str().unwrap()]);
    out.success();
    assert!(out.stdout.contains("conservation ok"), "{}", out.stdout);
    assert!(!env.dir.path().join("backup.db.created").exists(), "a backup is not a database in use: no marker beside it");
    let during = acked.load(Ordering::SeqCst);
    wait_for("200 more events acknowledged after the backup", PATIENCE, || acked.load(Ordering::SeqCst) >= during + 200);
    stop.store(true, Ordering::SeqCst);
    poster.join().unwrap();
    let total = acked.load(Ordering::SeqCst);

    // Never overwrites: exit 2, the file unchanged.
    let bytes = std::fs::read(&dest).unwrap();
    let again = env.run(&["backup", dest.to_str().unwrap()]);
    again.code(2);
    assert!(again.stderr.contains("exists"), "{}", again.stderr);
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);

    // Restore as the README says.
    daemon.terminate();
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)), Some(0));
    let old = env.dir.path().join("old");
    std::fs::create_dir(&old).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = env.dir.path().join(format!("meterd.db{suffix}"));
        if from.exists() {
            std::fs::rename(&from, old.join(format!("meterd.db{suffix}"))).unwrap();
        }
    }
    std::fs::copy(&dest, &env.db).unwrap();

    let c = env.db();
    assert_eq!(db::integrity(&c), "ok");
    let restored = db::count_events(&c) as usize;
    assert!(restored >= before && restored <= total, "restored {restored}, acknowledged {before} before the backup, {total} in all");
    let missing: Vec<String> = (0..before).map(id).filter(|i| db::event(&c, INSTANCE, i).is_none()).collect();
    assert!(missing.is_empty(), "acknowledged before the backup, missing after restore: {missing:?}");
    drop(c);
    env.run(&["status", "--now", NOW]).success();
}
