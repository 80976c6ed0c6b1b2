//! A full filesystem under the daemon: a small tmpfs the test mounts (and unmounts), nearly
//! filled by a filler file. Ingest answers 503, `/readyz` names the failing checks, nothing
//! acknowledged is lost, and everything recovers by itself once the filler is removed.

use super::util::{self, example_config_with, Env};
use super::{failing, metric, post, wait_reply};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for one test; unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(dir.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_filesystem_fails_readiness_loses_nothing_and_recovers() {
    let outer = tempfile::Builder::new().prefix("meterd-full-").tempdir().unwrap();
    let Some(mount) = Mount::tmpfs(&outer.path().join("fs"), "2m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root and mount)");
        return;
    };
    let config = example_config_with(&[("seal = \"0 */5 * * * *\"", "seal = \"* * * * * *\"")]);
    let env = Env::with_config(&config);
    // The environment's database lives on the small filesystem.
    let env = Env { db: mount.0.join("meterd.db"), ..env };
    env.add_instance("inst-a", "calls", "2026-11-01T00:00:00Z");
    let d = env.daemon();
    wait_reply(&d, "/readyz", "ready", |r| r.status == 200);

    // Fill the filesystem but for a little room, then ingest until it is full.
    let filler = mount.0.join("filler");
    let free = fs_free(&mount.0);
    std::fs::write(&filler, vec![0u8; free.saturating_sub(64 * 1024) as usize]).unwrap();
    let mut acked = 0;
    let mut full = None;
    for round in 0..400 {
        let r = post(&d, "inst-a", &format!("r{round}"), 200);
        if r.status == 200 {
            acked += r.json()["accepted"].as_u64().unwrap();
        } else {
            full = Some(r);
            break;
        }
    }
    let full = full.expect("the filesystem never filled up");
    assert_eq!(full.status, 503, "{}", full.text());
    assert!(full.text().contains("full"), "{}", full.text());
    let r = d.http().get("/readyz");
    assert_eq!(r.status, 503);
    let names = failing(&r);
    assert!(names.contains(&"ingest".to_string()) && names.contains(&"database_writable".to_string()), "{}", r.text());
    assert_eq!(d.http().get("/healthz").status, 200, "a full disk is not a reason to restart");
    assert!(metric(&d, "meterd_ingest_commit_failures_total{reason=\"full\"}").unwrap_or(0.0) >= 1.0);

    // Space is back: meterd recovers by itself.
    std::fs::remove_file(&filler).unwrap();
    let again = post(&d, "inst-a", "after", 200);
    assert_eq!(again.status, 200, "{}", again.text());
    acked += again.json()["accepted"].as_u64().unwrap();
    wait_reply(&d, "/readyz", "recovery", |r| r.status == 200);
    assert_eq!(util::db::count_events_of(&env.db(), "inst-a") as u64, acked, "every acknowledged event is stored");
    drop(d);
    drop(mount);
}

/// Free bytes on the filesystem holding `dir` (`df` output, to need no libc binding).
fn fs_free(dir: &Path) -> u64 {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or(0)
}
