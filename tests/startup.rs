//! Start-up validation (issue 15): every configuration problem is exit code 2, with a message
//! naming the key to fix, in every command that reads the setting — and before anything is
//! served, scheduled or created. Values are checked when the config loads (so every command
//! refuses them); what needs the environment (the token variable, the key file, the database
//! directory, a public listen address) is checked by the commands that use it.

#[path = "util/mod.rs"]
mod util;

use std::process::Stdio;
use util::{example_config_with, Env, Run, NOW};

/// Commands that load the config, with arguments that would otherwise work.
const COMMANDS: &[&[&str]] = &[
    &["run", "--listen", "127.0.0.1:0"],
    &["upload", "--now", NOW],
    &["seal", "--now", NOW],
    &["ingest", "--now", NOW, "-"],
    &["status"],
    &["preview", "--now", NOW],
    &["instance", "list"],
    &["rejected"],
    &["package", "list"],
];

/// One bad value per row: the example config's line, its replacement, the key the message names.
const BAD_VALUES: &[(&str, &str, &str)] = &[
    ("max_attempts = 8", "max_attempts = 0", "upload.max_attempts"),
    ("timeout = \"30s\"", "timeout = \"0s\"", "upload.timeout"),
    ("endpoint = \"https://mkt.myhuaweicloud.com\"", "endpoint = \"mkt.myhuaweicloud.com\"", "upload.endpoint"),
    ("endpoint = \"https://mkt.myhuaweicloud.com\"", "endpoint = \"http://mkt.myhuaweicloud.com\"", "upload.endpoint"),
    ("# fallback = \"https://mkt.myhuaweicloud.cn\"", "fallback = \"http://10.1.2.3:80\"", "upload.fallback"),
    ("fallback_after = 3", "fallback_after = 0", "upload.fallback_after"),
    ("batch_size = 1000", "batch_size = 0", "upload.batch_size"),
    ("backoff_base = \"200ms\"", "backoff_base = \"0ms\"", "upload.backoff_base"),
    ("listen = \"127.0.0.1:9464\"", "listen = \"9464\"", "server.listen"),
    ("listen = \"127.0.0.1:9464\"", "listen = \"meterd.internal:9464\"", "server.listen"),
    ("# token_env = \"METERD_TOKEN\"", "token_env = \"\"", "server.token_env"),
    ("max_body = 16777216", "max_body = 0", "server.max_body"),
    ("header_timeout = \"10s\"", "header_timeout = \"0s\"", "server.header_timeout"),
    ("body_timeout = \"60s\"", "body_timeout = \"0s\"", "server.body_timeout"),
    ("idle_timeout = \"60s\"", "idle_timeout = \"0ms\"", "server.idle_timeout"),
    ("max_connections = 1024", "max_connections = 0", "server.max_connections"),
    ("max_inflight_bytes = 67108864", "max_inflight_bytes = 1024", "server.max_inflight_bytes"),
    ("max_future = \"5m\"", "max_future = \"8h\"", "collector.max_future"),
    ("max_age = \"20d\"", "max_age = \"0s\"", "collector.max_age"),
    ("grace = \"5m\"", "grace = \"15m\"", "seal.grace"),
    ("seal = \"0 */5 * * * *\"", "seal = \"every 5 minutes\"", "schedule.seal"),
];

/// Runs `cmd` to completion, or kills it after 10 s (a daemon that started instead of
/// refusing): then its exit code is -1.
fn bounded(cmd: &mut std::process::Command) -> Run {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn meterd");
    let start = std::time::Instant::now();
    let mut killed = false;
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            killed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("wait meterd");
    let mut run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    if killed {
        run.code = -1;
    }
    run
}

fn assert_config_error(run: &Run, key: &str, what: &str) {
    assert_eq!(run.code, 2, "{what}: expected exit 2 naming `{key}`:\nstdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert!(run.stderr.contains(key), "{what}: the message does not name `{key}`:\n{}", run.stderr);
    assert!(!run.stdout.contains("listening"), "{what}: the daemon served before refusing:\n{}", run.stdout);
}

#[test]
fn every_bad_value_is_exit_2_naming_its_key_in_every_command() {
    for (from, to, key) in BAD_VALUES {
        let env = Env::with_config(&example_config_with(&[(from, to)]));
        for args in COMMANDS {
            let run = bounded(env.cmd().args(*args).env("METERD_ISV_KEY", "k"));
            assert_config_error(&run, key, &format!("{to} / meterd {}", args.join(" ")));
        }
        assert!(!env.db.exists(), "{to}: a command created the database before refusing the config");
    }
}

/// `run` with the example config plus `replace`, extra environment, and the listen flag.
fn run_with(env: &Env, listen: &str, envs: &[(&str, &str)]) -> Run {
    let mut cmd = env.cmd();
    cmd.args(["run", "--now", NOW, "--listen", listen]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    bounded(&mut cmd)
}

/// A listen address already in use is a configuration error for `run` and `mock-store` alike
/// (exit 2), naming the port and the flag to change; so is `mock-store` without its key
/// variable, naming the variable.
#[test]
fn a_port_in_use_and_a_missing_mock_key_are_configuration_errors_that_say_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let port = taken.local_addr().unwrap().port();
    let env = Env::new();
    let run = run_with(&env, &addr, &[]);
    assert_config_error(&run, &format!("port {port} is already in use"), "run on a port in use");
    assert!(run.stderr.contains("--listen"), "{}", run.stderr);

    let mock = |listen: &str, key: Option<&str>| {
        let mut cmd = std::process::Command::new(util::bin());
        cmd.args(["mock-store", "--listen", listen, "--key-env", "METERD_T23_MOCK_KEY"]).env_remove("METERD_T23_MOCK_KEY");
        if let Some(k) = key {
            cmd.env("METERD_T23_MOCK_KEY", k);
        }
        bounded(&mut cmd)
    };
    let unset = mock("127.0.0.1:0", None);
    assert_config_error(&unset, "METERD_T23_MOCK_KEY", "mock-store without its key variable");
    assert!(unset.stderr.contains("export"), "says what to do: {}", unset.stderr);
    let in_use = mock(&addr, Some("k"));
    assert_config_error(&in_use, &format!("port {port} is already in use"), "mock-store on a port in use");
    assert!(in_use.stderr.contains("--listen"), "{}", in_use.stderr);
    drop(taken);
}

#[test]
fn the_token_variable_must_be_set_non_empty_and_sendable() {
    let env = Env::with_config(&example_config_with(&[("# token_env = \"METERD_TOKEN\"", "token_env = \"METERD_T15_TOKEN\"")]));
    for (value, what) in [(None, "unset"), (Some(""), "empty"), (Some("   "), "blank"), (Some(" tok "), "padded")] {
        let mut envs = vec![];
        if let Some(v) = value {
            envs.push(("METERD_T15_TOKEN", v));
        }
        let run = run_with(&env, "127.0.0.1:0", &envs);
        assert_config_error(&run, "server.token_env", what);
        assert!(run.stderr.contains("METERD_T15_TOKEN"), "{what}: {}", run.stderr);
    }
}

#[test]
fn a_public_address_without_a_token_is_refused_unless_allowed() {
    let env = Env::new();
    for listen in ["0.0.0.0:0", "[::]:0"] {
        assert_config_error(&run_with(&env, listen, &[]), "server.allow_public_without_token", listen);
    }
    assert_config_error(&run_with(&env, "all-interfaces:0", &[]), "--listen", "bad flag");
    // With a token, or with the explicit setting (and a warning), the daemon starts.
    let tokened = Env::with_config(&example_config_with(&[
        ("# token_env = \"METERD_TOKEN\"", "token_env = \"METERD_T15_TOKEN\""),
        ("listen = \"127.0.0.1:9464\"", "listen = \"0.0.0.0:0\""),
    ]));
    let (mut child, _) = start_public(&tokened, &[("METERD_T15_TOKEN", "t")]);
    let _ = child.kill();
    let _ = child.wait();
    let allowed = Env::with_config(&example_config_with(&[
        ("allow_public_without_token = false", "allow_public_without_token = true"),
        ("listen = \"127.0.0.1:9464\"", "listen = \"0.0.0.0:0\""),
    ]));
    let (mut child, log) = start_public(&allowed, &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let warned = || std::fs::read_to_string(&log).unwrap_or_default().contains("without a bearer token");
    while !warned() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned(), "no warning:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
}

/// Starts `meterd run` on the config's (public) listen address; waits for it to listen.
fn start_public(env: &Env, envs: &[(&str, &str)]) -> (std::process::Child, std::path::PathBuf) {
    use std::io::BufRead;
    let log = env.dir.path().join("public.stderr");
    let mut cmd = env.cmd();
    cmd.args(["run", "--now", NOW]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("listening on http://0.0.0.0:"), "did not start: {line:?}\n{}", std::fs::read_to_string(&log).unwrap());
    (child, log)
}

#[test]
fn an_unreadable_or_empty_key_file_is_exit_2_for_run_and_upload() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.key");
    std::fs::write(&empty, "\n").unwrap();
    let missing = dir.path().join("missing.key");
    // A directory cannot be read as a file, even by root (who ignores permissions).
    for path in [missing.as_path(), empty.as_path(), dir.path()] {
        let line = format!("key_file = {:?}", path.to_str().unwrap());
        let env = Env::with_config(&example_config_with(&[("# key_file = \"/etc/meterd/isv.key\"", &line)]));
        assert_config_error(&run_with(&env, "127.0.0.1:0", &[]), "upload.key_file", &line);
        let upload = bounded(env.cmd().args(["upload", "--now", NOW]));
        assert_config_error(&upload, "upload.key_file", &line);
    }
}

#[test]
fn a_missing_database_directory_is_named_as_such() {
    let env = Env::new();
    let gone = env.dir.path().join("not-mounted").join("meterd.db");
    for args in COMMANDS {
        let mut cmd = std::process::Command::new(util::bin());
        cmd.arg("--config").arg(&env.config).arg("--db").arg(&gone).current_dir(env.dir.path());
        cmd.env_remove("METERD_DB").args(*args).env("METERD_ISV_KEY", "k");
        let run = bounded(&mut cmd);
        let what = format!("meterd {}", args.join(" "));
        assert_config_error(&run, "database directory", &what);
        assert!(run.stderr.contains("not-mounted"), "{what}: {}", run.stderr);
    }
    assert!(!gone.parent().unwrap().exists(), "nothing created the directory");
}

/// Under `--log-format json` the error that ends the process is a JSON line too (a log
/// collector reads stderr as JSON lines), printed even when `RUST_LOG` silences the logs; text
/// logs to a pipe carry no colour escapes.
#[test]
fn the_final_error_follows_the_log_format() {
    let (from, to, key) = BAD_VALUES[0];
    let env = Env::with_config(&example_config_with(&[(from, to)]));
    for filter in ["info", "off"] {
        let run = bounded(env.cmd().args(["--log-format", "json", "status"]).env("RUST_LOG", filter));
        assert_config_error(&run, key, "json log format");
        let last = run.stderr.lines().last().expect("a line on stderr");
        let line: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {last}"));
        assert_eq!(line["level"], "ERROR", "{line}");
        assert_eq!(line["fields"]["exit_code"], 2, "{line}");
        assert!(line["fields"]["message"].as_str().unwrap().contains(key), "{line}");
    }
    let run = bounded(env.cmd().args(["status"]));
    assert!(run.stderr.starts_with("meterd: ") && !run.stderr.contains('\u{1b}'), "{}", run.stderr);
    // Logs (not only the final line) written to a pipe have no ANSI escapes: a zone other than
    // the store's logs a warning.
    let ok = Env::with_config(&example_config_with(&[("timezone = \"+08:00\"", "timezone = \"+00:00\"")]));
    let run = bounded(ok.cmd().args(["status"]));
    assert!(run.stderr.contains("WARN") && run.stderr.contains("Beijing time"), "a warning was expected: {run:?}");
    assert!(!run.stderr.contains('\u{1b}'), "colour escapes in piped logs: {}", run.stderr);
}
