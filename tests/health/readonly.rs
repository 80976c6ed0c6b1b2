//! A database read-only at start (a volume mounted read-only, a wrong owner or mode after a
//! restart): the daemon exits 3 naming the files and what to do, and starts normally once they
//! are writable. It must not start and wait: SQLite opens a store's `-shm` once per process
//! and keeps it as first opened, so a daemon started on a read-only store stayed read-only
//! after the `chmod` — every fresh connection too — until restarted (operator trial finding,
//! after a clean stop had removed the `-wal`/`-shm` files). The daemon runs as an unprivileged
//! user (root may write any file) through `setpriv`.
//!
//! Not tested here: a filesystem forced read-only under a running daemon (the kernel refuses
//! to remount a filesystem read-only while files are open for writing, so a test cannot make
//! it happen); a full one is, in `full`, through the same 503 / `/readyz` / metrics paths.

use super::util::{self, Env, Run};
use super::{fast_env, post, wait_reply};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

const AS_NOBODY: [&str; 4] = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"];

/// Hands the environment's directory and files to `nobody`; `false` when that is impossible.
fn give_to_nobody(env: &Env) -> bool {
    let dir = env.dir.path().to_str().unwrap();
    let ok = Command::new("chown").args(["-R", "nobody:nogroup", dir]).status().map(|s| s.success()).unwrap_or(false);
    // `nobody` must be able to run the binary under test (every directory above it searchable).
    ok && Command::new(AS_NOBODY[0]).args(&AS_NOBODY[1..]).arg(util::bin()).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// An environment with one instance whose directory and files belong to `nobody`; `None`
/// (after saying the test is skipped) where that is impossible.
fn nobodys_env() -> Option<Env> {
    let env = fast_env();
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    chmod(env.dir.path(), 0o755);
    if give_to_nobody(&env) {
        Some(env)
    } else {
        eprintln!("SKIPPED: cannot run the daemon as `nobody` here (needs root, chown and setpriv)");
        None
    }
}

/// `meterd run` as `nobody`, to its end (it must not start).
fn run_as_nobody(env: &Env) -> Run {
    let mut cmd = env.cmd_wrapped(&AS_NOBODY);
    cmd.args(["run", "--listen", "127.0.0.1:0"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn meterd");
    // A daemon that starts anyway would never end: stop it and fail rather than hang.
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > util::PATIENCE {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!("meterd run started on a read-only store: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Run::from(child.wait_with_output().expect("wait"))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// SIGKILL: the `-wal`/`-shm` files stay, writable.
    Kill,
    /// SIGTERM: SQLite removes them.
    Clean,
}

#[test]
fn a_store_read_only_at_start_is_refused_with_exit_3_and_served_once_writable() {
    for stop in [Stop::Kill, Stop::Clean] {
        let Some(env) = nobodys_env() else { return };
        let mut d = env.daemon_wrapped(&AS_NOBODY, &[], &[]);
        wait_reply(&d, "/readyz", "ready", |r| r.status == 200);
        assert_eq!(post(&d, "inst-a", "a", 5).ok()["accepted"], 5);
        match stop {
            Stop::Kill => d.kill(),
            Stop::Clean => {
                d.terminate();
                assert_eq!(d.wait_exit(std::time::Duration::from_secs(20)), Some(0));
            }
        }
        let side = |s: &str| env.dir.path().join(format!("meterd.db{s}"));
        assert_eq!(side("-wal").exists(), stop == Stop::Kill, "{stop:?}: a clean stop removes the WAL");

        chmod(&env.db, 0o444);
        let refused = run_as_nobody(&env);
        assert_eq!(refused.code, 3, "{stop:?}: a runtime failure (systemd restarts it): {refused:#?}");
        assert!(
            refused.stderr.contains("read-only (or unreadable) for this process") && refused.stderr.contains(env.db.to_str().unwrap()),
            "{stop:?}: names the file: {refused:#?}"
        );
        assert!(
            refused.stderr.contains("make these readable and writable") && refused.stderr.contains("-wal/-shm"),
            "{stop:?}: says what to do: {refused:#?}"
        );
        if stop == Stop::Clean {
            assert!(!side("-wal").exists() && !side("-shm").exists(), "the refusal opened nothing (no read-only -wal/-shm left behind)");
        }

        // The operator fixes the mode; the next start (systemd's restart) serves.
        chmod(&env.db, 0o644);
        let d = env.daemon_wrapped(&AS_NOBODY, &[], &[]);
        wait_reply(&d, "/readyz", "ready", |r| r.status == 200);
        let accepted = post(&d, "inst-a", "b", 5);
        assert_eq!(accepted.status, 200, "{stop:?}: {}\n{}", accepted.text(), d.stderr());
        assert_eq!(accepted.json()["accepted"], 5);
        assert_eq!(util::db::count_events_of(&env.db(), "inst-a"), 10, "{stop:?}: every acknowledged event is stored");
    }
}

/// A writable database in a directory this process cannot write: SQLite could not create the
/// `-wal`/`-shm` files there, and every write would fail "readonly". The start names the
/// directory (it said only "attempt to write a readonly database"; trial finding).
#[test]
fn a_store_in_a_directory_it_cannot_write_is_refused_naming_the_directory() {
    let Some(env) = nobodys_env() else { return };
    // The files stay `nobody`'s; the directory goes back to root.
    assert!(Command::new("chown").args(["root:root", env.dir.path().to_str().unwrap()]).status().unwrap().success());
    assert!(!env.dir.path().join("meterd.db-wal").exists(), "the CLI's clean close removed the WAL");
    let refused = run_as_nobody(&env);
    assert_eq!(refused.code, 3, "{refused:#?}");
    let dir = env.dir.path().to_str().unwrap();
    assert!(
        refused.stderr.contains(&format!("{dir},")) || refused.stderr.contains(&format!("{dir};")),
        "names the directory: {refused:#?}"
    );
    assert!(refused.stderr.contains("its directory"), "{refused:#?}");
}
