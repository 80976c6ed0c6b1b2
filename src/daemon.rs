//! The daemon (`meterd run`): the only place that spawns tasks, reads signals and owns
//! shutdown. It serves the HTTP collector; shutdown is decide (first SIGTERM/Ctrl-C) → tell
//! (stop accepting, let in-flight requests finish) → wait (bounded), then the writer drains its
//! queue and the process exits 0. A second signal exits at once; that is safe because nothing
//! is acknowledged before it is committed.

use crate::collector::Collector;
use crate::config::Config;
use crate::model::Timestamp;
use crate::server::{self, AppState};
use crate::store::Store;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long in-flight work may take after the first signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Options of `meterd run` that are not in the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides `server.listen`.
    pub listen: Option<String>,
    /// Fixed clock for replays and tests.
    pub now: Option<Timestamp>,
}

/// Runs until SIGTERM or Ctrl-C.
pub fn run(cfg: Arc<Config>, db: &Path, opts: RunOptions) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run_async(cfg, db, opts))
}

async fn run_async(cfg: Arc<Config>, db: &Path, opts: RunOptions) -> anyhow::Result<()> {
    let token = match &cfg.server.token_env {
        Some(var) => Some(std::env::var(var).map_err(|_| anyhow::anyhow!("`server.token_env` names {var}, which is not set"))?),
        None => None,
    };
    let listen = opts.listen.clone().unwrap_or_else(|| cfg.server.listen.clone());
    let listener =
        tokio::net::TcpListener::bind(&listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen} (server.listen): {e}"))?;
    let addr = listener.local_addr()?;
    let collector = Collector::start(db, cfg.clone(), Box::new(|_, _| {}))?;
    let admin = Mutex::new(Store::open(db)?);
    let state = Arc::new(AppState { collector, cfg: cfg.clone(), admin, token, fixed_now: opts.now });
    let cancel = CancellationToken::new();
    tokio::spawn(signals(cancel.clone()));
    println!("meterd listening on http://{addr}");
    tracing::info!(%addr, db = %db.display(), "collector listening");
    let shutdown = cancel.clone();
    let server = tokio::spawn(server::serve(listener, state.clone(), async move { shutdown.cancelled().await }));
    cancel.cancelled().await;
    tracing::info!("shutting down: no new requests; finishing in-flight ones");
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(r) => r??,
        Err(_) => {
            tracing::warn!("in-flight requests did not finish within {:?}; exiting anyway (nothing unacknowledged is lost)", SHUTDOWN_GRACE)
        }
    }
    drop(state);
    tracing::info!("stopped");
    Ok(())
}

/// First SIGTERM/Ctrl-C cancels; a second exits at once.
async fn signals(cancel: CancellationToken) {
    let mut count = 0;
    loop {
        wait_signal().await;
        count += 1;
        if count == 1 {
            cancel.cancel();
        } else {
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        }
    }
}

#[cfg(unix)]
async fn wait_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(not(unix))]
async fn wait_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
