//! The upload driver: moves records from `pending` to `delivered` or `rejected`, driven by the
//! store so that a restart resumes where the last run stopped (design §6).
//!
//! One run: expire what the store can no longer accept → resend open batches (same bytes) →
//! cut new batches from pending records → for each batch, attempt until an answer decides it:
//! delivered; transient (backoff, then the fallback host after repeated failures; once
//! `max_attempts` is spent the batch is left open and the run stops, so no later batch is cut
//! or sent before it and the next run resends it first: records are delivered in queue order
//! across runs); configuration error (batch abandoned, records pending again, the run stops);
//! too many records (split, smaller batches for the rest of the run); a bad record (split down
//! to single records, each bad one rejected alone).
//! What an answer does is decided apart, pure and table-tested ([`super::step::decide`]);
//! this module is the shell that performs it (SQL, metrics, logs, sleeps).
//! No transaction is held across network I/O. Every batch a run sends is claimed for this
//! process in the transaction that finds or cuts it ([`crate::store::claims`]), so two
//! uploaders on one database never send the same batch at once; the run releases its claims
//! at its end.
//!
//! A delivery is committed (one update of the batch row, with the next batch cut in the same
//! transaction) before it is counted. While a batch's first attempt is in flight, the records
//! the next batch will likely hold are read ahead (no write, no lock held across the request);
//! the delivery transaction uses them only if exactly those records are still the first
//! pending ones, so the next batch is still cut, stored and committed before it is sent. The
//! records rows of delivered batches are written ([`batches::apply_deliveries`]) in bulk: at
//! the start of a run (whatever a crash left), every [`APPLY_DELIVERIES_AFTER`] delivered
//! records, and at the end of the run. On SQLite the delivery transaction that reaches that
//! count applies them; on PostgreSQL a second connection does, while the run goes on sending
//! (`upload::applier`), and the delivery transactions take the writers' lock shared
//! (`store::pg::Lock::Upload`).
//!
//! With [`upload_with_metrics`] (the daemon), every attempt and every delivered, rejected or
//! expired record is counted as it happens; a record state change is counted inside the
//! transaction that commits it, so `/metrics` never lags what `status` shows.

use super::applier::Applier;
use super::backoff::Backoff;
use super::body::join_records;
use super::classify::classify;
use super::client::{http_client, request_url, send};
use super::sign::new_nonce;
use super::step::{self, Decision, Limits, Pace, Step};
use crate::config::{Secret, UploadConfig};
use crate::metrics::Metrics;
use crate::model::Timestamp;
use crate::store::batches::{self, Batch};
use crate::store::claims::{self, Holder};
use crate::store::pg::Lock;
use crate::store::sql::Tx;
use crate::store::{dead_letters, meta, records, Store, StoreError};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The store refuses records that begin more than this long before now (MKT.9004).
pub const MAX_RECORD_AGE_SECS: i64 = 21 * 86_400;

/// Delivered records whose rows are written together. A catch-up seal writes an instance's
/// windows side by side, so one batch (one window of many instances) touches a page per
/// record; applying ~16 batches at once rewrites each of those pages once instead of 16
/// times, while one applying transaction stays short (tens of milliseconds).
pub const APPLY_DELIVERIES_AFTER: u64 = 16_384;

/// What one upload run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UploadReport {
    pub delivered: u64,
    pub rejected: u64,
    pub expired: u64,
    /// HTTP attempts made.
    pub requests: u64,
    /// Attempts by outcome: delivered, transient, config_error, too_many, record_error.
    pub outcomes: BTreeMap<String, u64>,
    /// Records still waiting (pending or in an open batch) after the run.
    pub waiting: u64,
    /// Longest single backoff wait, in milliseconds.
    pub max_backoff_ms: u64,
    /// Whether the fallback host was used.
    pub used_fallback: bool,
    /// Set when the run stopped on a configuration error (wrong key, endpoint, account).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_error: Option<String>,
    /// Set when a batch ran out of attempts on transient failures (the run stopped there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transient_error: Option<String>,
    /// Duration of each HTTP attempt, in microseconds (for latency metrics).
    #[serde(skip)]
    pub request_latencies_us: Vec<u64>,
}

/// Why a run could not even start.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs a closure on the store off the async runtime.
pub(super) async fn db<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = crate::store::lock_recovering(&store, "upload");
        f(&mut s)
    })
    .await
    .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
}

/// One upload run at `now` (decides expiry; request `ts` always uses the real clock).
pub async fn upload(store: Arc<Mutex<Store>>, cfg: &UploadConfig, key: &Secret, now: Timestamp) -> Result<UploadReport, UploadError> {
    upload_run(store, cfg, key, now, None).await
}

/// [`upload`], counting into `metrics` as the run goes: each attempt (outcome, latency) when
/// its answer is classified, and delivered, rejected and expired records inside the
/// transaction that commits their new state, before the commit. A run cut short (shutdown)
/// or failing half-way has counted what it committed.
pub async fn upload_with_metrics(
    store: Arc<Mutex<Store>>,
    cfg: &UploadConfig,
    key: &Secret,
    now: Timestamp,
    metrics: Arc<Metrics>,
) -> Result<UploadReport, UploadError> {
    upload_run(store, cfg, key, now, Some(metrics)).await
}

async fn upload_run(
    store: Arc<Mutex<Store>>,
    cfg: &UploadConfig,
    key: &Secret,
    now: Timestamp,
    metrics: Option<Arc<Metrics>>,
) -> Result<UploadReport, UploadError> {
    let primary = request_url(&cfg.endpoint, &cfg.path).map_err(|e| UploadError::Config(e.to_string()))?;
    let fallback = match &cfg.fallback {
        Some(f) => {
            Some(request_url(f, &cfg.path).map_err(|e| UploadError::Config(e.to_string().replace("upload.endpoint", "upload.fallback")))?)
        }
        None => None,
    };
    let backoff = Backoff::new(cfg.backoff_base.0, cfg.backoff_cap.0).map_err(|e| UploadError::Config(e.to_string()))?;
    let http = http_client(cfg.timeout.0).map_err(|e| UploadError::Config(format!("cannot build the HTTP client: {e}")))?;
    let mut run = Run {
        store,
        cfg,
        key,
        backoff,
        http,
        urls: (primary, fallback),
        pace: Pace { on_fallback: false, consecutive_transient: 0, batch_size: cfg.batch_size.clamp(1, 1000), unapplied: 0 },
        metrics,
        report: UploadReport::default(),
        applier: None,
        applier_tried: false,
    };
    // The run's start: one clock reading stamps what it writes (apply, expiry, claims).
    let started = Timestamp::now().0;
    run.report.expired = run.expire(now, started).await?;
    // Claimed in a write transaction: a batch another live process is sending is left to it,
    // unless this run holds the sealer lease of a shared store (then that process lost it).
    let mut queue: VecDeque<Batch> = db(&run.store, move |s| {
        let lease_held = s.fence().is_some();
        s.write(|tx| claims::claim_open(tx, &Holder::this_process(), started, lease_held))
    })
    .await?
    .into();
    'outer: loop {
        while let Some(batch) = queue.pop_front() {
            match run.deliver(batch).await? {
                Next::Done => {}
                Next::Then(more) => {
                    for b in more.into_iter().rev() {
                        queue.push_front(b);
                    }
                }
                Next::Stop => break 'outer,
            }
        }
        let size = run.pace.batch_size;
        let cut_at = Timestamp::now().0;
        let fresh = db(&run.store, move |s| {
            s.write(|tx| {
                let recs = batches::next_pending(tx, size)?;
                if recs.is_empty() {
                    return Ok(None);
                }
                create_claimed(tx, &recs, cut_at).map(Some)
            })
        })
        .await?;
        match fresh {
            Some(b) => queue.push_back(b),
            None => break,
        }
    }
    if let Some(applier) = run.applier.take() {
        applier.finish().await;
    }
    // The run's end: one clock reading stamps the final apply and the outcome note.
    let ended = Timestamp::now();
    let outcome = run.outcome_note(ended);
    db(&run.store, move |s| {
        s.write(|tx| {
            batches::apply_deliveries(tx, ended.0)?;
            claims::release(tx, &Holder::this_process())?;
            if let Some(ok) = &outcome.0 {
                meta::set(tx, meta::LAST_UPLOAD_OK, ok)?;
            }
            // `last_error` is the latest run's: a run that ends without one clears it, so a
            // failure fixed since (records requeued and delivered, the key corrected) stops
            // failing `status --check`. Rejected records keep their own line while rejected.
            match &outcome.1 {
                Some(err) => meta::set(tx, meta::LAST_UPLOAD_ERROR, err)?,
                None => meta::clear(tx, meta::LAST_UPLOAD_ERROR)?,
            }
            Ok(())
        })
    })
    .await?;
    run.report.waiting = db(&run.store, |s| s.read(records::waiting)).await?;
    Ok(run.report)
}

enum Next {
    Done,
    Then(Vec<Batch>),
    Stop,
}

struct Run<'a> {
    store: Arc<Mutex<Store>>,
    cfg: &'a UploadConfig,
    key: &'a Secret,
    backoff: Backoff,
    http: reqwest::Client,
    urls: (reqwest::Url, Option<reqwest::Url>),
    /// Fallback host, transient answers in a row, batch size, unapplied deliveries; changed
    /// only by [`step::decide`]'s decisions.
    pace: Pace,
    /// The daemon's metrics, updated as the run goes.
    metrics: Option<Arc<Metrics>>,
    report: UploadReport,
    /// PostgreSQL: applies delivered batches on a second connection while the run goes on
    /// ([`super::applier`]), started when the first apply is due (a run with fewer deliveries
    /// opens no second connection); `None` on SQLite, where the delivery transaction applies
    /// them.
    applier: Option<Applier>,
    /// Whether [`Applier::start`] was tried (once per run).
    applier_tried: bool,
}

impl Run<'_> {
    /// (last success, last error) to remember in the store, stamped `t` (the real time).
    fn outcome_note(&self, t: Timestamp) -> (Option<String>, Option<String>) {
        let r = &self.report;
        let ok = (r.delivered > 0).then(|| t.to_string());
        let err = r
            .config_error
            .clone()
            .or_else(|| r.transient_error.clone())
            .or_else(|| {
                (r.rejected + r.expired > 0)
                    .then(|| format!("{} record(s) rejected, {} expired; see `meterd rejected`", r.rejected, r.expired))
            })
            .map(|e| format!("{t}: {e}"));
        (ok, err)
    }

    /// Applies what an earlier run left unapplied, then rejects pending records that begin
    /// more than 21 days before `now`; the rows written are stamped `at_ns` (the real time).
    async fn expire(&mut self, now: Timestamp, at_ns: i64) -> Result<u64, StoreError> {
        let cutoff = now.secs() - MAX_RECORD_AGE_SECS;
        let metrics = self.metrics.clone();
        db(&self.store, move |s| {
            s.write(|tx| {
                batches::apply_deliveries(tx, at_ns)?;
                let mut n = 0;
                for r in records::pending_before(tx, cutoff)? {
                    let msg = format!("record begins at {}, more than 21 days before {now}; the store refuses it (MKT.9004)", Timestamp::from_secs(r.begin));
                    let body = join_records(&[&r.body]);
                    dead_letters::refuse_record(tx, &r.metering_sn, "EXPIRED", &msg, &body, at_ns)?;
                    tracing::error!(sn = %r.metering_sn, instance = %r.instance_id, "record expired before it could be delivered; see `meterd rejected`");
                    n += 1;
                }
                // Counted before the commit makes the rejections visible (see the module docs).
                if let Some(m) = &metrics {
                    m.record_rejected(n);
                }
                Ok(n)
            })
        })
        .await
    }

    /// Counts an attempt's outcome (in the report and, live, in the metrics).
    fn count(&mut self, outcome: &str, latency_us: u64) {
        *self.report.outcomes.entry(outcome.to_string()).or_default() += 1;
        if let Some(m) = &self.metrics {
            m.record_upload_attempt(outcome, latency_us);
        }
    }

    /// The configured bounds of this run's decisions.
    fn limits(&self) -> Limits {
        Limits {
            has_fallback: self.urls.1.is_some(),
            fallback_after: self.cfg.fallback_after,
            max_attempts: self.cfg.max_attempts,
            apply_after: APPLY_DELIVERIES_AFTER,
        }
    }

    /// Attempts one batch until its fate for this run is decided: each attempt sends, asks
    /// [`step::decide`] (pure) what the answer does, and performs that [`Step`].
    async fn deliver(&mut self, batch: Batch) -> Result<Next, StoreError> {
        let mut attempt: u32 = 0;
        // The records the next batch will most likely hold, read while the first attempt is
        // in flight; the delivery transaction checks them against the queue before use.
        let mut next_read: Option<Vec<batches::Member>> = None;
        loop {
            let url = if self.pace.on_fallback { self.urls.1.clone().unwrap_or_else(|| self.urls.0.clone()) } else { self.urls.0.clone() };
            // The request's `ts` (the store checks it against its own clock).
            let ts_ms = Timestamp::now().0 / 1_000_000;
            let started = std::time::Instant::now();
            let nonce = new_nonce();
            let request = send(&self.http, &url, self.key, &batch.body, ts_ms, &nonce);
            let response = if attempt == 0 {
                let size = self.pace.batch_size;
                let read_ahead = db(&self.store, move |s| s.read(|tx| batches::next_pending(tx, size)));
                let (response, read) = tokio::join!(request, read_ahead);
                // A failed read-ahead only means the delivery transaction reads the records itself.
                next_read = read.ok();
                response
            } else {
                request.await
            };
            let latency_us = started.elapsed().as_micros() as u64;
            self.report.request_latencies_us.push(latency_us);
            crate::faults::crash_point("upload-after-response");
            self.report.requests += 1;
            attempt += 1;
            // The answer's step: one clock reading stamps everything it writes.
            let now = Timestamp::now().0;
            let id = batch.id;
            let Decision { step, outcome, pace, switched_to_fallback } =
                step::decide(classify(&response), batch.records.max(0) as u64, attempt, self.pace, &self.limits());
            self.count(outcome, latency_us);
            match step {
                Step::Deliver { apply } => {
                    let size = self.pace.batch_size;
                    let read_before = next_read.take();
                    let (metrics, n) = (self.metrics.clone(), batch.records as u64);
                    if apply && !self.applier_tried {
                        self.applier_tried = true;
                        self.applier = Applier::start(&self.store).await;
                    }
                    // An applier that failed left deliveries unapplied: this transaction applies.
                    let apply_left = self.applier.as_ref().is_some_and(Applier::failed);
                    if apply_left {
                        self.applier = None;
                    }
                    // Without an apply in it, beside the background applies (`super::applier`).
                    let apply_here = (apply || apply_left) && self.applier.is_none();
                    let lock = if apply_here { Lock::Writers } else { Lock::Upload };
                    // The next batch is cut in the same transaction: one commit per batch.
                    let next = db(&self.store, move |s| {
                        s.write_under(lock, |tx| {
                            batches::attempt_delivered(tx, id)?;
                            if apply_here {
                                batches::apply_deliveries(tx, now)?;
                            }
                            let next = cut_next(tx, size, read_before, now)?;
                            // Last before the commit: `status` can see the batch delivered
                            // only once it is counted (see the module docs).
                            if let Some(m) = &metrics {
                                m.record_delivered(n);
                            }
                            Ok(next)
                        })
                    })
                    .await?;
                    if let (true, Some(applier)) = (apply, &self.applier) {
                        applier.wake(now);
                    }
                    self.report.delivered += batch.records as u64;
                    self.pace = pace;
                    return Ok(next.map_or(Next::Done, |b| Next::Then(vec![b])));
                }
                Step::Transient { reason, retry_after, retry, backoff_attempt } => {
                    // Out of attempts: the batch stays open and the run stops here, so no later
                    // batch is cut or sent before it (delivery stays in queue order).
                    let gave_up = (!retry).then(|| {
                        let attempts = if attempt == 1 { "1 attempt".to_owned() } else { format!("{attempt} attempts") };
                        format!(
                            "batch {id} still failing after {attempts}: {reason}; it stays queued for the next run, which resends it first"
                        )
                    });
                    if gave_up.is_some() {
                        // ERROR: records are left undelivered (the README's log levels).
                        tracing::error!(batch = id, attempt, url = %url, reason = %reason, "upload attempt failed, the last of this run: gives up for this run and stops; the batch stays queued and the next run resends it first, with the same bytes");
                    } else {
                        tracing::warn!(batch = id, attempt, url = %url, reason = %reason, "upload attempt failed; will retry the same bytes");
                    }
                    // The run's end, right after a give-up, stores the error for `status`.
                    let r2 = reason.clone();
                    db(&self.store, move |s| {
                        s.write(|tx| {
                            batches::attempted(tx, id, Some(&r2))?;
                            claims::claim(tx, id, &Holder::this_process(), now)
                        })
                    })
                    .await?;
                    self.pace = pace;
                    if let Some(e) = gave_up {
                        self.report.transient_error = Some(e);
                        return Ok(Next::Stop);
                    }
                    if switched_to_fallback {
                        tracing::warn!(after = pace.consecutive_transient, "switching to the fallback host (upload.fallback)");
                        self.report.used_fallback = true;
                    }
                    let wait = self.backoff.delay(backoff_attempt, retry_after, &mut rand::rng());
                    self.report.max_backoff_ms = self.report.max_backoff_ms.max(wait.as_millis() as u64);
                    tokio::time::sleep(wait).await;
                }
                Step::Abandon { code, text } => {
                    tracing::error!(batch = id, code = %code, "{text}");
                    db(&self.store, move |s| s.write(|tx| batches::attempted(tx, id, Some(&code)).and_then(|()| batches::abandon(tx, id))))
                        .await?;
                    self.report.config_error = Some(text);
                    self.pace = pace;
                    return Ok(Next::Stop);
                }
                Step::KeepQueued => {
                    tracing::error!(batch = id, "the store says one record is too many; leaving it queued");
                    self.pace = pace;
                    return Ok(Next::Done);
                }
                Step::Split => {
                    self.pace = pace;
                    let halves = db(&self.store, move |s| s.write(|tx| split_claimed(tx, id, now))).await?;
                    return Ok(Next::Then(vec![halves.0, halves.1]));
                }
                Step::Reject { code, message } => {
                    self.pace = pace;
                    let (c, m, metrics) = (code.clone(), message.clone(), self.metrics.clone());
                    let sns = db(&self.store, move |s| {
                        s.write(|tx| {
                            let sns = dead_letters::refuse_batch(tx, id, &c, &m, now)?;
                            // Counted before the commit makes the rejection visible.
                            if let Some(metrics) = &metrics {
                                metrics.record_rejected(sns.len() as u64);
                            }
                            Ok(sns)
                        })
                    })
                    .await?;
                    for sn in &sns {
                        tracing::error!(sn = %sn, code = %code, message = %message, "record rejected by the store; see `meterd rejected`, fix the cause, then `meterd requeue {sn}`");
                    }
                    self.report.rejected += sns.len() as u64;
                    return Ok(Next::Done);
                }
            }
        }
    }
}

/// A batch's request body, joined from its members' stored bytes ([`join_records`]).
fn body_of(recs: &[batches::Member]) -> Vec<u8> {
    join_records(&recs.iter().map(|r| r.body.as_slice()).collect::<Vec<_>>())
}

/// Claims batch `b` for this process, stamped `now_ns` (in the transaction that cut it).
fn claimed(tx: &Tx<'_>, b: Batch, now_ns: i64) -> Result<Batch, StoreError> {
    claims::claim(tx, b.id, &Holder::this_process(), now_ns)?;
    Ok(b)
}

/// Cuts a batch of `recs` claimed by this process (one transaction with the cut), stamped
/// `now_ns`; its body is [`body_of`] the members.
fn create_claimed(tx: &Tx<'_>, recs: &[batches::Member], now_ns: i64) -> Result<Batch, StoreError> {
    claimed(tx, batches::create(tx, recs, body_of(recs), now_ns)?, now_ns)
}

/// The next batch of up to `size` records, claimed by this process, cut in the delivery
/// transaction of the one before: from the records read ahead while that one was in flight
/// (`read_before`) when they are still the first pending ones (`batches::cut_read_ahead`),
/// else from the queue read again. `None` when nothing is pending.
fn cut_next(tx: &Tx<'_>, size: usize, read_before: Option<Vec<batches::Member>>, now_ns: i64) -> Result<Option<Batch>, StoreError> {
    let recs = match read_before {
        Some(read) => match batches::cut_read_ahead(tx, size, read, body_of, now_ns)? {
            batches::ReadAhead::Cut(b) => return claimed(tx, b, now_ns).map(Some),
            batches::ReadAhead::Pending(recs) => recs,
        },
        None => batches::next_pending(tx, size)?,
    };
    if recs.is_empty() {
        return Ok(None);
    }
    create_claimed(tx, &recs, now_ns).map(Some)
}

/// Splits batch `id` into two halves claimed by this process, stamped `now_ns`.
fn split_claimed(tx: &Tx<'_>, id: i64, now_ns: i64) -> Result<(Batch, Batch), StoreError> {
    let (a, b) = batches::split(tx, id)?;
    Ok((create_claimed(tx, &a, now_ns)?, create_claimed(tx, &b, now_ns)?))
}

/// Loads the upload key: `METERD_ISV_KEY` wins, then `upload.key_file`. Returns `None` when
/// neither is set. A key file readable by others is warned about (once, here).
pub fn load_key(cfg: &UploadConfig) -> Result<Option<Secret>, String> {
    if let Ok(k) = std::env::var("METERD_ISV_KEY") {
        if !k.is_empty() {
            return Ok(Some(Secret::new(k.into_bytes())));
        }
    }
    match &cfg.key_file {
        Some(p) => {
            let (key, warning) = Secret::from_file(p)?;
            if let Some(w) = warning {
                tracing::warn!("{w}");
            }
            Ok(Some(key))
        }
        None => Ok(None),
    }
}
