//! The command line: one file per subcommand, each a small `Args` + `run` that calls the
//! library; [`help`] adds every subcommand's examples to the clap definition. This is where
//! config is loaded, the clock is read (`--now` overrides it), and library errors get the
//! context a person needs. Exit codes (design §7, [`ExitKind`]): 0 success; 1 finished
//! but some input or records were rejected; 2 bad usage or configuration; 3 runtime failure
//! or an internal error (a bug); 4 the sealer lease is another node's. A library error
//! becomes one by its kind ([`crate::store::ErrorKind`]), never by its message.

mod backup;
mod completions;
mod demo;
pub mod help;
mod ingest;
mod init;
pub mod instance;
mod man;
mod mock_store;
mod notifications;
mod package;
pub mod preview;
mod rejected;
mod run;
mod seal;
mod status;
mod store;
mod upload;

use crate::config::Config;
use crate::model::Timestamp;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

/// meterd: usage metering for KooGallery pay-per-use SaaS — collect, seal, price, upload.
#[derive(Debug, Parser)]
#[command(name = "meterd", version, about)]
pub struct Cli {
    /// Config file (default: ./meterd.toml if it exists, else built-in defaults).
    #[arg(long, global = true, env = "METERD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database: a SQLite file (default: meterd.db beside the config) or a shared PostgreSQL
    /// store's `postgres://` URL.
    // `hide_env_values`: `--help` would print a PostgreSQL URL with its password otherwise.
    #[arg(long, global = true, env = "METERD_DB", hide_env_values = true)]
    pub db: Option<PathBuf>,
    /// This node's name on a shared PostgreSQL store (status, the sealer lease); default:
    /// host name and process id.
    #[arg(long, global = true, env = "METERD_NODE")]
    pub node: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Whole pipeline on built-in defaults: temp store, example plans and events, mock store.
    Demo(demo::Args),
    /// Write an example meterd.toml and create the database.
    Init(init::Args),
    /// Ingest events from a file (NDJSON or JSON array; `-` or nothing for stdin).
    Ingest(ingest::Args),
    /// Instances: add, release, freeze, unfreeze, move (to another plan), list.
    #[command(subcommand)]
    Instance(instance::Cmd),
    /// Prepaid packages (quota, validity, reset): add, list.
    #[command(subcommand)]
    Package(package::Cmd),
    /// Seal every closed window into a usage record.
    Seal(seal::Args),
    /// Show charges per instance and window before upload.
    Preview(preview::Args),
    /// Backlog, last upload and error, deadlines, unbillable usage, conservation audit.
    Status(status::Args),
    /// Sign and upload pending records to the cloud store.
    Upload(upload::Args),
    /// List records the store rejected, with code, message and the body sent.
    Rejected(rejected::Args),
    /// Send rejected records again after their cause is fixed (same metering_sn, same bytes).
    Requeue(rejected::RequeueArgs),
    /// List recent usage notifications (`[[notify]]`): delivered, waiting and failing, with errors.
    Notifications(notifications::Args),
    /// The store itself: `store set-timezone ZONE`, `store copy --from SRC --to DST`.
    #[command(subcommand)]
    Store(store::Cmd),
    /// Serve the cloud store's usage API on loopback (local integration tests).
    MockStore(crate::mockstore::MockStoreArgs),
    /// Daemon: HTTP collector plus scheduled seal and upload, until SIGTERM (SIGHUP re-reads the key).
    Run(run::Args),
    /// Online backup of the store to a new file, safe while a daemon runs; the copy is checked.
    Backup(backup::Args),
    /// Print a shell completion script (bash, zsh, fish) to stdout.
    Completions(completions::Args),
    /// Print the manual page (roff) to stdout, or write one page per command with --dir.
    Man(man::Args),
}

impl Command {
    /// Commands that run until signalled (they must survive a closed stdout).
    pub fn is_long_running(&self) -> bool {
        matches!(self, Command::Run(_) | Command::MockStore(_))
    }
}

/// The exit codes meterd documents (design §7, the README's table); the only place they are
/// numbered. `u8::from(kind)` is the process's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// 0: success.
    Success,
    /// 1: finished, but some input or records were rejected.
    Rejected,
    /// 2: bad usage or configuration (a flag, the config, a name that does not exist, an
    /// amount out of range): fix the command or config and run it again.
    Usage,
    /// 3: runtime failure (store, network) or an internal error (a bug: the message says so);
    /// nothing half-done, re-running is safe.
    Runtime,
    /// 4: another node holds (or took over) the sealer lease of a shared PostgreSQL store.
    Lease,
}

impl From<ExitKind> for u8 {
    fn from(k: ExitKind) -> u8 {
        match k {
            ExitKind::Success => 0,
            ExitKind::Rejected => 1,
            ExitKind::Usage => 2,
            ExitKind::Runtime => 3,
            ExitKind::Lease => 4,
        }
    }
}

impl From<crate::store::ErrorKind> for ExitKind {
    /// How each kind of store failure ends a command (the table on
    /// [`crate::store::StoreError`]): an internal error is a runtime failure (3), never "bad
    /// usage" (2).
    fn from(k: crate::store::ErrorKind) -> ExitKind {
        use crate::store::ErrorKind as K;
        match k {
            K::BadInput => ExitKind::Usage,
            K::Fenced => ExitKind::Lease,
            K::Unavailable | K::Internal | K::Runtime => ExitKind::Runtime,
        }
    }
}

/// A failure with its exit code and the message printed on stderr.
#[derive(Debug)]
pub struct Failure {
    pub kind: ExitKind,
    pub message: String,
}

impl Failure {
    /// A failure of `kind` with `message`.
    pub fn new(kind: ExitKind, message: impl Into<String>) -> Failure {
        Failure { kind, message: message.into() }
    }
    /// Exit 2: bad usage or configuration.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(ExitKind::Usage, message)
    }
    /// Exit 3: runtime failure.
    pub fn runtime(message: impl Into<String>) -> Failure {
        Failure::new(ExitKind::Runtime, message)
    }
    /// Exit 4: the sealer lease is another node's.
    pub fn lease(message: impl Into<String>) -> Failure {
        Failure::new(ExitKind::Lease, message)
    }
    /// The process exit status.
    pub fn code(&self) -> u8 {
        self.kind.into()
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Failure {
        Failure::new(e.kind().into(), e.to_string())
    }
}

/// What a command resolved from flags, env and config.
pub struct Ctx {
    pub cfg: Arc<Config>,
    pub db: PathBuf,
    /// This node's name (`--node`, `METERD_NODE`, else host name and pid).
    pub node: String,
}

impl Ctx {
    pub fn load(cli: &Cli) -> Result<Ctx, Failure> {
        let cfg = match &cli.config {
            Some(p) => Config::load(p).map_err(Failure::usage)?,
            None if std::path::Path::new("meterd.toml").exists() => {
                Config::load(std::path::Path::new("meterd.toml")).map_err(Failure::usage)?
            }
            None => Config::default(),
        };
        let db = cli.db.clone().unwrap_or_else(|| cfg.default_db_path());
        if let Some(w) = crate::settings::zone_warning(cfg.timezone) {
            tracing::warn!("{w}");
        }
        if let Some(url) = crate::store::postgres_url(&db) {
            if !crate::store::pg::password_given(url) {
                load_password_file(&cfg)?;
            }
        }
        let node = cli.node.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(crate::store::lease::default_node_name);
        Ok(Ctx { cfg: Arc::new(cfg), db, node })
    }

    /// Opens the store and checks the config against the settings it remembers (a plan in
    /// use that is missing, a changed `timezone` or plan `period`: exit 2; see
    /// [`crate::settings`]). A missing database where its marker says one was in use is exit 2
    /// too (a person must restore it or create one on purpose; see `store`).
    pub fn store(&self) -> Result<crate::store::Store, Failure> {
        let mut store = self.store_unchecked()?;
        match crate::settings::check(&mut store, &self.cfg) {
            Ok(warnings) => warnings.iter().for_each(|w| tracing::warn!("{w}")),
            Err(crate::settings::SettingsError::Config(m)) => return Err(Failure::usage(m)),
            Err(crate::settings::SettingsError::Store(e)) => return Err(e.into()),
        }
        Ok(store)
    }

    /// Opens the store for a one-shot seal or upload. On a shared PostgreSQL store it takes
    /// the sealer lease for the run (fencing the store's writes with it; release it with
    /// [`Ctx::release_lease`]), or fails with exit code 4 naming the node that holds it. On
    /// SQLite no lease is needed (one machine; batch claims keep a daemon and a one-shot
    /// apart).
    pub fn store_for_sealing(&self) -> Result<crate::store::Store, Failure> {
        use crate::store::lease::{self, Acquired};
        let mut store = self.store()?;
        if store.backend() != crate::store::sql::Backend::Postgres {
            return Ok(store);
        }
        let ttl = self.cfg.store.lease.0;
        match store.write(|tx| lease::acquire(tx, lease::SEALER, &self.node, None, ttl))? {
            Acquired::Held(f) => store.set_fence(Some(f)),
            Acquired::Busy(r) if r.holder == self.node => {
                return Err(Failure::lease(format!(
                    "another process named {} (this command's node name) holds the sealer lease (epoch {}): nothing was done here. Node names must be unique per process: run this with another --node / METERD_NODE, or stop that process and run this again once its lease expires (at most `store.lease` = {})",
                    r.holder, r.epoch, self.cfg.store.lease
                )))
            }
            Acquired::Busy(r) => {
                return Err(Failure::lease(format!(
                    "node {} holds the sealer lease (epoch {}): it seals and uploads this store; nothing was done here — let it, or stop it and run this again once its lease expires (at most `store.lease` = {})",
                    r.holder, r.epoch, self.cfg.store.lease
                )))
            }
            Acquired::Outdated { store_schema, node_schema } => {
                return Err(Failure::usage(format!(
                    "the PostgreSQL store has schema version {store_schema}, newer than the {node_schema} this meterd knows: a newer meterd migrated it; nothing was done here — upgrade meterd on this node"
                )))
            }
        }
        Ok(store)
    }

    /// Gives back the lease [`Ctx::store_for_sealing`] took (a no-op on SQLite).
    pub fn release_lease(store: &mut crate::store::Store) {
        if let Some(f) = store.fence().cloned() {
            store.set_fence(None);
            if let Err(e) = store.write(|tx| crate::store::lease::release(tx, &f)) {
                tracing::warn!(error = %e, "could not release the sealer lease; it expires by itself");
            }
        }
    }

    /// Opens the store without the settings check (for the commands that change settings); a
    /// missing database directory is a configuration problem (exit 2).
    pub fn store_unchecked(&self) -> Result<crate::store::Store, Failure> {
        crate::daemon::startup::check_db_dir(&self.db).map_err(Failure::usage)?;
        crate::store::Store::open_with(&self.db, crate::faults::open_options_from_env()).map_err(|e| self.open_failure(e))
    }

    /// What a failure to open (or create) the store means for the exit code: a missing
    /// database, a bad URL or a refused password is configuration (exit 2, saying where the
    /// password came from); anything else is a runtime failure.
    pub fn open_failure(&self, e: crate::store::StoreError) -> Failure {
        match e {
            e @ crate::store::StoreError::Missing { .. } => Failure::usage(e.to_string()),
            // A bad URL, a PostgreSQL URL this build refuses, a libpq string, a wrong password or
            // database: configuration, which a restart cannot fix (exit 2).
            e if e.reason() == "config" && !matches!(e, crate::store::StoreError::Tls(_)) => {
                match crate::store::postgres_url(&self.db).map(crate::store::pg::password_source) {
                    Some("nowhere") => Failure::usage(format!(
                        "{e} (check the URL in --db / METERD_DB; no password was given: put it in the URL, in PGPASSWORD or in the file named by `[store] password_file`)"
                    )),
                    Some(from) => Failure::usage(format!("{e} (check the URL in --db / METERD_DB and the password, which came from {from})")),
                    None => Failure::usage(format!("{e} (check the URL in --db / METERD_DB and the password)")),
                }
            }
            e => e.into(),
        }
    }
}

/// Reads `[store] password_file` (if set) as the PostgreSQL password of last resort (see
/// `store::pg`; callers skip it when the URL or `PGPASSWORD` gives one, so a file that is not
/// used is never required); an unreadable or empty file is a configuration error (exit 2), a
/// file others may read gets a warning, as `upload.key_file` does.
pub fn load_password_file(cfg: &Config) -> Result<(), Failure> {
    if let Some(file) = &cfg.store.password_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure::usage(format!("cannot read `store.password_file` {}: {e}", file.display())))?;
        let password = text.trim();
        if password.is_empty() {
            return Err(Failure::usage(format!("`store.password_file` {} is empty", file.display())));
        }
        if let Some(w) = crate::config::secret::permission_warning(file, "`store.password_file`") {
            tracing::warn!("{w}");
        }
        crate::store::pg::set_password_file_secret(crate::config::Secret::new(password.as_bytes()));
    }
    Ok(())
}

/// The `value_parser` of every time flag (`--now`, `--from`, `--to`): an RFC 3339 time with an
/// offset, parsed once by clap. A bad value is a usage error (exit 2) that clap prints as
/// `invalid value 'noon' for '--now <NOW>': "noon" is not an RFC 3339 time with an offset; write
/// e.g. …` — the flag, the value and a valid example, as [`crate::model::parse_rfc3339`] says it.
pub fn timestamp(s: &str) -> Result<Timestamp, String> {
    crate::model::parse_rfc3339(s)
}

/// `--now TIME` (already parsed by [`timestamp`]) or the wall clock.
pub fn now_or(flag: Option<Timestamp>) -> Timestamp {
    flag.unwrap_or_else(Timestamp::now)
}

/// `--format` of the listing commands (`instance list`, `package list`, `status`, `rejected`,
/// `notifications`): an aligned table for people, or JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// Runs one command; returns the exit code for success paths (0 or 1).
pub fn run(cli: Cli) -> Result<u8, Failure> {
    match &cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => man::run(a),
        Command::Init(a) => init::run(&cli, a),
        Command::Ingest(a) => ingest::run(&Ctx::load(&cli)?, a),
        Command::Instance(c) => instance::run(&Ctx::load(&cli)?, c),
        Command::Package(c) => package::run(&Ctx::load(&cli)?, c),
        Command::Run(a) => run::run(&Ctx::load(&cli)?, a),
        Command::Backup(a) => backup::run(&Ctx::load(&cli)?, a),
        Command::Status(a) => status::run(&Ctx::load(&cli)?, a),
        Command::Upload(a) => upload::run(&Ctx::load(&cli)?, a),
        Command::Rejected(a) => rejected::run(&Ctx::load(&cli)?, a),
        Command::Requeue(a) => rejected::requeue(&Ctx::load(&cli)?, a),
        Command::Notifications(a) => notifications::run(&Ctx::load(&cli)?, a),
        Command::MockStore(a) => mock_store::run(a.clone()),
        Command::Store(c) => store::run(&Ctx::load(&cli)?, c),
        Command::Seal(a) => seal::run(&Ctx::load(&cli)?, a),
        Command::Preview(a) => preview::run(&Ctx::load(&cli)?, a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use std::path::PathBuf;

    #[test]
    fn exit_kinds_are_the_documented_codes() {
        let codes: Vec<u8> = [ExitKind::Success, ExitKind::Rejected, ExitKind::Usage, ExitKind::Runtime, ExitKind::Lease]
            .into_iter()
            .map(u8::from)
            .collect();
        assert_eq!(codes, [0, 1, 2, 3, 4]);
    }

    /// Every kind of store failure → the exit code a command ends with (the README's table):
    /// an internal failure is a runtime failure (3), never "bad usage" (2).
    #[test]
    fn each_store_error_kind_has_its_exit_code() {
        let fenced = StoreError::Fenced { lease: "sealer".into(), ours: 1, holder: "b".into(), epoch: 2 };
        let cases: Vec<(StoreError, u8)> = vec![
            (StoreError::Invalid("bad".into()), 2),
            (StoreError::NotFound("no record has metering_sn \"x\"".into()), 2),
            (StoreError::Overflow("window usage overflows a 96-bit decimal".into()), 2),
            (StoreError::Tls("no TLS".into()), 2),
            (StoreError::Internal("the task opening the store failed".into()), 3),
            (StoreError::Corrupt("x".into()), 3),
            (StoreError::TooNew(PathBuf::from("m.db"), 99), 3),
            (StoreError::Full, 3),
            (StoreError::Busy, 3),
            (StoreError::Moved(PathBuf::from("m.db")), 3),
            (fenced, 4),
        ];
        for (e, want) in cases {
            let shown = e.to_string();
            let f = Failure::from(e);
            assert_eq!(f.code(), want, "{shown}");
            assert_eq!(f.message, shown, "the message is the error's own");
        }
    }

    /// An internal error says it is one (not the caller's fault).
    #[test]
    fn an_internal_error_says_so() {
        let f = Failure::from(StoreError::Internal("store task failed: panicked".into()));
        assert!(f.message.starts_with("internal error: store task failed"), "{}", f.message);
    }

    use clap::Parser;

    #[test]
    fn time_flags_are_parsed_once_by_clap_with_the_flag_the_value_and_an_example() {
        for args in [
            &["meterd", "seal", "--now", "noon"][..],
            &["meterd", "preview", "--from", "2026-11-23"],
            &["meterd", "instance", "release", "i-1", "--at", "2026-11-23T10:00:00"],
        ] {
            let e = Cli::try_parse_from(args).expect_err("a bad time is refused at parsing");
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{args:?}");
            assert_eq!(e.exit_code(), 2, "bad usage");
            let text = e.to_string();
            assert!(text.contains(args[args.len() - 2]) && text.contains(args[args.len() - 1]), "{text}");
            assert!(text.contains("2026-11-23T08:15:00Z"), "a valid example: {text}");
        }
        let cli = Cli::try_parse_from(["meterd", "seal", "--now", "2026-11-23T16:15:00+08:00"]).unwrap();
        let Command::Seal(a) = cli.command else { panic!("seal") };
        assert_eq!(a.now, Some(Timestamp::from_secs(1_795_421_700)));
    }

    #[test]
    fn formats_are_typed_values() {
        let cli = Cli::try_parse_from(["meterd", "preview", "--format", "csv"]).unwrap();
        let Command::Preview(a) = cli.command else { panic!("preview") };
        assert_eq!(a.format, preview::Format::Csv);
        let e = Cli::try_parse_from(["meterd", "status", "--format", "xml"]).expect_err("xml is not a format");
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(e.to_string().contains("table") && e.to_string().contains("json"), "{e}");
    }
}
