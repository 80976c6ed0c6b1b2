//! `meterd run`: the daemon. A configuration problem found at start-up is exit code 2
//! (`daemon::startup`); a failure while running is 3.

use super::{now_or, Ctx, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Listen address (overrides server.listen), e.g. 127.0.0.1:0 for any free port.
    #[arg(long)]
    listen: Option<String>,
    /// Run with a fixed clock (replays and tests).
    #[arg(long, hide = true)]
    now: Option<String>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8, Failure> {
    let now = match &args.now {
        Some(_) => Some(now_or(&args.now)?),
        None => None,
    };
    drop(ctx.store()?); // the settings check: the daemon refuses to start like every command
    let opts = crate::daemon::RunOptions { listen: args.listen.clone(), now };
    crate::daemon::run(ctx.cfg.clone(), &ctx.db, opts).map_err(|e| match e {
        crate::daemon::RunError::Config(m) => Failure::usage(m),
        crate::daemon::RunError::Runtime(e) => Failure::runtime(format!("{e:#}")),
    })?;
    Ok(0)
}
