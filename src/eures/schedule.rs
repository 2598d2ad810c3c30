//! When to try a failed delivery again: capped exponential backoff with full
//! jitter (SPEC 4.2). Pure: the randomness is a parameter, nothing here
//! sleeps, reads the clock or persists anything; the caller stores the next
//! attempt time with the posting.

use std::time::Duration;

use rand::{Rng, RngExt};

/// Upper bound of the delay before retry number `attempt` (0 for the first
/// retry): `min(cap, base * 2^attempt)`, without overflow for any `attempt`.
pub fn backoff_ceiling(attempt: u32, base: Duration, cap: Duration) -> Duration {
    // 2^attempt saturates at u32::MAX from attempt 32 on; Duration saturates
    // at Duration::MAX; `cap` bounds the result either way.
    let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(cap)
}

/// The delay before retry number `attempt` (0 for the first retry): uniform
/// in `[0, min(cap, base * 2^attempt)]` ("full jitter"), so many postings
/// failing together do not come back together.
pub fn backoff_delay(attempt: u32, base: Duration, cap: Duration, rng: &mut impl Rng) -> Duration {
    let ceiling = backoff_ceiling(attempt, base, cap);
    let ceiling_ns = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    if ceiling_ns == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.random_range(0..=ceiling_ns))
}

/// The retry schedule of creates and updates; deletions use the same delays
/// but never give up (they ignore [`RetryPolicy::exhausted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Ceiling of the first retry's delay; doubles per attempt.
    pub base: Duration,
    /// No delay is longer than this.
    pub cap: Duration,
    /// Attempts (the first included) before a create or update goes to the
    /// dead letters (`eures.max_attempts`).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(300),
            max_attempts: 20,
        }
    }
}

impl RetryPolicy {
    /// The default delays with `max_attempts` from the configuration.
    pub fn with_max_attempts(max_attempts: u32) -> Self {
        Self {
            max_attempts,
            ..Self::default()
        }
    }

    /// Delay before retry number `attempt` (0 for the first retry, i.e.
    /// after the first failed attempt).
    pub fn next_delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        backoff_delay(attempt, self.base, self.cap, rng)
    }

    /// Whether a create or update that has failed `attempts_made` times
    /// must stop (go to the dead letters). Never consulted for deletions.
    pub fn exhausted(&self, attempts_made: u32) -> bool {
        attempts_made >= self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const BASE: Duration = Duration::from_millis(500);
    const CAP: Duration = Duration::from_secs(300);

    #[test]
    fn ceiling_doubles_then_caps() {
        assert_eq!(backoff_ceiling(0, BASE, CAP), Duration::from_millis(500));
        assert_eq!(backoff_ceiling(1, BASE, CAP), Duration::from_secs(1));
        assert_eq!(backoff_ceiling(2, BASE, CAP), Duration::from_secs(2));
        assert_eq!(backoff_ceiling(9, BASE, CAP), Duration::from_secs(256));
        assert_eq!(backoff_ceiling(10, BASE, CAP), CAP);
        let mut prev = Duration::ZERO;
        for attempt in 0..2000 {
            let c = backoff_ceiling(attempt, BASE, CAP);
            assert!(c >= prev, "ceiling must never shrink (attempt {attempt})");
            assert!(c <= CAP);
            prev = c;
        }
    }

    #[test]
    fn delays_stay_within_bounds() {
        let mut rng = StdRng::seed_from_u64(42);
        for attempt in 0..64 {
            let ceiling = backoff_ceiling(attempt, BASE, CAP);
            for _ in 0..200 {
                let d = backoff_delay(attempt, BASE, CAP, &mut rng);
                assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
            }
        }
    }

    #[test]
    fn jitter_spreads_over_the_whole_range() {
        let mut rng = StdRng::seed_from_u64(7);
        let ceiling = backoff_ceiling(12, BASE, CAP);
        let samples: Vec<Duration> = (0..2000)
            .map(|_| backoff_delay(12, BASE, CAP, &mut rng))
            .collect();
        assert!(samples.iter().any(|d| *d < ceiling / 10));
        assert!(samples.iter().any(|d| *d > ceiling * 9 / 10));
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        assert!(
            mean > ceiling * 4 / 10 && mean < ceiling * 6 / 10,
            "{mean:?}"
        );
    }

    #[test]
    fn same_seed_same_schedule() {
        let a: Vec<_> = {
            let mut rng = StdRng::seed_from_u64(1);
            (0..20)
                .map(|i| backoff_delay(i, BASE, CAP, &mut rng))
                .collect()
        };
        let b: Vec<_> = {
            let mut rng = StdRng::seed_from_u64(1);
            (0..20)
                .map(|i| backoff_delay(i, BASE, CAP, &mut rng))
                .collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn no_overflow_for_huge_attempts_or_durations() {
        let mut rng = StdRng::seed_from_u64(3);
        for attempt in [31, 32, 33, 63, 64, 1000, u32::MAX] {
            assert!(backoff_delay(attempt, BASE, CAP, &mut rng) <= CAP);
            assert_eq!(backoff_ceiling(attempt, BASE, CAP), CAP);
        }
        let huge = Duration::MAX;
        assert_eq!(backoff_ceiling(1000, huge, huge), huge);
        let _ = backoff_delay(1000, huge, huge, &mut rng);
        assert_eq!(
            backoff_delay(5, Duration::ZERO, CAP, &mut rng),
            Duration::ZERO
        );
        assert_eq!(
            backoff_delay(5, BASE, Duration::ZERO, &mut rng),
            Duration::ZERO
        );
    }

    #[test]
    fn policy_defaults_and_exhaustion() {
        let p = RetryPolicy::default();
        assert_eq!(p.base, Duration::from_millis(500));
        assert_eq!(p.cap, Duration::from_secs(300));
        assert_eq!(p.max_attempts, 20);
        assert!(!p.exhausted(19));
        assert!(p.exhausted(20));
        let p = RetryPolicy::with_max_attempts(1);
        assert!(p.exhausted(1));
        assert_eq!(p.cap, CAP);
        let mut rng = StdRng::seed_from_u64(9);
        assert!(p.next_delay(0, &mut rng) <= BASE);
        assert!(p.next_delay(100, &mut rng) <= CAP);
    }
}
