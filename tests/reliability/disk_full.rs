//! Disk full (issue 7, test 4), simulated with `METERD_MAX_PAGE_COUNT` (SQLite's
//! `max_page_count`: writes past the cap fail with SQLITE_FULL, as on a full disk). HTTP ingest
//! answers 503 with `Retry-After` and a message that says what happened and that a retry is
//! safe; CLI ingest exits 3 saying the same; nothing of a refused request is stored; nothing
//! acknowledged before is lost; the file stays intact; and once the cap is gone the same
//! requests are accepted (or found to be duplicates).

use crate::common::{assert_sound, outcome};
use crate::util::{db, ndjson, Env, Ev, NOW};
use std::time::Duration;

fn batch(tag: &str, n: usize) -> (Vec<String>, Vec<u8>) {
    let ids: Vec<String> = (0..n).map(|j| format!("{tag}-{j:04}-{}", "x".repeat(100))).collect();
    let lines: Vec<String> = ids.iter().map(|id| Ev::new(id, "inst-a", "0.000000001", "2026-11-23T11:20:00Z").json()).collect();
    (ids, ndjson(&lines))
}

#[test]
fn full_database_refuses_clearly_keeps_everything_acknowledged_and_recovers() {
    crate::sqlite_only!("the full disk is simulated with SQLite's max_page_count (METERD_MAX_PAGE_COUNT); a full PostgreSQL server is the server's own condition, not simulated here");
    let env = Env::new();
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    let mut acked: Vec<String> = Vec::new();
    let mut daemon = env.daemon();
    let (ids, body) = batch("before", 20);
    assert_eq!(daemon.http().events(body).ok()["accepted"], 20);
    acked.extend(ids);
    daemon.terminate();
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)), Some(0));
    drop(daemon);

    let pages: i64 = env.db().sqlite().query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    let cap = (pages + 12).to_string();
    let daemon = env.daemon_with(&[], &[("METERD_MAX_PAGE_COUNT", &cap)]);
    let http = daemon.http();
    let mut refused = None;
    for k in 0..200 {
        let (ids, body) = batch(&format!("b{k}"), 10);
        let before = db::count_events(&env.db());
        let r = http.events(body.clone());
        match r.status {
            200 => {
                assert_eq!(r.json()["accepted"], 10, "{}", r.text());
                acked.extend(ids);
            }
            503 => {
                assert_eq!(r.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"), "503 carries Retry-After");
                let msg = r.json()["error"].as_str().unwrap().to_string();
                assert!(msg.contains("full") && msg.contains("nothing was stored") && msg.contains("retry"), "{msg}");
                assert_eq!(db::count_events(&env.db()), before, "a refused request stores nothing");
                refused = Some((ids, body, msg));
                break;
            }
            s => panic!("unexpected HTTP {s}: {}", r.text()),
        }
    }
    let (ids, body, msg) = refused.expect("the capped database filled up");
    eprintln!("disk full: {} events acknowledged before the cap was reached; HTTP said: {msg}", acked.len());
    assert_eq!(http.get("/healthz").status, 200, "the daemon still answers");
    assert_eq!(http.events(body.clone()).status, 503, "still full: still refused, never a false 200");

    // The CLI door: exit 3 with the same clear message, nothing stored.
    let file = env.dir.path().join("refused.ndjson");
    std::fs::write(&file, &body).unwrap();
    let mut cmd = env.cmd();
    cmd.args(["ingest", "--now", NOW, file.to_str().unwrap()]).env("METERD_MAX_PAGE_COUNT", &cap);
    let o = outcome(cmd);
    assert_eq!(o.code, Some(3), "{o:?}");
    assert!(o.stderr.contains("full") && o.stderr.contains("re-run"), "{}", o.stderr);
    drop(daemon);

    assert_sound(&env, "while full");
    let c = env.db();
    for id in &acked {
        assert_eq!(db::copies(&c, "inst-a", id), 1, "acknowledged {id} kept exactly once");
    }
    assert!(ids.iter().all(|id| db::copies(&c, "inst-a", id) == 0), "nothing of the refused request was stored");
    assert_eq!(db::count_events(&c) as usize, acked.len());

    // Space is back: the same request is accepted, earlier ones are duplicates.
    let daemon = env.daemon();
    let r = daemon.http().events(body).ok();
    assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(10), Some(0)), "{r}");
    let (_, again) = batch("before", 20);
    let r = daemon.http().events(again).ok();
    assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(0), Some(20)), "{r}");
    drop(daemon);
    assert_sound(&env, "after recovery");
    assert_eq!(db::count_events(&env.db()) as usize, acked.len() + 10);
}
