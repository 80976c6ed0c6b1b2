//! `meterd backup DEST`: an online backup of the store, safe while a daemon ingests
//! (`store::backup`), then checked: the copy is opened as a store, passes SQLite's integrity
//! check and the conservation audit, each plan under its configured aggregation. DEST must not exist (exit 2); a missing source database is
//! exit 2 too — backing up would otherwise create an empty one. A copy that fails its check is
//! kept for inspection and the command exits 3.
//!
//! Restore is a file copy while no meterd runs on the database (see the README recipe).

use super::{Ctx, Failure};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup file to create (must not exist; its directory must).
    dest: PathBuf,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8, Failure> {
    if crate::store::postgres_url(&ctx.db).is_some() {
        return Err(Failure::usage(format!(
            "meterd backup copies a SQLite file; {} is a PostgreSQL server: back it up with the server's own tools (pg_dump, or continuous archiving), or stop every node and run `meterd store copy --from <URL> --to snapshot.db` for a SQLite copy the audit checks",
            crate::store::shown(&ctx.db)
        )));
    }
    if !ctx.db.exists() {
        return Err(Failure::usage(format!(
            "no database at {} to back up; point --db / METERD_DB at the store in use",
            crate::store::shown(&ctx.db)
        )));
    }
    if args.dest.exists() {
        return Err(Failure::usage(format!(
            "{} exists; a backup never overwrites a file: choose a new name or remove it first",
            args.dest.display()
        )));
    }
    crate::daemon::startup::check_db_dir(&args.dest)
        .map_err(|_| Failure::usage(format!("the backup's directory does not exist ({}); create it first", args.dest.display())))?;
    let store = ctx.store()?;
    store.backup_to(&args.dest)?;
    drop(store);

    let checked = (|| {
        let mut copy = crate::store::Store::open_backup(&args.dest)?;
        copy.integrity_check()?;
        let balances = crate::audit::balances_with(&mut copy, &crate::audit::rule_of(&ctx.cfg))?;
        let events: u64 = balances.iter().map(|b| b.events).sum();
        let broken: Vec<String> = balances.into_iter().filter(|b| !b.holds()).map(|b| b.instance_id).collect();
        Ok::<_, crate::store::StoreError>((events, broken))
    })();
    match checked {
        Ok((events, broken)) if broken.is_empty() => {
            println!(
                "backed up {} to {} ({events} events; integrity ok; conservation ok)",
                crate::store::shown(&ctx.db),
                args.dest.display()
            );
            Ok(0)
        }
        Ok((_, broken)) => Err(Failure::runtime(format!(
            "backup {} written, but conservation fails for {broken:?} (as in the source: run `meterd status`)",
            args.dest.display()
        ))),
        Err(e) => Err(Failure::runtime(format!("backup {} written, but it does not check out: {e}", args.dest.display()))),
    }
}
