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
    // The store's last seal (`status`, `/metrics`, a standby's health) counts a run by hand
    // as the daemon's own: the real time it ran, written under the same lease.
    let report = crate::seal::seal(&mut store, &ctx.cfg, now).and_then(|r| {
        store.write(|tx| crate::store::meta::set(tx, crate::store::meta::LAST_SEAL, &Timestamp::now().to_string()))?;
        Ok(r)
    });
    Ctx::release_lease(&mut store);
    let report = report?;
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
    Ok(0)
}
