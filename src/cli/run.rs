//! `meterd run`: the daemon. A configuration problem found at start-up is exit code 2
//! (`daemon::startup`); a failure while running is 3.

use super::{Ctx, Failure};
use crate::model::Timestamp;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Listen address (overrides server.listen), e.g. 127.0.0.1:0 for any free port.
    #[arg(long)]
    listen: Option<String>,
    /// Run with a fixed clock (replays and tests).
    #[arg(long, hide = true, value_parser = super::timestamp)]
    now: Option<Timestamp>,
    /// Create an empty database even where a marker says one was in use (after a deliberate
    /// reset; see the README on the database marker).
    #[arg(long)]
    create_db: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8, Failure> {
    let now = args.now;
    if args.create_db {
        // The operator's explicit "start empty here", even where a marker says one was in use.
        crate::daemon::startup::check_db_dir(&ctx.db).map_err(Failure::usage)?;
        crate::store::Store::create(&ctx.db).map_err(|e| ctx.open_failure(e))?;
    }
    // A store this process cannot write: exit 3 (a restart by systemd or Kubernetes brings the
    // daemon up once it can), before any open creates `-wal`/`-shm` files with the database's
    // read-only mode. Why not start and wait: `store::unwritable_files`.
    let unwritable = crate::store::unwritable_files(&ctx.db);
    if !unwritable.is_empty() {
        let files: Vec<String> = unwritable.iter().map(|f| f.display().to_string()).collect();
        return Err(Failure::runtime(format!(
            "the database is read-only (or unreadable) for this process (uid {}): {}; make these readable and writable — the database, its -wal/-shm files if present, and its directory, where SQLite creates them (ownership, mode, or a read-only volume) — and start meterd again: it does not serve a store it cannot write",
            // SAFETY: getuid has no preconditions and cannot fail.
            unsafe { libc::getuid() },
            files.join(", ")
        )));
    }
    // The settings check, and a missing database where one was in use: the daemon refuses to
    // start like every command.
    drop(ctx.store()?);
    let opts = crate::daemon::RunOptions { listen: args.listen.clone(), now, node: Some(ctx.node.clone()) };
    crate::daemon::run(ctx.cfg.clone(), &ctx.db, opts).map_err(|e| match e {
        crate::daemon::RunError::Config(m) => Failure::usage(m),
        crate::daemon::RunError::Runtime(e) => Failure::runtime(format!("{e:#}")),
    })?;
    Ok(0)
}
