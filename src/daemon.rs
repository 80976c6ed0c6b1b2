//! The daemon (`meterd run`): the only place that spawns tasks, reads signals and owns
//! shutdown. It serves the HTTP collector and runs two scheduled loops:
//! - **seal**, on `schedule.seal`: seals every closed window (catching up from the store, so a
//!   missed tick or a long downtime loses nothing) and wakes the uploader when it produced
//!   records;
//! - **upload**, on `schedule.upload` and after each productive seal: delivers what is waiting.
//!   It is off, with one log line, until a key is configured.
//!
//! **Key rotation.** The upload key (`METERD_ISV_KEY`, else `upload.key_file`) is read at start
//! and read again (a) on SIGHUP, which also wakes the uploader, and (b) before the next run
//! after the store answered a configuration error (`MKT.0102/0150/0151/0154`: wrong key,
//! signature or app), so fixing the key file is enough — no restart. A re-read that fails (file
//! missing, unreadable, empty) keeps the key in use and logs why; the key itself is never
//! logged. SIGHUP on a daemon started without any key turns upload on once the file exists.
//! `METERD_ISV_KEY` is the process environment, fixed at start: rotating it needs a restart.
//!
//! Both loops run once at start; on a shared store, where they need the sealer lease, once
//! when this node takes it (the first tick may come before the lease: taking it wakes the
//! seal loop, whose seal then wakes the uploader), so a node started after downtime seals the
//! backlog at once there too rather than at its next scheduled seal. Each reports its outcome to [`crate::health::Live`] (failures
//! by reason, last success), which `/readyz`, `/v1/status` and `/metrics` read. The loops open
//! the database with [`Store::open_existing`], so a database deleted under the daemon is never
//! recreated empty behind the operator's back. The seal loop opens the store at every tick; the
//! upload loop and the admin connection keep theirs, which the store reopens after a write
//! found it read-only ([`Store::reopen_if_needed`]). A store read-only at start is refused
//! before the daemon opens anything (`cli::run`; why: [`crate::store::unwritable_files`]).
//! Shutdown is decide (first SIGTERM/Ctrl-C) → tell (stop
//! accepting, cancel the loops at their next await) → wait (bounded by [`SHUTDOWN_GRACE`]);
//! then the ingest writer drains its queue. A second signal exits at once. Both are safe:
//! nothing is acknowledged before commit, and an interrupted upload leaves its batch open, to
//! be resent byte-identical at the next start.
//!
//! **On a shared PostgreSQL store** (issue 13) any number of daemons run as one: every node
//! serves ingest, and one at a time — the holder of the sealer lease (`store::lease`) — seals
//! and uploads. A third loop, **lease**, renews or takes the lease every third of
//! `[store] lease` and records this node in `nodes`; the seal and upload loops of a node that
//! does not hold it skip their turn (their health stays good: standing by is their job), and
//! those of the holder run with the lease's fence set on their connections, so every seal and
//! upload state change checks the epoch in its own transaction ([`Store::set_fence`]). A
//! clean shutdown releases the lease so another node takes over at once; a dead node's lease
//! is taken after it expires. On SQLite (one machine) there is no lease: the loops always run.
//! A node without an upload key bids for the lease only while no node with one is alive (the
//! `nodes` table's `uploads`, from every heartbeat), and gives it up when one appears: as
//! holder it would seal and never upload, and every keyed node would stand by behind it while
//! records aged towards their reporting deadline (new-user trial, issue 13). A fleet with no
//! key at all still seals (and notifies); SIGHUP once a key file exists makes a node keyed.
//! The PostgreSQL client blocks (it drives its own runtime, and panics on one of ours), so
//! every connection of the daemon is opened, used and closed on a blocking thread
//! (`spawn_blocking`), at start and at shutdown too. After a failover the new holder's
//! uploader takes over the old holder's open batch at once and resends it byte-identical
//! (`store::claims`). Tested with real processes in `tests/multinode.rs`.
//!
//! With `[[notify]]` receivers configured, a fourth loop delivers usage notifications from the
//! store's outbox and watches for the facts and readiness changes they announce
//! (`daemon::notify`; issue 17).
//!
//! Before any of it, [`startup::prepare`] checks what the daemon needs (token, listen address,
//! key, schedules, database directory, file limit); a problem there is [`RunError::Config`].

use crate::collector::Collector;
use crate::config::{Config, Secret};
use crate::metrics::Metrics;
use crate::model::Timestamp;
use crate::schedule::Schedule;
use crate::server::{self, AppState};
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

mod notify;
pub mod startup;

/// Why the daemon could not run: a configuration problem (exit code 2, found before anything
/// is served or scheduled) or a runtime failure (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(String),
    #[error("{0:#}")]
    Runtime(#[from] anyhow::Error),
}

/// How long in-flight work may take after the first signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Options of `meterd run` that are not in the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides `server.listen`.
    pub listen: Option<String>,
    /// Fixed clock for replays and tests.
    pub now: Option<Timestamp>,
    /// This node's name on a shared store (default: host name and pid).
    pub node: Option<String>,
}

/// Runs until SIGTERM or Ctrl-C, after [`startup::prepare`] found nothing wrong.
pub fn run(cfg: Arc<Config>, db: &Path, opts: RunOptions) -> Result<(), RunError> {
    let ready = startup::prepare(&cfg, db, &opts).map_err(RunError::Config)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from)?;
    let result = rt.block_on(run_async(db, opts, ready));
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(result?)
}

/// What the scheduled loops share.
struct Loops {
    cfg: Arc<Config>,
    db: PathBuf,
    metrics: Arc<Metrics>,
    live: Arc<crate::health::Live>,
    fixed_now: Option<Timestamp>,
    cancel: CancellationToken,
    /// Wakes the uploader after a seal that produced records, or on SIGHUP.
    kick: Notify,
    /// Wakes the seal loop when this node takes the sealer lease (a shared store; module docs).
    lease_taken: Notify,
    /// Set by SIGHUP: the uploader re-reads the key before its next run.
    reload_key: AtomicBool,
    /// Whether this node has an upload key: on a shared store only then does it bid for the
    /// sealer lease (module docs). Set at start and by the uploader after a re-read.
    has_key: AtomicBool,
    /// This node's name (the lease holder's name when it holds the lease).
    node: String,
    /// Whether the store is shared (PostgreSQL): then sealing and uploading need the lease.
    shared: bool,
    /// The sealer lease as this node holds it now; `None` while another node holds it.
    fence: Mutex<Option<crate::store::lease::Fence>>,
    /// Whether this node found the store migrated by a newer meterd (logged once).
    outdated: AtomicBool,
}

impl Loops {
    fn now(&self) -> Timestamp {
        self.fixed_now.unwrap_or_else(Timestamp::now)
    }

    /// `Ok(fence)` to seal or upload now (`None`: not shared, no fence needed); `Err(())` to
    /// skip the turn because another node holds the lease.
    fn turn(&self) -> Result<Option<crate::store::lease::Fence>, ()> {
        if !self.shared {
            return Ok(None);
        }
        match self.fence.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            Some(f) => Ok(Some(f)),
            None => Err(()),
        }
    }

    /// Sleeps until the schedule's next fire time; `false` when cancelled.
    async fn wait_tick(&self, schedule: &Schedule, also: Option<&Notify>) -> bool {
        let now = chrono::Utc::now();
        let wait = schedule.next_after(now).and_then(|t| (t - now).to_std().ok()).unwrap_or(Duration::from_secs(3600));
        let kicked = async {
            match also {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
            _ = kicked => true,
        }
    }
}

async fn run_async(db: &Path, opts: RunOptions, ready: startup::Ready) -> anyhow::Result<()> {
    let startup::Ready { cfg, token, key, listen, listener, seal: seal_schedule, upload: upload_schedule } = ready;
    let cfg = Arc::new(cfg);
    // Bound by `startup::prepare`, so an address in use is a configuration error (exit 2).
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    // Both connect to the store: on PostgreSQL that is the blocking client, which panics on a
    // runtime thread ("Cannot start a runtime from within a runtime"), so off it.
    let (ccfg, cdb) = (cfg.clone(), db.to_path_buf());
    let (collector, admin_store) = tokio::task::spawn_blocking(move || {
        // The process edge: the environment's test knobs become options here, and only here.
        let open = crate::faults::open_options_from_env();
        let collector = Collector::builder(&cdb, ccfg)
            .on_commit(move |_, d| m.record_commit(d))
            .tuning(crate::faults::tuning_from_env())
            .open_options(open)
            .start()?;
        Ok::<_, crate::store::StoreError>((collector, Store::open_with(&cdb, open)?))
    })
    .await??;
    let shared = admin_store.backend() == crate::store::sql::Backend::Postgres;
    let admin = Mutex::new(admin_store);
    let live = Arc::new(crate::health::Live::new(Timestamp::now().secs(), interval_secs(&seal_schedule)));
    let node = opts.node.clone().unwrap_or_else(crate::store::lease::default_node_name);
    let state = Arc::new(AppState {
        collector,
        cfg: cfg.clone(),
        admin,
        token,
        fixed_now: opts.now,
        metrics: metrics.clone(),
        live: live.clone(),
        node: node.clone(),
    });
    let cancel = CancellationToken::new();
    // The SIGTERM/SIGINT handlers are registered here, before the address is printed, so a
    // signal sent as soon as the daemon is up never meets the default action (terminate).
    tokio::spawn(signals(cancel.clone(), Shutdown::register()?));
    let loops = Arc::new(Loops {
        cfg: cfg.clone(),
        db: db.to_path_buf(),
        metrics,
        live,
        fixed_now: opts.now,
        cancel: cancel.clone(),
        kick: Notify::new(),
        lease_taken: Notify::new(),
        reload_key: AtomicBool::new(false),
        has_key: AtomicBool::new(key.is_some()),
        node,
        shared,
        fence: Mutex::new(None),
        outdated: AtomicBool::new(false),
    });
    // Registered before the address is printed, so a SIGHUP sent once the daemon is up never
    // meets the default action (terminate).
    hangups(loops.clone())?;
    let leaser = shared.then(|| tokio::spawn(lease_loop(loops.clone())));
    let sealer = tokio::spawn(seal_loop(loops.clone(), seal_schedule));
    let uploader = tokio::spawn(upload_loop(loops.clone(), upload_schedule, key));
    let notifier = (!cfg.notify.is_empty()).then(|| tokio::spawn(notify::run(loops.clone(), state.clone())));

    println!("meterd listening on http://{addr}");
    tracing::info!(%addr, db = %crate::store::shown(db), "collector listening");
    let shutdown = cancel.clone();
    let server = tokio::spawn(server::serve(listener, state.clone(), async move { shutdown.cancelled().await }));
    cancel.cancelled().await;
    tracing::info!("shutting down: no new requests; finishing in-flight ones");
    let all = async {
        let (a, b, c) = tokio::join!(server, sealer, uploader);
        a.map(|_| ()).and(b).and(c)
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        tracing::warn!("in-flight work did not finish within {SHUTDOWN_GRACE:?}; exiting anyway (nothing acknowledged is lost)");
    }
    if let Some(notifier) = notifier {
        // Undelivered notices stay in the outbox for the next start.
        let _ = tokio::time::timeout(Duration::from_secs(2), notifier).await;
    }
    if let Some(leaser) = leaser {
        // It releases the lease on its way out (bounded: the grace above already ran).
        let _ = tokio::time::timeout(Duration::from_secs(2), leaser).await;
    }
    // The admin connection (and on SQLite the collector's probe) closes off the runtime: a
    // PostgreSQL client's drop blocks, which panics on a runtime thread.
    let _ = tokio::task::spawn_blocking(move || drop(state)).await;
    tracing::info!("stopped");
    Ok(())
}

/// [`Store::open_existing`] on a blocking thread: on PostgreSQL it connects with the blocking
/// client, which panics on a runtime thread.
async fn open_off_runtime(db: &Path) -> crate::store::Result<Store> {
    let db = db.to_path_buf();
    match tokio::task::spawn_blocking(move || Store::open_existing(&db)).await {
        Ok(r) => r,
        Err(e) => Err(crate::store::StoreError::Internal(format!("the task opening the store failed: {e}"))),
    }
}

/// Takes or renews the sealer lease every third of its duration, and heartbeats this node
/// (see the module docs); releases the lease at shutdown.
async fn lease_loop(l: Arc<Loops>) {
    use crate::store::lease;
    let ttl = l.cfg.store.lease.0;
    let every = (ttl / 3).max(Duration::from_millis(500));
    let store = match open_off_runtime(&l.db).await {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(e) => {
            tracing::error!(error = %e, "the lease loop cannot open the store; this node will not seal or upload");
            return;
        }
    };
    let started = Timestamp::now().0;
    loop {
        let (s, node) = (store.clone(), l.node.clone());
        let held = l.fence.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|f| f.epoch);
        let uploads = l.has_key.load(Ordering::SeqCst);
        let result = tokio::task::spawn_blocking(move || {
            let mut s = crate::store::lock_recovering(&s, "lease");
            s.write(|tx| {
                lease::heartbeat(tx, &node, env!("CARGO_PKG_VERSION"), started, uploads)?;
                // Without a key, stand aside while a node with one is alive (module docs).
                if !uploads && lease::uploader_alive(tx, &node, 2 * ttl)? {
                    return Ok(None);
                }
                lease::acquire(tx, lease::SEALER, &node, held, ttl).map(Some)
            })
        })
        .await;
        match result {
            Ok(Ok(None)) => {
                l.live.write_ok();
                let fence = l.fence.lock().unwrap_or_else(|p| p.into_inner()).take();
                l.live.lease_epoch.store(0, Ordering::Relaxed);
                if fence.is_some() {
                    tracing::warn!("a node with an upload key is alive: this node, which has none, gives the sealer lease up to it");
                    release_lease(store.clone(), fence).await;
                }
            }
            Ok(Ok(Some(acquired))) => l.note_lease(Ok(Ok(acquired))),
            Ok(Err(e)) => l.note_lease(Ok(Err(e))),
            Err(e) => l.note_lease(Err(e)),
        }
        tokio::select! {
            _ = l.cancel.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
    let fence = l.fence.lock().unwrap_or_else(|p| p.into_inner()).take();
    l.live.lease_epoch.store(0, std::sync::atomic::Ordering::Relaxed);
    release_lease(store, fence).await;
}

impl Loops {
    /// Records whether another process holds the sealer lease under this node's name (`epoch`
    /// of its lease, 0: none) in [`crate::health::Live::lease_name_clash`] (status and
    /// `/metrics` show it), and logs it when it starts, when the other process's epoch
    /// changes, and when it clears — once each, not at every lease tick.
    fn note_name_clash(&self, epoch: i64) {
        let before = self.live.lease_name_clash.swap(epoch, std::sync::atomic::Ordering::Relaxed);
        match crate::health::name_clash_change(before, epoch) {
            Some(crate::health::Change::Started) => tracing::warn!(
                node = %self.node,
                epoch,
                "the sealer lease names this node but another process took it (a restart of this node, or another process with the same --node): standing by until it is released or expires; node names must be unique per process (logged once; `meterd status` and meterd_lease_name_clash show it while it lasts)"
            ),
            Some(crate::health::Change::Cleared) => {
                tracing::info!(node = %self.node, "no other process holds the sealer lease under this node's name any more")
            }
            None => {}
        }
    }

    /// Updates the lease this node holds after a renewal attempt, logging changes of holder.
    fn note_lease(&self, result: Result<crate::store::Result<crate::store::lease::Acquired>, tokio::task::JoinError>) {
        use crate::store::lease::Acquired;
        let mut held = self.fence.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(result, Ok(Ok(_))) {
            self.live.write_ok();
        }
        match result {
            Ok(Ok(Acquired::Held(f))) => {
                self.note_name_clash(0);
                if held.as_ref().map(|h| h.epoch) != Some(f.epoch) {
                    if self.has_key.load(Ordering::SeqCst) {
                        tracing::info!(node = %self.node, epoch = f.epoch, "took the sealer lease: this node seals and uploads");
                    } else {
                        tracing::warn!(node = %self.node, epoch = f.epoch, "took the sealer lease: no node with an upload key is alive, so this node seals, and records wait for upload until one is (it then hands the lease over)");
                    }
                    self.kick.notify_one();
                    self.lease_taken.notify_one();
                }
                *held = Some(f);
            }
            Ok(Ok(Acquired::Busy(r))) => {
                let clash = if r.holder == self.node && held.is_none() { r.epoch } else { 0 };
                self.note_name_clash(clash);
                if held.take().is_some() {
                    tracing::warn!(holder = %r.holder, epoch = r.epoch, "lost the sealer lease; this node stands by");
                }
            }
            Ok(Ok(Acquired::Outdated { store_schema, node_schema })) => {
                self.note_name_clash(0);
                let gave_up = held.take().is_some();
                if gave_up || !self.outdated.swap(true, Ordering::SeqCst) {
                    tracing::error!(
                        node = %self.node,
                        store_schema,
                        node_schema,
                        gave_up,
                        "a newer meterd migrated this store (schema {store_schema}; this node knows {node_schema}): this node no longer holds or bids for the sealer lease, so an upgraded node seals and uploads; upgrade this node"
                    );
                }
            }
            // Keep what we had: an unrenewed lease is still ours until another node takes it,
            // and every fenced write checks the epoch in the database anyway.
            Ok(Err(e)) if held.is_some() => tracing::warn!(error = %e, "cannot renew the sealer lease; retrying"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot reach the store to bid for the sealer lease; retrying"),
            Err(e) => tracing::error!(error = %e, "lease task failed"),
        }
        // What `status` and `/metrics` call "held by this node" (`health::Live::lease_held`).
        self.live.lease_epoch.store(held.as_ref().map_or(0, |f| f.epoch), std::sync::atomic::Ordering::Relaxed);
    }
}

/// Releases the lease if this node holds it, and closes the lease connection, both on a
/// blocking thread (a PostgreSQL client's drop blocks too).
async fn release_lease(store: Arc<Mutex<Store>>, fence: Option<crate::store::lease::Fence>) {
    use crate::store::lease;
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(f) = fence {
            let mut s = crate::store::lock_recovering(&store, "lease");
            match s.write(|tx| lease::release(tx, &f)) {
                Ok(()) => tracing::info!("released the sealer lease"),
                Err(e) => tracing::warn!(error = %e, "could not release the sealer lease; another node takes it when it expires"),
            }
        }
        drop(store);
    })
    .await;
}

async fn seal_loop(l: Arc<Loops>, schedule: Schedule) {
    loop {
        let Ok(fence) = l.turn() else {
            // Another node holds the lease and seals: not a seal of ours (the health check
            // reports the store's last seal instead), nor a failure.
            l.live.seal_standing_by(Timestamp::now().secs());
            if !l.wait_tick(&schedule, Some(&l.lease_taken)).await {
                return;
            }
            continue;
        };
        let (cfg, db, now, metrics) = (l.cfg.clone(), l.db.clone(), l.now(), l.metrics.clone());
        let result = tokio::task::spawn_blocking(move || {
            let mut store = Store::open_existing(&db)?;
            store.set_fence(fence);
            // Counted in each seal transaction before its commit, so never behind `status`.
            let report = crate::seal::seal_counting(&mut store, &cfg, now, &|n| metrics.record_seal(n))?;
            crate::seal::note_sealed(&mut store)?;
            Ok::<_, crate::store::StoreError>(report)
        })
        .await;
        match result {
            Ok(Ok(r)) => {
                l.live.seal_ok(Timestamp::now().secs());
                if r.records > 0 {
                    tracing::info!(records = r.records, instances = r.instances, "sealed closed windows");
                    l.kick.notify_one();
                }
            }
            Ok(Err(e)) => {
                l.live.seal_failed(e.reason(), e.to_string(), e.is_unwritable());
                if e.is_fenced() {
                    tracing::warn!(error = %e, "this node lost the sealer lease while sealing (paused or cut off past its lease?); the new holder seals; this node stands by");
                } else {
                    tracing::error!(error = %e, "seal failed; closed windows stay unsealed until the next tick");
                }
            }
            Err(e) => {
                l.live.seal_failed("panic", e.to_string(), false);
                tracing::error!(error = %e, "seal task failed");
            }
        }
        if !l.wait_tick(&schedule, Some(&l.lease_taken)).await {
            return;
        }
    }
}

async fn upload_loop(l: Arc<Loops>, schedule: Schedule, key: Option<Secret>) {
    match (key.is_none(), l.shared) {
        (true, false) => tracing::info!(
            "upload is off: set METERD_ISV_KEY or `upload.key_file` (and `upload.endpoint`) to deliver sealed records; SIGHUP re-reads the key file"
        ),
        (true, true) => tracing::warn!(
            "no upload key: on this shared store this node takes the sealer lease only while no node with a key is alive (it would seal and never upload); set METERD_ISV_KEY or `upload.key_file` as on the other nodes — SIGHUP re-reads the key file"
        ),
        _ => {}
    }
    let store = match open_off_runtime(&l.db).await {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(e) => {
            tracing::error!(error = %e, "upload cannot open the store; records wait");
            return;
        }
    };
    upload_turns(&l, schedule, key, &store).await;
    // The last handle (an interrupted run's clone is gone by now) closes off the runtime.
    let _ = tokio::task::spawn_blocking(move || drop(store)).await;
}

/// The upload loop's turns until shutdown (see [`upload_loop`]).
async fn upload_turns(l: &Loops, schedule: Schedule, mut key: Option<Secret>, store: &Arc<Mutex<Store>>) {
    loop {
        if l.reload_key.swap(false, Ordering::SeqCst) {
            key = reload_key(&l.cfg, key);
            l.has_key.store(key.is_some(), Ordering::SeqCst);
        }
        let turn = l.turn();
        if let (Some(k), Ok(fence)) = (&key, turn) {
            crate::store::lock_recovering(store, "upload").set_fence(fence);
            // Counts into the metrics as it goes: a delivery is counted before `status` can show it.
            let run = crate::upload::run::upload_with_metrics(store.clone(), &l.cfg.upload, k, l.now(), l.metrics.clone());
            tokio::select! {
                _ = l.cancel.cancelled() => {
                    tracing::info!("upload interrupted by shutdown; open batches are resent unchanged at the next start");
                    return;
                }
                r = run => match r {
                    Ok(report) => {
                        if report.delivered + report.rejected + report.expired > 0 {
                            tracing::info!(delivered = report.delivered, rejected = report.rejected, expired = report.expired, "upload run finished");
                        }
                        if let Some(e) = &report.config_error {
                            l.live.upload_failed("config_error", Some(e.clone()));
                            tracing::error!("{e}; the upload key is re-read before the next run");
                            l.reload_key.store(true, Ordering::SeqCst);
                        } else if report.transient_error.is_some() {
                            l.live.upload_failed("transient", None);
                        } else {
                            l.live.upload_ok(Timestamp::now().secs());
                        }
                    }
                    Err(e) => {
                        match &e {
                            crate::upload::run::UploadError::Config(m) => l.live.upload_failed("config_error", Some(m.clone())),
                            crate::upload::run::UploadError::Store(se) => {
                                l.live.upload_failed(se.reason(), None);
                                if se.is_unwritable() {
                                    l.live.write_failed(se.reason(), se.to_string());
                                }
                            }
                        }
                        if matches!(&e, crate::upload::run::UploadError::Store(se) if se.is_fenced()) {
                            tracing::warn!(error = %e, "this node lost the sealer lease while uploading (paused or cut off past its lease?); the new holder resends its open batch unchanged; this node stands by");
                        } else {
                            tracing::error!(error = %e, "upload run failed; records stay queued");
                        }
                    }
                }
            }
        }
        if !l.wait_tick(&schedule, Some(&l.kick)).await {
            return;
        }
    }
}

/// Seconds between the schedule's next two fire times (for the seal staleness check); an
/// hour when the schedule never fires.
fn interval_secs(schedule: &Schedule) -> i64 {
    let now = chrono::Utc::now();
    let first = schedule.next_after(now);
    match (first, first.and_then(|t| schedule.next_after(t))) {
        (Some(a), Some(b)) => (b - a).num_seconds().max(1),
        _ => 3600,
    }
}

/// Reads the upload key again (see the module docs); the key in use when that fails.
fn reload_key(cfg: &Config, current: Option<Secret>) -> Option<Secret> {
    match crate::upload::run::load_key(&cfg.upload) {
        Ok(Some(new)) => {
            if current.as_ref() != Some(&new) {
                tracing::info!("upload key re-read: a new key is in use");
            }
            Some(new)
        }
        Ok(None) => current,
        Err(e) => {
            tracing::error!("cannot re-read the upload key ({e}); still using the previous key");
            current
        }
    }
}

/// SIGHUP: re-read the upload key and wake the uploader.
#[cfg(unix)]
fn hangups(l: Arc<Loops>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: re-reading the upload key");
            l.reload_key.store(true, Ordering::SeqCst);
            l.kick.notify_one();
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn hangups(_l: Arc<Loops>) -> anyhow::Result<()> {
    Ok(())
}

/// First SIGTERM/Ctrl-C cancels; a second exits at once.
async fn signals(cancel: CancellationToken, mut shutdown: Shutdown) {
    let mut count = 0;
    loop {
        shutdown.recv().await;
        count += 1;
        if count == 1 {
            cancel.cancel();
        } else {
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        }
    }
}

/// The shutdown signals (SIGTERM and SIGINT), registered once, up front.
#[cfg(unix)]
struct Shutdown {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Shutdown {
    fn register() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(not(unix))]
struct Shutdown;

#[cfg(not(unix))]
impl Shutdown {
    fn register() -> anyhow::Result<Self> {
        Ok(Self)
    }

    async fn recv(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
