//! Reconnection delays: jittered exponential backoff from a base, as a pure value.
//!
//! Nothing here sleeps or reads a clock: the caller passes the failure count and a
//! random number, so every rule is testable without time.

use std::time::Duration;

/// Validated delay configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backoff {
    /// The base when the server has not sent `retry:`.
    pub(crate) initial: Duration,
    /// No delay exceeds this (except a `Retry-After`, which has its own ceiling).
    pub(crate) max: Duration,
    /// No delay is below this, so `retry: 0` cannot cause a busy loop.
    pub(crate) floor: Duration,
    /// Growth per consecutive failure; at least 1.
    pub(crate) factor: f64,
    /// Up to this fraction of the delay is added at random; in `[0, 1]`.
    pub(crate) jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            floor: Duration::from_millis(100),
            factor: 2.0,
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// Checks the invariants the delay computation relies on.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(format!(
                "backoff factor must be finite and >= 1, got {}",
                self.factor
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!("jitter must be within [0, 1], got {}", self.jitter));
        }
        if self.floor > self.max {
            return Err(format!(
                "minimum delay {:?} exceeds maximum delay {:?}",
                self.floor, self.max
            ));
        }
        Ok(())
    }

    /// The delay before the next attempt after `failures` consecutive failures
    /// (at least 1), growing from `base` (the server's `retry:` or `initial`).
    ///
    /// `random` is uniform in `[0, 1)`. The jitter only ever adds to the
    /// exponential delay, so a server's `retry:` is never undercut (the spec's
    /// "wait at least the reconnection time"); the result is then clamped to
    /// `[floor, max]`.
    pub(crate) fn delay(&self, base: Duration, failures: u32, random: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(64) as i32;
        let max = self.max.as_secs_f64();
        let grown = (base.as_secs_f64() * self.factor.powi(exponent)).min(max);
        let jittered = grown * (1.0 + self.jitter * random.clamp(0.0, 1.0));
        Duration::from_secs_f64(jittered.min(max)).clamp(self.floor, self.max)
    }
}

/// Consecutive failed attempts since the last healthy connection: the exponent of
/// the backoff and the count the give-up policy checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Failures(u32);

impl Failures {
    /// Records the end of an attempt that was open for `open_for` (`None`: it
    /// never opened). A connection open for at least `stable_period` was healthy:
    /// the count restarts, so the next delay is the base again. Returns whether
    /// it was healthy.
    pub(crate) fn record(&mut self, open_for: Option<Duration>, stable_period: Duration) -> bool {
        let healthy = open_for.is_some_and(|open_for| open_for >= stable_period);
        if healthy {
            self.0 = 0;
        }
        self.0 = self.0.saturating_add(1);
        healthy
    }

    /// The count, at least 1 after the first `record`.
    pub(crate) fn count(self) -> u32 {
        self.0
    }
}

/// A small, fast pseudo-random generator (SplitMix64) for jitter. Seeded from the
/// process's random hasher keys by default, or explicitly for reproducible runs.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        Self(seed.unwrap_or_else(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(0x5EED);
            hasher.finish()
        }))
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn no_jitter() -> Backoff {
        Backoff {
            jitter: 0.0,
            ..Backoff::default()
        }
    }

    #[test]
    fn grows_exponentially_from_the_base_up_to_the_max() {
        let backoff = no_jitter();
        let base = 1000 * MS;
        let delays: Vec<_> = (1..=7).map(|n| backoff.delay(base, n, 0.5)).collect();
        assert_eq!(
            delays,
            [1, 2, 4, 8, 16, 30, 30].map(Duration::from_secs).to_vec()
        );
    }

    #[test]
    fn server_retry_zero_is_floored() {
        assert_eq!(Backoff::default().delay(Duration::ZERO, 1, 0.9), 100 * MS);
    }

    #[test]
    fn jitter_only_adds_and_is_capped() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(1000 * MS, 1, 0.0), 1000 * MS);
        assert_eq!(backoff.delay(1000 * MS, 1, 0.5), 1250 * MS);
        assert_eq!(backoff.delay(1000 * MS, 10, 0.99), backoff.max);
    }

    #[test]
    fn huge_failure_counts_and_bases_do_not_overflow() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(Duration::MAX, u32::MAX, 0.99), backoff.max);
        assert_eq!(
            backoff.delay(Duration::from_millis(u64::MAX), 3, 0.0),
            backoff.max
        );
    }

    #[test]
    fn validation_rejects_nonsense() {
        for bad in [
            Backoff {
                factor: 0.5,
                ..Backoff::default()
            },
            Backoff {
                factor: f64::NAN,
                ..Backoff::default()
            },
            Backoff {
                jitter: 1.5,
                ..Backoff::default()
            },
            Backoff {
                floor: Duration::from_secs(60),
                ..Backoff::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(Backoff::default().validate().is_ok());
    }

    #[test]
    fn jitter_is_uniform_enough_and_reproducible() {
        let mut a = Jitter::new(Some(7));
        let mut b = Jitter::new(Some(7));
        let samples: Vec<f64> = (0..10_000).map(|_| a.next_f64()).collect();
        assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert_eq!(samples[0], b.next_f64());
    }

    #[test]
    fn failures_reset_only_after_a_stable_connection() {
        let stable = Duration::from_secs(5);
        let mut failures = Failures::default();
        assert!(!failures.record(None, stable));
        assert!(!failures.record(Some(Duration::from_secs(4)), stable));
        assert_eq!(failures.count(), 2);
        assert!(failures.record(Some(stable), stable));
        assert_eq!(failures.count(), 1);
    }

    /// One attempt's end: never opened, or open for this many milliseconds.
    fn attempt() -> impl Strategy<Value = Option<u64>> {
        prop_oneof![Just(None), (0u64..20_000).prop_map(Some)]
    }

    proptest! {
        #[test]
        fn backoff_over_random_attempt_sequences(
            attempts in prop::collection::vec(attempt(), 1..60),
            randoms in prop::collection::vec(0.0f64..1.0, 60),
            base_ms in 0u64..5_000,
            stable_ms in 0u64..10_000,
        ) {
            let backoff = Backoff::default();
            let base = Duration::from_millis(base_ms);
            let stable = Duration::from_millis(stable_ms);
            let mut failures = Failures::default();
            let mut since_healthy = 0u32;
            for (open_for, random) in attempts.iter().zip(&randoms) {
                let open_for = open_for.map(Duration::from_millis);
                let healthy = failures.record(open_for, stable);
                since_healthy = if healthy { 1 } else { since_healthy + 1 };
                prop_assert_eq!(failures.count(), since_healthy);
                let delay = backoff.delay(base, failures.count(), *random);
                prop_assert!(delay <= backoff.max, "{:?} above max", delay);
                prop_assert!(delay >= backoff.floor, "{:?} below floor", delay);
                let lowest = base.clamp(backoff.floor, backoff.max);
                if healthy {
                    // Reset: back to the base, plus at most the jitter.
                    let highest = base.mul_f64(1.0 + backoff.jitter).clamp(backoff.floor, backoff.max);
                    prop_assert!(delay >= lowest && delay <= highest, "{:?} not reset", delay);
                } else {
                    prop_assert!(delay >= lowest);
                }
            }
        }

        #[test]
        fn delay_always_within_floor_and_max(
            initial_ms in 0u64..100_000,
            max_ms in 1u64..100_000,
            floor_ms in 0u64..1_000,
            factor in 1.0f64..10.0,
            jitter in 0.0f64..=1.0,
            failures in 1u32..200,
            random in 0.0f64..1.0,
        ) {
            let backoff = Backoff {
                initial: Duration::from_millis(initial_ms),
                max: Duration::from_millis(max_ms.max(floor_ms)),
                floor: Duration::from_millis(floor_ms),
                factor,
                jitter,
            };
            prop_assert!(backoff.validate().is_ok());
            let delay = backoff.delay(backoff.initial, failures, random);
            prop_assert!(delay <= backoff.max);
            prop_assert!(delay >= backoff.floor);
            // Never below the (capped) base: the server's retry is not undercut.
            prop_assert!(delay >= backoff.initial.min(backoff.max).max(backoff.floor));
            // Monotonic in the number of failures for the same random draw.
            prop_assert!(backoff.delay(backoff.initial, failures + 1, random) >= delay);
        }
    }
}
