//! Online backup of a live store (issue 15, "recipes that work"): SQLite's online backup API
//! copies every page of the database as one consistent snapshot, while the daemon keeps
//! ingesting. A `cp` of a running store is not a backup: in WAL mode recent commits sit in the
//! `-wal` file, so a copy of the main file alone can miss everything acknowledged since the last
//! checkpoint.
//!
//! The copy is taken in a single backup step (`sqlite3_backup_step(-1)`), inside one read
//! transaction of the source: writers in WAL mode go on committing meanwhile, and the copy holds
//! exactly the commits before the step began — every event acknowledged before the backup
//! started is in it. A busy or locked source (another connection mid-checkpoint) is retried for
//! up to [`BUSY_PATIENCE`].
//!
//! The destination must not exist: it is created exclusively (`O_EXCL`), so a backup never
//! overwrites anything, also not one written concurrently; on failure the partial file is
//! removed. Checking the copy (integrity, conservation) is the caller's part (`cli::backup`), through
//! [`Store::open_backup`], which leaves no database marker beside the copy.

use super::{Result, Store, StoreError};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a busy or locked source is retried before the backup gives up.
pub const BUSY_PATIENCE: Duration = Duration::from_secs(30);

impl Store {
    /// Copies this database to `dest`, a path that must not exist yet (its directory must).
    /// Errors: [`StoreError::Invalid`] when `dest` exists or cannot be created (a usage
    /// problem, exit 2), [`StoreError::Busy`] after [`BUSY_PATIENCE`], SQLite errors as usual.
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        std::fs::OpenOptions::new().write(true).create_new(true).open(dest).map_err(|e| {
            StoreError::Invalid(if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!("{} exists; a backup never overwrites a file: choose a new name or remove it first", dest.display())
            } else {
                format!("cannot create the backup {}: {e}", dest.display())
            })
        })?;
        let result = copy_into(self.sqlite("a backup")?, dest);
        if result.is_err() {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut p = dest.as_os_str().to_owned();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
        result
    }

    /// Opens a backup copy to check it, without writing the marker beside it (a backup file is
    /// not a database in use: deleting it must not make a later open refuse).
    pub fn open_backup(path: &Path) -> Result<Store> {
        if !path.exists() {
            return Err(StoreError::NotFound(format!("the backup {} does not exist", path.display())));
        }
        Store::open_raw(path)
    }
}

fn copy_into(src: &Connection, dest: &Path) -> Result<()> {
    let mut to = Connection::open(dest).map_err(|source| StoreError::Open { path: dest.to_path_buf(), source })?;
    {
        let backup = Backup::new(src, &mut to)?;
        let started = Instant::now();
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                // Busy/Locked (and any future variant): wait and try again, within the patience.
                _ => {
                    if started.elapsed() > BUSY_PATIENCE {
                        return Err(StoreError::Busy);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
    // The copy keeps the source's WAL mode; fold anything in its own WAL into the main file
    // so the backup is one self-contained file.
    to.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    to.close().map_err(|(_, e)| StoreError::from(e))?;
    Ok(())
}
