//! Configuration problems: a wrong key stops the run and keeps every record pending, plain
//! HTTP to a remote host is refused, and the key never shows up in any output.

use crate::util::upload::*;
use crate::util::Env;
use meterd::config::Config;

/// Writes the key file with owner-only permissions.
fn key_file(w: &Env, key: &str) -> std::path::PathBuf {
    let p = w.dir.path().join("isv.key");
    std::fs::write(&p, format!("{key}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    p
}

/// Wrong key → the store answers `MKT.0102` → the run stops after that one request, exit 2,
/// with a message naming both key settings; nothing is rejected and every record is `pending`
/// again (not `sending`). With the key fixed (`upload.key_file` this time) everything is
/// delivered, each record once.
#[test]
fn wrong_key_keeps_everything_pending_until_fixed() {
    let w = Env::for_upload();
    w.seed("wk", 75, 20);
    let mock = Mock::start(mock_config());
    w.configure(&Upload::to(&mock.endpoint()));

    let run = w.meterd(&["upload", "--now", NOW], &[("METERD_ISV_KEY", WRONG_KEY)]).expect(2);
    for needle in ["MKT.0102", "METERD_ISV_KEY", "upload.key_file", "records stay pending"] {
        assert!(run.stderr.contains(needle), "stderr lacks {needle:?}:\n{}", run.stderr);
    }
    let report = run.report();
    assert_eq!((report["requests"].as_u64(), report["rejected"].as_u64(), report["waiting"].as_u64()), (Some(1), Some(0), Some(1500)));
    assert_eq!(w.states(), counts(&[("pending", 1500)]), "nothing rejected, nothing left sending");
    assert_eq!(w.meterd(&["rejected", "--format", "json"], &[]).expect(0).stdout.trim(), "[]");
    let c = mock.counters();
    assert_eq!((c.requests, c.outcome("MKT.0102")), (1, 1), "the run stops at the first configuration error");
    assert!(mock.ledger().is_empty());
    assert_eq!(w.batches().iter().map(|b| b.3.as_str()).collect::<Vec<_>>(), ["abandoned"]);

    // No key at all is a configuration error too, before anything is sent.
    let none = w.meterd(&["upload", "--now", NOW], &[]).expect(2);
    assert!(none.stderr.contains("METERD_ISV_KEY") && none.stderr.contains("upload.key_file"), "{none:#?}");
    assert_eq!(mock.counters().requests, 1);

    w.configure(&Upload::to(&mock.endpoint()).key_file(&key_file(&w, KEY)));
    let fixed = w.meterd(&["upload", "--now", NOW], &[]).expect(0);
    assert!(!fixed.stderr.contains("readable by group"), "{}", fixed.stderr);
    assert_eq!(fixed.report()["delivered"].as_u64(), Some(1500));
    assert_eq!(w.states(), counts(&[("delivered", 1500)]));
    assert_billed_once(&mock.ledger(), &w.records());
}

/// `http://` is for loopback only: a remote plain-HTTP endpoint or fallback is refused before
/// anything is sent, exit 2, with a message naming the setting and asking for https.
#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let w = Env::for_upload();
    w.seed("tls", 2, 2);
    let mock = Mock::start(mock_config());
    let env = [("METERD_ISV_KEY", KEY)];
    for (endpoint, fallback, setting) in [
        ("http://mkt.myhuaweicloud.com", None, "upload.endpoint"),
        ("http://10.0.0.1:8480", None, "upload.endpoint"),
        (mock.endpoint().as_str(), Some("http://mkt.myhuaweicloud.cn"), "upload.fallback"),
    ] {
        let mut up = Upload::to(endpoint);
        if let Some(f) = fallback {
            up = up.fallback(f);
        }
        w.configure(&up);
        let run = w.meterd(&["upload", "--now", NOW], &env).expect(2);
        assert!(run.stderr.contains(setting) && run.stderr.contains("https://") && run.stderr.contains("loopback"), "{run:#?}");
        assert!(run.stdout.is_empty(), "{run:#?}");
    }
    assert_eq!(mock.counters().requests, 0);
    assert_eq!(w.states(), counts(&[("pending", 4)]));
}

/// The key (and a wrong key) never appear in stdout or stderr: a dry run, a wrong-key run, a
/// normal run — with `RUST_LOG=debug`, in text and JSON log formats — nor in `Debug` of a
/// loaded config that names a key file, nor of the loaded key.
#[test]
fn the_key_never_appears_in_output() {
    let w = Env::for_upload();
    w.seed("secret", 10, 5);
    let mock = Mock::start(mock_config());
    let kf = key_file(&w, KEY);
    w.configure(&Upload::to(&mock.endpoint()).key_file(&kf));
    let debug = ("RUST_LOG", "debug");
    let mut outputs = Vec::new();

    let dry = w.meterd(&["upload", "--now", NOW, "--dry-run"], &[debug]).expect(0);
    assert!(dry.stdout.contains("signature: ") && dry.stdout.contains("usage_records"), "{dry:#?}");
    assert_eq!(w.states(), counts(&[("pending", 50)]), "a dry run changes nothing");
    outputs.push(("dry run", dry));

    for format in ["text", "json"] {
        let wrong = w.meterd(&["--log-format", format, "upload", "--now", NOW], &[debug, ("METERD_ISV_KEY", WRONG_KEY)]).expect(2);
        assert!(wrong.stderr.contains("MKT.0102"), "{wrong:#?}");
        outputs.push(("wrong key", wrong));
    }

    let ok = w.meterd(&["upload", "--now", NOW], &[debug, ("METERD_ISV_KEY", KEY)]).expect(0);
    assert!(ok.stderr.contains("DEBUG"), "debug logging is on, so the check means something: {ok:#?}");
    outputs.push(("upload", ok));
    assert_eq!(w.states(), counts(&[("delivered", 50)]));

    for (what, run) in &outputs {
        for secret in [KEY, WRONG_KEY] {
            assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "{what}: the key leaked:\n{run:#?}");
        }
    }

    let cfg = Config::load(&w.config).unwrap();
    assert_eq!(cfg.upload.key_file.as_deref(), Some(kf.as_path()));
    let loaded = meterd::upload::run::load_key(&cfg.upload).unwrap().unwrap();
    for shown in [format!("{cfg:?}"), format!("{cfg:#?}"), format!("{:?}", cfg.upload), format!("{loaded:?}"), format!("{loaded}")] {
        assert!(!shown.contains(KEY), "{shown}");
    }
}
