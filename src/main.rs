//! The `meterd` binary: parse the command line, set up logging, run, map to an exit code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = meterd::cli::Cli::parse();
    meterd::logging::init(&cli.log_format);
    match meterd::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("meterd: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
