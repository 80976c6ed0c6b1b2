//! The `meterd` binary: parse the command line, set up logging, run, map to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = meterd::cli::help::parse();
    if !cli.command.is_long_running() {
        restore_sigpipe();
    }
    meterd::logging::init(&cli.log_format);
    let json = cli.log_format == "json";
    match meterd::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            // Under `--log-format json` a log collector reads stderr line by line as JSON: the
            // failure that ends the process is one more such line, not plain text.
            // Written directly (not through `tracing`) so that no `RUST_LOG` filter can hide why
            // the process ended; the shape is the JSON log lines' own.
            if json {
                let line = serde_json::json!({
                    "timestamp": meterd::model::Timestamp::now().to_string(),
                    "level": "ERROR",
                    "fields": { "message": f.message, "exit_code": f.code() },
                    "target": "meterd",
                });
                eprintln!("{line}");
            } else {
                eprintln!("meterd: {}", f.message);
            }
            ExitCode::from(f.code())
        }
    }
}

/// One-shot commands die quietly when their output pipe closes (`meterd preview | head`),
/// like other Unix tools, instead of panicking on the write. Long-running commands keep
/// Rust's default (ignore SIGPIPE), so a closed stdout can never kill a daemon.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called once at start, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
