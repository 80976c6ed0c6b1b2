//! "What does this answer do to the batch and to the run?" — a pure function from one
//! attempt's [`Action`] (see [`super::classify()`]) and the run's pace to a [`Decision`]: the
//! [`Step`] the upload driver performs on the batch ([`super::run`] is the shell: SQL, metrics,
//! logs, sleeps), the outcome label it counts, and the run's next [`Pace`]. Nothing here does
//! I/O, reads the clock or draws randomness; the backoff delay itself is drawn by the shell
//! ([`super::backoff`]) from the attempt number the decision names.
//!
//! Rules (design §6), per [`Action`]:
//! - delivered → [`Step::Deliver`]; the run's consecutive-transient count resets; the delivered
//!   records' rows are written with this commit once [`super::run::APPLY_DELIVERIES_AFTER`]
//!   records are delivered but not yet written;
//! - transient → [`Step::Transient`]: the attempt is recorded; retried after a backoff while
//!   attempts remain (`upload.max_attempts`), else left open for the next run, which resends
//!   it first, and the run stops (no later batch is sent before it); after
//!   `upload.fallback_after` consecutive transient answers the run switches to the fallback
//!   host, once, when one is configured;
//! - configuration error → [`Step::Abandon`] (records pending again, the run stops);
//! - too many records → the run's batch size halves (never below 1); the batch is split in
//!   two, or, holding a single record, left queued ([`Step::KeepQueued`]);
//! - record error → split in two, down to single records; a single record is rejected
//!   ([`Step::Reject`]).

use super::classify::Action;
use std::time::Duration;

/// The run's state that decisions read and change, carried from batch to batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Whether requests go to the fallback host.
    pub on_fallback: bool,
    /// Transient answers in a row, over batches; reset by a delivery.
    pub consecutive_transient: u32,
    /// Records per new batch (1..=1000); halved by a too-many-records answer.
    pub batch_size: usize,
    /// Records delivered in this run whose rows are not applied yet.
    pub unapplied: u64,
}

/// The configured bounds a decision respects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whether `upload.fallback` is configured.
    pub has_fallback: bool,
    /// `upload.fallback_after`: consecutive transient answers before switching hosts.
    pub fallback_after: u32,
    /// `upload.max_attempts`: attempts per batch and run.
    pub max_attempts: u32,
    /// Unapplied delivered records that make a delivery apply ([`super::run::APPLY_DELIVERIES_AFTER`]).
    pub apply_after: u64,
}

/// What the shell does with the batch that got the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Commit the delivery (and cut the next batch in the same transaction); `apply` writes
    /// the delivered records' rows in that transaction too.
    Deliver { apply: bool },
    /// Record the failed attempt (`reason`, the batch stays claimed). `retry`: wait
    /// ([`super::backoff::Backoff::delay`] for attempt `backoff_attempt`, honouring
    /// `retry_after`) and send the same bytes again; otherwise leave the batch open for the
    /// next run, report `reason` and stop the run, so that no later batch goes before it.
    Transient { reason: String, retry_after: Option<Duration>, retry: bool, backoff_attempt: u32 },
    /// The configuration is wrong: record the attempt under `code`, abandon the batch (its
    /// records pending again), report `text` and stop the run.
    Abandon { code: String, text: String },
    /// Split the batch into two halves, each sent in turn.
    Split,
    /// The store says a single record is too many: leave it queued.
    KeepQueued,
    /// Reject the batch's single record with the store's `code` and `message`.
    Reject { code: String, message: String },
}

/// One answer's consequences.
/// Every outcome label a [`Decision`] carries (exported at 0 by `/metrics` from the start).
pub const OUTCOMES: &[&str] = &["delivered", "transient", "config_error", "too_many", "record_error"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub step: Step,
    /// The attempt's outcome label for the report and `/metrics`: `delivered`, `transient`,
    /// `config_error`, `too_many` or `record_error`.
    pub outcome: &'static str,
    /// The run's pace after this answer (for a delivery: once it is committed).
    pub pace: Pace,
    /// Whether this answer switched the run to the fallback host.
    pub switched_to_fallback: bool,
}

/// Decides what the answer `action` to attempt number `attempt` (1-based, this batch, this
/// run) of a batch of `records` records does, given the run's `pace` and `limits`.
pub fn decide(action: Action, records: u64, attempt: u32, pace: Pace, limits: &Limits) -> Decision {
    let decision = |step, outcome, pace| Decision { step, outcome, pace, switched_to_fallback: false };
    match action {
        Action::Delivered => {
            let apply = pace.unapplied + records >= limits.apply_after;
            let unapplied = if apply { 0 } else { pace.unapplied + records };
            decision(Step::Deliver { apply }, "delivered", Pace { consecutive_transient: 0, unapplied, ..pace })
        }
        Action::Transient { retry_after, reason } => {
            let consecutive_transient = pace.consecutive_transient.saturating_add(1);
            let switch = !pace.on_fallback && limits.has_fallback && consecutive_transient >= limits.fallback_after;
            Decision {
                step: Step::Transient {
                    reason: reason.to_string(),
                    retry_after,
                    retry: attempt < limits.max_attempts,
                    backoff_attempt: attempt.saturating_sub(1),
                },
                outcome: "transient",
                pace: Pace { consecutive_transient, on_fallback: pace.on_fallback || switch, ..pace },
                switched_to_fallback: switch,
            }
        }
        Action::ConfigError { code, message } => {
            let text = format!(
                "the store refused the request with {code} ({message}): the configuration is wrong, not the records. Check the key (METERD_ISV_KEY or upload.key_file), upload.endpoint and the seller account; records stay pending"
            );
            decision(Step::Abandon { code, text }, "config_error", pace)
        }
        Action::TooManyRecords => {
            let step = if records < 2 { Step::KeepQueued } else { Step::Split };
            decision(step, "too_many", Pace { batch_size: (pace.batch_size / 2).max(1), ..pace })
        }
        Action::RecordError { code, message } => {
            let step = if records >= 2 { Step::Split } else { Step::Reject { code, message } };
            decision(step, "record_error", pace)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::classify::TransientReason;

    const LIMITS: Limits = Limits { has_fallback: true, fallback_after: 3, max_attempts: 4, apply_after: 100 };
    const PACE: Pace = Pace { on_fallback: false, consecutive_transient: 0, batch_size: 8, unapplied: 0 };

    fn transient() -> Action {
        Action::Transient { retry_after: None, reason: TransientReason::Timeout }
    }

    #[test]
    fn a_delivery_resets_the_transient_run_and_applies_deliveries_at_the_threshold() {
        // (unapplied before, records, apply, unapplied after)
        for (before, records, apply, after) in [(0, 10, false, 10), (89, 10, false, 99), (90, 10, true, 0), (99, 1000, true, 0)] {
            let pace = Pace { unapplied: before, consecutive_transient: 2, ..PACE };
            let d = decide(Action::Delivered, records, 1, pace, &LIMITS);
            assert_eq!(d.step, Step::Deliver { apply }, "{before}+{records}");
            assert_eq!(d.outcome, "delivered");
            assert_eq!(d.pace, Pace { unapplied: after, consecutive_transient: 0, ..PACE });
            assert!(!d.switched_to_fallback);
        }
    }

    #[test]
    fn transient_answers_retry_until_the_attempts_are_spent() {
        // (attempt, retry, backoff attempt)
        for (attempt, retry, backoff) in [(1, true, 0), (3, true, 2), (4, false, 3), (9, false, 8)] {
            let d = decide(transient(), 5, attempt, PACE, &LIMITS);
            let Step::Transient { reason, retry: r, backoff_attempt, retry_after } = d.step else { panic!("{d:?}") };
            assert_eq!((r, backoff_attempt, retry_after), (retry, backoff, None), "attempt {attempt}");
            assert_eq!(reason, "timed out: no answer within `upload.timeout` (raise it if the store is only slow)");
            assert_eq!(d.outcome, "transient");
            assert_eq!(d.pace.consecutive_transient, 1);
        }
        let wait = Some(Duration::from_secs(7));
        let d = decide(Action::Transient { retry_after: wait, reason: TransientReason::Status(503) }, 5, 1, PACE, &LIMITS);
        assert!(matches!(d.step, Step::Transient { retry_after, .. } if retry_after == wait), "{d:?}");
    }

    #[test]
    fn the_fallback_host_is_taken_once_after_enough_transient_answers() {
        // (has fallback, already on it, consecutive before, switches, on fallback after)
        let table = [
            (true, false, 0, false, false),
            (true, false, 1, false, false),
            (true, false, 2, true, true),
            (true, false, 7, true, true),
            (true, true, 2, false, true),
            (false, false, 2, false, false),
        ];
        for (has, on, before, switches, after) in table {
            let limits = Limits { has_fallback: has, ..LIMITS };
            let pace = Pace { on_fallback: on, consecutive_transient: before, ..PACE };
            let d = decide(transient(), 5, 1, pace, &limits);
            assert_eq!((d.switched_to_fallback, d.pace.on_fallback), (switches, after), "{has} {on} {before}");
            assert_eq!(d.pace.consecutive_transient, before + 1);
        }
    }

    #[test]
    fn a_configuration_error_abandons_the_batch_and_names_what_to_check() {
        let d = decide(Action::ConfigError { code: "MKT.0102".into(), message: "bad key".into() }, 5, 1, PACE, &LIMITS);
        let Step::Abandon { code, text } = &d.step else { panic!("{d:?}") };
        assert_eq!(code, "MKT.0102");
        assert!(text.contains("MKT.0102 (bad key)") && text.contains("METERD_ISV_KEY") && text.contains("records stay pending"), "{text}");
        assert_eq!((d.outcome, d.pace), ("config_error", PACE));
    }

    #[test]
    fn too_many_records_halves_the_batch_size_and_splits() {
        // (batch size, records, step, batch size after)
        for (size, records, step, after) in
            [(8, 8, Step::Split, 4), (8, 2, Step::Split, 4), (1, 1, Step::KeepQueued, 1), (3, 1, Step::KeepQueued, 1)]
        {
            let d = decide(Action::TooManyRecords, records, 1, Pace { batch_size: size, ..PACE }, &LIMITS);
            assert_eq!((d.step, d.outcome, d.pace.batch_size), (step, "too_many", after), "{size} {records}");
        }
    }

    #[test]
    fn a_record_error_bisects_down_to_the_record_and_rejects_it() {
        let bad = || Action::RecordError { code: "MKT.9001".into(), message: "bad".into() };
        let d = decide(bad(), 2, 1, PACE, &LIMITS);
        assert_eq!((d.step, d.outcome, d.pace), (Step::Split, "record_error", PACE));
        let d = decide(bad(), 1, 1, PACE, &LIMITS);
        assert_eq!(d.step, Step::Reject { code: "MKT.9001".into(), message: "bad".into() });
        assert_eq!(d.pace, PACE, "a record error leaves the batch size alone");
    }
}
