//! Small key/value facts about the pipeline's own progress (last upload, last error), in the
//! `meta` table. Statements run through [`Tx`], so they mean the same on SQLite and PostgreSQL.

use super::sql::{params, Tx};
use super::Result;

pub const LAST_UPLOAD_OK: &str = "last_upload_ok";
pub const LAST_UPLOAD_ERROR: &str = "last_upload_error";
pub const LAST_SEAL: &str = "last_seal";

/// Sets `key` to `value` (inserted, or replacing the value stored).
pub fn set(tx: &Tx<'_>, key: &str, value: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// The value of `key`, `None` when it was never set (or was cleared).
pub fn get(tx: &Tx<'_>, key: &str) -> Result<Option<String>> {
    tx.query_opt("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0))
}

/// Forgets `key` (a no-op when it is not set).
pub fn clear(tx: &Tx<'_>, key: &str) -> Result<()> {
    tx.execute("DELETE FROM meta WHERE key = ?1", params![key])?;
    Ok(())
}
