//! The database file deleted or moved away while the daemon runs.

use super::util::{self, Env};
use super::{failing, fast_env, metric, post, wait_reply};

const INST: &str = "inst-a";

fn started() -> (Env, util::Daemon) {
    let env = fast_env();
    env.add_instance(INST, "calls", "2026-11-01T00:00:00Z");
    let d = env.daemon();
    (env, d)
}

fn events_of(env: &Env) -> i64 {
    util::db::count_events_of(&env.db(), INST)
}

/// `meterd run` that must exit at once; killed after 10 s if it started serving instead.
fn run_bounded(env: &Env) -> (Option<i32>, String) {
    let log = env.dir.path().join("restart.stderr");
    let mut child = env
        .cmd()
        .args(["run", "--listen", "127.0.0.1:0", "--now", util::NOW])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    (code, std::fs::read_to_string(&log).unwrap_or_default())
}

/// The file moved away (a volume remounted, a wrong cleanup job): nothing is acknowledged into
/// the lost file, liveness fails, and once the file is back everything acknowledged is there.
#[test]
fn a_database_moved_away_stops_ingest_fails_health_and_loses_nothing_acknowledged() {
    let (env, mut d) = started();
    assert_eq!(post(&d, INST, "before", 10).ok()["accepted"], 10);
    assert_eq!(d.http().get("/healthz").status, 200);
    // Every failure series exists at 0 before its first failure, so the shipped
    // `increase(…) > 0` alerts see the first one (a series born at 1 shows no increase).
    for series in [
        "meterd_ingest_commit_failures_total{reason=\"moved\"}",
        "meterd_seal_failures_total{reason=\"readonly\"}",
        "meterd_upload_failures_total{reason=\"config_error\"}",
        "meterd_upload_attempts_total{outcome=\"transient\"}",
        "meterd_events_rejected_total{reason=\"conflict\"}",
    ] {
        assert_eq!(metric(&d, series), Some(0.0), "{series}");
    }
    let aside = env.dir.path().join("moved-away.db");
    std::fs::rename(&env.db, &aside).unwrap();

    let r = post(&d, INST, "after", 10);
    assert_eq!(r.status, 503, "ingest into a moved database must not be acknowledged: {}", r.text());
    assert!(r.text().contains("deleted or replaced"), "{}", r.text());
    assert_eq!(post(&d, INST, "later", 5).status, 503, "and nothing after it either");
    let h = d.http().get("/healthz");
    assert_eq!(h.status, 503, "{}", h.text());
    assert!(h.text().contains("database_file"), "{}", h.text());
    let ready = d.http().get("/readyz");
    assert_eq!(ready.status, 503);
    assert!(failing(&ready).contains(&"database_file".to_string()), "{}", ready.text());
    assert_eq!(metric(&d, "meterd_ingest_commit_failures_total{reason=\"moved\"}"), Some(1.0));
    assert_eq!(metric(&d, "meterd_health_check{check=\"database_file\"}"), Some(0.0));
    assert!(d.stderr().contains("ERROR") && d.stderr().contains("was deleted while meterd had it open"), "{}", d.stderr());
    d.kill();

    // A restart refuses to start from an empty database where one was in use.
    let (code, stderr) = run_bounded(&env);
    assert_eq!(code, Some(2), "a restart must refuse to start empty: {stderr}");
    assert!(stderr.contains("is missing") && stderr.contains("meterd.db.created"), "{stderr}");
    assert!(!env.db.exists(), "no empty database was created");
    let r = env.run(&["status"]);
    r.code(2);

    // The operator puts the file back: every acknowledged event is there, the daemon is healthy.
    std::fs::rename(&aside, &env.db).unwrap();
    let db = env.db();
    for i in 0..10 {
        assert!(util::db::event(&db, INST, &format!("before-{i}")).is_some(), "acknowledged event before-{i} is lost");
    }
    let d = env.daemon();
    assert_eq!(d.http().get("/healthz").status, 200);
    // The refused request may have reached the moved file's log: its retry counts once.
    let retry = post(&d, INST, "after", 10).ok();
    assert_eq!(retry["accepted"].as_u64().unwrap() + retry["duplicates"].as_u64().unwrap(), 10, "{retry}");
    assert!(events_of(&env) >= 20);
    wait_reply(&d, "/readyz", "ready", |r| r.status == 200);
}

/// The file deleted: the same refusal, and `--create-db` is the explicit way to start afresh.
#[test]
fn a_deleted_database_is_never_silently_recreated() {
    let (env, mut d) = started();
    assert_eq!(post(&d, INST, "a", 3).ok()["accepted"], 3);
    std::fs::remove_file(&env.db).unwrap();
    assert_eq!(post(&d, INST, "b", 3).status, 503);
    assert_eq!(d.http().get("/healthz").status, 503);
    // The seal loop ticks every second; it must not create a new file at the path.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(!env.db.exists(), "the running daemon recreated the deleted database");
    d.kill();
    env.run(&["instance", "list"]).code(2);
    let d = env.daemon_with(&["--create-db"], &[]);
    assert_eq!(d.http().get("/healthz").status, 200);
    assert_eq!(events_of(&env), 0, "a new, empty database on purpose");
}
