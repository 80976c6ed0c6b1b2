//! The database made read-only under a daemon that runs as an unprivileged user (root ignores
//! file permissions, so the daemon runs as `nobody` through `setpriv`).

use super::util::{self, Env};
use super::{failing, fast_env, metric, post, wait_reply};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Hands the environment's directory and files to `nobody`; `false` when that is impossible.
fn give_to_nobody(env: &Env) -> bool {
    let dir = env.dir.path().to_str().unwrap();
    let ok = Command::new("chown").args(["-R", "nobody:nogroup", dir]).status().map(|s| s.success()).unwrap_or(false);
    // `nobody` must be able to run the binary under test (every directory above it searchable).
    ok && Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(util::bin())
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// SQLite keeps the descriptors a process opened as they were opened, so a `chmod` under a
/// running daemon changes nothing for the connections it holds: the test makes the file
/// read-only between two starts (the way a remount or an ownership change before a restart
/// does), then makes it writable again under the running daemon, which must recover by itself
/// — every connection that failed because it could not write is reopened at its next attempt.
#[test]
fn a_read_only_database_fails_readiness_and_recovers_when_writable_without_a_restart() {
    let env = fast_env();
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    chmod(env.dir.path(), 0o755);
    if !give_to_nobody(&env) {
        eprintln!("SKIPPED: cannot run the daemon as `nobody` here (needs root, chown and setpriv)");
        return;
    }
    let as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"];
    let mut d = env.daemon_wrapped(&as_nobody, &[], &[]);
    wait_reply(&d, "/readyz", "ready", |r| r.status == 200);
    assert_eq!(post(&d, "inst-a", "a", 5).ok()["accepted"], 5);
    d.kill();

    chmod(&env.db, 0o444);
    let d = env.daemon_wrapped(&as_nobody, &[], &[]);
    let r = wait_reply(&d, "/readyz", "the seal failures", |r| r.status == 503 && failing(r).contains(&"seal".to_string()));
    assert!(failing(&r).contains(&"database_writable".to_string()), "{}", r.text());
    assert!(r.text().contains("readonly"), "{}", r.text());
    let refused = post(&d, "inst-a", "b", 5);
    assert_eq!(refused.status, 503, "a read-only store cannot write now: 503, like a full disk: {}", refused.text());
    assert_eq!(refused.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"), "503 says when to retry");
    assert!(refused.json()["error"].as_str().is_some_and(|m| m.contains("retry")), "the API's JSON error: {}", refused.text());
    let r = d.http().get("/readyz");
    assert!(failing(&r).contains(&"ingest".to_string()), "{}", r.text());
    assert_eq!(d.http().get("/healthz").status, 200, "a read-only file is not a reason to restart: liveness holds");
    assert!(metric(&d, "meterd_seal_failures_total{reason=\"readonly\"}").unwrap_or(0.0) >= 3.0);
    assert_eq!(metric(&d, "meterd_ingest_commit_failures_total{reason=\"readonly\"}"), Some(1.0));
    assert_eq!(metric(&d, "meterd_health_check{check=\"database_writable\"}"), Some(0.0));
    assert_eq!(metric(&d, "meterd_last_seal_success_timestamp_seconds"), Some(0.0));
    let status = d.http().get("/v1/status").ok();
    assert!(status["checks"].as_array().unwrap().iter().any(|c| c["name"] == "seal" && c["ok"] == false), "{status}");

    // The operator fixes the permission; the same daemon, no restart.
    chmod(&env.db, 0o644);
    let accepted = post(&d, "inst-a", "b", 5);
    assert_eq!(accepted.status, 200, "the writer reopens its connection at its next attempt: {}", accepted.text());
    assert_eq!(accepted.json()["accepted"], 5, "the refused events were never stored: {}", accepted.text());
    wait_reply(&d, "/metrics", "a successful seal", |_| metric(&d, "meterd_last_seal_success_timestamp_seconds").unwrap_or(0.0) > 0.0);
    let r = wait_reply(&d, "/readyz", "recovery", |r| r.status == 200);
    assert!(failing(&r).is_empty(), "{}", r.text());
    assert_eq!(metric(&d, "meterd_health_check{check=\"database_writable\"}"), Some(1.0));
    assert_eq!(d.http().get("/healthz").status, 200);
    assert_eq!(post(&d, "inst-a", "c", 5).ok()["accepted"], 5);
    assert_eq!(util::db::count_events_of(&env.db(), "inst-a"), 15, "every acknowledged event is stored");
}
