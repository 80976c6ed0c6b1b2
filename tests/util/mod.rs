//! Shared harness for the integration tests (ripgrep style), the one every suite uses: a
//! temporary directory with a `meterd.toml` and a database ([`Env`]), helpers that run the real
//! `meterd` binary with `--config` and `--db` ([`Run`]), child processes killed on drop — a
//! `meterd run` on `127.0.0.1:0`, the `meterd mock-store` binary, any command a test ends
//! itself ([`Daemon`]) — a small blocking HTTP client, read access to the store so tests can
//! check what was really stored, and one poll loop for waits on a condition ([`wait_for`]).
//! Its parts: the library door ([`library`]: the store, seals and a long-lived collector in
//! this process), the upload side ([`upload`]), the in-process mock store ([`mock`]), shared
//! plan blocks ([`plans`]), the backend choice ([`backend`]) and PostgreSQL cluster ([`pg`]).
//!
//! **Backend.** The database is a SQLite file in the temp dir, or — in the `<suite>_pg` test
//! binaries — a fresh database of the shared private PostgreSQL cluster, chosen at compile time
//! ([`backend`]); `Env::db` is then its `postgres://` URL, which every door takes as `--db`.
//!
//! Time is controlled, never slept: commands get `--now NOW` (the daemon its hidden `--now`),
//! so every event time in the tests is relative to [`NOW`].
//!
//! HTTP: the crate's own `reqwest` (async, rustls) behind a blocking facade that owns a
//! current-thread tokio runtime, so no extra dependency or feature is needed and each posting
//! thread can have its own client.

#![allow(dead_code)]

pub mod backend;
pub mod cases;
pub mod db;
pub mod event;
pub mod library;
pub mod mock;
pub mod pg;
pub mod plans;
pub mod upload;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

#[allow(unused_imports)]
pub use event::Ev;

/// The instant every test replays; event times are written relative to it.
pub const NOW: &str = "2026-11-23T12:00:00Z";

/// The example config shipped in `fixtures/` (plans `calls`, `storage`, `seats`).
pub const EXAMPLE_CONFIG: &str = include_str!("../../fixtures/meterd.example.toml");

/// The example config with some lines replaced; panics if a line to replace is missing, so a
/// changed fixture cannot silently turn a test into a no-op.
pub fn example_config_with(replace: &[(&str, &str)]) -> String {
    let mut text = EXAMPLE_CONFIG.to_string();
    for (from, to) in replace {
        assert!(text.contains(from), "fixtures/meterd.example.toml no longer contains {from:?}");
        text = text.replace(from, to);
    }
    text
}

/// The example config with its `storage` plan summing GB·h reported by the app (`sum`), as it
/// did before `weighted_sum`: for tests about sums over day windows, not about aggregations.
pub fn example_config_storage_sum() -> String {
    example_config_with(&[("aggregation = \"weighted_sum\"\n", "")])
}

/// A temporary directory holding `meterd.toml` and `meterd.db` (on PostgreSQL `db` is the URL
/// of a fresh database instead, see [`backend`]).
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub db: PathBuf,
}

/// Small batch sizes for the binary under test (see `meterd::faults`).
pub const FOLD_EVENTS: &str = "37";
pub const FLUSH_EVENTS: &str = "101";

/// The same for a collector started in this test process: an option of that collector,
/// never the test process's environment (tests run in parallel threads).
pub fn small_tuning() -> meterd::Tuning {
    meterd::Tuning::every(FOLD_EVENTS.parse().expect("a number"), FLUSH_EVENTS.parse().expect("a number"))
}

impl Env {
    /// An environment with the example config.
    pub fn new() -> Env {
        Env::with_config(EXAMPLE_CONFIG)
    }

    pub fn with_config(toml: &str) -> Env {
        let dir = tempfile::Builder::new().prefix("meterd-test-").tempdir().expect("temp dir");
        let config = dir.path().join("meterd.toml");
        // On PostgreSQL the shortest sealer lease, so that a one-shot command after a killed
        // daemon or run waits out the dead holder's lease in seconds ([`Env::run`]).
        let toml = if backend::PG { toml.replacen("lease = \"15s\"", "lease = \"3s\"", 1) } else { toml.to_owned() };
        std::fs::write(&config, toml).expect("write config");
        let db = backend::new_db(dir.path(), "meterd.db");
        Env { dir, config, db }
    }

    /// The parsed config, as the binary sees it.
    pub fn cfg(&self) -> Arc<meterd::config::Config> {
        Arc::new(meterd::config::Config::load(&self.config).expect("config parses"))
    }

    /// `meterd --config … --db …` with a clean environment and the temp dir as cwd.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("--config").arg(&self.config).arg("--db").arg(&self.db).current_dir(self.dir.path());
        c.env_remove("METERD_CONFIG").env_remove("METERD_DB").env_remove("METERD_ISV_KEY").env("RUST_LOG", "warn");
        // Fold window totals and flush dedupe keys every few dozen events (not every ~100k), so
        // that every test crosses those boundaries, mid-request too.
        c.env("METERD_FOLD_EVENTS", FOLD_EVENTS).env("METERD_FLUSH_EVENTS", FLUSH_EVENTS);
        c
    }

    /// [`Env::cmd`] run through a wrapper command (e.g. `setpriv --reuid=nobody …`), which
    /// gets the binary, its arguments and its environment; `cmd()` itself for an empty wrapper.
    pub fn cmd_wrapped(&self, wrapper: &[&str]) -> Command {
        let inner = self.cmd();
        let Some((program, rest)) = wrapper.split_first() else { return inner };
        let mut cmd = Command::new(program);
        cmd.args(rest).arg(inner.get_program()).args(inner.get_args()).current_dir(self.dir.path());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd
    }

    /// Runs a command to completion with stdin closed.
    ///
    /// On PostgreSQL a one-shot `seal`/`upload` refused because another process holds the
    /// sealer lease (exit 4: a daemon or run the test killed keeps it until it expires) is
    /// rerun until that lease ends, at most 10 s (the config's lease is 3 s there, see
    /// [`Env::with_config`]), as an operator's rerun would be. SQLite has no lease.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_waiting_out_lease(
            || Run::from(self.cmd().args(args).stdin(Stdio::null()).output().expect("spawn meterd")),
            |r| (r.code, r.stderr.clone()),
        )
    }

    /// Runs `once` again while it reports exit 4 for a held sealer lease on PostgreSQL (see
    /// [`Env::run`]); `code_and_stderr` reads the outcome.
    pub fn run_waiting_out_lease<T>(&self, mut once: impl FnMut() -> T, code_and_stderr: impl Fn(&T) -> (i32, String)) -> T {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let out = once();
            let (code, stderr) = code_and_stderr(&out);
            if !(backend::PG && code == 4 && stderr.contains("holds the sealer lease") && std::time::Instant::now() < deadline) {
                return out;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Runs a command feeding `stdin`.
    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut child =
            self.cmd().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn meterd");
        let mut input = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || input.write_all(&data));
        let out = child.wait_with_output().expect("wait meterd");
        // A command that refuses before reading its input (a configuration error, exit 2) closes
        // the pipe: that is its answer, not a failure of the test's writer.
        match writer.join().expect("stdin writer") {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            r => r.expect("write stdin"),
        }
        Run::from(out)
    }

    /// Writes `body` to a file in the temp dir and runs `meterd ingest --now NOW FILE`.
    pub fn ingest_file(&self, name: &str, body: &[u8]) -> Run {
        let path = self.dir.path().join(name);
        std::fs::write(&path, body).expect("write events file");
        self.run(&["ingest", "--now", NOW, path.to_str().expect("utf-8 path")])
    }

    /// `meterd instance add`, asserting success.
    pub fn add_instance(&self, id: &str, plan: &str, start: &str) {
        self.run(&["instance", "add", id, "--plan", plan, "--start", start]).success();
    }

    /// `meterd instance release`, asserting success.
    pub fn release_instance(&self, id: &str, at: &str) {
        self.run(&["instance", "release", id, "--at", at]).success();
    }

    /// Registers the instances the event tables refer to (see [`cases`]).
    pub fn add_case_instances(&self) {
        for (id, plan, start) in cases::INSTANCES {
            self.add_instance(id, plan, start);
        }
        for (id, at) in cases::RELEASES {
            self.release_instance(id, at);
        }
    }

    /// Starts `meterd run --listen 127.0.0.1:0 --now NOW`.
    pub fn daemon(&self) -> Daemon {
        self.daemon_with(&[], &[])
    }

    /// Starts the daemon with extra arguments and environment variables.
    pub fn daemon_with(&self, args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        Daemon::start(self, NOW, args, envs, |_| {})
    }

    /// Starts the daemon with a last change to its command (e.g. a resource limit set in
    /// `pre_exec`).
    pub fn daemon_tweaked(&self, args: &[&str], envs: &[(&str, &str)], tweak: impl FnOnce(&mut Command)) -> Daemon {
        Daemon::start(self, NOW, args, envs, tweak)
    }

    /// Starts the daemon with its clock fixed at `now`.
    pub fn daemon_at(&self, now: &str, args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        Daemon::start(self, now, args, envs, |_| {})
    }

    /// Starts the daemon under a wrapper command (e.g. `setpriv --reuid=nobody …`), which
    /// gets the binary and its arguments.
    pub fn daemon_wrapped(&self, wrapper: &[&str], args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        Daemon::start_wrapped(self, NOW, wrapper, args, envs, |_| {})
    }

    /// Read access to the database on either backend (the daemon may be running).
    pub fn db(&self) -> db::Db {
        db::Db::open(&self.db)
    }

    /// Whether meterd created its store here: the SQLite file exists, or the PostgreSQL
    /// database holds meterd's schema table (the database itself is made empty by the harness).
    pub fn store_created(&self) -> bool {
        if backend::PG {
            self.db().one::<i64>("SELECT count(*) FROM information_schema.tables WHERE table_name = 'meterd_schema'", &[]) > 0
        } else {
            self.db.exists()
        }
    }

    /// An in-process collector on this environment's database (the library door).
    pub fn collector(&self) -> meterd::collector::Collector {
        meterd::collector::Collector::builder(&self.db, self.cfg()).tuning(small_tuning()).start().expect("collector starts")
    }
}

/// The binary under test: cargo's, or `METERD_TEST_BIN` when set — a private copy, for when
/// several worktrees share one target directory and another build may replace
/// `target/debug/meterd` while the tests run.
pub fn bin() -> PathBuf {
    std::env::var_os("METERD_TEST_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_meterd")))
}

/// The outcome of one finished command.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().expect("exited normally"),
            stdout: String::from_utf8(o.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(o.stderr).expect("utf-8 stderr"),
        }
    }
}

impl Run {
    pub fn success(&self) -> &Run {
        assert_eq!(self.code, 0, "meterd failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    pub fn code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit code:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    /// [`Run::code`] taking and giving back the run, to chain off a temporary
    /// (`env.meterd(…).expect(0).stdout`).
    pub fn expect(self, code: i32) -> Run {
        self.code(code);
        self
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr: {}", self.stdout, self.stderr))
    }

    /// The upload report `meterd upload` prints as its first stdout line.
    pub fn report(&self) -> Value {
        let line = self.stdout.lines().next().unwrap_or_else(|| panic!("no report on stdout: {self:?}"));
        serde_json::from_str(line).unwrap_or_else(|e| panic!("report is not JSON ({e}): {self:?}"))
    }
}

/// A child process of the test: a `meterd run` daemon (the usual case, [`Env::daemon`]), the
/// `meterd mock-store` binary, or any command a test must be able to kill at a point of its
/// choosing (a one-shot `meterd upload` SIGKILLed mid-run, [`Daemon::spawn`]). Its stderr goes
/// to a file in the test's directory ([`Daemon::stderr`]); it is killed (SIGKILL) and reaped on
/// drop.
///
/// On PostgreSQL a `meterd run` is first asked to stop on drop (SIGTERM, up to 10 s), since
/// only a clean stop hands the sealer lease back at once: a killed daemon's lease blocks a
/// later one-shot `meterd seal` (exit 4) until it expires, which a test that merely ends a
/// daemon does not mean to test ([`Daemon::kill`] stays SIGKILL for the tests that do).
pub struct Daemon {
    child: Child,
    /// `HOST:PORT` from the process's announcement line; empty for a process that announces
    /// nothing ([`Daemon::spawn`]).
    pub addr: String,
    stderr: PathBuf,
    /// Whether drop asks first on PostgreSQL (a `meterd run`, which may hold the lease).
    graceful: bool,
}

/// The line `meterd run` prints on stdout once it listens, before `HOST:PORT`.
pub const RUN_BANNER: &str = "meterd listening on http://";
/// The line `meterd mock-store` prints on stdout once it listens, before `HOST:PORT`.
pub const MOCK_BANNER: &str = "mock-store listening on http://";

impl Daemon {
    fn start(env: &Env, now: &str, args: &[&str], envs: &[(&str, &str)], tweak: impl FnOnce(&mut Command)) -> Daemon {
        Daemon::start_wrapped(env, now, &[], args, envs, tweak)
    }

    fn start_wrapped(
        env: &Env,
        now: &str,
        wrapper: &[&str],
        args: &[&str],
        envs: &[(&str, &str)],
        tweak: impl FnOnce(&mut Command),
    ) -> Daemon {
        let mut cmd = env.cmd_wrapped(wrapper);
        cmd.args(["run", "--listen", "127.0.0.1:0", "--now", now]).args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        tweak(&mut cmd);
        let mut daemon = Daemon::spawn_announced(cmd, env.dir.path(), RUN_BANNER);
        daemon.graceful = true;
        daemon
    }

    /// Starts `cmd` (stdin closed, stdout discarded, stderr into `dir/child-N.stderr`) and
    /// returns at once: for a command that announces nothing, which the test ends itself.
    pub fn spawn(mut cmd: Command, dir: &Path) -> Daemon {
        let stderr = Daemon::log_file(dir, "child");
        let log = std::fs::File::create(&stderr).expect("child log file");
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().expect("spawn child process");
        Daemon { child, addr: String::new(), stderr, graceful: false }
    }

    /// Starts `cmd` (stdin closed, stderr into a file in `dir`) and blocks until its first
    /// stdout line, which must be `banner` followed by `HOST:PORT` (see [`RUN_BANNER`],
    /// [`MOCK_BANNER`]); panics with the process's stderr when it is not.
    pub fn spawn_announced(mut cmd: Command, dir: &Path, banner: &str) -> Daemon {
        let stderr = Daemon::log_file(dir, "daemon");
        let log = std::fs::File::create(&stderr).expect("daemon log file");
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log).spawn().expect("spawn daemon");
        let mut line = String::new();
        // Blocks until the process prints its address, or returns 0 bytes if it exits first.
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read daemon stdout");
        let mut daemon = Daemon { child, addr: String::new(), stderr, graceful: false };
        match line.trim().strip_prefix(banner) {
            Some(addr) => daemon.addr = addr.to_string(),
            None => panic!("{:?} did not start: stdout {line:?}; stderr:\n{}", cmd.get_program(), daemon.stderr()),
        }
        daemon
    }

    /// `dir/{kind}-N.stderr`, N counting every process this test binary started.
    fn log_file(dir: &Path, kind: &str) -> PathBuf {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        dir.join(format!("{kind}-{n}.stderr"))
    }

    /// `http://HOST:PORT` of an announced process (e.g. the mock store's `upload.endpoint`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the daemon logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn http(&self) -> Http {
        Http::new(&self.addr, None)
    }

    pub fn http_with_token(&self, token: &str) -> Http {
        Http::new(&self.addr, Some(token.to_string()))
    }

    /// SIGKILL (on unix `Child::kill` sends SIGKILL) and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (through `kill(1)`, to need no libc binding).
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Sends a signal through `kill(1)`: `sig` as it takes it (`-HUP`, `-STOP`, `-CONT`, …).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.pid().to_string()]).status().expect("run kill").success();
        assert!(ok, "kill {sig} failed");
    }

    /// Whether the process has exited (it is reaped then).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// SIGKILL, reap, and what it logged.
    pub fn finish(mut self) -> String {
        self.kill();
        self.stderr()
    }

    /// Waits up to `limit` for the process to exit; its exit code, or `None` if still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.graceful && backend::PG && matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
            let _ = self.wait_exit(Duration::from_secs(10));
        }
        self.kill();
    }
}

/// A blocking HTTP/1.1 client for one daemon.
pub struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Every response header (e.g. `Retry-After` on a 503).
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("HTTP {} body is not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts 200 and returns the JSON body.
    pub fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "expected 200, got {}: {}", self.status, self.text());
        self.json()
    }

    /// Asserts 201 Created and returns the JSON body.
    pub fn created(&self) -> Value {
        assert_eq!(self.status, 201, "expected 201, got {}: {}", self.status, self.text());
        self.json()
    }
}

impl Http {
    pub fn new(addr: &str, token: Option<String>) -> Http {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("client");
        Http { rt, client, base: format!("http://{addr}"), token }
    }

    /// POSTs `body`; `Err` only for transport failures (refused, reset, timeout).
    pub fn try_post(&self, path: &str, body: impl Into<Vec<u8>>) -> Result<Reply, reqwest::Error> {
        let req = self.client.post(format!("{}{path}", self.base)).body(body.into());
        self.send(req)
    }

    pub fn post(&self, path: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.try_post(path, body).unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.try_get(path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// GETs `path`; `Err` only for transport failures (refused, reset, timeout).
    pub fn try_get(&self, path: &str) -> Result<Reply, reqwest::Error> {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req)
    }

    /// POSTs events to `/v1/events`.
    pub fn events(&self, body: impl Into<Vec<u8>>) -> Reply {
        self.post("/v1/events", body)
    }

    fn send(&self, mut req: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        self.rt.block_on(async {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?.to_vec();
            Ok(Reply { status, content_type, body, headers })
        })
    }
}

/// A JSON array body of events.
pub fn array(events: &[String]) -> Vec<u8> {
    format!("[{}]", events.join(",")).into_bytes()
}

/// An NDJSON body of events.
pub fn ndjson(events: &[String]) -> Vec<u8> {
    let mut s = events.join("\n");
    s.push('\n');
    s.into_bytes()
}

/// The path of a file in the repository.
/// `value` validates against `schemas/NAME` (a failure lists every violation).
pub fn schema_valid(name: &str, value: &serde_json::Value) {
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo_file(&format!("schemas/{name}"))).expect("read schema")).expect("schema JSON");
    let v = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = v.iter_errors(value).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{value}");
}

pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Parses an RFC 3339 time to nanoseconds (UTC), the store's event time.
pub fn ns(t: &str) -> i64 {
    meterd::model::parse_rfc3339(t).expect("test time").0
}

/// [`NOW`] as the library's timestamp.
pub fn now() -> meterd::model::Timestamp {
    meterd::model::parse_rfc3339(NOW).expect("NOW")
}

/// Every ledger entry appears once by `metering_sn` and once by (instance, begin, end).
pub fn assert_billed_once(entries: &[meterd::mockstore::LedgerEntry]) {
    let mut sns = std::collections::HashSet::new();
    let mut periods = std::collections::HashSet::new();
    for e in entries {
        let r = &e.record;
        assert!(sns.insert(r.metering_sn.clone()), "metering_sn {} billed twice", r.metering_sn);
        assert!(
            periods.insert((r.instance_id.clone(), r.begin_time.clone(), r.end_time.clone())),
            "{} {}–{} billed twice",
            r.instance_id,
            r.begin_time,
            r.end_time
        );
    }
}

/// How long a poll waits before the test gives up when the test has no tighter bound of its own
/// (generous: CI machines stall).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `timeout`. For waits
/// on a condition (a counter, a log line, a state) instead of a fixed sleep: the one poll loop
/// of the harness.
pub fn wait_for(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    wait_for_showing(what, timeout, String::new, cond)
}

/// [`wait_for`], adding `context()` (e.g. the logs of the daemons involved) to the panic
/// message when it gives up.
pub fn wait_for_showing(what: &str, timeout: Duration, context: impl FnOnce() -> String, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
