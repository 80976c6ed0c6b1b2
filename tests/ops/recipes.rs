//! The README's install recipe and cron line against `contrib/meterd.service`: both are read
//! from the files (so they cannot drift from what is tested), their absolute paths moved under a
//! temporary root, and run with an empty environment as systemd and cron would.

use crate::util::upload::KEY;
use crate::util::{Daemon, MOCK_BANNER, RUN_BANNER};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = "/usr/local/bin/meterd";
const INSTANCE: &str = "7f141bf1-aec8-4859-8323-fb3a8ad50721";

fn repo(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// The first fenced block after `marker` in the README, without its fences.
fn recipe(marker: &str) -> Vec<String> {
    let readme = repo("README.md");
    let at = readme.find(marker).unwrap_or_else(|| panic!("README has no {marker}"));
    let rest = &readme[at..];
    let open = rest.find("```").unwrap();
    let body = &rest[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let close = body.find("```").unwrap();
    body[..close].lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

/// The unit's `Key=Value` lines (comments skipped); `Environment=` lines as `Environment:NAME`.
fn unit() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in repo("contrib/meterd.service").lines().map(str::trim) {
        if line.starts_with('#') || !line.contains('=') {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap();
        match k {
            "Environment" => {
                let (name, value) = v.split_once('=').unwrap();
                out.insert(format!("Environment:{name}"), value.to_string());
            }
            _ => {
                out.insert(k.to_string(), v.to_string());
            }
        }
    }
    out
}

/// The value after `flag` in a command line.
fn flag<'a>(line: &'a str, flag: &str) -> &'a str {
    let mut words = line.split_whitespace();
    words.find(|w| *w == flag).unwrap_or_else(|| panic!("no {flag} in {line:?}"));
    words.next().unwrap()
}

/// Absolute install paths moved under `root`; the binary is the one under test.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        for d in ["etc/meterd", "var/lib/meterd"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Root { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn at(&self, abs: &str) -> PathBuf {
        PathBuf::from(self.moved(abs))
    }
    fn moved(&self, text: &str) -> String {
        let root = self.path().display().to_string();
        text.replace(BIN, &super::util::bin().display().to_string())
            .replace("/etc/meterd", &format!("{root}/etc/meterd"))
            .replace("/var/lib/meterd", &format!("{root}/var/lib/meterd"))
    }
    /// `sh -c line` with nothing in the environment but what cron (or systemd) sets.
    fn sh(&self, line: &str, extra: &[(&str, String)]) -> std::process::Output {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(line).env_clear().current_dir(self.path());
        c.env("PATH", "/usr/bin:/bin").env("HOME", self.path()).env("SHELL", "/bin/sh").env("LOGNAME", "meterd");
        for (k, v) in extra {
            c.env(k, v);
        }
        c.stdin(Stdio::null()).output().unwrap()
    }

    /// Installs the key file, then runs the README's `init` line; returns the key's path.
    fn install(&self) -> PathBuf {
        let lines = recipe("<!-- recipe:install -->");
        let key_line = lines.iter().find(|l| l.starts_with("sudo install") && l.contains("isv.key")).expect("key line");
        let key = self.at(key_line.split_whitespace().last().unwrap());
        std::fs::write(&key, format!("{KEY}\n")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let init = lines.iter().find(|l| l.split_whitespace().any(|w| w == "init")).expect("init line");
        let out = self.sh(&self.moved(init.trim_start_matches("sudo ")), &[]);
        assert!(out.status.success(), "README init line failed: {}", String::from_utf8_lossy(&out.stderr));
        key
    }
}

/// The unit and the README's install recipe agree: `init` writes the config where the unit's
/// `METERD_CONFIG` points, the database where its `METERD_DB` points (a directory the unit may
/// write), and a config naming the key file the recipe installs — so the daemon, started as the
/// unit starts it with nothing else in its environment, has its key and that database.
#[test]
fn install_recipe_matches_the_unit() {
    let unit = unit();
    let lines = recipe("<!-- recipe:install -->");
    let init = lines.iter().find(|l| l.split_whitespace().any(|w| w == "init")).unwrap();
    let config = &unit["Environment:METERD_CONFIG"];
    let db = &unit["Environment:METERD_DB"];
    assert_eq!(flag(init, "--config"), config, "README init writes the config elsewhere than the unit reads it");
    assert_eq!(flag(init, "--db"), db, "README init creates the database elsewhere than the unit opens it");
    let db_dir = Path::new(db).parent().unwrap().display().to_string();
    assert_eq!(unit["ReadWritePaths"], db_dir, "the unit cannot write the database directory");
    assert_eq!(format!("/var/lib/{}", unit["StateDirectory"]), db_dir);
    let exec: Vec<&str> = unit["ExecStart"].split_whitespace().collect();
    assert_eq!(exec, [BIN, "run"]);
    assert!(lines.iter().any(|l| l.starts_with("sudo install") && l.ends_with(BIN)), "README installs the binary elsewhere");
    assert!(init.starts_with(&format!("sudo {BIN} ")));
    assert!(unit["ExecReload"].contains("-HUP"), "systemctl reload must send SIGHUP (key rotation)");

    let root = Root::new();
    let key = root.install();
    assert!(root.at(db).is_file(), "init did not create the database at METERD_DB");
    assert!(!root.at("/etc/meterd/meterd.db").exists(), "init created a database beside the config");
    let cfg = meterd::config::Config::load(&root.at(config)).unwrap();
    assert_eq!(cfg.upload.key_file.as_deref(), Some(key.as_path()), "the config does not name the installed key file");

    // As the unit runs it: its Environment lines only. `upload` (nothing to send) needs the key.
    let env: Vec<(&str, String)> = unit.iter().filter_map(|(k, v)| k.strip_prefix("Environment:").map(|n| (n, root.moved(v)))).collect();
    let out = root.sh(&format!("{} upload", root.moved(BIN)), &env);
    assert!(out.status.success(), "upload under the unit's environment: {}", String::from_utf8_lossy(&out.stderr));

    let mut run = Command::new(root.moved(exec[0]));
    run.args(&exec[1..]).args(["--listen", "127.0.0.1:0"]).env_clear().env("RUST_LOG", "info").current_dir("/");
    for (k, v) in &env {
        run.env(k, v);
    }
    let mut daemon = Daemon::spawn_announced(run, root.path(), RUN_BANNER);
    // SIGTERM is safe at once: the handler is registered before the address is printed. No
    // wait for the uploader's first line (the "upload is off" check below looks for it): a
    // clean stop joins the upload loop, whose first act is that line, before the exit.
    daemon.terminate();
    let status = daemon.wait_exit(std::time::Duration::from_secs(60));
    let stderr = daemon.finish();
    assert_eq!(status, Some(0), "{stderr}");
    assert!(!stderr.contains("upload is off"), "the daemon found no key: {stderr}");
    assert!(!stderr.contains(KEY));
    assert_eq!(std::fs::read_dir(root.at("/etc/meterd")).unwrap().count(), 2, "only meterd.toml and isv.key in /etc/meterd");
}

/// The README's crontab line, run as cron runs it (`/bin/sh -c`, `PATH=/usr/bin:/bin`, no
/// `METERD_*`, `$HOME` as the directory) after the install recipe, against `meterd mock-store`
/// on loopback: it seals and delivers.
#[test]
fn cron_line_runs_under_crons_environment() {
    let root = Root::new();
    root.install();
    let lines = recipe("<!-- recipe:cron");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let command = lines[0].splitn(6, ' ').nth(5).expect("five time fields, then the command");
    assert!(lines[0].starts_with("*/5 * * * * "), "{lines:?}");

    let ledger = root.path().join("billed.jsonl");
    let mut mock = Command::new(super::util::bin());
    mock.args(["mock-store", "--listen", "127.0.0.1:0", "--key-env", "OPS_MOCK_KEY", "--ledger"])
        .arg(&ledger)
        .env("OPS_MOCK_KEY", KEY)
        .env_remove("RUST_LOG");
    let mock = Daemon::spawn_announced(mock, root.path(), MOCK_BANNER);
    let endpoint = mock.url();

    let config = root.at("/etc/meterd/meterd.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("endpoint = \"https://mkt.myhuaweicloud.com\"", &format!("endpoint = {endpoint:?}"));
    std::fs::write(&config, text).unwrap();

    let db = root.at("/var/lib/meterd/meterd.db");
    let meterd = |args: &[&str], stdin: &str| {
        let mut c = Command::new(super::util::bin());
        c.arg("--config").arg(&config).arg("--db").arg(&db).args(args).env_clear().env("PATH", "/usr/bin:/bin");
        let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "meterd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let now = chrono::Utc::now();
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    meterd(&["instance", "add", INSTANCE, "--plan", "calls", "--start", &fmt(now - chrono::Duration::days(2))], "");
    let event =
        format!(r#"{{"id":"cron-1","instance_id":"{INSTANCE}","quantity":"3","time":"{}"}}"#, fmt(now - chrono::Duration::hours(3)));
    meterd(&["ingest", "-"], &event);

    let out = root.sh(&root.moved(command), &[]);
    assert!(
        out.status.success(),
        "the cron line failed under cron's environment:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let billed = std::fs::read_to_string(&ledger).unwrap_or_default();
    assert!(billed.contains(INSTANCE), "nothing billed: {billed:?}");
    let status: serde_json::Value = serde_json::from_str(&meterd(&["status", "--format", "json"], "")).unwrap();
    assert_eq!(status["backlog"], 0, "{status}");
    assert!(status["records"]["delivered"].as_u64().unwrap_or(0) >= 1, "{status}");
}
