//! Structured logs on stderr via `tracing`: text by default, JSON with `--log-format json`;
//! level from `RUST_LOG` (default `info`). ERROR is kept for data at risk or action needed.
//! Text logs are coloured only when stderr is a terminal and `NO_COLOR` is unset
//! (<https://no-color.org>): a log file or journal gets no escape codes.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}
