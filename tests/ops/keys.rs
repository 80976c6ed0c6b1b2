//! Key rotation without a restart: a daemon started with a wrong key file keeps its records
//! pending (the store answers MKT.0102); once the file holds the right key, SIGHUP — or, with
//! no signal, the next upload run after the refusal — makes it re-read the key and deliver.
//! Neither key ever shows up in the daemon's log.

use crate::util::upload::*;
use crate::util::{wait_for, Daemon, Env, PATIENCE};
use std::path::Path;

fn write_key(path: &Path, key: &str) {
    std::fs::write(path, format!("{key}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// Seeds 6 pending records, starts the mock and the daemon (wrong key in the key file, upload
/// on `schedule`) and waits until the store refused the key at least once.
fn refused_daemon(schedule: &str) -> (Env, Mock, Daemon, std::path::PathBuf) {
    let w = Env::for_upload();
    w.seed("rot", 2, 3);
    assert_eq!(w.states(), counts(&[("pending", 6)]));
    let mock = Mock::start(mock_config());
    let key_file = w.dir.path().join("isv.key");
    write_key(&key_file, WRONG_KEY);
    w.configure(&Upload::to(&mock.endpoint()).key_file(&key_file));
    let mut text = std::fs::read_to_string(&w.config).unwrap();
    text.push_str(&format!("\n[schedule]\nseal = \"0 0 0 1 1 *\"\nupload = {schedule:?}\n"));
    std::fs::write(&w.config, text).unwrap();

    let daemon = w.daemon_with(&[], &[("RUST_LOG", "info")]);
    // A refused batch goes back to pending once the answer is handled (it is in a batch while
    // the request is in flight).
    wait_for("the store refusing the wrong key, the records pending again", PATIENCE, || {
        mock.counters().requests >= 1 && w.states() == counts(&[("pending", 6)])
    });
    assert_eq!(mock.counters().records_billed, 0);
    (w, mock, daemon, key_file)
}

fn assert_key_never_logged(daemon: Daemon) -> String {
    let stderr = daemon.finish();
    assert!(!stderr.contains(KEY) && !stderr.contains(WRONG_KEY), "a key in the log:\n{stderr}");
    assert!(stderr.contains("upload key re-read"), "{stderr}");
    stderr
}

/// SIGHUP after the key file is fixed: delivered, though no upload tick comes (yearly schedule).
#[test]
fn sighup_rereads_the_key_file() {
    let (w, mock, daemon, key_file) = refused_daemon("0 0 0 1 1 *");
    write_key(&key_file, KEY);
    // The sleep is the test: for this long, nothing may re-read the fixed key on its own.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(w.states(), counts(&[("pending", 6)]), "nothing re-reads the key without a signal or a tick");
    daemon.signal("-HUP");
    wait_for("delivery after SIGHUP", PATIENCE, || w.states() == counts(&[("delivered", 6)]));
    assert_billed_once(&mock.ledger(), &w.records());
    assert_key_never_logged(daemon);
}

/// No signal: the next upload run after the store refused the key re-reads the file.
#[test]
fn the_next_run_after_a_refused_key_rereads_it() {
    let (w, mock, daemon, key_file) = refused_daemon("* * * * * *");
    write_key(&key_file, KEY);
    wait_for("delivery at a later tick", PATIENCE, || w.states() == counts(&[("delivered", 6)]));
    assert_billed_once(&mock.ledger(), &w.records());
    let stderr = assert_key_never_logged(daemon);
    assert!(stderr.contains("MKT.0102") || stderr.contains("re-read before the next run"), "{stderr}");
}
