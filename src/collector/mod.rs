//! The collector: validate, dedupe and durably commit usage events (design §2). This is the
//! library entry point a Rust service embeds; the CLI and the HTTP server call the same code.
//!
//! Each event is accepted or refused on its own: stateless rules ([`parse`]) here, and every
//! rule that needs the store or the clock ([`decide`]) inside the writer's transaction — the
//! key lookup first, so an identical resend is a duplicate whatever rule changed since.
//! Acknowledgement happens only after `COMMIT` (see [`writer`]).
//!
//! The writer reports on itself through [`WriterHealth`] (last commit outcome, failures by
//! reason, the database file having moved), and [`Collector::writer_alive`] says whether its
//! thread still runs: the daemon's `/healthz` and `/readyz` read both.
//!
//! The library door (issue 16, item 9): [`Collector::builder`] starts one (the commit hook is
//! optional); `ingest_*_async` never block the runtime; the blocking `ingest_events` and
//! `ingest_body` are safe on any thread, inside a tokio runtime too (`collector/blocking.rs`
//! says how). Its batch sizes are options of each collector ([`Tuning`],
//! [`CollectorBuilder::tuning`]), as is how its store is opened
//! ([`CollectorBuilder::open_options`]); only the binary reads them from the environment.

mod blocking;
mod builder;
pub mod decide;
mod level;
pub mod parse;
pub mod quota;
mod result;
mod tuning;
pub mod writer;

pub use builder::CollectorBuilder;
pub use decide::Verdict;
pub use parse::{parse_body, EventInput, NotJson};
pub use result::{IngestResult, LateUnbilled, Refused, RejectReason, Rejected};
pub use tuning::Tuning;

use crate::config::Config;
use crate::model::Timestamp;
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Jobs that may wait for the writer before new requests are told to come back later.
const QUEUE_JOBS: usize = 4096;
/// Largest chunk of one request or file sent to the writer as a job.
const CHUNK: usize = 10_000;

/// Why a whole ingest call failed (per-event problems are in [`IngestResult::rejected`]).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    NotJson(#[from] NotJson),
    /// The store cannot write now (disk full, locked, queue full): retry later.
    #[error("cannot store events now: {0}")]
    Unavailable(String),
    #[error("store failure: {0}")]
    Store(Arc<StoreError>),
}

impl IngestError {
    fn from_store(e: Arc<StoreError>) -> IngestError {
        if e.is_unavailable() {
            IngestError::Unavailable(e.to_string())
        } else {
            IngestError::Store(e)
        }
    }
}

/// What the writer thread tells the rest of the process about itself.
#[derive(Debug, Default)]
pub struct WriterHealth {
    /// Why the database file is no longer the one at its path; once set, never cleared: every
    /// later job is refused until a restart.
    pub moved: Mutex<Option<String>>,
    /// The last commit's error as (reason, message), `None` after a success.
    pub last_error: Mutex<Option<(String, String)>>,
    /// Failed commits by [`StoreError::reason`].
    pub failures: Mutex<BTreeMap<String, u64>>,
}

impl WriterHealth {
    pub fn moved(&self) -> Option<String> {
        self.moved.lock().ok().and_then(|g| g.clone())
    }

    pub fn last_error(&self) -> Option<(String, String)> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }

    pub(crate) fn committed(&self, result: Result<(), &StoreError>) {
        let err = result.err().map(|e| (e.reason().to_string(), e.to_string()));
        if let Some((reason, _)) = &err {
            crate::health::bump(&self.failures, reason);
        }
        if let Ok(mut g) = self.last_error.lock() {
            *g = err;
        }
    }
}

/// Durable, exactly-once event intake. Cheap to share behind an `Arc`.
pub struct Collector {
    /// One queue per writer: one on SQLite, one per ingest lane on PostgreSQL (index = lane).
    /// Empty once shut down.
    jobs: Vec<SyncSender<Job>>,
    cfg: Arc<Config>,
    writers: Vec<JoinHandle<()>>,
    health: Arc<WriterHealth>,
    /// The writer's database file, for checks between commits (`/healthz`).
    probe: crate::store::FileProbe,
}

use writer::Job;

impl Collector {
    /// A builder for a collector on the store at `db` (a SQLite file path, or a
    /// `postgres://` URL given as a path), judging events by `cfg`; the commit hook is optional.
    pub fn builder(db: impl AsRef<Path>, cfg: impl Into<Arc<Config>>) -> CollectorBuilder {
        CollectorBuilder {
            db: db.as_ref().to_path_buf(),
            cfg: cfg.into(),
            on_commit: None,
            tuning: Tuning::default(),
            open: crate::store::OpenOptions::default(),
        }
    }

    /// Opens the store at `db` and starts the writer thread; `on_commit` is called on the
    /// writer thread after each commit. Same as [`Collector::builder`] with a hook.
    ///
    /// Errors: the store cannot be opened or migrated ([`StoreError`]), or the thread cannot
    /// be started.
    pub fn start(db: &Path, cfg: Arc<Config>, on_commit: writer::CommitHook) -> Result<Collector, StoreError> {
        Self::start_with(db, cfg, on_commit, Tuning::default(), crate::store::OpenOptions::default())
    }

    /// [`Collector::start`] with the writer's [`Tuning`] and the store's open options.
    ///
    /// On PostgreSQL, one writer per ingest lane of the store (`ingest_state.lanes`, read
    /// now; `store::pg_events`, "Ingest lanes"), each with a connection of its own; the commit
    /// hook is shared by them.
    fn start_with(
        db: &Path,
        cfg: Arc<Config>,
        on_commit: writer::CommitHook,
        tuning: Tuning,
        open: crate::store::OpenOptions,
    ) -> Result<Collector, StoreError> {
        let mut store = Store::open_with(db, open)?;
        let probe = store.file_probe();
        let lanes = match store.backend() {
            crate::store::sql::Backend::Sqlite => 1,
            crate::store::sql::Backend::Postgres => store.read(crate::store::pg_events::lanes)?,
        };
        let mut stores = vec![store];
        for _ in 1..lanes {
            stores.push(Store::open_with(db, open)?);
        }
        let health = Arc::new(WriterHealth::default());
        let hook = Arc::new(Mutex::new(on_commit));
        let mut collector = Collector { jobs: Vec::new(), cfg, writers: Vec::new(), health, probe };
        for (index, store) in stores.into_iter().enumerate() {
            let lane = crate::store::pg_events::Lane { index: index as u32, count: lanes };
            let (tx, rx) = sync_channel(QUEUE_JOBS);
            let wcfg = collector.cfg.clone();
            let whealth = collector.health.clone();
            let hook = hook.clone();
            let on_commit: writer::CommitHook = Box::new(move |n, d| {
                if let Ok(f) = hook.lock() {
                    f(n, d)
                }
            });
            let name = if lanes == 1 { "meterd-writer".to_string() } else { format!("meterd-writer-{index}") };
            let writer = std::thread::Builder::new()
                .name(name)
                .spawn(move || writer::run(store, wcfg, tuning, rx, on_commit, whealth, lane))
                .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
            collector.jobs.push(tx);
            collector.writers.push(writer);
        }
        Ok(collector)
    }

    /// The writer's report on itself.
    pub fn health(&self) -> &WriterHealth {
        &self.health
    }

    /// Why the writer's database file is no longer the one at its path, if it is not: what
    /// the writer found at its last commit, else one `stat` now.
    pub fn file_moved(&self) -> Option<String> {
        self.health.moved().or_else(|| self.probe.moved())
    }

    /// Whether the writer threads still run (`false` after one panicked, or after shutdown).
    pub fn writer_alive(&self) -> bool {
        !self.writers.is_empty() && self.writers.iter().all(|w| !w.is_finished())
    }

    /// Ingests a request body (JSON object, array or NDJSON), blocking the calling thread until
    /// committed. Safe to call anywhere, inside an async runtime too (see the `collector`
    /// module docs); an async caller should prefer [`Collector::ingest_body_async`].
    ///
    /// Errors: [`IngestError::NotJson`] when the body as a whole is unreadable (per-event
    /// problems are in [`IngestResult::rejected`]); [`IngestError::Unavailable`] when the store
    /// cannot write now (retry later); [`IngestError::Store`] otherwise.
    pub fn ingest_body(&self, body: &[u8], now: Timestamp) -> Result<IngestResult, IngestError> {
        let parsed = parse_body(body)?;
        self.ingest_parsed(parsed, now)
    }

    /// Ingests events built in code, blocking the calling thread until committed. They are held
    /// to the same field rules as parsed JSON ([`EventInput::validate`]); `now` judges the
    /// clock rules (`max_age`, future skew). Safe to call anywhere, inside an async runtime
    /// too (see the `collector` module docs); an async caller should prefer
    /// [`Collector::ingest_events_async`].
    /// Errors as [`Collector::ingest_body`], never `NotJson`.
    pub fn ingest_events(&self, events: Vec<EventInput>, now: Timestamp) -> Result<IngestResult, IngestError> {
        self.ingest_parsed(checked(events), now)
    }

    /// Async form of [`Collector::ingest_body`] for servers: never blocks the runtime; answers
    /// `Unavailable` when the writer's queue is full instead of waiting.
    pub async fn ingest_body_async(&self, body: &[u8], now: Timestamp) -> Result<IngestResult, IngestError> {
        let parsed = parse_body(body)?;
        self.ingest_parsed_async(parsed, now).await
    }

    /// Async form of [`Collector::ingest_events`]: never blocks the runtime; answers
    /// [`IngestError::Unavailable`] when the writer's queue is full instead of waiting (retry
    /// shortly, or answer `503` to your own caller).
    pub async fn ingest_events_async(&self, events: Vec<EventInput>, now: Timestamp) -> Result<IngestResult, IngestError> {
        self.ingest_parsed_async(checked(events), now).await
    }

    async fn ingest_parsed_async(
        &self,
        parsed: Vec<Result<EventInput, parse::Refusal>>,
        now: Timestamp,
    ) -> Result<IngestResult, IngestError> {
        let (mut result, pending) = self.submit(parsed, now, false)?;
        for rx in pending {
            let verdicts = rx.await.map_err(|_| IngestError::Unavailable("the writer stopped".into()))?.map_err(IngestError::from_store)?;
            fold(&mut result, verdicts);
        }
        result.rejected.sort_by_key(|r| r.index);
        result.late_unbilled.sort_by_key(|r| r.index);
        Ok(result)
    }

    fn ingest_parsed(&self, parsed: Vec<Result<EventInput, parse::Refusal>>, now: Timestamp) -> Result<IngestResult, IngestError> {
        blocking::section(|| {
            let (mut result, pending) = self.submit(parsed, now, true)?;
            for rx in pending {
                let verdicts = blocking::wait(rx)
                    .map_err(|_| IngestError::Unavailable("the writer stopped".into()))?
                    .map_err(IngestError::from_store)?;
                fold(&mut result, verdicts);
            }
            result.rejected.sort_by_key(|r| r.index);
            result.late_unbilled.sort_by_key(|r| r.index);
            Ok(result)
        })
    }

    /// Queues the events that parsed for the writer in chunks. The clock rules are judged there,
    /// after the key lookup ([`decide::clock`]), so that a resend of a stored event is a
    /// duplicate even once it is older than `max_age`.
    #[allow(clippy::type_complexity)]
    fn submit(
        &self,
        parsed: Vec<Result<EventInput, parse::Refusal>>,
        now: Timestamp,
        block: bool,
    ) -> Result<(IngestResult, Vec<oneshot::Receiver<Result<writer::JobReply, Arc<StoreError>>>>), IngestError> {
        let mut result = IngestResult::default();
        let mut ready = Vec::with_capacity(parsed.len());
        for (index, p) in parsed.into_iter().enumerate() {
            match p {
                Ok(ev) => ready.push((index, ev)),
                Err(r) => result.rejected.push(Rejected { index, id: r.id, error: r.error, reason: r.reason }),
            }
        }
        if self.jobs.is_empty() {
            return Err(IngestError::Unavailable("the collector is shutting down".into()));
        }
        let mut pending = Vec::new();
        for (lane, events) in self.by_lane(ready) {
            let mut it = events.into_iter().peekable();
            while it.peek().is_some() {
                let events: Vec<_> = it.by_ref().take(CHUNK).collect();
                let (reply, rx) = oneshot::channel();
                let job = Job { events, now, reply };
                let jobs = &self.jobs[lane];
                if block {
                    jobs.send(job).map_err(|_| IngestError::Unavailable("the writer stopped".into()))?;
                } else {
                    jobs.try_send(job).map_err(|e| match e {
                        TrySendError::Full(_) => IngestError::Unavailable("the ingest queue is full; retry shortly".into()),
                        TrySendError::Disconnected(_) => IngestError::Unavailable("the writer stopped".into()),
                    })?;
                }
                pending.push(rx);
            }
        }
        Ok((result, pending))
    }

    /// The events split by the writer that takes them: the lane of each event's instance
    /// (`store::pg_events::lane_of`), in input order within a lane. With several lanes, the
    /// lanes' transactions commit apart: when one fails, the request fails (nothing of it is
    /// acknowledged) although another lane may have stored its part, which a resend then finds
    /// as duplicates — the outcome of any request whose answer was lost. (Within a lane, as on
    /// SQLite, a part over [`CHUNK`] events is committed in several jobs, each all or nothing.)
    fn by_lane(&self, ready: Vec<(usize, EventInput)>) -> Vec<(usize, Vec<(usize, EventInput)>)> {
        let lanes = self.jobs.len() as u32;
        if lanes == 1 {
            return vec![(0, ready)];
        }
        let mut split: Vec<Vec<(usize, EventInput)>> = (0..lanes).map(|_| Vec::new()).collect();
        for (index, ev) in ready {
            split[crate::store::pg_events::lane_of(&ev.instance_id, lanes) as usize].push((index, ev));
        }
        split.into_iter().enumerate().filter(|(_, evs)| !evs.is_empty()).collect()
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    /// Stops accepting, lets the writer finish every queued job, and waits for it.
    pub fn shutdown(&mut self) {
        self.jobs.clear();
        for w in self.writers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Events built in code, each checked by the rules JSON events meet.
fn checked(events: Vec<EventInput>) -> Vec<Result<EventInput, parse::Refusal>> {
    events.into_iter().map(|ev| ev.validate().map(|()| ev)).collect()
}

fn fold(result: &mut IngestResult, reply: writer::JobReply) {
    result.add_exhausted(reply.quota_exhausted);
    for (index, v) in reply.verdicts {
        match v {
            Verdict::Accepted => result.accepted += 1,
            Verdict::Late { id, instance_id, change } => {
                result.accepted += 1;
                let unbilled_change = change.map(|c| crate::model::weighted::hours_shown(c, 4).to_string());
                result.late_unbilled.push(LateUnbilled { index, id, instance_id, unbilled_change });
            }
            Verdict::Duplicate => result.duplicates += 1,
            Verdict::Rejected { id, error, reason } => result.rejected.push(Rejected { index, id: Some(id), error, reason }),
        }
    }
}
