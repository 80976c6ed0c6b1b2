//! `meterd ingest [FILE|-]`: NDJSON or a JSON array of events; prints the ingest result JSON.
//! Exit 0 when every event was accepted or a duplicate, 1 when some were rejected, 3 when the
//! store failed (nothing of the failed chunk was stored; re-running is safe: ids dedupe).
//!
//! NDJSON input is streamed in chunks of [`LINES_PER_CHUNK`] lines, so memory stays flat for
//! files of any size; a JSON array (or one pretty-printed object) is read whole.

use super::{now_or, Ctx, Failure};
use crate::collector::{Collector, IngestError, IngestResult};
use crate::model::Timestamp;
use std::io::{BufRead, BufReader, Read};

/// Lines handed to the collector at a time when streaming NDJSON.
const LINES_PER_CHUNK: usize = 20_000;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events file; `-` or nothing reads stdin.
    file: Option<String>,
    /// Judge event times against this instant instead of the clock.
    #[arg(long, value_parser = super::timestamp)]
    now: Option<Timestamp>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8, Failure> {
    let now = now_or(args.now);
    let input: Box<dyn Read> = match args.file.as_deref() {
        None | Some("-") => Box::new(std::io::stdin()),
        Some(path) => Box::new(std::fs::File::open(path).map_err(|e| Failure::usage(format!("cannot read {path}: {e}")))?),
    };
    drop(ctx.store()?); // the database directory and the settings check (see `crate::settings`) before the writer opens the store
                        // The process edge: the environment's test knobs become options here, and only here.
    let collector = Collector::builder(&ctx.db, ctx.cfg.clone())
        .tuning(crate::faults::tuning_from_env())
        .open_options(crate::faults::open_options_from_env())
        .start()?;
    let result = ingest_stream(&collector, BufReader::with_capacity(1 << 20, input), now).map_err(|e| match e {
        IngestError::NotJson(m) => Failure::new(super::ExitKind::Rejected, m.to_string()),
        other => Failure::runtime(format!(
            "{other}. Events of earlier chunks of this input may be stored; re-run the same command once the cause is fixed: stored events count as duplicates, never twice"
        )),
    })?;
    println!("{}", serde_json::to_string(&result).unwrap_or_default());
    Ok(if result.rejected.is_empty() { 0 } else { 1 })
}

/// Streams NDJSON in chunks; anything else (an array, one multi-line object) is read whole.
fn ingest_stream(collector: &Collector, mut input: impl BufRead, now: Timestamp) -> Result<IngestResult, IngestError> {
    let mut first = Vec::new();
    input.read_until(b'\n', &mut first).map_err(read_error)?;
    let starts_array = first.trim_ascii_start().first() == Some(&b'[');
    let first_is_event = serde_json::from_slice::<serde::de::IgnoredAny>(first.trim_ascii()).is_ok();
    if starts_array || !first_is_event {
        input.read_to_end(&mut first).map_err(read_error)?;
        return collector.ingest_body(&first, now);
    }
    let mut result = IngestResult::default();
    let (mut chunk, mut lines, mut offset) = (first, 1usize, 0usize);
    loop {
        let before = chunk.len();
        let n = input.read_until(b'\n', &mut chunk).map_err(read_error)?;
        if n > 0 && !chunk[before..].trim_ascii().is_empty() {
            lines += 1;
        }
        if lines >= LINES_PER_CHUNK || n == 0 {
            let part = match collector.ingest_body(&chunk, now) {
                Ok(part) => part,
                // A chunk with no JSON line at all: each of its lines is refused on its own, as
                // it would be if the input were sent in one piece.
                Err(IngestError::NotJson(e)) if lines > 0 => not_json_lines(lines, &e.0),
                Err(IngestError::NotJson(_)) => IngestResult::default(), // only blank lines left
                Err(e) => return Err(e),
            };
            result.merge(part, offset);
            offset += lines;
            if n == 0 {
                return Ok(result);
            }
            chunk.clear();
            lines = 0;
        }
    }
}

fn not_json_lines(lines: usize, why: &str) -> IngestResult {
    let rejected = (0..lines)
        .map(|index| crate::collector::Rejected {
            index,
            id: None,
            error: format!("invalid JSON: {why}"),
            reason: crate::collector::RejectReason::Invalid,
        })
        .collect();
    IngestResult { rejected, ..IngestResult::default() }
}

fn read_error(e: std::io::Error) -> IngestError {
    IngestError::NotJson(crate::collector::NotJson(format!("cannot read the input: {e}")))
}
