//! `meterd store set-timezone ZONE [--now TIME]`: change the zone the store cuts day windows,
//! month boundaries and package periods in (issue 12, kind 7).
//!
//! The store remembers its zone ([`crate::settings`]) and refuses a config with another one.
//! Changing it is safe only where nothing stored depends on it: no unreleased day-period
//! instance has usage (hourly windows are whole UTC hours in every zone) and no monthly or
//! yearly package is still valid. That is the simplest rule that is always safe; a store with
//! live daily instances keeps its zone (move them to an hourly plan first, or let them end).

use super::{now_or, Ctx, Failure};
use crate::model::FixedTz;

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Change the store's remembered timezone (then set the same `timezone` in the config).
    SetTimezone {
        /// A fixed offset such as "+08:00" or "UTC".
        zone: String,
        /// Judge package validity at this instant.
        #[arg(long)]
        now: Option<String>,
    },
}

pub fn run(ctx: &Ctx, cmd: &Cmd) -> Result<u8, Failure> {
    let Cmd::SetTimezone { zone, now } = cmd;
    let now = now_or(now)?;
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
