//! `meterd init`: write an example meterd.toml and create the database.

use super::{Cli, Ctx, Failure};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Overwrite an existing config file.
    #[arg(long)]
    force: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8, Failure> {
    let path = cli.config.clone().unwrap_or_else(|| PathBuf::from("meterd.toml"));
    if path.exists() && !args.force {
        return Err(Failure::usage(format!("{} exists; pass --force to overwrite it", path.display())));
    }
    std::fs::write(&path, crate::config::EXAMPLE_CONFIG).map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))?;
    let ctx = Ctx::load(&Cli {
        config: Some(path.clone()),
        db: cli.db.clone(),
        log_format: cli.log_format.clone(),
        command: super::Command::Init(Args { force: false }),
    })?;
    // `init` is the operator's explicit "start a database here", even where one was before.
    crate::store::Store::create(&ctx.db).map_err(|e| Failure::runtime(e.to_string()))?;
    println!("wrote {} and created {}", path.display(), ctx.db.display());
    Ok(0)
}
