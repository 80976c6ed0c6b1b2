//! The daemon's notification loops (issue 17), started only when `[[notify]]` receivers are
//! configured:
//! - **deliver** (`notify::deliver::run`): POSTs the outbox's due notices. On a shared
//!   PostgreSQL store only the sealer lease's holder delivers (the lease, not a row claim: one
//!   deliverer keeps the at-least-once reasoning simple, and a takeover after the holder dies
//!   resends what it had not acknowledged); on SQLite the daemon always does.
//! - **watch**: every `notify::watch::SCAN_EVERY` the lease holder scans the store for usage
//!   amounts, deadlines and rejections (`notify::watch::scan`, in a read transaction; a write
//!   transaction only when a notice is new); every second, every node
//!   compares its own readiness (the `/readyz` checks) with the last seen and enqueues
//!   `readiness.lost` / `readiness.regained` on a change. The daemon starts as ready; a change
//!   that cannot be written (the store is what failed) is kept and written once it can be.
//!
//! Quota crossings are not found here: the ingest transaction enqueues them
//! (`collector::quota::announce`), so they reach the outbox with the usage that caused them.

use super::{open_off_runtime, Loops};
use crate::notify::{decide, deliver, watch};
use crate::server::AppState;
use crate::store::notify::NewNotice;
use crate::store::Store;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs both loops until shutdown.
pub async fn run(l: Arc<Loops>, st: Arc<AppState>) {
    let mut receivers = Vec::new();
    for t in &l.cfg.notify {
        match deliver::Receiver::new(t.clone()) {
            Ok(r) => receivers.push(r),
            Err(e) => {
                tracing::error!(receiver = %t.name, error = %e, "cannot build the HTTP client of a [[notify]] receiver; its notices wait")
            }
        }
    }
    let store = match open_off_runtime(&l.db).await {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(e) => {
            tracing::error!(error = %e, "notifications cannot open the store; notices wait in the outbox");
            return;
        }
    };
    let watcher = tokio::spawn(watch_loop(l.clone(), st, store.clone()));
    let lw = l.clone();
    deliver::run(store.clone(), receivers, l.metrics.clone(), move || lw.turn().is_ok(), l.cancel.clone()).await;
    let _ = watcher.await;
    let _ = tokio::task::spawn_blocking(move || drop(store)).await;
}

async fn watch_loop(l: Arc<Loops>, st: Arc<AppState>, store: Arc<Mutex<Store>>) {
    let mut ready = true;
    let mut unwritten: Vec<NewNotice> = Vec::new();
    let mut last_scan: Option<Instant> = None;
    let mut last_prune: Option<Instant> = None;
    loop {
        let checks = crate::server::readiness_checks(&st).await;
        let failing: Vec<String> = checks.iter().filter(|c| !c.ok).map(|c| c.name.to_string()).collect();
        let now_ready = failing.is_empty();
        if now_ready != ready {
            ready = now_ready;
            tracing::info!(ready, ?failing, "readiness changed; notifying");
            unwritten.extend(decide::readiness(&l.cfg.notify, &l.node, ready, &failing, crate::model::Timestamp::now()));
        }
        let scan = l.turn().is_ok() && last_scan.is_none_or(|t| t.elapsed() >= watch::SCAN_EVERY);
        let prune = scan && last_prune.is_none_or(|t| t.elapsed() >= watch::PRUNE_EVERY);
        if scan || !unwritten.is_empty() {
            let (s, cfg, now, pending) = (store.clone(), l.cfg.clone(), l.now(), unwritten.clone());
            let result = tokio::task::spawn_blocking(move || {
                let mut s = crate::store::lock_recovering(&s, "notify");
                if prune {
                    let (kinds, before) = watch::prune_rule(now);
                    let n = s.write(|tx| crate::store::notify::prune(tx, &kinds, before, watch::PRUNE_BATCH))?;
                    if n > 0 {
                        tracing::info!(pruned = n, "pruned delivered notices no scan can announce again");
                    }
                }
                let mut fresh = pending;
                if scan {
                    fresh.extend(s.read(|tx| watch::scan(tx, &cfg, now))?);
                }
                if fresh.is_empty() {
                    return Ok(());
                }
                s.write(|tx| {
                    for n in &fresh {
                        crate::store::notify::enqueue(tx, n)?;
                    }
                    Ok(())
                })
            })
            .await;
            match result {
                Ok(Ok(())) => {
                    unwritten.clear();
                    if scan {
                        last_scan = Some(Instant::now());
                    }
                    if prune {
                        last_prune = Some(Instant::now());
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot write notifications to the outbox; retrying"),
                Err(e) => tracing::error!(error = %e, "notification watch task failed"),
            }
        }
        tokio::select! {
            _ = l.cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
