//! The sealer lease: one node at a time seals and uploads, and a node that lost the lease
//! writes nothing (fencing). Issue 13.
//!
//! A lease is one row of `lease` (name, holder, epoch, expires_ns). Any node may take it when
//! it is free or expired; taking it from another holder (or after expiry) raises the epoch.
//! The holder renews it well before it expires (the daemon every third of the lease). Every
//! seal and upload state change runs [`Fence::check`] in its own transaction: the row must
//! still name this holder and this epoch. A node paused past its lease (a GC pause, SIGSTOP, a
//! network cut) wakes up with an old epoch, so its next transaction fails with
//! [`StoreError::Fenced`] and changes nothing — the check and the write commit together or
//! not at all, and on PostgreSQL every write transaction holds the writers' lock (see `pg`),
//! so no takeover can fall between them.
//!
//! **Whose clock.** Expiry is measured by the database's clock, not each node's: on PostgreSQL
//! `clock_timestamp()` of the server, on SQLite the one machine's clock. Nodes with skewed
//! clocks therefore agree on when a lease ends. Billing time (`--now`) plays no part.
//!
//! The holder's expiry is not part of the fence: while nobody has taken the lease over, its
//! epoch is unchanged and the holder's writes are still the only ones, so a holder whose
//! renewal came late loses nothing; once another node takes it, the epoch moves and the old
//! holder is fenced.

use super::sql::{params, Backend, Tx};
use super::{Result, StoreError};

/// The lease that owns sealing and uploading.
pub const SEALER: &str = "sealer";

/// Default lease duration (`[store] lease`).
pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(15);

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub name: String,
    pub holder: String,
    pub epoch: i64,
    /// Unix nanoseconds, by the database's clock.
    pub expires_ns: i64,
}

/// Proof of holding a lease at an epoch; checked by every fenced write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub name: String,
    pub holder: String,
    pub epoch: i64,
}

/// The outcome of [`acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// This node holds the lease (newly, or renewed at the same epoch).
    Held(Fence),
    /// Another node holds it until `expires_ns`.
    Busy(LeaseRow),
    /// A newer meterd migrated the store (PostgreSQL schema `store_schema`, above the
    /// `node_schema` this build knows) while this node ran: it neither takes nor renews the
    /// lease, and gave up the one it held, so an upgraded node seals and uploads. Without
    /// this, an old node holding the lease during a rolling upgrade kept it while every seal
    /// it tried was refused (the newer schema refuses older writers): sealing stopped store-wide
    /// until it was stopped (found by the session-28 trial).
    Outdated { store_schema: i64, node_schema: i64 },
}

/// What [`decide`] says to do with a lease row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write (name, node, epoch, now + ttl).
    Take { epoch: i64 },
    /// Leave it; another node holds it.
    Wait,
}

/// The pure rule: free or expired leases are taken with a higher epoch; the lease this process
/// holds (`held`: the epoch it took, `None` when it holds none) is renewed at the same epoch (an
/// expired lease of ours that nobody took is still ours: same epoch); a live lease is left
/// alone — also one that names this node but was not taken by this process (`held` differs):
/// another process running under the same `--node` name (a one-shot `seal` named like the
/// daemon, or a restarted daemon whose previous life may still be running). Renewing that one
/// at its epoch would let two processes pass the same fence; it is taken once it expires (or at
/// once when its holder released it at a clean stop), with a higher epoch that fences the other.
pub fn decide(row: Option<&LeaseRow>, node: &str, held: Option<i64>, now_ns: i64) -> Decision {
    match row {
        None => Decision::Take { epoch: 1 },
        Some(r) if r.holder == node && held == Some(r.epoch) => Decision::Take { epoch: r.epoch },
        Some(r) if r.expires_ns <= now_ns => Decision::Take { epoch: r.epoch + 1 },
        Some(_) => Decision::Wait,
    }
}

/// The database's clock in Unix nanoseconds (see the module docs).
pub fn db_now_ns(tx: &Tx<'_>) -> Result<i64> {
    match tx.backend() {
        Backend::Postgres => tx.one("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000 AS BIGINT)", params![]),
        Backend::Sqlite => {
            let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            Ok(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        }
    }
}

/// The stored lease `name`, if any.
pub fn get(tx: &Tx<'_>, name: &str) -> Result<Option<LeaseRow>> {
    tx.query_opt("SELECT name, holder, epoch, expires_ns FROM lease WHERE name = ?1", params![name], |r| {
        Ok(LeaseRow { name: r.get(0)?, holder: r.get(1)?, epoch: r.get(2)?, expires_ns: r.get(3)? })
    })
}

/// Takes or renews lease `name` for `node` (call in a write transaction); `held` is the epoch
/// this process holds the lease at (from its last [`Acquired::Held`]), `None` when it holds
/// none (see [`decide`]).
pub fn acquire(tx: &Tx<'_>, name: &str, node: &str, held: Option<i64>, ttl: std::time::Duration) -> Result<Acquired> {
    if let Some(store_schema) = newer_store_schema(tx)? {
        if let Some(epoch) = held {
            release(tx, &Fence { name: name.to_owned(), holder: node.to_owned(), epoch })?;
        }
        return Ok(Acquired::Outdated { store_schema, node_schema: super::pg_schema::PG_MIGRATIONS.len() as i64 });
    }
    let now = db_now_ns(tx)?;
    let row = get(tx, name)?;
    match decide(row.as_ref(), node, held, now) {
        Decision::Wait => Ok(Acquired::Busy(row.expect("Wait is decided only on a stored row"))),
        Decision::Take { epoch } => {
            let expires = now.saturating_add(i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX));
            tx.execute(
                "INSERT INTO lease (name, holder, epoch, expires_ns) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch, expires_ns = excluded.expires_ns",
                params![name, node, epoch, expires],
            )?;
            Ok(Acquired::Held(Fence { name: name.to_owned(), holder: node.to_owned(), epoch }))
        }
    }
}

/// The store's schema version when a newer meterd migrated it past what this build knows
/// (PostgreSQL's `meterd_schema`; a node checks it only when it opens the store, so one that
/// was running during the upgrade learns it here); `None` otherwise, and always on SQLite,
/// whose one host runs one build at a time in practice and takes no lease.
pub fn newer_store_schema(tx: &Tx<'_>) -> Result<Option<i64>> {
    if tx.backend() != Backend::Postgres {
        return Ok(None);
    }
    let version: i64 = tx.one("SELECT coalesce(max(version), 0)::bigint FROM meterd_schema", params![])?;
    Ok((version > super::pg_schema::PG_MIGRATIONS.len() as i64).then_some(version))
}

/// Gives the lease up at once (a clean shutdown), so another node need not wait for expiry.
/// A no-op when it is no longer ours.
pub fn release(tx: &Tx<'_>, fence: &Fence) -> Result<()> {
    tx.execute(
        "UPDATE lease SET expires_ns = 0 WHERE name = ?1 AND holder = ?2 AND epoch = ?3",
        params![fence.name, fence.holder, fence.epoch],
    )?;
    Ok(())
}

impl Fence {
    /// Fails with [`StoreError::Fenced`] unless the lease still names this holder and epoch.
    /// Call inside the transaction whose writes it guards.
    pub fn check(&self, tx: &Tx<'_>) -> Result<()> {
        match get(tx, &self.name)? {
            Some(r) if r.holder == self.holder && r.epoch == self.epoch => Ok(()),
            now => Err(StoreError::Fenced {
                lease: self.name.clone(),
                ours: self.epoch,
                holder: now.as_ref().map(|r| r.holder.clone()).unwrap_or_default(),
                epoch: now.map(|r| r.epoch).unwrap_or(0),
            }),
        }
    }
}

/// A node as last seen by the store (`nodes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub name: String,
    pub version: String,
    /// Unix nanoseconds, by the database's clock.
    pub started_ns: i64,
    pub last_seen_ns: i64,
}

/// Records that `node` (running meterd `version`, started at `started_ns`) is alive now, and
/// whether it `uploads` (has an upload key: see [`uploader_alive`]).
pub fn heartbeat(tx: &Tx<'_>, node: &str, version: &str, started_ns: i64, uploads: bool) -> Result<()> {
    let now = db_now_ns(tx)?;
    tx.execute(
        "INSERT INTO nodes (name, version, started_ns, last_seen_ns, uploads) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (name) DO UPDATE SET version = excluded.version, started_ns = excluded.started_ns,
             last_seen_ns = excluded.last_seen_ns, uploads = excluded.uploads",
        params![node, version, started_ns, now, i64::from(uploads)],
    )?;
    Ok(())
}

/// Whether a node other than `node` that has an upload key was seen within `within` of the
/// database's clock now. A node without a key bids for the sealer lease only while none is:
/// as holder it would seal and never upload, and the keyed nodes would stand by behind it
/// (new-user trial, issue 13). Nodes of builds before the `uploads` column count as keyed.
pub fn uploader_alive(tx: &Tx<'_>, node: &str, within: std::time::Duration) -> Result<bool> {
    let since = db_now_ns(tx)?.saturating_sub(i64::try_from(within.as_nanos()).unwrap_or(i64::MAX));
    let n: i64 = tx.one("SELECT count(*) FROM nodes WHERE name <> ?1 AND uploads = 1 AND last_seen_ns >= ?2", params![node, since])?;
    Ok(n > 0)
}

/// The nodes seen within `within` of the database's clock now, most recent first.
pub fn nodes_seen(tx: &Tx<'_>, within: std::time::Duration) -> Result<Vec<NodeRow>> {
    let since = db_now_ns(tx)?.saturating_sub(i64::try_from(within.as_nanos()).unwrap_or(i64::MAX));
    tx.query_map(
        &format!(
            "SELECT name, version, started_ns, last_seen_ns FROM nodes WHERE last_seen_ns >= ?1 ORDER BY last_seen_ns DESC, {}",
            tx.by_bytes("name")
        ),
        params![since],
        |r| Ok(NodeRow { name: r.get(0)?, version: r.get(1)?, started_ns: r.get(2)?, last_seen_ns: r.get(3)? }),
    )
}

/// This node's name: `--node` / `METERD_NODE`, else `<host name>:<pid>`.
pub fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use std::time::Duration;

    fn row(holder: &str, epoch: i64, expires_ns: i64) -> LeaseRow {
        LeaseRow { name: SEALER.into(), holder: holder.into(), epoch, expires_ns }
    }

    #[test]
    fn the_rule_takes_free_and_expired_leases_renews_its_own_and_waits_otherwise() {
        assert_eq!(decide(None, "a", None, 10), Decision::Take { epoch: 1 });
        assert_eq!(decide(Some(&row("a", 4, 5)), "a", Some(4), 10), Decision::Take { epoch: 4 }, "ours, even expired: same epoch");
        assert_eq!(decide(Some(&row("b", 4, 10)), "a", None, 10), Decision::Take { epoch: 5 }, "expired at now");
        assert_eq!(decide(Some(&row("b", 4, 11)), "a", None, 10), Decision::Wait);
        // Another process under this node's name holds it: not ours to renew at its epoch.
        assert_eq!(decide(Some(&row("a", 4, 11)), "a", None, 10), Decision::Wait, "a one-shot named like the live holder waits");
        assert_eq!(decide(Some(&row("a", 4, 11)), "a", Some(3), 10), Decision::Wait, "held at an older epoch: fenced, waits");
        assert_eq!(decide(Some(&row("a", 4, 5)), "a", None, 10), Decision::Take { epoch: 5 }, "expired: taken with a new epoch");
        assert_eq!(decide(Some(&row("a", 4, 0)), "a", None, 10), Decision::Take { epoch: 5 }, "released at a clean stop");
    }

    #[test]
    fn a_node_that_lost_the_lease_is_fenced_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("t.db")).unwrap();
        // Long enough that a loaded machine (the whole suite in parallel) still asks twice
        // within it; 50 ms was not.
        let ttl = Duration::from_millis(1000);
        let a = match s.write(|tx| acquire(tx, SEALER, "a", None, ttl)).unwrap() {
            Acquired::Held(f) => f,
            other => panic!("{other:?}"),
        };
        assert!(matches!(s.write(|tx| acquire(tx, SEALER, "b", None, ttl)).unwrap(), Acquired::Busy(r) if r.holder == "a"));
        // Another process under a's name (a one-shot `--node a`) does not get a's fence; a
        // renews it.
        assert!(
            matches!(s.write(|tx| acquire(tx, SEALER, "a", None, ttl)).unwrap(), Acquired::Busy(r) if r.holder == "a" && r.epoch == a.epoch)
        );
        assert!(matches!(s.write(|tx| acquire(tx, SEALER, "a", Some(a.epoch), ttl)).unwrap(), Acquired::Held(f) if f == a));
        s.write(|tx| a.check(tx)).unwrap();
        std::thread::sleep(ttl + Duration::from_millis(50));
        let b = match s.write(|tx| acquire(tx, SEALER, "b", None, ttl)).unwrap() {
            Acquired::Held(f) => f,
            other => panic!("{other:?}"),
        };
        assert_eq!(b.epoch, a.epoch + 1);
        // `a` wakes up: its fenced write fails and its change is rolled back with it.
        let e = s
            .write(|tx| {
                tx.execute("UPDATE meta SET value = 'a' WHERE key = 'never'", params![])?;
                a.check(tx)?;
                tx.execute("INSERT INTO meta (key, value) VALUES ('written-by', 'a')", params![])
            })
            .unwrap_err();
        assert!(matches!(e, StoreError::Fenced { ref holder, .. } if holder == "b"), "{e}");
        assert_eq!(
            s.read(|tx| tx.query_opt("SELECT value FROM meta WHERE key = 'written-by'", params![], |r| r.get::<String>(0))).unwrap(),
            None
        );
        // The same through a fenced store, as the daemon's seal and upload connections are:
        // the check runs first in every write transaction.
        s.set_fence(Some(a.clone()));
        let e = s.write(|tx| tx.execute("INSERT INTO meta (key, value) VALUES ('written-by', 'a')", params![])).unwrap_err();
        assert!(matches!(e, StoreError::Fenced { .. }), "{e}");
        s.set_fence(Some(b.clone()));
        s.write(|tx| tx.execute("INSERT INTO meta (key, value) VALUES ('written-by', 'b')", params![])).unwrap();
        s.set_fence(None);
        // A clean release hands it over at once.
        s.write(|tx| release(tx, &b)).unwrap();
        assert!(matches!(s.write(|tx| acquire(tx, SEALER, "c", None, ttl)).unwrap(), Acquired::Held(f) if f.epoch == b.epoch + 1));
    }

    /// A node running when a newer meterd migrates the store (PostgreSQL): its next renewal
    /// gives the lease up (expired at once, so another node takes it without waiting) and
    /// says why, and it takes no lease after. Without the check the renewal succeeds (`Held`)
    /// and the first assertion fails.
    #[test]
    fn a_node_older_than_the_store_gives_the_lease_up_and_takes_none() {
        let Some(cluster) = crate::store::pg_schema::test_pg::PgCluster::shared() else { return };
        let url = cluster.fresh_db();
        let mut s = Store::open(std::path::Path::new(&url)).unwrap();
        let ttl = Duration::from_secs(60);
        let a = match s.write(|tx| acquire(tx, SEALER, "a", None, ttl)).unwrap() {
            Acquired::Held(f) => f,
            other => panic!("{other:?}"),
        };
        let ours = crate::store::pg_schema::PG_MIGRATIONS.len() as i64;
        // What a newer meterd's migration leaves behind.
        let newer = format!("INSERT INTO meterd_schema (version, applied_ns, meterd) VALUES ({}, 0, 'newer')", ours + 1);
        s.write(|tx| tx.execute(&newer, params![])).unwrap();
        let outdated = Acquired::Outdated { store_schema: ours + 1, node_schema: ours };
        assert_eq!(s.write(|tx| acquire(tx, SEALER, "a", Some(a.epoch), ttl)).unwrap(), outdated, "the renewal gives it up");
        let row = s.read(|tx| get(tx, SEALER)).unwrap().unwrap();
        assert_eq!((row.holder.as_str(), row.epoch, row.expires_ns), ("a", a.epoch, 0), "released at once, not left to expire");
        assert_eq!(s.write(|tx| acquire(tx, SEALER, "c", None, ttl)).unwrap(), outdated, "nor does it bid again");
    }
}
