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
//! **Failures.** An apply that fails (a lost connection, a fenced node) is logged and left:
//! the deliveries it would have applied stay delivered, and the run's last apply, or the next
//! run's first, applies them. The second connection is fenced like the first, so a node that
//! lost the sealer lease stops applying too.

use super::run::db;
use crate::store::batches;
use crate::store::pg::Lock;
use crate::store::Store;
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
}

impl Applier {
    /// Starts an applier on a second connection to `store`'s server, fenced as `store` is.
    /// `None` on SQLite, or when the connection fails (logged): the deliveries are then
    /// applied inside the delivery transactions, as on SQLite.
    pub(super) async fn start(store: &Arc<Mutex<Store>>) -> Option<Applier> {
        let started = db(store, |s| {
            let fence = s.fence().cloned();
            let Some(mut conn) = s.second_connection()? else { return Ok(None) };
            conn.set_fence(fence);
            // Capacity 1: a wake-up while one is already waiting changes nothing, since an
            // apply applies every delivered batch there is.
            let (wake, woken) = mpsc::sync_channel::<i64>(1);
            let thread = std::thread::Builder::new()
                .name("meterd-apply".into())
                .spawn(move || {
                    while let Ok(now_ns) = woken.recv() {
                        if let Err(e) = conn.write_under(Lock::Apply, |tx| batches::apply_deliveries(tx, now_ns)) {
                            tracing::warn!(error = %e, "the background apply of delivered batches failed; they stay delivered, and the run's last apply writes them into their records");
                        }
                    }
                })
                .map_err(|e| crate::store::StoreError::Internal(format!("cannot start the apply thread: {e}")))?;
            Ok(Some(Applier { wake: Some(wake), thread: Some(thread) }))
        })
        .await;
        match started {
            Ok(applier) => applier,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a second store connection for the background apply of delivered batches; applying them in the delivery transactions instead");
                None
            }
        }
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
