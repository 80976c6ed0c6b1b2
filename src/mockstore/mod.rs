//! The mock cloud store: a real HTTP server on loopback that verifies uploads the way the
//! KooGallery usage API is documented to (design §6 "Mock store"), bills each record once into
//! a JSON-lines ledger, and injects faults on demand.
//!
//! What a request goes through, in order: injected latency; a drop/fail fault; the auth
//! headers (`ts` within 5 minutes of the real clock, `nonce` ≤ 64 characters, HMAC `signature`
//! over the exact body bytes); the nonce not used before; the envelope (≤ 1000 records); every
//! record's fields ([`fields`]); billing, where duplicates (same instance and period, or same
//! `metering_sn`) succeed without being billed again; then the answer, or a lost answer for a
//! "bill then fail" fault. Any bad record fails the whole request with that record's code.
//!
//! Choices where the API doc is silent: a missing or malformed auth header, a stale `ts` and
//! a reused nonce are all answered `400 MKT.0102` (the signature check covers `ts` and nonce),
//! which meterd treats as a configuration problem — records stay pending, none is rejected. An
//! empty record list and `begin_time ≥ end_time` are `MKT.9002`. `--now` pins the "now" of the
//! 21-day rule only; `ts` is always checked against the real clock, and `billed_at` is real
//! time too.
//!
//! Library use: [`MockStore::start`] on a bound listener gives a [`MockHandle`] with the
//! address, the ledger, the [`Counters`] and `shutdown`. CLI use: [`cli::run_cli`].

pub mod cli;
pub mod codes;
pub mod faults;
pub mod fields;
pub mod ledger;
mod server;
pub mod validate;

pub use cli::{run_cli, MockStoreArgs};
pub use codes::Code;
pub use faults::{Fault, Faults, LostAnswer};
pub use ledger::{read_entries, LedgerEntry};

use crate::config::Secret;
use crate::model::Timestamp;
use ledger::Ledger;
use server::Shared;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The store's usage API path.
pub const DEFAULT_PATH: &str = "/api/mkp-openapi-public/global/v1/isv/usage-data";

/// Everything the mock needs; `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// The interconnection key requests are signed with.
    pub key: Secret,
    /// The one route served (`POST`).
    pub path: String,
    /// Where billed records are appended; `None` keeps them in memory only.
    pub ledger: Option<PathBuf>,
    /// Known instance ids; others get `MKT.9001`. `None` accepts any instance.
    pub instances: Option<HashSet<String>>,
    /// Pinned "now" for the 21-day rule; `None` uses the real clock.
    pub now: Option<Timestamp>,
    pub faults: Faults,
    /// Keep every request body in memory ([`MockHandle::received`]) so tests can check that
    /// retries resend the same bytes. Off by default: a long-running mock would grow without
    /// bound.
    pub keep_bodies: bool,
}

impl MockConfig {
    /// Defaults: the standard path, in-memory ledger, any instance, real clock, no faults.
    pub fn new(key: Secret) -> MockConfig {
        MockConfig {
            key,
            path: DEFAULT_PATH.into(),
            ledger: None,
            instances: None,
            now: None,
            faults: Faults::default(),
            keep_bodies: false,
        }
    }
}

/// What the mock has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests that reached the route, whatever happened to them.
    pub requests: u64,
    /// Requests by outcome: an `error_code` (`"MKT.0000"`, …) or a lost answer (`"drop"`,
    /// `"bill-then-500"`, `"bill-then-drop"`).
    pub outcomes: BTreeMap<String, u64>,
    /// Records billed (written to the ledger).
    pub records_billed: u64,
    /// Records answered with success but not billed because they were billed before.
    pub duplicates: u64,
}

impl Counters {
    pub fn outcome(&self, label: &str) -> u64 {
        self.outcomes.get(label).copied().unwrap_or(0)
    }
}

/// Why the mock could not start.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("mock-store path {0:?} must start with '/' and use only letters, digits and . _ ~ - /")]
    Path(String),
    #[error("mock-store ledger: {0}")]
    Ledger(std::io::Error),
    #[error("mock-store listener: {0}")]
    Listener(std::io::Error),
}

/// The mock cloud store.
pub struct MockStore;

impl MockStore {
    /// Serves `cfg` on `listener` (bind `127.0.0.1:0` for a free port) until the handle is
    /// shut down or dropped.
    pub async fn start(cfg: MockConfig, listener: TcpListener) -> Result<MockHandle, MockError> {
        let path_ok = cfg.path.starts_with('/') && cfg.path.chars().all(|c| c.is_ascii_alphanumeric() || "._~-/".contains(c));
        if !path_ok {
            return Err(MockError::Path(cfg.path));
        }
        let addr = listener.local_addr().map_err(MockError::Listener)?;
        let ledger = Ledger::open(cfg.ledger.as_deref()).map_err(MockError::Ledger)?;
        let shared = Arc::new(Shared::new(cfg, ledger));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server::serve(listener, server::router(shared.clone()), shutdown.clone()));
        Ok(MockHandle { addr, shared, shutdown, task: Some(task) })
    }
}

/// A running mock store. Dropping it stops the server too.
pub struct MockHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl MockHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` — the value for `upload.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The full URL of the usage route.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.shared.cfg.path)
    }

    /// Every billed record, in billing order (including those read from an existing ledger).
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.shared.lock().ledger.entries().to_vec()
    }

    pub fn counters(&self) -> Counters {
        self.shared.lock().counters.clone()
    }

    /// The body of every request that reached the route, in arrival order (whatever its
    /// fate); empty unless [`MockConfig::keep_bodies`] is set.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.shared.lock().received.iter().map(|b| b.to_vec()).collect()
    }

    /// Stops accepting, closes open connections and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
