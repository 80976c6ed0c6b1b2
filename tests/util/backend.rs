//! Which store backend this test binary runs its suite on, chosen at compile time: every
//! behavioural suite (ingest, seal, upload, packages, lifecycle, reliability) is built twice by
//! Cargo.toml, once as itself on a SQLite file and once as `<suite>_pg` on a fresh database of
//! the shared private PostgreSQL cluster ([`super::pg`]), with the same test code (issue 13,
//! "Tests"). [`PG`] reads the crate name, so nothing needs remembering and nothing is set at
//! run time to choose it.
//!
//! - [`new_db`]: the `--db` value of one test — a file in its temp dir, or a `postgres://` URL
//!   of a new empty database (the library's `Store::open`, `Collector::start` and the binary's
//!   `--db` all take either).
//! - [`Db`]: direct reads of what was stored, on either backend, through the library's
//!   statement API ([`meterd::store::sql::Tx`]) in SQL both engines accept, so a suite's
//!   assertions are the same text on both.
//! - [`sqlite_only!`](crate::sqlite_only): the one way to leave a test out of the PostgreSQL
//!   run, because what it checks does not exist there (a database file, pragmas, the Bloom
//!   filter); it prints `skipped on PostgreSQL: <reason>`. `grep -rn 'sqlite_only!' tests/`
//!   lists them all.
//!
//! **No server.** Where the PostgreSQL server binaries are missing, the `_pg` binary prints
//! the harness's skip line and exits 0 at its first test that needs a database (the whole
//! PostgreSQL run is skipped at once); under `CI=true` that is a failure, as for every
//! PostgreSQL test ([`super::pg`]).

use meterd::store::sql::{FromValue, Param, PgConn, Row, Tx};
use meterd::store::StoreError;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// `true` in the `<suite>_pg` test binaries: the suite runs on PostgreSQL.
pub const PG: bool = const_ends_with(env!("CARGO_CRATE_NAME").as_bytes(), b"_pg");

const fn const_ends_with(s: &[u8], suffix: &[u8]) -> bool {
    if s.len() < suffix.len() {
        return false;
    }
    let mut i = 0;
    while i < suffix.len() {
        if s[s.len() - suffix.len() + i] != suffix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The backend's name, for messages: `sqlite` or `postgres`.
pub const NAME: &str = if PG { "postgres" } else { "sqlite" };

/// Leaves the calling test out of the PostgreSQL run, printing why; the reason must say what
/// the test checks that PostgreSQL does not have (a file, a pragma, SQLite's own structures).
#[macro_export]
macro_rules! sqlite_only {
    ($reason:expr) => {
        if $crate::util::backend::PG {
            eprintln!("skipped on PostgreSQL: {}", $reason);
            return;
        }
    };
}

/// The database of one test: `dir/file` on SQLite; on PostgreSQL the URL (with password) of a
/// new empty database of the shared cluster, as a path (meterd's `--db` type).
pub fn new_db(dir: &Path, file: &str) -> PathBuf {
    if !PG {
        return dir.join(file);
    }
    match super::pg::PgCluster::shared() {
        Some(cluster) => PathBuf::from(cluster.fresh_db()),
        None => {
            // The skip line is printed (or, under CI=true, this was a panic): the whole
            // PostgreSQL run of this suite is skipped.
            std::process::exit(0)
        }
    }
}

/// Read access to a test's store on either backend (named `row`/`rows`/`opt`/`one` so that on
/// SQLite, through `Deref`, the suites that run on SQLite only keep rusqlite's own API), independent of meterd's own connections
/// (a daemon may be writing). SQLite: a read-only connection (WAL readers never block the
/// writer). PostgreSQL: a plain client, each statement its own snapshot.
pub enum Db {
    Sqlite(rusqlite::Connection),
    /// Boxed: a PostgreSQL client is large beside a SQLite handle.
    Pg(RefCell<Box<PgConn>>),
}

impl Db {
    /// Opens `db` (a path or a URL, as [`new_db`] made it).
    pub fn open(db: &Path) -> Db {
        match meterd::store::postgres_url(db) {
            Some(url) => Db::Pg(RefCell::new(Box::new(PgConn::new(super::pg::connect(url))))),
            None => Db::Sqlite(super::db::open_ro(db)),
        }
    }

    /// Runs `f` with a [`Tx`] over this connection (no transaction is begun: every statement
    /// reads what was committed when it ran).
    pub fn with<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>) -> T {
        let r = match self {
            Db::Sqlite(c) => f(&Tx::sqlite(c)),
            Db::Pg(c) => f(&Tx::postgres(&mut c.borrow_mut())),
        };
        r.unwrap_or_else(|e| panic!("test read on {NAME}: {e}"))
    }

    /// The one row of `sql` through `f` (panics when there is none).
    pub fn row<T>(&self, sql: &str, params: &[&dyn Param], f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>) -> T {
        self.with(|tx| tx.query_row(sql, params, f))
    }

    /// The first row of `sql` through `f`, if any.
    pub fn opt<T>(&self, sql: &str, params: &[&dyn Param], f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>) -> Option<T> {
        self.with(|tx| tx.query_opt(sql, params, f))
    }

    /// Every row of `sql` through `f`.
    pub fn rows<T>(&self, sql: &str, params: &[&dyn Param], f: impl FnMut(&Row<'_>) -> Result<T, StoreError>) -> Vec<T> {
        self.with(|tx| tx.query_map(sql, params, f))
    }

    /// The first column of the one row of `sql`.
    pub fn one<T: FromValue>(&self, sql: &str, params: &[&dyn Param]) -> T {
        self.with(|tx| tx.one(sql, params))
    }

    /// The SQLite connection, for a test that [`sqlite_only!`](crate::sqlite_only) already
    /// kept off PostgreSQL (pragmas, the file's own structures).
    pub fn sqlite(&self) -> &rusqlite::Connection {
        match self {
            Db::Sqlite(c) => c,
            Db::Pg(_) => panic!("a SQLite-only read on PostgreSQL: mark the test sqlite_only!"),
        }
    }
}

/// A new database holding a copy of `from` (no connection to it may be open): the file copied
/// into `dir/file` on SQLite; on PostgreSQL a database created from it as its template.
pub fn copy_db(from: &Path, dir: &Path, file: &str) -> PathBuf {
    if !PG {
        let to = dir.join(file);
        std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        return to;
    }
    static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let url = from.to_str().expect("a PostgreSQL URL");
    let source = url.rsplit('/').next().expect("the URL names a database");
    let name = format!("{source}_c{}", COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let cluster = super::pg::PgCluster::shared().expect("the cluster of the database copied");
    cluster
        .admin()
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {source}"))
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} TEMPLATE {source}: {e}"));
    PathBuf::from(cluster.url(&name))
}

/// The SQLite-only suites (not built as `_pg`) keep using rusqlite's API on `env.db()`.
impl std::ops::Deref for Db {
    type Target = rusqlite::Connection;
    fn deref(&self) -> &rusqlite::Connection {
        self.sqlite()
    }
}
