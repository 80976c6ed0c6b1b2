//! Claims on open upload batches (issue 15): exactly one process sends a batch at a time.
//!
//! Several processes may upload from one database (two daemons, a daemon and a cron
//! `meterd upload`). Each claims an open batch inside a write transaction before sending it:
//! `batches.claimed_by` names the holder (`"pid:nonce"`, [`Holder`]) and `claim_until_ns` ends
//! its lease ([`LEASE_NS`], renewed at every attempt). A batch is claimable when it has no
//! holder, when the holder is us, when the lease ran out, or when the holder's process is gone
//! (no `/proc/<pid>` on this host; the same pid with another nonce is an earlier incarnation of
//! this process, e.g. a restarted container's pid 1). A run releases its claims at its end, so
//! the next run of any process picks up what is left at once.
//!
//! Processes that share a SQLite database share a host (SQLite needs local locking), so the pid
//! test holds; the lease bounds the wait if it ever does not. On PostgreSQL the holders may run
//! on other hosts, where a pid says nothing (it may even be a live process's here): there every
//! holder counts as alive, and only its own release or the end of its lease frees a claim —
//! unless the claimer holds the sealer lease (`lease_held`, issue 13): uploading on a shared
//! store needs that lease (the daemon's holder and one-shot `meterd upload` both take it and
//! fence every write with it, checked in the same transaction as the claim), so a claim of any
//! other holder was made under an earlier epoch by a node that died, was paused past its lease
//! or shut down, and can never record an outcome again. Its batch is claimable at once and
//! resent with the same bytes; waiting out the 10-minute claim lease would leave a dead
//! node's batch unsent that long after a failover. Billing never depended on this (the store
//! keeps the first record per period): the claim keeps delivery counts and metrics true.

use super::batches::Batch;
use super::sql::{params, Backend, Tx};
use super::Result;

/// How long a claim lasts without renewal: far above one attempt (timeout + backoff cap).
pub const LEASE_NS: i64 = 10 * 60 * 1_000_000_000;

/// This process as a claim holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder(pub String);

impl Holder {
    /// `"pid:nonce"` for this process (the nonce is fixed for the process's life).
    pub fn this_process() -> Holder {
        static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let nonce = NONCE.get_or_init(rand::random::<u64>);
        Holder(format!("{}:{nonce:016x}", std::process::id()))
    }

    fn pid(&self) -> Option<u32> {
        self.0.split_once(':').and_then(|(p, _)| p.parse().ok())
    }
}

/// Whether the process named by `holder` still runs on this host (Linux: `/proc/<pid>`; where
/// there is no `/proc`, every holder counts as alive and only the lease frees its claims).
pub fn holder_alive(holder: &str) -> bool {
    let h = Holder(holder.to_string());
    let Some(pid) = h.pid() else { return false };
    if pid == std::process::id() {
        return h == Holder::this_process();
    }
    if !std::path::Path::new("/proc/self").exists() {
        return true;
    }
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// [`holder_alive`] where the store's holders share our host (SQLite); on PostgreSQL a holder
/// may run on any node, where its pid says nothing here, so it counts as alive (see the module
/// docs).
pub fn holder_alive_on(backend: Backend, holder: &str) -> bool {
    match backend {
        Backend::Sqlite => holder_alive(holder),
        Backend::Postgres => true,
    }
}

/// The pure decision: may `me` take a batch claimed by `holder` until `until_ns`, at `now_ns`?
pub fn claimable(holder: Option<&str>, until_ns: Option<i64>, me: &Holder, now_ns: i64, alive: impl Fn(&str) -> bool) -> bool {
    match holder {
        None => true,
        Some(h) if h == me.0 => true,
        Some(h) => until_ns.is_none_or(|u| u <= now_ns) || !alive(h),
    }
}

/// Claims every claimable open batch for `me` and returns them, oldest first. `lease_held`:
/// this transaction is fenced by the sealer lease (a shared store), so every other holder's
/// claim is stale (see the module docs); `false` on SQLite.
pub fn claim_open(tx: &Tx<'_>, me: &Holder, now_ns: i64, lease_held: bool) -> Result<Vec<Batch>> {
    let rows = tx.query_map("SELECT id, claimed_by, claim_until_ns FROM batches WHERE state = 'open' ORDER BY id", params![], |r| {
        Ok((r.get::<i64>(0)?, r.get::<Option<String>>(1)?, r.get::<Option<i64>>(2)?))
    })?;
    let backend = tx.backend();
    let alive = |h: &str| !lease_held && holder_alive_on(backend, h);
    let mut ids = Vec::new();
    for (id, holder, until) in rows {
        if claimable(holder.as_deref(), until, me, now_ns, alive) {
            ids.push(id);
        } else {
            tracing::debug!(batch = id, holder = ?holder, "open batch is being sent by another process; leaving it");
        }
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        claim(tx, id, me, now_ns)?;
        out.push(tx.query_row("SELECT id, body, records, attempts FROM batches WHERE id = ?1", params![id], |r| {
            Ok(Batch { id: r.get(0)?, body: r.get(1)?, records: r.get(2)?, attempts: r.get(3)? })
        })?);
    }
    Ok(out)
}

/// Claims (or renews the claim on) batch `id` for `me` until `now_ns + LEASE_NS`.
pub fn claim(tx: &Tx<'_>, id: i64, me: &Holder, now_ns: i64) -> Result<()> {
    tx.execute(
        "UPDATE batches SET claimed_by = ?2, claim_until_ns = ?3 WHERE id = ?1",
        params![id, me.0, now_ns.saturating_add(LEASE_NS)],
    )?;
    Ok(())
}

/// Releases every claim of `me` on batches still open (the end of a run).
pub fn release(tx: &Tx<'_>, me: &Holder) -> Result<()> {
    tx.execute("UPDATE batches SET claimed_by = NULL, claim_until_ns = NULL WHERE claimed_by = ?1 AND state = 'open'", params![me.0])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimable_table() {
        let me = Holder("10:aa".into());
        let alive = |_: &str| true;
        let dead = |_: &str| false;
        assert!(claimable(None, None, &me, 5, alive), "unclaimed");
        assert!(claimable(Some("10:aa"), Some(100), &me, 5, alive), "ours");
        assert!(!claimable(Some("11:bb"), Some(100), &me, 5, alive), "another live holder within its lease");
        assert!(claimable(Some("11:bb"), Some(5), &me, 5, alive), "lease over");
        assert!(claimable(Some("11:bb"), Some(100), &me, 5, dead), "holder gone");
    }

    #[test]
    fn an_earlier_incarnation_of_our_pid_is_not_alive_and_a_garbled_holder_neither() {
        let me = Holder::this_process();
        assert!(holder_alive(&me.0));
        assert!(!holder_alive(&format!("{}:not-our-nonce", std::process::id())));
        assert!(!holder_alive("garbage"));
    }

    #[test]
    fn on_a_shared_postgres_store_no_holder_is_judged_by_its_pid() {
        let gone = format!("{}:not-our-nonce", std::process::id());
        assert!(!holder_alive_on(Backend::Sqlite, &gone));
        assert!(holder_alive_on(Backend::Postgres, &gone), "our pid on this host may be another node's live uploader");
        assert!(holder_alive_on(Backend::Postgres, "garbage"));
        assert!(holder_alive_on(Backend::Postgres, &Holder::this_process().0));
    }
}
