//! `meterd demo`: the whole pipeline on built-in defaults, in a temporary directory.

use super::Failure;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the temporary directory and print its path.
    #[arg(long)]
    keep: bool,
}

pub fn run(args: &Args) -> Result<u8, Failure> {
    crate::demo::run(args.keep).map_err(|e| Failure::runtime(format!("{e:#}")))
}
