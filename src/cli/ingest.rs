//! `meterd ingest [FILE|-]`: NDJSON or a JSON array of events; prints the ingest result JSON.
//! Exit 0 when every event was accepted or a duplicate, 1 when some were rejected, 3 when the
//! store failed (nothing of the failed chunk was stored; re-running is safe: ids dedupe).

use super::{now_or, Ctx, Failure};
use crate::collector::{Collector, IngestError};
use std::io::Read;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events file; `-` or nothing reads stdin.
    file: Option<String>,
    /// Judge event times against this instant instead of the clock.
    #[arg(long)]
    now: Option<String>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8, Failure> {
    let now = now_or(&args.now)?;
    let body = match args.file.as_deref() {
        None | Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map_err(|e| Failure::runtime(format!("cannot read stdin: {e}")))?;
            buf
        }
        Some(path) => std::fs::read(path).map_err(|e| Failure::usage(format!("cannot read {path}: {e}")))?,
    };
    let collector = Collector::start(&ctx.db, ctx.cfg.clone(), Box::new(|_, _| {}))?;
    let result = collector.ingest_body(&body, now).map_err(|e| match e {
        IngestError::NotJson(m) => Failure { code: 1, message: m.to_string() },
        other => Failure::runtime(format!(
            "{other}. Events of earlier chunks of this input may be stored; re-run the same command once the cause is fixed: stored events count as duplicates, never twice"
        )),
    })?;
    println!("{}", serde_json::to_string(&result).unwrap_or_default());
    Ok(if result.rejected.is_empty() { 0 } else { 1 })
}
