//! `meterd store set-timezone ZONE [--now TIME]`: change the zone the store cuts day windows,
//! month boundaries and package periods in (issue 12, kind 7). `meterd store copy --from SRC
//! --to DST`: copy a whole store between SQLite and PostgreSQL (issue 13; the rules are in
//! [`crate::store::copy`]); a non-empty destination is exit 2, audits that differ exit 3.
//!
//! The store remembers its zone ([`crate::settings`]) and refuses a config with another one.
//! Changing it is safe only where nothing stored depends on it: no unreleased day-period
//! instance has usage (hourly windows are whole UTC hours in every zone) and no monthly or
//! yearly package is still valid. That is the simplest rule that is always safe; a store with
//! live daily instances keeps its zone (move them to an hourly plan first, or let them end).

use super::{now_or, Ctx, Failure};
use crate::model::FixedTz;
use crate::model::Timestamp;
use std::path::Path;

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Change the store's remembered timezone (then set the same `timezone` in the config).
    SetTimezone {
        /// A fixed offset such as "+08:00" or "UTC".
        zone: String,
        /// Judge package validity at this instant.
        #[arg(long, value_parser = super::timestamp)]
        now: Option<Timestamp>,
    },
    /// Copy a whole store into an empty one: SQLite file ↔ PostgreSQL URL (stop every meterd
    /// on the source first). Ends with the conservation audit on both sides.
    Copy {
        /// The store to read: a SQLite file or a postgres:// URL (it must exist).
        #[arg(long)]
        from: std::path::PathBuf,
        /// The empty store to write: a new SQLite file or an empty PostgreSQL database.
        #[arg(long)]
        to: std::path::PathBuf,
    },
}

pub fn run(ctx: &Ctx, cmd: &Cmd) -> Result<u8, Failure> {
    match cmd {
        Cmd::SetTimezone { zone, now } => set_timezone(ctx, zone, *now),
        Cmd::Copy { from, to } => copy(ctx, from, to),
    }
}

fn set_timezone(ctx: &Ctx, zone: &str, now: Option<Timestamp>) -> Result<u8, Failure> {
    let now = now_or(now);
    let tz: FixedTz = zone.parse().map_err(Failure::usage)?;
    let mut store = ctx.store_unchecked()?;
    let blockers = crate::settings::timezone_blockers(&mut store, &ctx.cfg, now)?;
    if !blockers.is_empty() {
        let shown = blockers.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
        return Err(Failure::usage(format!(
            "the store's timezone cannot change while windows or quota periods cut in it are live: {shown}{} — \
             let them be released and sealed (or packages expire), or move day-period instances to an hourly plan first",
            if blockers.len() > 5 { format!(" and {} more", blockers.len() - 5) } else { String::new() }
        )));
    }
    store.write(|tx| crate::store::settings::remember_timezone(tx, &tz.to_string()))?;
    println!("store timezone set to {tz}");
    if ctx.cfg.timezone != tz {
        eprintln!(
            "meterd: warning: the config still says timezone = \"{}\"; set `timezone = \"{tz}\"` before the next command",
            ctx.cfg.timezone
        );
    }
    Ok(0)
}

fn copy(ctx: &Ctx, from: &Path, to: &Path) -> Result<u8, Failure> {
    use crate::store::{shown, Store, StoreError};
    let (from_shown, to_shown) = (shown(from), shown(to));
    if from == to {
        return Err(Failure::usage(format!("--from and --to both name {from_shown}; copy into another, empty store")));
    }
    let urls = [from, to].map(crate::store::postgres_url);
    if urls.iter().flatten().any(|u| !crate::store::pg::password_given(u)) {
        super::load_password_file(&ctx.cfg)?;
    }
    // As `Ctx::store_unchecked`: what a restart cannot fix (a bad URL, TLS refused, a wrong
    // password or database) is configuration, exit 2; anything else is exit 3.
    let open_err = |which: &str, shown: &str, e: StoreError| match e {
        e @ (StoreError::Missing { .. } | StoreError::Invalid(_) | StoreError::Tls(_)) => Failure::usage(format!("{which} {shown}: {e}")),
        e if e.reason() == "config" => {
            Failure::usage(format!("{which} {shown}: {e} (check the URL in --{} and the password)", which.trim_start_matches('-')))
        }
        e => Failure::runtime(format!("{which} {shown}: {e}")),
    };
    if crate::store::postgres_url(from).is_none() && !from.exists() {
        return Err(Failure::usage(format!("--from {from_shown}: no such database file; name an existing store to copy")));
    }
    let mut src = Store::open_existing(from).map_err(|e| open_err("--from", &from_shown, e))?;
    // A shared source with live nodes: what they acknowledge after the copy's snapshot is not
    // in the copy (new-user trial). Warned, not refused: the audit at the end catches writes
    // the snapshot raced, and an operator may copy a live store on purpose (a test copy).
    if src.backend() == crate::store::sql::Backend::Postgres {
        let within = 2 * ctx.cfg.store.lease.0;
        if let Ok(live) = src.read(|tx| crate::store::lease::nodes_seen(tx, within)) {
            if !live.is_empty() {
                let names: Vec<&str> = live.iter().map(|n| n.name.as_str()).collect();
                eprintln!(
                    "meterd: warning: {} node(s) were seen on the source in the last {} s ({}): events they acknowledge after this copy are not in it — stop every node on the source before a copy you will switch to",
                    live.len(),
                    within.as_secs(),
                    names.join(", ")
                );
            }
        }
    }
    if crate::store::postgres_url(to).is_none() {
        crate::daemon::startup::check_db_dir(to).map_err(Failure::usage)?;
    }
    let mut dst = Store::create(to).map_err(|e| open_err("--to", &to_shown, e))?;
    let rule_of = crate::audit::rule_of(&ctx.cfg);
    println!("copying {} {from_shown} -> {} {to_shown}", src.backend().as_str(), dst.backend().as_str());
    let report = crate::store::copy::copy(&mut src, &mut dst, &rule_of)?;
    for (table, read, there) in &report.tables {
        let note = if read == there { String::new() } else { format!("  MISMATCH: {there} on the destination") };
        println!("  {table:<16} {read:>10} {}{note}", if *read == 1 { "row" } else { "rows" });
    }
    if report.tail_folded > 0 {
        println!("  {} unfolded events of the source were added to the destination's window totals", report.tail_folded);
    }
    if report.ok() {
        println!(
            "audit: equal on both sides — the copy is complete; point meterd at {to_shown} (once every node on the source is stopped)"
        );
        Ok(0)
    } else {
        for d in &report.audit_differences {
            println!("  audit differs: {d}");
        }
        Err(Failure::runtime(format!(
            "the copy in {to_shown} does not match {from_shown} (rows or audit differ; was a meterd still writing to the source?): \
             do not use it — empty it (or delete the file) and copy again with every meterd on the source stopped"
        )))
    }
}
