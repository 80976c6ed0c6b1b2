//! [`Tuning`]: the collector's batch sizes, passed in by whoever starts it
//! ([`super::CollectorBuilder::tuning`]) — never read from the environment below the binary.
//!
//! Both numbers only move work between transactions; they change no answer. Production keeps
//! the defaults. Tests make them small so that a few hundred events cross each boundary many
//! times (a fold or a flush inside a group, a restart between two, a duplicate of a folded or
//! flushed event), and because they are options, tests in one process can run collectors with
//! different sizes side by side. The binary reads `METERD_FOLD_EVENTS` / `METERD_FLUSH_EVENTS`
//! once at the process edge (`crate::faults::tuning_from_env`) for the real-process tests.

/// How often the ingest writer moves its in-memory state to the database.
///
/// Units: events (accepted events appended by the writer, counted across transactions).
/// Both must be at least 1. `Tuning::default()` is production's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Fold the tail's per-window totals into `windows` once this many events are unfolded
    /// (default [`crate::store::windows::FOLD_EVENTS`], 131,072). Smaller: more, smaller
    /// fold writes; larger: more events summed from `events` by readers.
    /// Binary: env `METERD_FOLD_EVENTS=N`.
    pub fold_events: usize,
    /// Flush the dedupe's in-memory keys as one sorted run once this many are held (SQLite
    /// only; default [`crate::store::dedupe::FLUSH_EVENTS`], 262,144, about 8 MiB of map).
    /// Smaller: more, smaller runs to probe; larger: more memory and a longer reload at start.
    /// Binary: env `METERD_FLUSH_EVENTS=N`.
    pub flush_events: usize,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning { fold_events: crate::store::windows::FOLD_EVENTS, flush_events: crate::store::dedupe::FLUSH_EVENTS }
    }
}

impl Tuning {
    /// Folds every `fold_events` and flushes every `flush_events` events (0 is taken as 1).
    pub fn every(fold_events: usize, flush_events: usize) -> Tuning {
        Tuning { fold_events: fold_events.max(1), flush_events: flush_events.max(1) }
    }
}
