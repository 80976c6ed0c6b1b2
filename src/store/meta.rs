//! Small key/value facts about the pipeline's own progress (last upload, last error).

use super::Result;
use rusqlite::{params, Connection, OptionalExtension};

pub const LAST_UPLOAD_OK: &str = "last_upload_ok";
pub const LAST_UPLOAD_ERROR: &str = "last_upload_error";
pub const LAST_SEAL: &str = "last_seal";

pub fn set(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
        .execute(params![key, value])?;
    Ok(())
}

pub fn get(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?.query_row([key], |r| r.get(0)).optional()?)
}

pub fn clear(conn: &Connection, key: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM meta WHERE key = ?1")?.execute([key])?;
    Ok(())
}
