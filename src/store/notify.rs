//! The notification outbox (issue 17): what is to be announced, to whom, and how its delivery
//! went. Both backends, through [`Tx`].
//!
//! A row is one announcement to one receiver (`target`, a `[[notify]]` name). `(target,
//! state)` is unique: `state` names what is announced — e.g. `quota:pkg-1:1764460800:0.8`,
//! package `pkg-1` used 80 % of its quota in the reset period starting at that second — so
//! [`enqueue`] of a state already announced does nothing, and the row *is* the persisted
//! "announced" flag. A new package or a new period is a new state.
//!
//! So a row may go only once nothing can ever build its state again: [`prune`] deletes
//! delivered rows of the kinds and age the caller names, never an undelivered one; which
//! kinds and what age are safe is `notify::watch`'s to say (it knows what its scans look at).
//!
//! `body` holds the exact JSON bytes sent and signed at every attempt, built once at enqueue,
//! so a resend after a crash carries the same `id` and the same bytes. Delivery updates
//! `attempts`, `next_ns` (not before; 0 = due now), `last_error` and, after a 2xx only,
//! `delivered_ns`. Times are Unix nanoseconds.

use super::sql::{params, Tx};
use super::Result;

/// One announcement to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotice {
    /// `ntf_` + 32 hex digits, unique; the body's `id` and the `Meterd-Event-Id` header.
    pub id: String,
    pub target: String,
    /// What is announced; unique per target (see the module docs).
    pub state: String,
    /// The body's `type` (`quota.crossed`, …).
    pub kind: String,
    pub instance_id: Option<String>,
    /// The exact JSON bytes to send.
    pub body: String,
    pub created_ns: i64,
}

/// An outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: String,
    pub target: String,
    pub state: String,
    pub kind: String,
    pub instance_id: Option<String>,
    pub body: String,
    pub created_ns: i64,
    pub attempts: i64,
    pub next_ns: i64,
    pub last_attempt_ns: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_ns: Option<i64>,
}

const COLUMNS: &str =
    "id, target, state, kind, instance_id, body, created_ns, attempts, next_ns, last_attempt_ns, last_error, delivered_ns";

fn row(r: &super::sql::Row<'_>) -> Result<Notice> {
    Ok(Notice {
        id: r.get(0)?,
        target: r.get(1)?,
        state: r.get(2)?,
        kind: r.get(3)?,
        instance_id: r.get(4)?,
        body: r.get(5)?,
        created_ns: r.get(6)?,
        attempts: r.get(7)?,
        next_ns: r.get(8)?,
        last_attempt_ns: r.get(9)?,
        last_error: r.get(10)?,
        delivered_ns: r.get(11)?,
    })
}

/// Adds `n` unless its `(target, state)` was announced already; `true` when added.
pub fn enqueue(tx: &Tx<'_>, n: &NewNotice) -> Result<bool> {
    let added = tx.execute(
        "INSERT INTO notify_outbox (id, target, state, kind, instance_id, body, created_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT DO NOTHING",
        params![n.id, n.target, n.state, n.kind, n.instance_id, n.body, n.created_ns],
    )?;
    Ok(added > 0)
}

/// Whether `(target, state)` was announced already.
pub fn announced(tx: &Tx<'_>, target: &str, state: &str) -> Result<bool> {
    Ok(tx.query_opt("SELECT 1 FROM notify_outbox WHERE target = ?1 AND state = ?2", params![target, state], |_| Ok(()))?.is_some())
}

/// Undelivered rows of the receivers named `targets` due at `now_ns`, oldest first, at most
/// `limit`.
pub fn due(tx: &Tx<'_>, now_ns: i64, targets: &[String], limit: usize) -> Result<Vec<Notice>> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (0..targets.len()).map(|i| format!("?{}", i + 3)).collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM notify_outbox WHERE delivered_ns IS NULL AND next_ns <= ?1 AND target IN ({}) \
         ORDER BY created_ns, id LIMIT ?2",
        marks.join(", ")
    );
    let mut args: Vec<&dyn super::sql::Param> = vec![&now_ns, &limit];
    args.extend(targets.iter().map(|t| t as &dyn super::sql::Param));
    tx.query_map(&sql, &args, row)
}

/// Records a 2xx: the row is delivered and never sent again.
pub fn delivered(tx: &Tx<'_>, id: &str, now_ns: i64) -> Result<()> {
    tx.execute(
        "UPDATE notify_outbox SET attempts = attempts + 1, last_attempt_ns = ?2, delivered_ns = ?2 WHERE id = ?1 AND delivered_ns IS NULL",
        params![id, now_ns],
    )?;
    Ok(())
}

/// Records a failed attempt and when to try again.
pub fn failed(tx: &Tx<'_>, id: &str, now_ns: i64, next_ns: i64, error: &str) -> Result<()> {
    tx.execute(
        "UPDATE notify_outbox SET attempts = attempts + 1, last_attempt_ns = ?2, next_ns = ?3, last_error = ?4 \
         WHERE id = ?1 AND delivered_ns IS NULL",
        params![id, now_ns, next_ns, error],
    )?;
    Ok(())
}

/// The most recent `limit` rows, newest first (`meterd notifications`); only undelivered
/// ones when `pending_only`.
pub fn recent(tx: &Tx<'_>, limit: usize, pending_only: bool) -> Result<Vec<Notice>> {
    let filter = if pending_only { "WHERE delivered_ns IS NULL" } else { "" };
    tx.query_map(&format!("SELECT {COLUMNS} FROM notify_outbox {filter} ORDER BY created_ns DESC, id DESC LIMIT ?1"), params![limit], row)
}

/// Deletes at most `limit` delivered rows whose `kind` is one of `kinds` and that were
/// created before `before_ns` (Unix nanoseconds), oldest first; returns how many. An
/// undelivered row (pending, failing or orphaned) is never deleted. The caller vouches that
/// no scan or ingest can build those rows' states again (see the module docs).
pub fn prune(tx: &Tx<'_>, kinds: &[String], before_ns: i64, limit: usize) -> Result<u64> {
    if kinds.is_empty() {
        return Ok(0);
    }
    let marks: Vec<String> = (0..kinds.len()).map(|i| format!("?{}", i + 3)).collect();
    let sql = format!(
        "DELETE FROM notify_outbox WHERE id IN (SELECT id FROM notify_outbox WHERE delivered_ns IS NOT NULL AND created_ns < ?1 \
         AND kind IN ({}) ORDER BY created_ns LIMIT ?2)",
        marks.join(", ")
    );
    let mut args: Vec<&dyn super::sql::Param> = vec![&before_ns, &limit];
    args.extend(kinds.iter().map(|k| k as &dyn super::sql::Param));
    tx.execute(&sql, &args)
}

/// Undelivered rows per receiver name (`target`), by name: what `/metrics` splits into the
/// notices still to deliver and those whose receiver is no longer configured
/// (`crate::notify::Outbox`).
pub fn undelivered_by_target(tx: &Tx<'_>) -> Result<Vec<(String, u64)>> {
    let sql =
        format!("SELECT target, COUNT(*) FROM notify_outbox WHERE delivered_ns IS NULL GROUP BY target ORDER BY {}", tx.by_bytes("target"));
    tx.query_map(&sql, params![], |r| {
        let n: i64 = r.get(1)?;
        Ok((r.get(0)?, n.max(0) as u64))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn notice(id: &str, kind: &str, created_ns: i64) -> NewNotice {
        NewNotice {
            id: id.into(),
            target: "app".into(),
            state: format!("s-{id}"),
            kind: kind.into(),
            instance_id: None,
            body: "{}".into(),
            created_ns,
        }
    }

    #[test]
    fn prune_deletes_only_delivered_rows_of_the_kinds_named_created_before_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("t.db")).unwrap();
        s.write(|tx| {
            for (id, kind, created, delivered) in [
                ("old-delivered", "usage.crossed", 10, true),
                ("old-undelivered", "usage.crossed", 10, false),
                ("old-failing", "usage.crossed", 10, false),
                ("old-quota", "quota.crossed", 10, true),
                ("new-delivered", "usage.crossed", 100, true),
            ] {
                enqueue(tx, &notice(id, kind, created))?;
                if delivered {
                    super::delivered(tx, id, created + 1)?;
                }
            }
            failed(tx, "old-failing", 11, 20, "503")?;
            let kinds = vec!["usage.crossed".to_string()];
            assert_eq!(prune(tx, &kinds, 50, 10)?, 1);
            let left: Vec<String> = recent(tx, 10, false)?.into_iter().map(|n| n.id).collect();
            assert_eq!(left, ["new-delivered", "old-undelivered", "old-quota", "old-failing"]);
            assert!(!announced(tx, "app", "s-old-delivered")?);
            assert_eq!(prune(tx, &kinds, 50, 10)?, 0, "idempotent");
            Ok(())
        })
        .unwrap();
    }
}
