//! The SQLite store: the only module that speaks SQL.
//!
//! [`Store::open`] sets the pragmas once (WAL, `synchronous=FULL`, busy timeout, foreign keys)
//! and applies pending migrations. Every write runs in a `BEGIN IMMEDIATE` transaction, so a
//! writer never upgrades a read lock and never meets `SQLITE_BUSY` at commit. Quantities are
//! stored as exact decimal text; times as integer nanoseconds (events) or seconds (windows).
//!
//! **The file under the connection.** [`Store::open`] remembers the device and inode of the
//! file it opened; [`Store::file_moved`] compares them with what is at the path now (one
//! `stat`), so the ingest writer can refuse to acknowledge events written into a file that was
//! deleted or replaced under it. Beside every database it opens, meterd keeps a marker file
//! (`<db>.created`, see [`marker_path`]): while the marker exists, a missing database is an
//! error ([`StoreError::Missing`]) instead of a new, empty one; [`Store::create`] (used by
//! `meterd init` and `meterd run --create-db`) is the one way to start afresh.
//!
//! **A connection found read-only.** A transaction that fails with `SQLITE_READONLY` (or a
//! permission error) marks the connection, and the next [`Store::write`] or [`Store::read`]
//! reopens it first ([`Store::reopen_if_needed`]): SQLite keeps a file opened read-only as it
//! was opened, so without a new connection a fixed permission would need a restart.
//!
//! Several processes may open one database (the daemon and a one-shot `meterd seal`); SQLite's
//! locking serialises their writes. Ingest itself has one writer per process (see `collector`).

pub mod backup;
pub mod batches;
pub mod claims;
pub mod copy;
pub mod dead_letters;
pub mod dedupe;
pub mod events;
pub mod instances;
pub mod lease;
pub mod levels;
pub mod lifecycle;
pub mod lifecycle_flags;
pub mod lifecycle_release;
pub mod lifecycle_release_stop;
pub mod meta;
mod migrations;
pub mod notify;
pub mod packages;
pub mod pg;
pub mod pg_copy;
pub mod pg_events;
pub mod pg_schema;
pub mod pg_tls;
pub mod points;
pub mod records;
pub mod settings;
pub mod sql;
pub mod windows;

pub use dead_letters::DeadLetter;
pub use events::{EventRow, InsertOutcome};
pub use instances::InstanceRow;
pub use migrations::MIGRATIONS;
pub use records::{NewRecord, RecordRow, RecordState};
pub use windows::WindowRow;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a store operation failed. Callers branch on the variant, never on the message:
///
/// | kind | variants | CLI exit | HTTP |
/// |---|---|---|---|
/// | bad input or configuration | [`Invalid`](StoreError::Invalid), [`NotFound`](StoreError::NotFound), [`Overflow`](StoreError::Overflow), [`Tls`](StoreError::Tls) | 2 | 422 |
/// | temporary ([`is_unavailable`](StoreError::is_unavailable)) | `Full`, `Busy`, `Moved`, `Missing`, read-only, unreachable | 3 | 503 + `Retry-After` |
/// | lease lost | [`Fenced`](StoreError::Fenced) | 4 | 409 |
/// | internal (a bug, never the caller's fault) | [`Internal`](StoreError::Internal) | 3 | 500 |
/// | runtime | the database's own errors (`Sqlite`, `Postgres`, `Open`, `Corrupt`, `TooNew`) | 3 | 500 |
///
/// Opening a store is stricter (`cli::Ctx::store_unchecked`): a `Missing` database or a
/// PostgreSQL configuration error (reason `config`) is exit 2 there, since no retry fixes it.
///
/// [`StoreError::kind`] sorts them into these rows ([`ErrorKind`]); the CLI's exit code
/// (`cli::ExitKind`) and the server's status (`server::ApiError`) are decided from it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("the database or disk is full; free space (or raise the limit) and retry — nothing was stored")]
    Full,
    #[error("the database is locked by another writer; retry")]
    Busy,
    #[error("database {0} was written by a newer meterd (schema version {1}); upgrade meterd")]
    TooNew(PathBuf, i64),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// The caller's request or configuration is wrong: a bad value, a state the operation
    /// does not apply to, a feature the backend lacks. The message says what and what to do.
    #[error("{0}")]
    Invalid(String),
    /// What the caller named does not exist (an instance, a record's `metering_sn`, a backup
    /// file). A kind of bad input: the API answers it 422 like other bad input (its OpenAPI
    /// document has no 404), the CLI exit 2.
    #[error("{0}")]
    NotFound(String),
    /// An exact amount (a window's sum, a total, unbillable usage) would leave the 96-bit
    /// decimal range; nothing was written. Bad input: the events' quantities are out of range.
    #[error("{0}")]
    Overflow(String),
    /// A broken invariant inside meterd (a code path run on the wrong backend, a blocking task
    /// that failed or panicked, a value that cannot be serialised): a bug, never the caller's
    /// fault. HTTP 500, CLI exit 3; nothing was written (the transaction rolled back).
    #[error("internal error: {0}")]
    Internal(String),
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// This node lost the lease it writes under: another node took it over (see [`lease`]).
    /// Nothing of the transaction was written.
    #[error("lease {lease} was taken over by {holder} (epoch {epoch}; this node held epoch {ours}); nothing was written — that node seals and uploads now")]
    Fenced { lease: String, ours: i64, holder: String, epoch: i64 },
    /// A PostgreSQL error (the server's message, or a lost connection).
    #[error("PostgreSQL: {}", pg_message(.0))]
    Postgres(postgres::Error),
    /// Connecting to the PostgreSQL server failed (refused, unreachable, authentication, no
    /// such database): `server` names its host(s) and port(s) — never the password or the
    /// URL's user info — so an operator sees which server was tried ([`pg::PgLocation`]).
    #[error("PostgreSQL server {server}: {}{}", pg_message(.source), connect_hint(.source))]
    PgConnect { server: String, source: postgres::Error },
    /// The database file is gone but its marker says one was in use (see the module docs).
    #[error("database {} is missing, but {} says meterd has used a database there: restore the database from a backup (or move it back), or run `meterd init` / `meterd run --create-db` to start an empty one on purpose", path.display(), marker.display())]
    Missing { path: PathBuf, marker: PathBuf },
    /// The file the connection holds is no longer the file at its path (deleted or replaced).
    #[error("the database file {0} was deleted or replaced while meterd had it open; nothing more is acknowledged: restore the file (or restart meterd on the right one)")]
    Moved(PathBuf),
    /// TLS to the PostgreSQL server could not be set up as the URL's `sslmode` asks (the
    /// server has none, or its certificate was refused): the message says why and what to do
    /// ([`pg_tls::explain`]). Configuration, like a wrong password: reason `config`.
    #[error("{0}")]
    Tls(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full,
            Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => StoreError::Busy,
            _ => StoreError::Sqlite(e),
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        use postgres::error::SqlState;
        match e.code() {
            Some(c) if *c == SqlState::DISK_FULL => StoreError::Full,
            Some(c)
                if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::LOCK_NOT_AVAILABLE =>
            {
                StoreError::Busy
            }
            _ => StoreError::Postgres(e),
        }
    }
}

/// What kind of failure a [`StoreError`] is; the one thing the CLI and the server branch on
/// to choose an exit code or HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request or configuration is wrong (including a name that does not exist and an
    /// amount out of range): fix it and try again.
    BadInput,
    /// The store cannot write now (full, busy, read-only, unreachable, moved): retry later.
    Unavailable,
    /// This node lost the sealer lease ([`StoreError::Fenced`]).
    Fenced,
    /// A bug or broken invariant inside meterd ([`StoreError::Internal`]).
    Internal,
    /// The database failed otherwise (an SQL error, corrupt or newer data).
    Runtime,
}

impl StoreError {
    /// The kind of failure, for exit codes and HTTP statuses (see the table on [`StoreError`]).
    /// Decided by the variant; the database's own errors are [`ErrorKind::Unavailable`] when
    /// [`is_unavailable`](StoreError::is_unavailable), else [`ErrorKind::Runtime`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Fenced { .. } => ErrorKind::Fenced,
            StoreError::Invalid(_) | StoreError::NotFound(_) | StoreError::Overflow(_) | StoreError::Tls(_) => ErrorKind::BadInput,
            StoreError::Internal(_) => ErrorKind::Internal,
            e if e.is_unavailable() => ErrorKind::Unavailable,
            _ => ErrorKind::Runtime,
        }
    }

    /// Temporary: the caller should answer "try again later" (HTTP 503), not "bad input".
    /// A read-only database is one: the store cannot write now, like a full disk, and the
    /// connection is reopened after such a failure, so it clears once the file is writable.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Full | StoreError::Busy | StoreError::Moved(_) | StoreError::Missing { .. })
            || matches!(self.reason(), "readonly" | "unreachable" | "busy")
    }

    /// A short label for metrics and health checks: `full`, `busy`, `readonly`, `io`,
    /// `moved`, `missing`, `corrupt`, `invalid` (bad input, not found, overflow), `internal`, `fenced`, `cannot_open`, and for PostgreSQL
    /// `unreachable` (server down or connection lost) and `config` (authentication failed,
    /// no such database, a bad URL option), or `other`.
    /// ([`FAILURE_REASONS`] lists them all.)
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::Full => "full",
            StoreError::Busy => "busy",
            StoreError::Moved(_) => "moved",
            StoreError::Missing { .. } => "missing",
            StoreError::Corrupt(_) | StoreError::TooNew(..) => "corrupt",
            StoreError::Invalid(_) | StoreError::NotFound(_) | StoreError::Overflow(_) => "invalid",
            StoreError::Internal(_) => "internal",
            StoreError::Fenced { .. } => "fenced",
            StoreError::Tls(_) => "config",
            StoreError::Open { source: e, .. } | StoreError::Sqlite(e) => match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ReadOnly) | Some(rusqlite::ErrorCode::PermissionDenied) => "readonly",
                Some(rusqlite::ErrorCode::CannotOpen) => "cannot_open",
                Some(rusqlite::ErrorCode::SystemIoFailure) => "io",
                Some(rusqlite::ErrorCode::DiskFull) => "full",
                _ => "other",
            },
            StoreError::Postgres(e) | StoreError::PgConnect { source: e, .. } => postgres_reason(e),
        }
    }

    /// The database cannot take writes now (read-only, full, I/O error, cannot open, moved):
    /// a person must act, unlike a busy lock or bad input.
    pub fn is_unwritable(&self) -> bool {
        unwritable_reason(self.reason())
    }

    /// Another node took the sealer lease over (issue 13's fencing): this node wrote nothing
    /// and stands by — expected after a pause past the lease, not a fault to page for.
    pub fn is_fenced(&self) -> bool {
        matches!(self, StoreError::Fenced { .. })
    }
}

/// Every value [`StoreError::reason`] gives (the `reason` label of the failure counters, which
/// `/metrics` exports at 0 from the start).
pub const FAILURE_REASONS: &[&str] = &[
    "full",
    "busy",
    "moved",
    "missing",
    "corrupt",
    "invalid",
    "internal",
    "fenced",
    "config",
    "readonly",
    "cannot_open",
    "io",
    "unreachable",
    "other",
];

/// A PostgreSQL error as a person needs it: the server's message with its detail and hint
/// (the client's own `Display` says only "db error"), or the client's description.
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                m.push_str(&format!("; {d}"));
            }
            if let Some(h) = db.hint() {
                m.push_str(&format!("; hint: {h}"));
            }
            m
        }
        None => match std::error::Error::source(e) {
            Some(src) => format!("{e}: {src}"),
            None => e.to_string(),
        },
    }
}

/// What to check after a failed connection, by its reason: for a server that cannot be
/// reached, that it runs and listens there.
fn connect_hint(e: &postgres::Error) -> &'static str {
    match postgres_reason(e) {
        "unreachable" => "; is the server running and accepting TCP connections there? Check the host and port in --db / METERD_DB",
        "config" if e.to_string().contains("password missing") => {
            "; give the password in the URL, in PGPASSWORD, or in the file named by `[store] password_file`"
        }
        _ => "",
    }
}

/// The reason label of a PostgreSQL error: `unreachable` when the server cannot be reached
/// (connection refused or lost, server shutting down), `readonly` on a read-only server
/// (a standby), `full` when it is out of disk, otherwise `other`.
fn postgres_reason(e: &postgres::Error) -> &'static str {
    use postgres::error::SqlState;
    match e.code() {
        None if e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()) => "unreachable",
        // The client refused its own settings (a missing password, a bad URL option).
        None if e.to_string().starts_with("invalid configuration") => "config",
        None => "other",
        Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => "readonly",
        Some(c) if *c == SqlState::DISK_FULL || *c == SqlState::OUT_OF_MEMORY => "full",
        // The server ended the session (shutdown, or `idle_in_transaction_session_timeout`):
        // the next transaction reconnects.
        Some(c) if c.code().starts_with("08") || c.code().starts_with("57P") || *c == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT => {
            "unreachable"
        }
        // A statement ran past its timeout (`store::pg::LANE_STATEMENT_TIMEOUT`): try again.
        Some(c) if *c == SqlState::QUERY_CANCELED => "busy",
        // Authentication failed, or the database does not exist: the configuration is wrong.
        Some(c) if c.code().starts_with("28") || *c == SqlState::INVALID_CATALOG_NAME => "config",
        Some(_) => "other",
    }
}

/// Whether a [`StoreError::reason`] label means the database cannot take writes.
pub fn unwritable_reason(reason: &str) -> bool {
    matches!(reason, "full" | "readonly" | "io" | "cannot_open" | "moved" | "missing" | "unreachable")
}

/// The URL when `db` (a `--db` / `METERD_DB` value) names a PostgreSQL server ([`pg::is_url`]).
pub fn postgres_url(db: &Path) -> Option<&str> {
    db.to_str().filter(|s| pg::is_url(s))
}

/// A libpq `key=value` connection string given as `--db` is refused (see
/// [`pg::looks_like_conninfo`]); the message never repeats it (it may hold a password).
fn refuse_conninfo(db: &Path) -> Result<()> {
    match db.to_str() {
        Some(s) if pg::looks_like_conninfo(s) => Err(StoreError::Invalid(
            "the database looks like a PostgreSQL key=value connection string; meterd takes a URL (postgres://USER@HOST:PORT/DBNAME, the password in PGPASSWORD or `store.password_file`) or a SQLite file path".into(),
        )),
        _ => Ok(()),
    }
}

/// How a `--db` value is shown in messages and logs: a SQLite path as it is, a PostgreSQL URL
/// without its password ([`pg::redact`]). Every message naming the store goes through this.
pub fn shown(db: &Path) -> String {
    match postgres_url(db) {
        Some(url) => pg::redact(url),
        None => db.display().to_string(),
    }
}

/// The marker kept beside a database (`<db>.created`): its presence says a database was in
/// use at that path, so a missing one must not be silently recreated empty.
pub fn marker_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".created");
    db.with_file_name(name)
}

/// The files of the SQLite database `db` (the database, its `-wal` and `-shm`) that exist and
/// that this process may not both read and write (`access(R_OK | W_OK)`; root may write any),
/// and its directory when SQLite would have to create a `-wal` or `-shm` file there and may not;
/// empty for a PostgreSQL URL.
///
/// Why the daemon refuses to start on such a store rather than wait for a `chmod`: SQLite opens
/// the `-shm` file once per process and keeps it as first opened, shared by every connection
/// of the process, so a store opened while it was read-only stays read-only after a `chmod`
/// even for a fresh connection, until every connection of the process is closed at once (a
/// connection found read-only while running is reopened, see [`Store::reopen_if_needed`]).
pub fn unwritable_files(db: &Path) -> Vec<PathBuf> {
    if postgres_url(db).is_some() {
        return Vec::new();
    }
    let side = |suffix: &str| {
        let mut name = db.as_os_str().to_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    let (wal, shm) = (side("-wal"), side("-shm"));
    // SQLite creates the `-wal` and `-shm` files beside the database: a missing one needs a
    // writable directory (a writable database in a read-only directory fails every write).
    let dir = db.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let needs_dir = db.exists() && !(wal.exists() && shm.exists());
    let mut out: Vec<PathBuf> = [db.to_path_buf(), wal, shm].into_iter().filter(|f| f.exists() && !read_writable(f)).collect();
    if needs_dir && !read_writable(&dir) {
        out.push(dir);
    }
    out
}

/// Whether this process may read and write the file at `path` (`access(2)`, `R_OK | W_OK`).
fn read_writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; `access` only reads it.
    unsafe { libc::access(c.as_ptr(), libc::R_OK | libc::W_OK) == 0 }
}

/// Tells whether the file a connection opened is still the file at its path: (device,
/// inode) taken at open, compared with a `stat` of the path. Cheap to clone and to ask.
#[derive(Debug, Clone)]
pub struct FileProbe {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl FileProbe {
    /// `Some(reason)` when the file at the path is gone or another one; `None` when it is the
    /// one opened (or identities are unknown on this platform).
    pub fn moved(&self) -> Option<String> {
        let opened = self.identity?;
        match file_identity(&self.path) {
            None => Some(format!("database file {} was deleted while meterd had it open", self.path.display())),
            Some(now) if now != opened => {
                Some(format!("database file {} was replaced by another file while meterd had it open", self.path.display()))
            }
            Some(_) => None,
        }
    }
}

/// (device, inode) of the file at `path`, `None` if there is none (or not on unix).
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An open database connection with meterd's schema: a SQLite file (with meterd's pragmas)
/// or a PostgreSQL server (see [`pg`]).
pub struct Store {
    engine: Engine,
    /// The SQLite file, or for PostgreSQL the URL without its password (for messages only).
    path: PathBuf,
    /// (device, inode) of the file opened, for [`Store::file_moved`].
    identity: Option<(u64, u64)>,
    /// The last transaction found the connection read-only: reopen it before the next one.
    reopen: bool,
    /// When set, every write transaction first checks this lease (see [`Store::set_fence`]).
    fence: Option<lease::Fence>,
    /// What [`Store::open_with`] was given; a reopen ([`Store::reopen_if_needed`]) applies it again.
    opts: OpenOptions,
}

/// Options of [`Store::open_with`]. The default (what [`Store::open`] uses) is what production
/// runs with.
///
/// The binary fills them from its environment at the process edge
/// (`crate::faults::open_options_from_env`); library code never reads the environment for them,
/// so tests in one process can open stores with different options side by side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Caps a SQLite file at this many pages (`PRAGMA max_page_count`; a page is the file's
    /// `page_size`, 4 KiB by default): writes past it fail with SQLITE_FULL, the way a full disk
    /// behaves, which is how the disk-full tests (issue 7) simulate one. `None`: no cap (SQLite's
    /// own limit). Ignored on PostgreSQL, whose full disk is the server's own condition.
    /// Binary: env `METERD_MAX_PAGE_COUNT=N`.
    pub max_page_count: Option<u64>,
}

enum Engine {
    Sqlite(Connection),
    // Both boxed: the PostgreSQL client and its parsed URL are large beside a SQLite handle.
    Postgres { conn: Box<sql::PgConn>, location: Box<pg::PgLocation> },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// A second connection to a PostgreSQL store, not yet opened ([`Store::second_connection`]).
pub(crate) struct SecondConnection {
    location: Box<pg::PgLocation>,
    fence: Option<lease::Fence>,
}

impl SecondConnection {
    /// Connects ([`pg::PgLocation::connect`]'s errors); the store is fenced as the first was.
    pub(crate) fn open(self) -> Result<Store> {
        let conn = Box::new(self.location.connect()?);
        let mut store = Store::on_postgres(conn, self.location);
        store.fence = self.fence;
        Ok(store)
    }
}

impl Store {
    /// Opens the database at `path` and migrates it, creating it when it is missing and no
    /// marker says one was in use there ([`StoreError::Missing`] otherwise); writes the marker.
    pub fn open(path: &Path) -> Result<Store> {
        Self::open_with(path, OpenOptions::default())
    }

    /// [`Store::open`] with `opts` (see [`OpenOptions`]); the same errors, and
    /// [`StoreError::Sqlite`] when a SQLite option cannot be applied.
    pub fn open_with(path: &Path, opts: OpenOptions) -> Result<Store> {
        let mut store = Self::open_checked(path)?;
        store.apply(opts)?;
        Ok(store)
    }

    fn open_checked(path: &Path) -> Result<Store> {
        refuse_conninfo(path)?;
        if let Some(url) = postgres_url(path) {
            return Self::open_postgres(url);
        }
        let marker = marker_path(path);
        if !path.exists() && marker.exists() {
            return Err(StoreError::Missing { path: path.to_path_buf(), marker });
        }
        Self::open_and_mark(path)
    }

    /// Opens the database at `path`, creating it even where a marker says one was in use
    /// (`meterd init`, `meterd run --create-db`: an operator's explicit choice).
    pub fn create(path: &Path) -> Result<Store> {
        refuse_conninfo(path)?;
        if let Some(url) = postgres_url(path) {
            return Self::open_postgres(url);
        }
        Self::open_and_mark(path)
    }

    /// Opens an existing database only: a missing file is [`StoreError::Missing`]. The
    /// daemon's loops use it, so a database deleted under a running daemon is never recreated.
    pub fn open_existing(path: &Path) -> Result<Store> {
        if let Some(url) = postgres_url(path) {
            return Self::open_postgres(url);
        }
        if !path.exists() {
            return Err(StoreError::Missing { path: path.to_path_buf(), marker: marker_path(path) });
        }
        Self::open_and_mark(path)
    }

    /// Connects to the PostgreSQL server at `url` (see [`pg`]).
    fn open_postgres(url: &str) -> Result<Store> {
        let location = pg::PgLocation::parse(url)?;
        let conn = Box::new(location.connect_and_migrate()?);
        Ok(Store::on_postgres(conn, Box::new(location)))
    }

    /// A store on the PostgreSQL connection `conn` to `location`, unfenced.
    fn on_postgres(conn: Box<sql::PgConn>, location: Box<pg::PgLocation>) -> Store {
        Store {
            path: PathBuf::from(location.to_string()),
            engine: Engine::Postgres { conn, location },
            identity: None,
            reopen: false,
            fence: None,
            opts: OpenOptions::default(),
        }
    }

    /// What opens a second connection to this PostgreSQL store, fenced as this one is (the
    /// background apply of delivered batches: `upload::applier`); `None` on SQLite, which
    /// takes one writer at a time. Opening it is left to the caller (it may take up to the
    /// connect timeout), so it need not hold this store meanwhile.
    pub(crate) fn second_connection(&self) -> Option<SecondConnection> {
        let Engine::Postgres { location, .. } = &self.engine else { return None };
        Some(SecondConnection { location: location.clone(), fence: self.fence.clone() })
    }

    /// Fences this connection: from now on every [`Store::write`] checks, inside its own
    /// transaction and before anything else, that `fence`'s lease is still held at its epoch,
    /// and fails with [`StoreError::Fenced`] (writing nothing) when it is not. The daemon's
    /// seal and upload connections carry the sealer lease's fence on a shared store, so every
    /// seal and upload state change is fenced without those modules knowing (issue 13).
    pub fn set_fence(&mut self, fence: Option<lease::Fence>) {
        self.fence = fence;
    }

    /// The fence set by [`Store::set_fence`].
    pub fn fence(&self) -> Option<&lease::Fence> {
        self.fence.as_ref()
    }

    /// Which engine holds this store.
    pub fn backend(&self) -> sql::Backend {
        match self.engine {
            Engine::Sqlite(_) => sql::Backend::Sqlite,
            Engine::Postgres { .. } => sql::Backend::Postgres,
        }
    }

    /// The SQLite connection; an error on PostgreSQL, naming `what` needs SQLite.
    pub(crate) fn sqlite(&self, what: &str) -> Result<&Connection> {
        match &self.engine {
            Engine::Sqlite(c) => Ok(c),
            Engine::Postgres { .. } => Err(StoreError::Invalid(format!("{what} is available on a SQLite store only"))),
        }
    }

    fn open_and_mark(path: &Path) -> Result<Store> {
        let store = Self::open_raw(path)?;
        let marker = marker_path(path);
        if !marker.exists() {
            // Best effort: a read-only directory must not stop a read of the database.
            let text =
                "meterd keeps this file beside its database: while it exists, a missing database is an error, not a new empty one.\n";
            if let Err(e) = std::fs::write(&marker, text) {
                tracing::debug!(error = %e, marker = %marker.display(), "cannot write the database marker");
            }
        }
        Ok(store)
    }

    /// `Some(reason)` when the file this connection holds is no longer the file at its path
    /// (deleted, renamed or replaced); one `stat`. Always `None` where identities are unknown.
    pub fn file_moved(&self) -> Option<String> {
        self.file_probe().moved()
    }

    /// A probe of this connection's file, to ask from another thread.
    pub fn file_probe(&self) -> FileProbe {
        FileProbe { path: self.path.clone(), identity: self.identity }
    }

    fn open_raw(path: &Path) -> Result<Store> {
        let open_err = |source| StoreError::Open { path: path.to_path_buf(), source };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(open_err)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Invalid(format!(
                "database {}: cannot switch to WAL mode (got {mode}); is it on a network filesystem?",
                path.display()
            )));
        }
        conn.execute_batch(
            "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA journal_size_limit=67108864; PRAGMA cache_size=-32768; PRAGMA temp_store=MEMORY;",
        )
        .map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        register_functions(&conn).map_err(open_err)?;
        let identity = file_identity(path);
        let mut store = Store {
            engine: Engine::Sqlite(conn),
            path: path.to_path_buf(),
            identity,
            reopen: false,
            fence: None,
            opts: OpenOptions::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<()> {
        let Engine::Sqlite(conn) = &mut self.engine else { return Ok(()) };
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew(self.path.clone(), version));
        }
        if version == known {
            return Ok(());
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read under the write lock: another process may have migrated meanwhile.
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction and commits it; rolls back on error.
    ///
    /// A failure because the database is read-only marks the connection for a reopen before
    /// the next transaction (see [`Store::reopen_if_needed`]).
    pub fn write<T>(&mut self, f: impl FnOnce(&sql::Tx<'_>) -> Result<T>) -> Result<T> {
        self.write_under(pg::Lock::Writers, f)
    }

    /// [`Store::write`] under `lock` on PostgreSQL (an ingest lane's, a concurrent fold's, an
    /// upload delivery's or a background apply's transaction: `store::pg`, "Transactions"); on SQLite the same as [`Store::write`], whose
    /// `BEGIN IMMEDIATE` lets one writer in at a time.
    pub(crate) fn write_under<T>(&mut self, lock: pg::Lock, f: impl FnOnce(&sql::Tx<'_>) -> Result<T>) -> Result<T> {
        self.reopen_if_needed()?;
        let fence = self.fence.as_ref();
        let fenced = |tx: &sql::Tx<'_>| -> Result<T> {
            if let Some(fence) = fence {
                fence.check(tx)?;
            }
            f(tx)
        };
        let result = match &mut self.engine {
            Engine::Sqlite(conn) => (|| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let out = fenced(&sql::Tx::sqlite(&tx))?;
                tx.commit()?;
                Ok(out)
            })(),
            Engine::Postgres { conn, location } => {
                pg::in_transaction_reconnecting(conn, location, &pg::begin_write_under(lock), |c| fenced(&sql::Tx::postgres(c)))
            }
        };
        self.note_failure(&result);
        result
    }

    /// Runs `f` inside a read transaction, so everything it reads is one consistent snapshot.
    pub fn read<T>(&mut self, f: impl FnOnce(&sql::Tx<'_>) -> Result<T>) -> Result<T> {
        self.reopen_if_needed()?;
        let result = match &mut self.engine {
            Engine::Sqlite(conn) => (|| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
                let out = f(&sql::Tx::sqlite(&tx))?;
                tx.finish()?;
                Ok(out)
            })(),
            Engine::Postgres { conn, location } => {
                pg::in_transaction_reconnecting(conn, location, pg::BEGIN_READ, |c| f(&sql::Tx::postgres(c)))
            }
        };
        self.note_failure(&result);
        result
    }

    /// Marks the connection for a reopen when `result` failed because it cannot write
    /// (SQLITE_READONLY, or a permission error): SQLite keeps a file opened read-only as it
    /// was opened, so once the operator makes it writable only a new connection can write.
    fn note_failure<T>(&mut self, result: &Result<T>) {
        if let Err(e) = result {
            if e.reason() == "readonly" || e.reason() == "unreachable" {
                self.reopen = true;
            }
        }
    }

    /// Whether the next transaction will first reopen the connection.
    pub fn reopen_pending(&self) -> bool {
        self.reopen
    }

    /// Reopens the connection after a read-only failure (a no-op otherwise: never per
    /// request). Opens the file at the same path only if it is still the file first opened
    /// ([`StoreError::Moved`] otherwise, and [`StoreError::Missing`] if it is gone): a
    /// reopen never switches to another or a new, empty database. If the reopen fails, the
    /// old connection is kept and the next transaction tries again.
    pub fn reopen_if_needed(&mut self) -> Result<()> {
        if let Engine::Postgres { conn, location } = &mut self.engine {
            // A lost connection (server restarted, network cut) is replaced before the next
            // transaction; the one that failed was rolled back by the server.
            if self.reopen || conn.is_closed() {
                **conn = location.connect()?;
                self.reopen = false;
                tracing::info!(db = %location, "reconnected to PostgreSQL");
            }
            return Ok(());
        }
        if !self.reopen {
            return Ok(());
        }
        if let Some(why) = self.file_moved() {
            tracing::warn!("{why}; not reopening it");
            return Err(StoreError::Moved(self.path.clone()));
        }
        let mut fresh = Self::open_existing(&self.path)?;
        fresh.apply(self.opts)?;
        if self.identity.is_some() && fresh.identity != self.identity {
            return Err(StoreError::Moved(self.path.clone()));
        }
        tracing::info!(db = %self.path.display(), "reopened the database connection after it was found read-only");
        *self = fresh;
        Ok(())
    }

    /// Makes the connection usable again after a panic unwound through a caller holding it:
    /// rolls back a transaction left open (a dropped `rusqlite::Transaction` normally rolls
    /// back itself; this also covers one begun by hand). A no-op on a clean connection.
    pub fn recover(&mut self) -> Result<()> {
        match &mut self.engine {
            Engine::Sqlite(conn) => {
                if !conn.is_autocommit() {
                    conn.execute_batch("ROLLBACK")?;
                }
            }
            // Outside a transaction ROLLBACK only warns; a dead connection is replaced later.
            Engine::Postgres { conn, .. } => {
                let _ = conn.rollback();
            }
        }
        Ok(())
    }

    /// Leaves a transaction open, as a panic between `BEGIN` and `COMMIT` could.
    #[cfg(test)]
    pub(crate) fn begin_for_test(&mut self) {
        self.sqlite("a test").unwrap().execute_batch("BEGIN IMMEDIATE").unwrap();
    }

    /// `PRAGMA integrity_check`; `Ok(())` when the file is sound.
    pub fn integrity_check(&self) -> Result<()> {
        let Engine::Sqlite(conn) = &self.engine else {
            // PostgreSQL checks its own pages; there is no file-level check to run here.
            return Ok(());
        };
        let res: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if res == "ok" {
            Ok(())
        } else {
            Err(StoreError::Corrupt(res))
        }
    }

    /// The schema as stored in `sqlite_master` (for `schemas/store.sql`).
    pub fn schema_sql(&self) -> Result<String> {
        let mut stmt = self.sqlite("the SQLite schema")?.prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = String::from("-- Generated from src/store/migrations.rs; refresh with:\n--   METERD_BLESS=1 cargo test --lib store::tests::store_sql_is_fresh\n");
        for r in rows {
            out.push_str(&r?);
            out.push_str(";\n\n");
        }
        Ok(out)
    }

    /// Applies `opts` to this connection and remembers them for a reopen.
    fn apply(&mut self, opts: OpenOptions) -> Result<()> {
        if let (Some(pages), sql::Backend::Sqlite) = (opts.max_page_count, self.backend()) {
            self.set_max_page_count(pages)?;
        }
        self.opts = opts;
        Ok(())
    }

    /// Limits the database file to `pages` pages (for disk-full tests and quotas).
    pub fn set_max_page_count(&self, pages: u64) -> Result<()> {
        self.sqlite("a page limit")?.query_row(&format!("PRAGMA max_page_count={pages}"), [], |_| Ok(()))?;
        Ok(())
    }
}

/// Locks a connection shared behind a mutex (the daemon's admin and upload connections),
/// recovering it if a panic unwound while another thread held it: the poison is cleared and a
/// transaction left open is rolled back ([`Store::recover`]). A panic is a bug that costs its
/// own operation; it must not leave every later request answering "poisoned" until a restart.
/// `what` names the connection in the log.
pub fn lock_recovering<'a>(m: &'a std::sync::Mutex<Store>, what: &str) -> std::sync::MutexGuard<'a, Store> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => {
            m.clear_poison();
            let mut g = poisoned.into_inner();
            match g.recover() {
                Ok(()) => {
                    tracing::warn!(connection = what, "a panic left this connection locked; recovered (open transaction rolled back)")
                }
                Err(e) => {
                    tracing::error!(connection = what, error = %e, "a panic left this connection locked and its transaction could not be rolled back")
                }
            }
            g
        }
    }
}

/// Decimal text → `Decimal`; stored text is always written by us, so failure means corruption.
/// SQL functions meterd's statements use: `meterd_decimal_add(a, b)`, the exact sum of two
/// decimal texts (window totals are exact decimals, which SQLite's own `+` is not).
fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function("meterd_decimal_add", 2, FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC, |ctx| {
        let arg = |i: usize| -> rusqlite::Result<rust_decimal::Decimal> {
            let text = ctx.get_raw(i).as_str().map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
            text.parse().map_err(|_| rusqlite::Error::UserFunctionError(format!("not an exact decimal: {text:?}").into()))
        };
        let sum = arg(0)?.checked_add(arg(1)?).ok_or_else(|| rusqlite::Error::UserFunctionError("decimal sum overflows".into()))?;
        Ok(sum.normalize().to_string())
    })
}

pub(crate) fn dec(text: &str) -> Result<rust_decimal::Decimal> {
    text.parse().map_err(|_| StoreError::Corrupt(format!("{text:?} is not a decimal")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reason an error can carry is listed, so `/metrics` exports its series from the start.
    #[test]
    fn every_failure_reason_is_listed() {
        let sqlite = |code| StoreError::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None));
        let errors = [
            StoreError::Full,
            StoreError::Busy,
            StoreError::Moved(PathBuf::new()),
            StoreError::Corrupt(String::new()),
            StoreError::Invalid(String::new()),
            StoreError::Internal(String::new()),
            StoreError::Tls(String::new()),
            sqlite(rusqlite::ffi::SQLITE_READONLY),
            sqlite(rusqlite::ffi::SQLITE_CANTOPEN),
            sqlite(rusqlite::ffi::SQLITE_IOERR),
            sqlite(rusqlite::ffi::SQLITE_FULL),
            sqlite(rusqlite::ffi::SQLITE_MISMATCH),
        ];
        for e in errors {
            assert!(FAILURE_REASONS.contains(&e.reason()), "{e:?}: {}", e.reason());
        }
        // PostgreSQL's reasons (`postgres_reason`) are literal strings in one function; keep
        // them in the list by hand: unreachable, config, readonly, full, other.
        for r in ["unreachable", "config", "readonly", "full", "other", "fenced", "missing"] {
            assert!(FAILURE_REASONS.contains(&r), "{r}");
        }
    }

    /// The page cap is an option of one connection, not of the process: a capped store and an
    /// uncapped one on the same file, side by side; the capped one's writes fail as on a full
    /// disk (storing nothing), the other's go through, and a read-only reopen keeps the cap.
    #[test]
    fn the_page_cap_is_an_open_option_of_one_connection() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        let pages: u64 = Store::open(&p).unwrap().sqlite("t").unwrap().query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        let opts = OpenOptions { max_page_count: Some(pages + 2) };
        let mut capped = Store::open_with(&p, opts).unwrap();
        let mut free = Store::open(&p).unwrap();
        let fill = |s: &mut Store, tag: &str| {
            s.write(|tx| {
                for i in 0..2000 {
                    instances::add(
                        tx,
                        &format!("{tag}-{i:05}-{}", "x".repeat(64)),
                        "calls",
                        crate::model::Timestamp(0),
                        crate::model::Timestamp(0),
                    )?;
                }
                Ok(())
            })
        };
        assert!(matches!(fill(&mut capped, "a"), Err(StoreError::Full)), "the capped connection is full");
        let count = |s: &mut Store| s.read(|tx| tx.one::<i64>("SELECT count(*) FROM instances", sql::params![])).unwrap();
        assert_eq!(count(&mut free), 0, "nothing of the refused write was stored");
        fill(&mut free, "b").expect("the uncapped connection writes");
        assert_eq!(count(&mut capped), 2000);
        capped.reopen = true;
        capped.reopen_if_needed().unwrap();
        assert_eq!(capped.opts, opts, "a reopen keeps the options");
        assert!(matches!(fill(&mut capped, "c"), Err(StoreError::Full)), "still capped after a reopen");
    }

    #[test]
    fn store_sql_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let sql = store.schema_sql().unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/store.sql");
        if std::env::var_os("METERD_BLESS").is_some() {
            std::fs::write(path, &sql).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == sql,
            "schemas/store.sql is stale; refresh it with: METERD_BLESS=1 cargo test --lib store::tests::store_sql_is_fresh"
        );
    }

    #[test]
    fn a_poisoned_admin_lock_is_recovered_with_its_transaction_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let admin = std::sync::Mutex::new(Store::open(&dir.path().join("t.db")).unwrap());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut g = admin.lock().unwrap();
            g.begin_for_test();
            panic!("boom");
        }));
        assert!(r.is_err());
        assert!(admin.is_poisoned());
        let mut g = lock_recovering(&admin, "admin");
        assert!(!admin.is_poisoned());
        // A new transaction can begin: the one the panic left open was rolled back.
        g.write(|_| Ok(())).unwrap();
    }

    #[test]
    fn pragmas_are_set_and_reopen_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        drop(Store::open(&p).unwrap());
        let s = Store::open(&p).unwrap();
        let conn = s.sqlite("a test").unwrap();
        let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "synchronous must be FULL");
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        s.integrity_check().unwrap();
    }

    #[test]
    fn a_connection_found_read_only_is_reopened_at_the_next_attempt_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        let mut s = Store::open(&p).unwrap();
        // What SQLite gives a process that opened the file while it was read-only.
        s.engine = Engine::Sqlite(Connection::open_with_flags(&p, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap());
        let put = |s: &mut Store| s.write(|tx| meta::set(tx, meta::LAST_SEAL, "x"));
        let e = put(&mut s).unwrap_err();
        assert_eq!(e.reason(), "readonly", "{e}");
        assert!(e.is_unavailable() && e.is_unwritable(), "a read-only store is a 503: {e}");
        assert!(s.reopen_pending());
        put(&mut s).unwrap();
        assert!(!s.reopen_pending());
        assert!(!s.sqlite("a test").unwrap().is_readonly(rusqlite::MAIN_DB).unwrap());
        // Other failures never reopen.
        assert!(s.write(|_| Err::<(), _>(StoreError::Busy)).is_err());
        assert!(!s.reopen_pending());
    }
}
