//! `meterd seal [--now TIME]`: seal every closed window; prints what was sealed as JSON.

use super::{now_or, Ctx, Failure};
use crate::model::Timestamp;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seal as if the time were this (replays, tests).
    #[arg(long, value_parser = super::timestamp)]
    pub(super) now: Option<Timestamp>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8, Failure> {
    let now = now_or(args.now);
    let mut store = ctx.store_for_sealing()?;
    // A run by hand counts as the store's last seal too, written under the same lease.
    let report = crate::seal::seal(&mut store, &ctx.cfg, now).and_then(|r| crate::seal::note_sealed(&mut store).map(|()| r));
    Ctx::release_lease(&mut store);
    let report = report?;
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
    Ok(0)
}
