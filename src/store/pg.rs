//! The PostgreSQL backend's connection: where the server is, how meterd logs in, and how a
//! transaction begins and ends there (issue 13).
//!
//! **Selecting it.** `--db` / `METERD_DB` holding a `postgres://` or `postgresql://` URL selects
//! PostgreSQL ([`is_url`]); anything else is a SQLite path. The password comes from the URL, else
//! from `PGPASSWORD`, else from the file named by `[store] password_file`
//! ([`set_password_file_secret`], read once at start); it is never logged or shown:
//! [`PgLocation`]'s `Display` and `Debug` print the URL with the password replaced by `***`.
//!
//! **Transactions.** A write transaction takes one transaction-scoped advisory lock
//! ([`WRITE_LOCK`]) before its first statement, so writers from every node run one at a time —
//! the same contract SQLite's `BEGIN IMMEDIATE` gives the store's functions, which were written
//! for it (read, decide, write, with no other writer in between). Four kinds of transaction
//! take that lock *shared* instead, and run side by side ([`Lock`]): the ingest writers, one
//! per ingest lane, each holding its lane's lock as well (`store::pg_events`, "Ingest lanes");
//! the second step of a concurrent fold (`store::windows::fold_concurrently`), holding the
//! fold lock; an uploader's delivery transactions, holding the upload lock; and the background
//! apply of delivered batches, holding the apply lock (`upload::applier`). Each pair of them
//! writes disjoint rows. Every other write still waits for all of them, and they for it. Reads run at `REPEATABLE
//! READ`: one consistent snapshot, like a SQLite read transaction. Every commit is durable
//! before it returns (`synchronous_commit = on` is set per connection, whatever the server's
//! default), so nothing is acknowledged that a crash could lose.
//!
//! **TLS** ([`super::pg_tls`]): the URL's `sslmode` (`disable`, `prefer` — the default —,
//! `require`, `verify-ca`, `verify-full`) and `sslrootcert=/path/ca.pem` choose whether the
//! connection is encrypted and what of the server's certificate is checked; `require` and
//! above always verify the chain (stricter than libpq's `require`), `verify-full` the host name
//! too. Across hosts use `verify-full`: `postgres://meterd@db.example:5432/meterd?sslmode=verify-full&sslrootcert=/etc/meterd/pg-ca.pem`.
//! The CA file is read once, when the URL is parsed. A refused certificate or a server without
//! TLS fails the connection with [`StoreError::Tls`] (a configuration error, exit 2), never a
//! silent fall back to clear text.
//!
//! **A failed connection** names the server tried ([`PgLocation::server`]: host and port,
//! never the password or the URL's user info) in [`StoreError::PgConnect`].
//!
//! **A lost connection** fails the transaction in flight (the caller answers 503, nothing is
//! acknowledged) and is replaced at the next transaction: meterd reconnects by itself once the
//! server is back.

use super::pg_tls::{self, TlsSettings};
use super::sql::PgConn;
use super::{Result, StoreError};

/// The advisory lock every write transaction holds (`pg_advisory_xact_lock`), serialising
/// writers across nodes. An arbitrary constant, fixed forever: "meterd-w" in ASCII.
pub const WRITE_LOCK: i64 = 0x6d65_7465_7264_2d77;

/// The advisory lock of ingest lane 0; lane `n` (< 64) is `LANE_LOCK + n`. "meterdL" and a
/// zero byte in ASCII: the 64 keys meet no other lock of meterd. Fixed forever.
pub const LANE_LOCK: i64 = 0x6d65_7465_7264_4c00;

/// The advisory lock a concurrent fold holds, so folds run one at a time. "meterd-f" in ASCII.
/// Fixed forever.
pub const FOLD_LOCK: i64 = 0x6d65_7465_7264_2d66;

/// The advisory lock of an uploader's delivery transaction ([`Lock::Upload`]), so two
/// uploaders' deliveries run one at a time. "meterd-u" in ASCII. Fixed forever.
pub const UPLOAD_LOCK: i64 = 0x6d65_7465_7264_2d75;

/// The advisory lock of the background apply ([`Lock::Apply`]), so applies run one at a time.
/// "meterd-a" in ASCII. Fixed forever.
pub const APPLY_LOCK: i64 = 0x6d65_7465_7264_2d61;

/// Which advisory locks a write transaction takes before its first statement (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// [`WRITE_LOCK`], exclusive: no other write of any kind runs meanwhile. Every write but
    /// the four below.
    Writers,
    /// [`WRITE_LOCK`] shared and lane `n`'s lock ([`LANE_LOCK`]` + n`): an ingest transaction
    /// of lane `n`, beside the other lanes' (the events of one instance always take the same
    /// lane, so no two transactions decide events of one instance at once).
    Lane(u32),
    /// [`WRITE_LOCK`] shared and [`FOLD_LOCK`]: the second step of a concurrent fold, beside
    /// the ingest lanes (and uploads' deliveries and applies, which touch other tables).
    Fold,
    /// [`WRITE_LOCK`] shared and [`UPLOAD_LOCK`]: an uploader's delivery transaction (the
    /// answered batch marked delivered, the next one cut: `upload::run`), beside the ingest
    /// lanes, a fold, and the background apply of earlier deliveries.
    Upload,
    /// [`WRITE_LOCK`] shared and [`APPLY_LOCK`]: the background apply of delivered batches
    /// into their records rows (`upload::applier`), beside an uploader's delivery
    /// transactions (and the lanes and a fold).
    Apply,
}

static PASSWORD_FILE_SECRET: std::sync::OnceLock<crate::config::Secret> = std::sync::OnceLock::new();

/// The password read from `[store] password_file`, the last resort of [`PgLocation::parse`].
/// Set once per process (the CLI does it after loading the config); later calls are ignored.
pub fn set_password_file_secret(secret: crate::config::Secret) {
    let _ = PASSWORD_FILE_SECRET.set(secret);
}

/// Whether `db` looks like a libpq `key=value` connection string (`host=… dbname=…`), which
/// meterd does not take: used as a file name it would silently open a private SQLite store
/// (one that no other node sees — the shape that loses money) named after the password.
pub fn looks_like_conninfo(db: &str) -> bool {
    let keys = ["host=", "hostaddr=", "dbname=", "user=", "password=", "port=", "sslmode="];
    db.split_whitespace().filter(|w| keys.iter().any(|k| w.starts_with(k))).count() >= 1 && db.contains(char::is_whitespace)
        || keys.iter().any(|k| db.starts_with(k))
}

/// Whether the URL or `PGPASSWORD` gives a password (then `[store] password_file` is not read).
pub fn password_given(url: &str) -> bool {
    matches!(password_source(url), "the URL" | "PGPASSWORD")
}

/// Where the password [`PgLocation::parse`] uses for `url` comes from, for messages (never the
/// password): "the URL", "PGPASSWORD", "`store.password_file`" or "nowhere".
pub fn password_source(url: &str) -> &'static str {
    let in_url =
        pg_tls::split_url(url).ok().and_then(|(rest, _)| rest.parse::<postgres::Config>().ok()).is_some_and(|c| c.get_password().is_some());
    if in_url {
        "the URL"
    } else if std::env::var_os("PGPASSWORD").is_some() {
        "PGPASSWORD"
    } else if PASSWORD_FILE_SECRET.get().is_some() {
        "`store.password_file`"
    } else {
        "nowhere"
    }
}

/// Whether `db` names a PostgreSQL server rather than a SQLite file.
pub fn is_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// A PostgreSQL server and the credentials to reach it. Shown without its password.
#[derive(Clone)]
pub struct PgLocation {
    config: postgres::Config,
    shown: String,
    /// The URL's `sslmode` / `sslrootcert`, for messages.
    tls: TlsSettings,
    /// The rustls connector those settings ask for; `None` under `sslmode=disable`.
    connector: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl PgLocation {
    /// Parses a `postgres://` URL; the password, if the URL has none, comes from `PGPASSWORD`.
    /// A malformed URL, a bad TLS parameter or an unreadable `sslrootcert` is
    /// [`StoreError::Invalid`] naming what is wrong (never echoing the password).
    pub fn parse(url: &str) -> Result<PgLocation> {
        let shown = redact(url);
        let (rest, tls) = pg_tls::split_url(url).map_err(|e| StoreError::Invalid(format!("the database URL {shown}: {e}")))?;
        let mut config: postgres::Config =
            rest.parse().map_err(|e| StoreError::Invalid(format!("the database URL {shown} is not a valid PostgreSQL URL: {e}")))?;
        let tls = on_sockets_no_tls(&config, tls);
        config.ssl_mode(pg_tls::client_mode(&tls));
        let connector = pg_tls::connector(&tls).map_err(|e| StoreError::Invalid(format!("the database URL {shown}: {e}")))?;
        if config.get_password().is_none() {
            if let Some(pw) = std::env::var_os("PGPASSWORD") {
                config.password(pw.into_encoded_bytes());
            } else if let Some(pw) = PASSWORD_FILE_SECRET.get() {
                config.password(pw.expose());
            }
        }
        if config.get_application_name().is_none() {
            config.application_name("meterd");
        }
        config.connect_timeout(std::time::Duration::from_secs(10));
        Ok(PgLocation { config, shown, tls, connector })
    }

    /// The server(s) the URL names, for messages: `host:port` per host (`[v6]:port`, or a
    /// Unix socket's path), comma-separated; never the user, password or database. The port
    /// defaults to 5432, one port given applies to every host (as in libpq).
    pub fn server(&self) -> String {
        use postgres::config::Host;
        let ports = self.config.get_ports();
        let shown: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match h {
                    Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                    Host::Tcp(name) => format!("{name}:{port}"),
                    #[cfg(unix)]
                    Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
                }
            })
            .collect();
        if shown.is_empty() {
            "(no host in the URL)".into()
        } else {
            shown.join(", ")
        }
    }

    /// The URL's TLS settings (`sslmode`, the trusted CAs).
    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    /// Connects and makes every commit on this connection durable before it returns. A TLS
    /// failure that a retry cannot fix (no TLS on the server, a refused certificate) is
    /// [`StoreError::Tls`].
    pub fn connect(&self) -> Result<PgConn> {
        let client = connect_within(&self.config, self.connector.clone(), CONNECT_TIMEOUT)
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "{self}: the server accepted the connection but did not complete the handshake within {CONNECT_TIMEOUT:?}; is this a PostgreSQL server, and is it overloaded?"
                ))
            })?
            .map_err(|e| match pg_tls::explain(&e, &self.tls) {
                Some(why) => StoreError::Tls(format!("{self}: {why}")),
                None => StoreError::PgConnect { server: self.server(), source: e },
            })?;
        let mut conn = PgConn::new(client);
        // A session idle inside a transaction this long (a node paused mid-write) is ended by
        // the server, so its writers' lock cannot stall every other node.
        // client_min_messages: the migration's `CREATE TABLE IF NOT EXISTS` would otherwise log
        // a NOTICE at every open.
        conn.batch(
            "SET synchronous_commit = on; SET TIME ZONE 'UTC'; SET idle_in_transaction_session_timeout = '10s'; SET client_min_messages = warning",
        )?;
        Ok(conn)
    }

    /// Connects and applies pending schema migrations (once across nodes starting together:
    /// `pg_schema::migrate` runs under an advisory lock).
    pub fn connect_and_migrate(&self) -> Result<PgConn> {
        let mut conn = self.connect()?;
        super::pg_schema::migrate(conn.client()?).map_err(|e| match e {
            super::pg_schema::PgSchemaError::Postgres(e) => StoreError::from(e),
            e => StoreError::Invalid(format!("{self}: {e}")),
        })?;
        conn.clear_statements();
        Ok(conn)
    }
}

impl std::fmt::Display for PgLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for PgLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgLocation({})", self.shown)
    }
}

/// How long a connection, handshake and authentication included, may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Connects on a helper thread and waits at most `timeout`: the client's own
/// `connect_timeout` bounds only the TCP connect, so a server that accepts and then never
/// answers would hang a command (or the daemon) forever. `None` on timeout (the helper thread
/// ends when the OS gives up on the socket).
fn connect_within(
    config: &postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    timeout: std::time::Duration,
) -> Option<std::result::Result<postgres::Client, postgres::Error>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let config = config.clone();
    std::thread::Builder::new()
        .name("pg-connect".into())
        .spawn(move || {
            let _ = tx.send(match tls {
                Some(tls) => config.connect(tls),
                None => config.connect(postgres::NoTls),
            });
        })
        .ok()?;
    rx.recv_timeout(timeout).ok()
}

/// A URL whose every host is a Unix socket never uses TLS, as in libpq: the socket does not
/// leave the machine, and the server refuses TLS on it.
fn on_sockets_no_tls(config: &postgres::Config, tls: TlsSettings) -> TlsSettings {
    let hosts = config.get_hosts();
    let all_sockets = !hosts.is_empty() && hosts.iter().all(|h| !matches!(h, postgres::config::Host::Tcp(_)));
    if all_sockets {
        TlsSettings { mode: pg_tls::SslMode::Disable, ..tls }
    } else {
        tls
    }
}

/// The URL with any password replaced by `***` (and any `password=` query parameter too).
pub fn redact(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        // Not parseable: show only the scheme, never what might hold a secret.
        return format!("{}://…", url.split("://").next().unwrap_or("postgres"));
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    let pairs: Vec<(String, String)> = u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    if pairs.iter().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
        let mut q = u.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, if k.eq_ignore_ascii_case("password") { "***" } else { v });
        }
    }
    u.to_string()
}

/// Runs `f` between `begin` (`BEGIN …`) and `COMMIT`, rolling back when it fails. When the first
/// attempt at `begin` finds the connection dead (the server restarted or ended the session
/// while it sat idle), a new connection from `location` is made and the transaction begun on
/// it, once, quietly. Nothing had reached the server yet (the
/// `BEGIN` itself failed), so this retry cannot repeat any work; any later failure is the
/// caller's, as before.
pub(crate) fn in_transaction_reconnecting<T>(
    conn: &mut PgConn,
    location: &PgLocation,
    begin: &str,
    f: impl FnOnce(&mut PgConn) -> Result<T>,
) -> Result<T> {
    if let Err(e) = conn.batch(begin) {
        if e.reason() != "unreachable" {
            return Err(e);
        }
        *conn = location.connect()?;
        tracing::info!(db = %location, error = %e, "reconnected to PostgreSQL: the idle connection was gone");
        conn.batch(begin)?;
    }
    in_begun(conn, f)
}

/// Runs `f` in the transaction begun on `conn`, then `COMMIT`, or `ROLLBACK` when it fails.
fn in_begun<T>(conn: &mut PgConn, f: impl FnOnce(&mut PgConn) -> Result<T>) -> Result<T> {
    match f(conn) {
        Ok(v) => {
            conn.batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            // The connection may be gone; the server rolls back what it never saw committed.
            let _ = conn.rollback();
            Err(e)
        }
    }
}

/// `BEGIN` of a write transaction: read committed, after the writers' lock (see module docs),
/// saying which schema this build writes (`meterd.writer_schema`, for the transaction only), so
/// a store upgraded past it by a newer node refuses its writes (`store::pg_schema`, "Old writers
/// are refused"). One round trip.
#[cfg(test)]
pub(crate) fn begin_write() -> String {
    begin_write_under(Lock::Writers)
}

/// How long any statement of an ingest lane's transaction may run once its locks are held
/// (`statement_timeout`, for the transaction only). A lane's `COPY` waits for the writer to send
/// rows; a node paused in the middle (SIGSTOP, a VM freeze) would otherwise hold its lane lock
/// with no limit, since a session inside a `COPY` is not "idle in transaction", and a seal or
/// fold queued for the writers' lock would then hold up the other lane too, on every node
/// (found by the session-28 trial). A statement of a lane takes milliseconds; the timeout fails
/// the transaction (nothing acknowledged; 503), as `idle_in_transaction_session_timeout` does
/// between statements (`PgLocation::connect`).
pub const LANE_STATEMENT_TIMEOUT: &str = "10s";

/// [`begin_write`] under `lock`. A shared lock is always taken before the exclusive one beside
/// it, in the same statement, so two transactions never wait for each other in a cycle. A
/// lane's transaction then caps its statements ([`LANE_STATEMENT_TIMEOUT`]); the wait for the
/// locks themselves, in this first statement, is not capped (a seal may hold the writers' lock
/// for seconds).
pub(crate) fn begin_write_under(lock: Lock) -> String {
    let locks = match lock {
        Lock::Writers => format!("pg_advisory_xact_lock({WRITE_LOCK})"),
        Lock::Lane(n) => format!(
            "pg_advisory_xact_lock_shared({WRITE_LOCK}), pg_advisory_xact_lock({}), set_config('statement_timeout', '{LANE_STATEMENT_TIMEOUT}', true)",
            LANE_LOCK + i64::from(n)
        ),
        Lock::Fold => format!("pg_advisory_xact_lock_shared({WRITE_LOCK}), pg_advisory_xact_lock({FOLD_LOCK})"),
        Lock::Upload => format!("pg_advisory_xact_lock_shared({WRITE_LOCK}), pg_advisory_xact_lock({UPLOAD_LOCK})"),
        Lock::Apply => format!("pg_advisory_xact_lock_shared({WRITE_LOCK}), pg_advisory_xact_lock({APPLY_LOCK})"),
    };
    format!(
        "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT {locks}, set_config('meterd.writer_schema', '{}', true)",
        super::pg_schema::PG_MIGRATIONS.len()
    )
}

/// `BEGIN` of a read transaction: one snapshot.
pub(crate) const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_libpq_connection_string_is_recognised_and_paths_are_not() {
        assert!(looks_like_conninfo("host=127.0.0.1 port=5432 user=u password=SECRET dbname=meterd"));
        assert!(looks_like_conninfo("dbname=meterd"));
        for path in ["meterd.db", "/var/lib/meterd/meterd.db", "./data/my db.sqlite", "postgres://u@h/db"] {
            assert!(!looks_like_conninfo(path), "{path}");
        }
    }

    #[test]
    fn urls_select_postgres_and_passwords_never_show() {
        assert!(is_url("postgres://u@h/db") && is_url("postgresql://h/db"));
        assert!(!is_url("meterd.db") && !is_url("/var/lib/meterd/postgres.db"));
        let loc = PgLocation::parse("postgres://meterd:s3cret@127.0.0.1:5433/billing?password=other").unwrap();
        for shown in [loc.to_string(), format!("{loc:?}")] {
            assert!(!shown.contains("s3cret") && !shown.contains("other"), "{shown}");
            assert!(shown.contains("127.0.0.1:5433/billing"), "{shown}");
        }
        assert_eq!(loc.server(), "127.0.0.1:5433");
        let two = PgLocation::parse("postgres://u:s3cret@db1,[::1]:5434/billing").unwrap();
        assert_eq!(two.server(), "db1:5432, [::1]:5434");
        let e = PgLocation::parse("postgres://meterd:s3cret@host:notaport/db").unwrap_err().to_string();
        assert!(!e.contains("s3cret") && e.contains("not a valid PostgreSQL URL"), "{e}");
    }
}
