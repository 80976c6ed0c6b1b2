//! The in-process mock cloud store of the integration tests: [`MockStore`] on a loopback port,
//! on a tokio runtime of its own so a test stays synchronous and can block on the real binary
//! while the mock answers. One wrapper for every suite (issue 16 item 6; it replaced six copies
//! in `contrib`, `daemon`, `health`, `multinode`, `reliability` and `upload`). The
//! `meterd mock-store` child process is a different door and keeps its own helpers.
//!
//! Stopped on drop; [`Mock::stop`] stops it earlier (a ledger file stays for a successor).

use meterd::config::Secret;
use meterd::mockstore::{Counters, LedgerEntry, MockConfig, MockHandle, MockStore};
use std::time::{Duration, Instant};

/// A mock config with the key `key`, "now" pinned at `now` (RFC 3339: the store's 21-day
/// rule is judged against it), and every request body kept (see [`Mock::received`]).
pub fn mock_config(key: &str, now: &str) -> MockConfig {
    let mut cfg = MockConfig::new(Secret::new(key));
    cfg.now = Some(meterd::model::parse_rfc3339(now).expect("mock now is RFC 3339"));
    cfg.keep_bodies = true;
    cfg
}

/// A running mock store.
pub struct Mock {
    rt: tokio::runtime::Runtime,
    handle: Option<MockHandle>,
}

impl Mock {
    /// Starts the mock with `cfg` on `127.0.0.1:0`.
    pub fn start(cfg: MockConfig) -> Mock {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("mock runtime");
        let handle = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
            MockStore::start(cfg, l).await.expect("mock starts")
        });
        Mock { rt, handle: Some(handle) }
    }

    /// The running server (panics after [`Mock::stop`]).
    pub fn handle(&self) -> &MockHandle {
        self.handle.as_ref().expect("mock is running")
    }

    /// `http://127.0.0.1:PORT`, for `upload.endpoint`.
    pub fn endpoint(&self) -> String {
        self.handle().endpoint()
    }

    /// Records billed so far.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.handle().ledger()
    }

    /// Request bodies received so far (with `keep_bodies`).
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.handle().received()
    }

    pub fn counters(&self) -> Counters {
        self.handle().counters()
    }

    /// Polls until the ledger holds at least `n` records; panics after `timeout` with the
    /// counters.
    pub fn wait_ledger(&self, n: usize, timeout: Duration) {
        let start = Instant::now();
        while self.ledger().len() < n {
            assert!(start.elapsed() < timeout, "ledger has {} of {n} records; counters {:?}", self.ledger().len(), self.counters());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server and waits for it; the ledger (if a file) stays for a successor.
    pub fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.rt.block_on(h.shutdown());
        }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.stop();
    }
}
