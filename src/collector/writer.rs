//! The writer: one thread owns the ingest connection and commits events in groups. On SQLite
//! there is one; on PostgreSQL one per ingest lane of the store (`store::pg_events`, "Ingest
//! lanes"), each with its own connection and queue, and the collector sends each event to the
//! writer of its instance's lane. What follows holds for each of them.
//!
//! Requests queue jobs on a bounded channel. The writer takes one job, then every job already
//! waiting (up to [`MAX_GROUP_EVENTS`]), and commits them all in one `BEGIN IMMEDIATE`
//! transaction: concurrent requests share one fsync (group commit) without any added wait.
//! Replies are sent only after `COMMIT` returned, so an acknowledged event is durable. If the
//! transaction fails, every job in the group gets the error and nothing of the group is stored.
//!
//! On SQLite, between transactions the writer keeps its dedupe state ([`Dedupe`]), the window sums of the
//! events not yet folded into `windows` ([`TailSums`]) and the instances it has seen. At the
//! start of every transaction `PRAGMA data_version` tells whether another connection committed
//! (a seal, an upload, an instance change, another ingest process): then the dedupe state and
//! the tail catch up with what changed, and the instances are reloaded only if their
//! generation (bumped by triggers on the tables they come from) moved. After a failed
//! transaction all three are dropped and rebuilt from the database.
//!
//! Before it replies to a committed group, the writer checks that the file it holds is still
//! the file at the database's path ([`Store::file_moved`], one `stat` per group, not per
//! event). If it is not (deleted, replaced), the group is answered with
//! [`StoreError::Moved`] — never acknowledged, though it sits in the lost file — an ERROR is
//! logged once, [`WriterHealth::moved`] is set, and every later job is refused the same way.
//!
//! A group that failed because the database is read-only leaves the connection marked, and the
//! store reopens it before the next transaction ([`Store::reopen_if_needed`]); the dropped
//! in-memory state is rebuilt from the new connection as after any failed transaction, so once
//! the file is writable ingest recovers with no restart.
//!
//! Per request, the writer first probes every event's key against the in-memory filter in one
//! pass ([`TxCtx::probe_all`]), so the cache misses of a thousand lookups overlap, and hands the
//! events back with the reply, so their memory is freed on the caller's thread.

use super::decide::{decide, InstanceCache, Keys, TxCtx, Verdict};
use super::parse::EventInput;
use super::WriterHealth;
use crate::config::Config;
use crate::model::Timestamp;
use crate::store::dedupe::Dedupe;
use crate::store::pg_events::{self, Finish, Lane, PgEvents};
use crate::store::sql::Backend;
use crate::store::windows::TailSums;
use crate::store::{Store, StoreError};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Most events committed in one transaction.
pub const MAX_GROUP_EVENTS: usize = 20_000;

/// Events of one request (or one chunk of a file), with their input positions.
pub struct Job {
    pub events: Vec<(usize, EventInput)>,
    pub now: Timestamp,
    pub reply: oneshot::Sender<Result<JobReply, Arc<StoreError>>>,
}

/// The writer's answer to one job: a verdict per event, and the stop-before-excess instances
/// of the job left without quota.
#[derive(Debug, Default)]
pub struct JobReply {
    pub verdicts: Vec<(usize, Verdict)>,
    pub quota_exhausted: Vec<String>,
    /// The job's events, handed back so that the caller's thread frees them, not the writer.
    pub events: Vec<(usize, EventInput)>,
}

/// Called after each commit with (events, commit duration) — feeds metrics.
pub type CommitHook = Box<dyn Fn(usize, std::time::Duration) + Send>;

/// What the writer keeps between transactions.
struct Writer {
    store: Store,
    /// `None` until loaded (lazily, so a failure surfaces as a job's error, not a dead thread).
    dedupe: Option<Dedupe>,
    /// [`super::Tuning::flush_events`], for the dedupe when it is loaded.
    flush_at: usize,
    /// Window usage of the events not yet folded into `windows`.
    tail: TailSums,
    instances: InstanceCache,
    /// `instances::generation` that `instances` reflects; -1: unknown.
    instances_gen: i64,
    /// PostgreSQL: whether the next transaction skips the key lookup (`store::pg_events`,
    /// optimistic mode): yes until a batch meets a stored key, and again after a batch whose
    /// lookup found none.
    pg_optimistic: bool,
    /// PostgreSQL: this writer's ingest lane ([`Lane::ONLY`] on SQLite).
    lane: Lane,
    /// PostgreSQL: [`super::Tuning::fold_events`].
    fold_at: usize,
    /// PostgreSQL: the last commit left the unfolded tail spanning `fold_at` seqs or more;
    /// fold once its jobs are answered.
    fold_due: bool,
}

/// Runs until every sender is dropped.
///
/// `lane`: the PostgreSQL ingest lane this writer commits in ([`Lane::ONLY`] on SQLite); every
/// job sent to it must hold events of that lane's instances only.
pub fn run(
    store: Store,
    cfg: Arc<Config>,
    tuning: super::Tuning,
    jobs: Receiver<Job>,
    on_commit: CommitHook,
    health: Arc<WriterHealth>,
    lane: Lane,
) {
    let mut w = Writer {
        lane,
        fold_at: tuning.fold_events,
        fold_due: false,
        store,
        dedupe: None,
        flush_at: tuning.flush_events,
        tail: TailSums::new(tuning.fold_events),
        instances: InstanceCache::default(),
        instances_gen: -1,
        pg_optimistic: true,
    };
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        let mut n = group[0].events.len();
        while n < MAX_GROUP_EVENTS {
            match jobs.try_recv() {
                Ok(job) => {
                    n += job.events.len();
                    group.push(job);
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
            }
        }
        if health.moved().is_some() {
            let e = Arc::new(StoreError::Moved(w.store.path().to_path_buf()));
            for job in group {
                let _ = job.reply.send(Err(e.clone()));
            }
            continue;
        }
        crate::faults::panic_point("ingest-writer-panic");
        let started = Instant::now();
        let result = w.commit_group(&cfg, &group).and_then(|v| match w.store.file_moved() {
            None => Ok(v),
            Some(why) => {
                tracing::error!(
                    "{why}: events committed since are in a file no one can read; ingest now answers 503 and nothing more is acknowledged — restore the database file, then restart meterd"
                );
                if let Ok(mut m) = health.moved.lock() {
                    *m = Some(why);
                }
                Err(StoreError::Moved(w.store.path().to_path_buf()))
            }
        });
        on_commit(n, started.elapsed());
        health.committed(result.as_ref().map(|_| ()));
        match result {
            Ok(mut verdicts) => {
                crate::faults::crash_point("ingest-after-commit");
                for job in group.into_iter().rev() {
                    let mut mine = verdicts.pop().unwrap_or_default();
                    mine.events = job.events;
                    let _ = job.reply.send(Ok(mine));
                }
                w.fold_if_due();
            }
            Err(e) => {
                tracing::warn!(error = %e, events = n, "ingest commit failed; nothing of this group was stored");
                let e = Arc::new(e);
                for job in group {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

impl Writer {
    /// PostgreSQL: folds the unfolded tail once the last commit said so, beside the other lanes
    /// (`store::windows::fold_concurrently`). A failure is logged and changes nothing: readers
    /// sum a longer tail, and the next commit asks again.
    fn fold_if_due(&mut self) {
        if !std::mem::take(&mut self.fold_due) {
            return;
        }
        if let Err(e) = crate::store::windows::fold_concurrently(&mut self.store) {
            tracing::warn!(error = %e, "folding the unfolded tail into window totals failed; nothing was lost (readers sum the events), the next commit tries again");
        }
    }

    fn commit_group(&mut self, cfg: &Config, group: &[Job]) -> Result<Vec<JobReply>, StoreError> {
        match self.store.backend() {
            Backend::Sqlite => self.commit_group_sqlite(cfg, group),
            Backend::Postgres => self.commit_group_postgres(cfg, group),
        }
    }

    fn commit_group_sqlite(&mut self, cfg: &Config, group: &[Job]) -> Result<Vec<JobReply>, StoreError> {
        if self.dedupe.is_none() {
            let flush_at = self.flush_at;
            self.dedupe = Some(self.store.read(|tx| Dedupe::load_flushing_at(tx, flush_at))?);
        }
        let Writer { store, dedupe, tail, instances, instances_gen, .. } = self;
        let dedupe = dedupe.as_mut().expect("loaded above");
        let result = store.write(|tx| {
            let changed = dedupe.sync(tx)?;
            if changed && crate::store::instances::generation(tx)? != *instances_gen {
                instances.clear();
            }
            tail.sync(tx, changed)?;
            let mut app = crate::store::dedupe::appender(tx)?;
            let keys = Keys::Sqlite { dedupe: &mut *dedupe, app: &mut app };
            let out = decide_group(&mut TxCtx { tx, keys, cfg, instances: &mut *instances, tail: &mut *tail }, cfg, group)?;
            // Every acknowledged event must be in the table before the commit.
            app.finish()?;
            settle_instances(tx, instances)?;
            dedupe.maybe_flush(tx)?;
            let folded = tail.maybe_fold(tx, dedupe.last_seq())?;
            // Our own changes (auto-registration, package use) are in the cache already.
            Ok((out, folded, crate::store::instances::generation(tx)?))
        });
        let last_seq = dedupe.last_seq();
        match result {
            Ok((out, folded, gen)) => {
                dedupe.committed();
                tail.committed(folded, last_seq);
                *instances_gen = gen;
                Ok(out)
            }
            Err(e) => {
                dedupe.rolled_back();
                tail.invalidate();
                instances.clear();
                *instances_gen = -1;
                Err(e)
            }
        }
    }

    /// The same on a shared PostgreSQL store: the transaction holds this writer's lane lock
    /// (and the writers' lock shared: `store::pg::Lock::Lane`), looks the group's keys up by
    /// the unique index (`store::pg_events`), and counts its events in the lane's row. It keeps
    /// no window sums: the events stay in the unfolded tail, which readers sum, until a
    /// concurrent fold moves them into `windows` ([`Writer::fold_if_due`], once the tail spans
    /// [`super::Tuning::fold_events`] seqs). The first read of every transaction
    /// ([`pg_events::head`]) says whether an instance changed (the cache is dropped) and
    /// checks the store's lane count, which the collector read at start.
    ///
    /// While batches hold only new keys the lookup is skipped (optimistic mode): the group is
    /// decided taking every key as not stored, and `PgEvents::finish` checks that. When a key
    /// was stored after all, the whole transaction rolls back, the in-memory state the attempt
    /// touched (instance cache with its package use and counters) is dropped, and the group is
    /// decided again with the lookup in a new transaction — only that second answer is sent.
    /// The rollback takes no savepoint (a savepoint is one more round trip and a
    /// subtransaction in every transaction, while the fallback is rare). The next group then
    /// starts with the lookup (clients resend whole batches, so duplicates come in runs),
    /// until one finds no stored key.
    fn commit_group_postgres(&mut self, cfg: &Config, group: &[Job]) -> Result<Vec<JobReply>, StoreError> {
        if self.pg_optimistic {
            if let Some(out) = self.try_postgres(cfg, group, true)? {
                return Ok(out);
            }
            // A key taken as new was stored: nothing of the attempt was committed.
            self.instances.clear();
            self.instances_gen = -1;
        }
        // Lookup mode never answers `KeyStored` (a stored key it missed is an error there).
        self.try_postgres(cfg, group, false)?
            .ok_or_else(|| StoreError::Corrupt("the key lookup missed a stored key; nothing of this batch is acknowledged".into()))
    }

    /// One transaction of [`Self::commit_group_postgres`]: the replies once committed, or
    /// `None` when optimistic mode met a stored key (the transaction rolled back).
    fn try_postgres(&mut self, cfg: &Config, group: &[Job], optimistic: bool) -> Result<Option<Vec<JobReply>>, StoreError> {
        let Writer { store, instances, instances_gen, pg_optimistic, lane, fold_at, fold_due, .. } = self;
        let lane = *lane;
        let mut key_stored = false;
        let result = store.write_under(crate::store::pg::Lock::Lane(lane.index), |tx| {
            let head = pg_events::head(tx)?;
            if head.lanes != lane.count {
                return Err(StoreError::Invalid(format!(
                    "the store's ingest lanes changed from {} to {} while this node ran (ingest_state.lanes): restart this node; nothing of this batch was stored",
                    lane.count, head.lanes
                )));
            }
            if head.instances_gen != *instances_gen {
                instances.clear();
            }
            let Some((out, found, last, appended)) = attempt_postgres(tx, cfg, group, instances, head.last_seq, lane, optimistic)? else {
                // Never committed: `store.write` rolls back on an error, and this one is
                // answered by the lookup-mode attempt, never sent.
                key_stored = true;
                return Err(StoreError::Internal("optimistic ingest met a stored key; rolled back to decide again".into()));
            };
            let gen = pg_events::count_appended(tx, lane, appended)?;
            Ok((out, found, gen, last - head.windows_through))
        });
        match result {
            Ok((out, found, gen, tail_span)) => {
                *instances_gen = gen;
                *pg_optimistic = found == 0;
                *fold_due = tail_span >= i64::try_from(*fold_at).unwrap_or(i64::MAX);
                Ok(Some(out))
            }
            Err(_) if key_stored => Ok(None),
            Err(e) => {
                instances.clear();
                *instances_gen = -1;
                Err(e)
            }
        }
    }
}

/// One attempt at a PostgreSQL group (see `commit_group_postgres`) in `lane`, after the
/// stored `seq` `last`: the replies, how many stored keys the lookups found, the `seq` of its
/// last event and how many events it appended; or `None` when optimistic mode met a stored
/// key (the transaction must roll back).
type Attempt = (Vec<JobReply>, usize, i64, i64);

fn attempt_postgres(
    tx: &crate::store::sql::Tx<'_>,
    cfg: &Config,
    group: &[Job],
    instances: &mut InstanceCache,
    last: i64,
    lane: Lane,
    optimistic: bool,
) -> Result<Option<Attempt>, StoreError> {
    let mut events = PgEvents::begin_in_lane(last, lane, optimistic);
    // Decisions add window usage here; on PostgreSQL the writer keeps no sums (the tail is
    // read back when it is folded), so these are dropped.
    let mut delta = TailSums::new(usize::MAX);
    let keys = Keys::Postgres(&mut events);
    // A stored key the streamed `COPY` met surfaces as the error of whichever statement ends
    // it (`store::pg_copy`): optimistic mode then decides again, as when `finish` meets it.
    let out = match decide_group(&mut TxCtx { tx, keys, cfg, instances: &mut *instances, tail: &mut delta }, cfg, group) {
        Ok(out) => out,
        Err(e) => return events.stored_key_or(e).map(|()| None),
    };
    let found = events.found();
    let last = events.last_seq();
    let appended = events.appended();
    if events.finish(tx)? == Finish::KeyStored {
        return Ok(None);
    }
    settle_instances(tx, instances)?;
    Ok(Some((out, found, last, appended)))
}

/// Decides every event of every job of a group, in order; one reply per job.
fn decide_group(cx: &mut TxCtx<'_, '_>, cfg: &Config, group: &[Job]) -> Result<Vec<JobReply>, StoreError> {
    let mut out = Vec::with_capacity(group.len());
    for job in group {
        let probes = cx.probe_all(&job.events)?;
        let mut verdicts = Vec::with_capacity(job.events.len());
        for ((index, ev), probe) in job.events.iter().zip(probes) {
            verdicts.push((*index, decide(cx, ev, probe, job.now)?));
        }
        let quota_exhausted = super::quota::exhausted(cx.tx, cfg, cx.instances, &job.events, job.now)?;
        super::quota::announce(cx.tx, cfg, cx.instances, &job.events, job.now)?;
        out.push(JobReply { verdicts, quota_exhausted, events: Vec::new() });
    }
    Ok(out)
}

/// Writes what the group added to its instances' unbillable usage and late-unbilled counts.
fn settle_instances(tx: &crate::store::sql::Tx<'_>, instances: &mut InstanceCache) -> Result<(), StoreError> {
    for ctx in instances.values_mut().filter(|c| !c.new_unbillable.is_zero() || c.new_late > 0 || !c.new_late_change.is_zero()) {
        if !ctx.new_unbillable.is_zero() {
            crate::store::instances::add_unbillable(tx, ctx.row.key, ctx.new_unbillable)?;
            ctx.new_unbillable = rust_decimal::Decimal::ZERO;
        }
        if ctx.new_late > 0 {
            crate::store::points::add_late_unbilled(tx, ctx.row.key, ctx.new_late)?;
            ctx.new_late = 0;
        }
        if !ctx.new_late_change.is_zero() {
            crate::store::levels::add_late_change(tx, ctx.row.key, ctx.new_late_change)?;
            ctx.new_late_change = rust_decimal::Decimal::ZERO;
        }
    }
    Ok(())
}
