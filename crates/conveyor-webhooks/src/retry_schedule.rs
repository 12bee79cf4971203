//! When to try a failed delivery again.
//!
//! The default table spreads ten attempts over about three days (30 s, 5 min, 30 min, 2 h, 5 h,
//! 10 h, 14 h, 20 h, 24 h), long enough to ride out a receiver's weekend outage. Each delay gets
//! ±20 % jitter so that a receiver coming back after an outage is not hit by every queued event
//! in the same second. A `Retry-After` from the receiver replaces the table's delay (bounded, so a
//! receiver cannot park an event for a year) but still counts as an attempt, so the schedule
//! always ends.

use std::time::Duration;

use rand::Rng;

use crate::{DeliveryOutcome, WebhookError};

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;

/// The default delays after attempts 1 to 9; after the 10th attempt the event is dead-lettered.
pub const DEFAULT_DELAYS: [Duration; 9] = [
    Duration::from_secs(30),
    Duration::from_secs(5 * MINUTE),
    Duration::from_secs(30 * MINUTE),
    Duration::from_secs(2 * HOUR),
    Duration::from_secs(5 * HOUR),
    Duration::from_secs(10 * HOUR),
    Duration::from_secs(14 * HOUR),
    Duration::from_secs(20 * HOUR),
    Duration::from_secs(24 * HOUR),
];
/// Default jitter: each delay is drawn from ±20 % around the table's value.
pub const DEFAULT_JITTER: f64 = 0.2;
/// Default bound on a receiver's `Retry-After`: 24 hours.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * HOUR);

/// The delays between delivery attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    scale: f64,
    jitter: f64,
    max_retry_after: Duration,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::new(DEFAULT_DELAYS.to_vec())
    }
}

impl RetrySchedule {
    /// A schedule with the given delays (the delay after attempt 1, after attempt 2, ...),
    /// default jitter, scale 1 and the default `Retry-After` bound.
    pub fn new(delays: Vec<Duration>) -> Self {
        Self {
            delays,
            scale: 1.0,
            jitter: DEFAULT_JITTER,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }

    /// Multiplies every table delay by `scale` (tests use 0.001 to run the schedule in
    /// milliseconds). Must be finite and not negative.
    pub fn with_scale(mut self, scale: f64) -> Result<Self, WebhookError> {
        if !scale.is_finite() || scale < 0.0 {
            return Err(WebhookError::InvalidSchedule {
                reason: "the scale must be a finite number, zero or more",
            });
        }
        self.scale = scale;
        Ok(self)
    }

    /// Sets the jitter as a fraction of each delay (0.2 = ±20 %). Must be between 0 and 1.
    pub fn with_jitter(mut self, jitter: f64) -> Result<Self, WebhookError> {
        if !(0.0..=1.0).contains(&jitter) {
            return Err(WebhookError::InvalidSchedule {
                reason: "the jitter must be between 0 and 1",
            });
        }
        self.jitter = jitter;
        Ok(self)
    }

    /// Bounds the delay a receiver may ask for with `Retry-After` (not scaled).
    pub fn with_max_retry_after(mut self, max_retry_after: Duration) -> Self {
        self.max_retry_after = max_retry_after;
        self
    }

    /// How many attempts an event gets in total: the first one plus one per delay.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The scaled delay after attempt number `attempt` (1 for the first attempt), without
    /// jitter; `None` once the attempts are exhausted. Attempt 0 (nothing tried yet) means "now".
    pub fn base_delay(&self, attempt: u32) -> Option<Duration> {
        let Some(index) = attempt.checked_sub(1) else {
            return Some(Duration::ZERO);
        };
        let delay = self.delays.get(usize::try_from(index).ok()?)?;
        Some(scale(*delay, self.scale))
    }

    /// The delay before the next attempt after attempt number `attempt` failed (1 for the first
    /// attempt), jittered; `None` when the attempts are exhausted and the event goes to the dead
    /// letters.
    pub fn next_delay(&self, attempt: u32) -> Option<Duration> {
        self.next_delay_with(attempt, &mut rand::rng())
    }

    /// [`next_delay`](Self::next_delay) with a given random source (for reproducible tests).
    pub fn next_delay_with(&self, attempt: u32, rng: &mut impl Rng) -> Option<Duration> {
        let base = self.base_delay(attempt)?;
        if self.jitter == 0.0 || base.is_zero() {
            return Some(base);
        }
        let factor = rng.random_range((1.0 - self.jitter)..=(1.0 + self.jitter));
        Some(scale(base, factor))
    }

    /// The delay after attempt number `attempt` ended with `outcome`: `None` when nothing more
    /// should be tried (delivered, gone, or attempts exhausted). A receiver's `Retry-After`
    /// replaces the table's delay, bounded by the maximum.
    pub fn delay_after(&self, attempt: u32, outcome: &DeliveryOutcome) -> Option<Duration> {
        match outcome {
            DeliveryOutcome::Delivered | DeliveryOutcome::Gone => None,
            DeliveryOutcome::Retry { after } => {
                self.base_delay(attempt)?;
                Some((*after).min(self.max_retry_after))
            }
            DeliveryOutcome::Failed { .. } => self.next_delay(attempt),
        }
    }
}

/// `delay × factor`, saturating instead of panicking on overflow.
fn scale(delay: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(delay.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_stay_within_twenty_percent_of_the_table() {
        let schedule = RetrySchedule::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (index, table) in DEFAULT_DELAYS.iter().enumerate() {
            let attempt = u32::try_from(index).unwrap() + 1;
            let (mut low, mut high) = (Duration::MAX, Duration::ZERO);
            for _ in 0..500 {
                let delay = schedule.next_delay_with(attempt, &mut rng).unwrap();
                assert!(
                    delay >= table.mul_f64(0.8) && delay <= table.mul_f64(1.2),
                    "attempt {attempt}: {delay:?} vs {table:?}"
                );
                low = low.min(delay);
                high = high.max(delay);
            }
            // Jitter really spreads the delays over most of the window.
            assert!(
                low < table.mul_f64(0.9) && high > table.mul_f64(1.1),
                "{low:?} {high:?}"
            );
        }
    }

    #[test]
    fn exhausted_after_the_last_delay() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.max_attempts(), 10);
        assert_eq!(schedule.base_delay(0), Some(Duration::ZERO));
        assert_eq!(schedule.base_delay(1), Some(Duration::from_secs(30)));
        assert_eq!(schedule.base_delay(9), Some(Duration::from_secs(24 * 3600)));
        assert_eq!(schedule.next_delay(10), None);
        assert_eq!(schedule.next_delay(u32::MAX), None);
        let retry = DeliveryOutcome::Retry {
            after: Duration::from_secs(5),
        };
        assert_eq!(schedule.delay_after(10, &retry), None);
    }

    #[test]
    fn scale_factor_runs_the_schedule_in_milliseconds() {
        let schedule = RetrySchedule::default()
            .with_scale(0.001)
            .unwrap()
            .with_jitter(0.0)
            .unwrap();
        assert_eq!(schedule.next_delay(1), Some(Duration::from_millis(30)));
        assert_eq!(schedule.next_delay(2), Some(Duration::from_millis(300)));
        assert_eq!(
            schedule.next_delay(9),
            Some(Duration::from_secs(86)).map(|d| d + Duration::from_millis(400))
        );
        assert!(RetrySchedule::default().with_scale(-1.0).is_err());
        assert!(RetrySchedule::default().with_scale(f64::NAN).is_err());
        assert!(RetrySchedule::default().with_jitter(1.5).is_err());
        // A huge scale saturates instead of panicking.
        let huge = RetrySchedule::default().with_scale(1e300).unwrap();
        assert_eq!(huge.base_delay(1), Some(Duration::MAX));
    }

    #[test]
    fn retry_after_overrides_the_table_within_the_bound() {
        let schedule = RetrySchedule::default().with_max_retry_after(Duration::from_secs(3600));
        let asked = |secs| DeliveryOutcome::Retry {
            after: Duration::from_secs(secs),
        };
        assert_eq!(
            schedule.delay_after(1, &asked(7)),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            schedule.delay_after(1, &asked(999_999)),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(schedule.delay_after(1, &DeliveryOutcome::Delivered), None);
        assert_eq!(schedule.delay_after(1, &DeliveryOutcome::Gone), None);
        let failed = DeliveryOutcome::Failed {
            error: "receiver answered 500".to_owned(),
        };
        let delay = schedule.delay_after(1, &failed).unwrap();
        assert!(delay >= Duration::from_secs(24) && delay <= Duration::from_secs(36));
    }
}
