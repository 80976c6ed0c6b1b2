//! How long to wait before the next attempt: capped exponential backoff with full jitter.
//!
//! Attempt `n` (0 for the first retry) waits a uniformly random time in
//! `[0, min(cap, base · 2ⁿ)]`; full jitter spreads retries from many senders so they do not
//! arrive together. When the store sent `Retry-After`, that delay is used instead, capped at
//! `cap` and without jitter (the server asked for at least that long; the cap keeps a hostile or
//! broken header from stalling uploads past their deadlines).
//!
//! A [`Backoff`] only exists with valid parameters (`0 < base ≤ cap`). The random source is a
//! parameter so tests are deterministic with a seeded generator.

use rand::Rng;
use std::time::Duration;

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

/// Why backoff parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackoffError {
    #[error("backoff base must be greater than zero (`upload.backoff_base`)")]
    ZeroBase,
    #[error("backoff base {base:?} is larger than the cap {cap:?}; set `upload.backoff_base` ≤ `upload.backoff_cap`")]
    BaseAboveCap { base: Duration, cap: Duration },
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Result<Backoff, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if base > cap {
            return Err(BackoffError::BaseAboveCap { base, cap });
        }
        Ok(Backoff { base, cap })
    }

    pub fn base(&self) -> Duration {
        self.base
    }

    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The largest delay of attempt `attempt`: `min(cap, base · 2^attempt)`, without overflow.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(0);
        match self.base.checked_mul(factor) {
            Some(d) if factor != 0 => d.min(self.cap),
            _ => self.cap,
        }
    }

    /// The delay before retry number `attempt` (0-based), or the server's `retry_after`
    /// capped at `cap` when it sent one.
    pub fn delay<R: Rng + ?Sized>(&self, attempt: u32, retry_after: Option<Duration>, rng: &mut R) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.cap);
        }
        let ceiling = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn validates_parameters() {
        assert_eq!(Backoff::new(Duration::ZERO, ms(10)), Err(BackoffError::ZeroBase));
        assert!(matches!(Backoff::new(ms(11), ms(10)), Err(BackoffError::BaseAboveCap { .. })));
        assert!(Backoff::new(ms(10), ms(10)).is_ok());
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = Backoff::new(ms(200), Duration::from_secs(30)).unwrap();
        let got: Vec<u128> = (0..10).map(|a| b.ceiling(a).as_millis()).collect();
        assert_eq!(got, [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
        for huge in [31, 32, 33, 64, u32::MAX] {
            assert_eq!(b.ceiling(huge), b.cap(), "attempt {huge}");
        }
    }

    #[test]
    fn never_exceeds_cap_or_ceiling() {
        let b = Backoff::new(ms(1), ms(50)).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..100 {
            for _ in 0..50 {
                let d = b.delay(attempt, None, &mut rng);
                assert!(d <= b.ceiling(attempt) && d <= b.cap(), "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn grows_with_attempts() {
        let b = Backoff::new(ms(10), Duration::from_secs(60)).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let mean = |attempt, rng: &mut StdRng| (0..400).map(|_| b.delay(attempt, None, rng).as_micros()).sum::<u128>() / 400;
        let (m0, m3, m6) = (mean(0, &mut rng), mean(3, &mut rng), mean(6, &mut rng));
        assert!(m0 < m3 && m3 < m6, "{m0} {m3} {m6}");
        // Full jitter: the mean is about half the ceiling.
        assert!((3_000..7_000).contains(&m0), "{m0}");
    }

    #[test]
    fn deterministic_with_a_seed() {
        let b = Backoff::new(ms(100), Duration::from_secs(10)).unwrap();
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..8).map(|a| b.delay(a, None, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn honours_retry_after_up_to_cap() {
        let b = Backoff::new(ms(100), Duration::from_secs(10)).unwrap();
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(b.delay(0, Some(Duration::from_secs(3)), &mut rng), Duration::from_secs(3));
        assert_eq!(b.delay(5, Some(Duration::from_secs(3600)), &mut rng), Duration::from_secs(10));
        assert_eq!(b.delay(0, Some(Duration::ZERO), &mut rng), Duration::ZERO);
    }
}
