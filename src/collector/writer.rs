//! The single writer: one thread owns the ingest connection and commits events in groups.
//!
//! Requests queue jobs on a bounded channel. The writer takes one job, then every job already
//! waiting (up to [`MAX_GROUP_EVENTS`]), and commits them all in one `BEGIN IMMEDIATE`
//! transaction: concurrent requests share one fsync (group commit) without any added wait.
//! Replies are sent only after `COMMIT` returned, so an acknowledged event is durable. If the
//! transaction fails, every job in the group gets the error and nothing of the group is stored.

use super::decide::{decide, Verdict, WindowDeltas};
use super::parse::EventInput;
use crate::config::Config;
use crate::model::Timestamp;
use crate::store::{windows, Store, StoreError};
use std::collections::HashMap;
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
}

/// Called after each commit with (events, commit duration) — feeds metrics.
pub type CommitHook = Box<dyn Fn(usize, std::time::Duration) + Send>;

/// Runs until every sender is dropped.
pub fn run(mut store: Store, cfg: Arc<Config>, jobs: Receiver<Job>, on_commit: CommitHook) {
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
        let started = Instant::now();
        let result = commit_group(&mut store, &cfg, &group);
        on_commit(n, started.elapsed());
        match result {
            Ok(mut verdicts) => {
                crate::faults::crash_point("ingest-after-commit");
                for job in group.into_iter().rev() {
                    let mine = verdicts.pop().unwrap_or_default();
                    let _ = job.reply.send(Ok(mine));
                }
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

fn commit_group(store: &mut Store, cfg: &Config, group: &[Job]) -> Result<Vec<JobReply>, StoreError> {
    store.write(|tx| {
        let mut instances = HashMap::new();
        let mut deltas = WindowDeltas::default();
        let mut out = Vec::with_capacity(group.len());
        for job in group {
            let mut verdicts = Vec::with_capacity(job.events.len());
            for (index, ev) in &job.events {
                verdicts.push((*index, decide(tx, cfg, &mut instances, &mut deltas, ev, job.now)?));
            }
            let quota_exhausted = super::quota::exhausted(tx, cfg, &mut instances, &job.events, job.now)?;
            out.push(JobReply { verdicts, quota_exhausted });
        }
        for ((key, start), (usage, count)) in deltas.into_sorted() {
            windows::add_usage(tx, key, start, usage, count)?;
        }
        for (key, amount) in deltas_unbillable(&instances) {
            crate::store::instances::add_unbillable(tx, key, amount)?;
        }
        Ok(out)
    })
}

fn deltas_unbillable(instances: &HashMap<String, super::decide::InstanceCtx>) -> Vec<(i64, rust_decimal::Decimal)> {
    instances.values().filter(|c| !c.new_unbillable.is_zero()).map(|c| (c.row.key, c.new_unbillable)).collect()
}
