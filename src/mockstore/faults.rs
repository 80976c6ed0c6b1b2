//! Injected faults, so tests can exercise every retry path of the uploader.
//!
//! Requests are numbered from 1 in arrival order (every request to the mock counts, valid or
//! not). "First N" hits requests 1..=N; "every K" hits requests K, 2K, 3K… (0 disables).
//! When several faults hit one request the strongest wins: drop, then fail, then bill-then-fail.
//! Latency is added to every request before anything else happens.
//!
//! - fail: answer `500 MKT.0999` without looking at the request; nothing is billed;
//! - drop: close the connection without answering; nothing is billed;
//! - bill then fail: validate and bill as usual, then lose the answer ([`LostAnswer`]), as
//!   when the store commits but the response never reaches the sender.

use std::time::Duration;

/// How a "bill then fail" request loses its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LostAnswer {
    /// HTTP 500 with an empty body.
    #[default]
    Empty500,
    /// Close the connection without answering.
    Drop,
}

/// Fault switches; the default injects nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    pub fail_first: u64,
    pub fail_every: u64,
    pub latency: Duration,
    pub drop_first: u64,
    pub drop_every: u64,
    pub bill_then_fail_first: u64,
    pub bill_then_fail_every: u64,
    pub bill_then_fail_how: LostAnswer,
}

/// What to do to request number `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Fail,
    Drop,
    BillThenFail(LostAnswer),
}

fn hits(first: u64, every: u64, n: u64) -> bool {
    n <= first || (every > 0 && n % every == 0)
}

impl Faults {
    /// The fault for request number `n` (1-based).
    pub fn decide(&self, n: u64) -> Fault {
        if hits(self.drop_first, self.drop_every, n) {
            Fault::Drop
        } else if hits(self.fail_first, self.fail_every, n) {
            Fault::Fail
        } else if hits(self.bill_then_fail_first, self.bill_then_fail_every, n) {
            Fault::BillThenFail(self.bill_then_fail_how)
        } else {
            Fault::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(f: &Faults, upto: u64) -> Vec<Fault> {
        (1..=upto).map(|n| f.decide(n)).collect()
    }

    #[test]
    fn none_by_default() {
        assert!(pattern(&Faults::default(), 50).iter().all(|f| *f == Fault::None));
    }

    #[test]
    fn first_and_every() {
        use Fault::*;
        let f = Faults { fail_first: 2, fail_every: 4, ..Faults::default() };
        assert_eq!(pattern(&f, 8), [Fail, Fail, None, Fail, None, None, None, Fail]);
        let f = Faults { drop_every: 3, ..Faults::default() };
        assert_eq!(pattern(&f, 6), [None, None, Drop, None, None, Drop]);
        let f = Faults { bill_then_fail_first: 1, bill_then_fail_how: LostAnswer::Drop, ..Faults::default() };
        assert_eq!(pattern(&f, 2), [BillThenFail(LostAnswer::Drop), None]);
    }

    #[test]
    fn strongest_wins() {
        use Fault::*;
        let f = Faults { drop_first: 1, fail_first: 2, bill_then_fail_first: 3, ..Faults::default() };
        assert_eq!(pattern(&f, 4), [Drop, Fail, BillThenFail(LostAnswer::Empty500), None]);
    }
}
