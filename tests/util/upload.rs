//! The upload side of the one integration-test harness ([`Env`]): an environment (temp dir,
//! config file, real store — SQLite or, in `_pg` targets, PostgreSQL — with sealed records) built
//! by [`Env::for_upload`], the mock store in-process on its own runtime or as the real binary, the
//! real `meterd` binary, and the checks every test wants (billed exactly once, byte-identical
//! resends).
//!
//! Times: everything is replayed at [`NOW`]. Records begin within the last day of it, so the
//! 21-day rule never bites unless a test wants it to; the mock's "now" is pinned to the same
//! instant. Request `ts` headers always use the real clock (the mock checks them against it).

#![allow(dead_code)]

use super::db::Db;
use super::{Daemon, Env, Run, MOCK_BANNER};
use meterd::collector::EventInput;
use meterd::config::{Config, Secret};
use meterd::mockstore::{LedgerEntry, MockConfig};
use meterd::model::{Quantity, Timestamp, UsageRecord};
use meterd::store::{instances, records, RecordRow};
use meterd::upload::run::{upload, UploadReport};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// The interconnection key. Distinctive, so a grep for it cannot match by accident.
pub const KEY: &str = "KEY-upl0ad-t3sts-5e1f9d2c7b4a";
/// A key the store does not know (MKT.0102); must never be printed either.
pub const WRONG_KEY: &str = "WRONG-k3y-a9b8c7d6e5f4-not-this-one";
// The replayed "now" of the whole harness: upload `--now`, seal time, the mock's pinned clock.
pub use super::{now, NOW};
pub const PLAN: &str = "calls";

/// The config's plans: the shared `calls` plan at 0.3 per call, windows in Beijing time.
fn plans() -> String {
    format!("\ntimezone = \"+08:00\"\n\n{}", super::plans::calls_plan("0.3"))
}

pub fn key() -> Secret {
    Secret::new(KEY)
}

// ---------------------------------------------------------------------------------------------
// An upload environment: a temp dir with a config file and a database holding sealed records.

/// The `[upload]` settings a test varies; the rest is fixed: fast backoff (10ms..50ms) and a
/// fallback equal to the endpoint (a config file cannot switch the fallback off).
#[derive(Debug, Clone)]
pub struct Upload {
    pub endpoint: String,
    pub batch_size: usize,
    pub key_file: Option<PathBuf>,
    pub max_attempts: u32,
    /// `None`: the endpoint itself.
    pub fallback: Option<String>,
}

impl Upload {
    pub fn to(endpoint: &str) -> Upload {
        Upload { endpoint: endpoint.to_string(), batch_size: 1000, key_file: None, max_attempts: 8, fallback: None }
    }
    pub fn batch_size(mut self, n: usize) -> Upload {
        self.batch_size = n;
        self
    }
    pub fn fallback(mut self, f: &str) -> Upload {
        self.fallback = Some(f.to_string());
        self
    }
    pub fn max_attempts(mut self, n: u32) -> Upload {
        self.max_attempts = n;
        self
    }
    pub fn key_file(mut self, p: &Path) -> Upload {
        self.key_file = Some(p.to_path_buf());
        self
    }
    fn toml(&self) -> String {
        let mut t = format!(
            "[upload]\nendpoint = {e:?}\nfallback = {f:?}\nbatch_size = {}\ntimeout = \"20s\"\nmax_attempts = {}\nbackoff_base = \"10ms\"\nbackoff_cap = \"50ms\"\nfallback_after = 3\n",
            self.batch_size,
            self.max_attempts,
            e = self.endpoint,
            f = self.fallback.as_deref().unwrap_or(&self.endpoint),
        );
        if let Some(k) = &self.key_file {
            t.push_str(&format!("key_file = {:?}\n", k.display().to_string()));
        }
        t
    }
}

impl Env {
    /// An environment for the upload tests: the `calls` plan and an `[upload]` section aimed at
    /// a closed port (tests [`Env::configure`] their own endpoint).
    pub fn for_upload() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db = super::backend::new_db(dir.path(), "meterd.db");
        let config = dir.path().join("meterd.toml");
        let w = Env { dir, db, config };
        w.configure(&Upload::to("http://127.0.0.1:9"));
        w
    }

    /// An upload environment whose database is a copy of `from`'s (taken while no connection
    /// is open).
    pub fn copy_of(from: &Env) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db = super::backend::copy_db(&from.db, dir.path(), "meterd.db");
        let config = dir.path().join("meterd.toml");
        let w = Env { dir, db, config };
        w.configure(&Upload::to("http://127.0.0.1:9"));
        w
    }

    /// Rewrites the config file with these upload settings.
    pub fn configure(&self, up: &Upload) {
        // On PostgreSQL the shortest sealer lease, so that a run after a SIGKILLed one waits
        // out the dead run's lease in seconds (see [`Env::meterd`]).
        let store = if super::backend::PG { "[store]\nlease = \"3s\"\n" } else { "" };
        std::fs::write(&self.config, format!("{}\n{}{store}", plans(), up.toml())).unwrap();
    }

    /// The config as the binary would load it, owned (a test may change it before a library
    /// upload; [`Env::cfg`] shares it instead).
    pub fn cfg_owned(&self) -> Config {
        Config::load(&self.config).unwrap()
    }

    /// Registers `ids` on the `calls` plan, started 30 days before [`NOW`].
    pub fn add_instances(&self, ids: &[String]) {
        let start = now().add_secs(-30 * 86_400);
        self.store()
            .write(|tx| {
                for id in ids {
                    instances::add(tx, id, PLAN, start, start)?;
                }
                Ok(())
            })
            .unwrap();
    }

    /// Ingests `(instance, time)` events through the library collector at `at`; every event is
    /// accepted. Quantities vary with the position so records differ.
    pub fn ingest(&self, events: &[(String, Timestamp)], at: Timestamp) {
        let collector = self.collector();
        let inputs: Vec<EventInput> = events
            .iter()
            .enumerate()
            .map(|(i, (inst, t))| EventInput {
                id: format!("ev-{}-{i}", t.secs()),
                instance_id: inst.clone(),
                quantity: Quantity::parse_event(&format!("{}.{:05}", 1 + i % 9, i % 100_000)).unwrap(),
                time: *t,
                metric: None,
                properties: None,
                quantity_omitted: false,
            })
            .collect();
        let result = collector.ingest_events(inputs, at).unwrap();
        assert!(result.rejected.is_empty(), "{:?}", result.rejected);
        assert_eq!(result.accepted, events.len() as u64);
    }

    /// `instances` × `hours` records: instances `{prefix}-0000…`, one event in each of the
    /// hours 2..=hours+1 before [`NOW`] (all closed at NOW), sealed at NOW.
    pub fn seed(&self, prefix: &str, instances: usize, hours: i64) -> Vec<String> {
        let ids: Vec<String> = (0..instances).map(|i| format!("{prefix}-{i:04}")).collect();
        self.add_instances(&ids);
        let events: Vec<(String, Timestamp)> =
            ids.iter().flat_map(|id| (2..hours + 2).map(move |h| (id.clone(), now().add_secs(-h * 3600 + 600)))).collect();
        self.ingest(&events, now());
        self.seal(now());
        ids
    }

    pub fn records(&self) -> Vec<RecordRow> {
        self.store().read(records::all).unwrap()
    }

    /// Record count by state name.
    pub fn states(&self) -> BTreeMap<String, u64> {
        let counts = self.store().read(records::count_by_state).unwrap();
        counts.into_iter().map(|(s, n)| (s.as_str().to_string(), n)).collect()
    }

    /// Every batch: (id, body, records, state), by id.
    pub fn batches(&self) -> Vec<(i64, Vec<u8>, i64, String)> {
        Db::open(&self.db)
            .rows("SELECT id, body, records, state FROM batches ORDER BY id", &[], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
    }

    /// Attempts counted on each batch, by id.
    pub fn batch_attempts(&self) -> Vec<i64> {
        Db::open(&self.db).rows("SELECT attempts FROM batches ORDER BY id", &[], |r| r.get(0))
    }

    /// The library upload, as `meterd upload --now NOW` runs it.
    pub fn upload_lib(&self, cfg: &Config, key: &Secret) -> UploadReport {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // The store is dropped after the runtime's `block_on`, never inside it (PostgreSQL's
        // blocking client cannot close on a runtime thread).
        let store = Arc::new(Mutex::new(self.store()));
        let report = rt.block_on(upload(store.clone(), &cfg.upload, key, now())).unwrap();
        drop(store);
        report
    }

    /// [`Env::cmd`] with `args`, at the binary's default log level and fold sizes (the upload
    /// tests read its default log lines), then `env` applied.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = self.cmd();
        c.env_remove("RUST_LOG").env_remove("METERD_FOLD_EVENTS").env_remove("METERD_FLUSH_EVENTS");
        c.args(args).envs(env.iter().copied());
        c
    }

    /// Runs the binary to completion with [`Env::command`]'s environment; on PostgreSQL a run
    /// refused because a killed run still holds the sealer lease is rerun until that lease
    /// expires ([`Env::run_waiting_out_lease`], over the 3 s lease [`Env::configure`] sets).
    pub fn meterd(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        self.run_waiting_out_lease(|| Run::from(self.command(args, env).output().unwrap()), |r| (r.code, r.stderr.clone()))
    }
}

// ---------------------------------------------------------------------------------------------
// The mock store in-process, on a runtime of its own so tests stay synchronous and can block
// on the binary while the mock answers.

/// The one in-process mock store of the integration tests (`tests/util/mock.rs`).
#[allow(unused_imports)]
pub use super::mock::Mock;

/// A mock config: the test key, "now" pinned at [`NOW`], request bodies kept.
pub fn mock_config() -> MockConfig {
    super::mock::mock_config(KEY, NOW)
}

/// `meterd mock-store --listen 127.0.0.1:0 --key-env VAR …` as a child process (stderr logged
/// in `dir`); returns it and its endpoint, from its `mock-store listening on http://ADDR` line.
pub fn mock_binary(dir: &Path, extra: &[&str]) -> (Daemon, String) {
    let mut cmd = Command::new(super::bin());
    cmd.args(["mock-store", "--listen", "127.0.0.1:0", "--key-env", "METERD_TEST_MOCK_KEY", "--now", NOW])
        .args(extra)
        .env("METERD_TEST_MOCK_KEY", KEY)
        .env_remove("RUST_LOG")
        .current_dir(dir);
    let mock = Daemon::spawn_announced(cmd, dir, MOCK_BANNER);
    let endpoint = mock.url();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "mock-store announced {endpoint}; stderr: {}", mock.stderr());
    (mock, endpoint)
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// The stored record as the store would receive it.
pub fn record_of(row: &RecordRow) -> UsageRecord {
    serde_json::from_slice(&row.body).unwrap()
}

/// Every record in `expected` was billed exactly once (by serial and by instance + period),
/// with exactly the stored field values, and nothing else was billed.
pub fn assert_billed_once(ledger: &[LedgerEntry], expected: &[RecordRow]) {
    let mut sns = HashSet::new();
    let mut periods = HashSet::new();
    for e in ledger {
        let r = &e.record;
        assert!(sns.insert(r.metering_sn.clone()), "billed twice (serial): {r:?}");
        assert!(periods.insert((r.instance_id.clone(), r.begin_time.clone(), r.end_time.clone())), "billed twice (period): {r:?}");
    }
    let by_sn: BTreeMap<&str, &UsageRecord> = ledger.iter().map(|e| (e.record.metering_sn.as_str(), &e.record)).collect();
    for row in expected {
        let billed = by_sn.get(row.metering_sn.as_str()).unwrap_or_else(|| panic!("never billed: {}", row.metering_sn));
        assert_eq!(**billed, record_of(row), "billed values differ from the sealed record");
    }
    assert_eq!(ledger.len(), expected.len(), "the ledger holds records that were not expected");
}

/// Every request body the mock received is byte-for-byte the body of a stored batch.
pub fn assert_received_are_stored_batches(received: &[Vec<u8>], w: &Env) {
    let stored: HashSet<Vec<u8>> = w.batches().into_iter().map(|b| b.1).collect();
    for (i, body) in received.iter().enumerate() {
        assert!(stored.contains(body), "request {} sent bytes that are no stored batch body: {}", i + 1, preview(body));
    }
}

pub fn preview(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
}

/// `(state, count)` pairs as a map, for readable assertions.
pub fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}
