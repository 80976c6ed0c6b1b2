//! The background apply of delivered batches on PostgreSQL (issue 13's upload target).
//!
//! Applying a delivered batch ([`batches::apply_deliveries`]) writes `delivered` into each of
//! its records rows and drops its queue rows: bookkeeping only, since a record counts as
//! delivered from the commit that marks its batch delivered. On SQLite it runs inside the
//! delivery transaction every [`super::run::APPLY_DELIVERIES_AFTER`] records (one writer at a
//! time). On PostgreSQL it ran there too, and took a third of an upload's wall time
//! (`auto_explain`, 2026-12-01: ~10 ms of server time per 1,000 records, ~190 ms per 16 batches,
//! during which no batch was sent). Here it runs on a second connection, on the other core,
//! while the uploader goes on sending: the delivery transactions take the writers' lock shared
//! with [`UPLOAD_LOCK`](crate::store::pg::UPLOAD_LOCK) (`Lock::Upload`), the apply shared with
//! [`APPLY_LOCK`](crate::store::pg::APPLY_LOCK) (`Lock::Apply`).
//!
//! **Why the two may run side by side.** They write disjoint rows: a delivery transaction
//! marks one batch row delivered and marks pending queue rows (`batch_id IS NULL`) for the
//! next batch; the apply deletes the key ranges, queue rows and updates the records rows of
//! batches already delivered and committed (it reads each batch's state in its own snapshot,
//! so a delivery not yet committed is left for the next apply). Every other writer of those
//! rows (seal, split, rejection, expiry, requeue, the run's own first and last apply) takes the
//! writers' lock exclusively and so runs with neither. Two applies never run at once
//! (`APPLY_LOCK`), nor two uploaders' deliveries (`UPLOAD_LOCK`).
//!
//! **Failures.** The connection is opened by the applier's thread, so a slow server delays
//! no delivery. An apply that fails (a lost connection, a fenced node, an inconsistency) or a
//! connection that cannot be opened is logged and ends the applier: the run sees it
//! ([`Applier::failed`]) and applies in its next delivery transaction, then in those that
//! reach the count, as on SQLite, where an inconsistency fails the run as before. Nothing is
//! lost meanwhile: the deliveries stay delivered until an apply writes them into their records.
//! The second connection is fenced as the first is (`Store::set_fence`): a node that lost the
//! sealer lease stops applying too.
//!
//! **A run that ends early** (an error, the daemon's shutdown) drops the applier without
//! waiting: its thread ends after the apply in progress, if any, and closes its connection.

use super::run::db;
use crate::store::batches;
use crate::store::pg::Lock;
use crate::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// A background apply of delivered batches: a thread that owns a second PostgreSQL
/// connection (so the connection is never dropped on the async runtime, where its blocking
/// client must not close), woken through a channel.
pub(super) struct Applier {
    /// Wakes the thread; carries the time to stamp the records rows with (ns since the
    /// epoch). Dropped to stop it: the thread ends after the apply in progress.
    wake: Option<mpsc::SyncSender<i64>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Set by the thread when it ended on an error.
    failed: Arc<AtomicBool>,
}

impl Applier {
    /// Starts an applier on a second connection to `store`'s server, fenced as `store` is;
    /// returns at once (the thread connects). `None` on SQLite, or when no thread can be
    /// started (logged): the deliveries are then applied inside the delivery transactions.
    pub(super) async fn start(store: &Arc<Mutex<Store>>) -> Option<Applier> {
        let second = db(store, |s| Ok(s.second_connection())).await.ok().flatten()?;
        let failed = Arc::new(AtomicBool::new(false));
        // Capacity 1: a wake-up while one is already waiting changes nothing, since an apply
        // applies every delivered batch there is.
        let (wake, woken) = mpsc::sync_channel::<i64>(1);
        let failed_here = failed.clone();
        let thread = std::thread::Builder::new().name("meterd-apply".into()).spawn(move || {
            let mut conn = match second.open() {
                Ok(conn) => conn,
                Err(e) => {
                    failed_here.store(true, Ordering::SeqCst);
                    tracing::warn!(error = %e, "cannot open a second store connection for the background apply of delivered batches; the upload run applies them in its delivery transactions instead");
                    return;
                }
            };
            while let Ok(now_ns) = woken.recv() {
                let applied = conn.write_under(Lock::Apply, |tx| {
                    if crate::faults::is_on("apply-beside-fails") {
                        return Err(crate::store::StoreError::Internal("fault injection: apply-beside-fails".into()));
                    }
                    batches::apply_deliveries(tx, now_ns)
                });
                if let Err(e) = applied {
                    failed_here.store(true, Ordering::SeqCst);
                    tracing::warn!(error = %e, "the background apply of delivered batches failed; they stay delivered, and the upload run applies them in its delivery transactions instead");
                    return;
                }
            }
        });
        match thread {
            Ok(thread) => Some(Applier { wake: Some(wake), thread: Some(thread), failed }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the background apply of delivered batches; the upload run applies them in its delivery transactions instead");
                None
            }
        }
    }

    /// Whether the applier ended on an error (its connection could not be opened, or an apply
    /// failed): the run then applies in its delivery transactions.
    pub(super) fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Asks for an apply of every batch delivered so far (after the commit that delivered
    /// them), stamped `now_ns`; returns at once.
    pub(super) fn wake(&self, now_ns: i64) {
        if let Some(w) = &self.wake {
            let _ = w.try_send(now_ns);
        }
    }

    /// Waits for the apply asked for last to end; the connection closes with the thread.
    pub(super) async fn finish(mut self) {
        self.wake = None;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
