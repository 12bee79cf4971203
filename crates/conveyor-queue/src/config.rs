//! Queue configuration: lease length, attempts, backoff, retention and fetch sizes.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// How one queue behaves. Every worker and producer of a queue should use the same values; the
/// per-job values (`max_attempts`) are stored with each job when it is pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// The queue's name, e.g. [`conveyor_core::job::SYNC_QUEUE`]. All its Redis keys share the
    /// hash tag `{q:<name>}`, so a Redis Cluster keeps the whole queue on one slot.
    pub name: String,
    /// How long a fetched job stays owned by its worker without a renewal. Renewed every
    /// `lease / 3` while the handler runs; after a crash the job is redelivered once it runs out.
    /// Defaults to 30 seconds.
    pub lease: Duration,
    /// Attempts a job gets before it is dead-lettered, unless the job sets its own. Every
    /// delivery counts, crash redeliveries included. Defaults to 5.
    pub max_attempts: u32,
    /// Delay before a retried job runs again.
    pub backoff: BackoffPolicy,
    /// How long the record of a succeeded job is kept (for `status`). Defaults to 24 hours.
    pub succeeded_ttl: Duration,
    /// How long dead jobs are kept before being purged automatically; `None` (the default)
    /// keeps them until an operator purges them.
    pub dead_ttl: Option<Duration>,
    /// The most jobs one fetch takes (and the most a worker holds fetched but not yet started).
    /// Defaults to 100.
    pub fetch_batch: usize,
    /// The longest an idle worker blocks before looking again for scheduled jobs that came due
    /// and leases that ran out. New pushes wake it at once regardless. Defaults to 1 second.
    pub idle_wait: Duration,
}

impl QueueConfig {
    /// The defaults for queue `name`.
    pub fn new(name: impl Into<String>) -> Self {
        QueueConfig {
            name: name.into(),
            ..QueueConfig::default()
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            name: conveyor_core::job::SYNC_QUEUE.to_owned(),
            lease: Duration::from_secs(30),
            max_attempts: 5,
            backoff: BackoffPolicy::default(),
            succeeded_ttl: Duration::from_secs(24 * 60 * 60),
            dead_ttl: None,
            fetch_batch: 100,
            idle_wait: Duration::from_secs(1),
        }
    }
}

/// Exponential backoff with jitter between retries of a failed job.
///
/// The n-th retry waits `base * factor^(n-1)`, capped at `cap`; with `jitter` a random extra of
/// up to the same delay is added (then capped again), so jobs that failed together do not all
/// come back together.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    /// Delay before the first retry. Defaults to 1 second.
    pub base: Duration,
    /// Growth per retry. Defaults to 2.
    pub factor: f32,
    /// The longest delay. Defaults to 10 minutes.
    pub cap: Duration,
    /// Whether to add random jitter. Defaults to true.
    pub jitter: bool,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_secs(1),
            factor: 2.0,
            cap: Duration::from_secs(600),
            jitter: true,
        }
    }
}

impl BackoffPolicy {
    /// The delay before the retry that follows failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let mut builder = ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_factor(self.factor)
            .with_max_delay(self.cap)
            .without_max_times();
        if self.jitter {
            builder = builder.with_jitter();
        }
        let steps = attempt.max(1) as usize;
        let delay = builder
            .build()
            .nth(steps - 1)
            .unwrap_or(self.cap)
            .min(self.cap);
        // Whole milliseconds: Redis keeps due times in ms, and f32 growth leaves dust.
        Duration::from_millis(delay.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_up_to_the_cap() {
        let policy = BackoffPolicy {
            base: Duration::from_millis(100),
            factor: 2.0,
            cap: Duration::from_secs(1),
            jitter: false,
        };
        let delays: Vec<_> = (1..=6).map(|attempt| policy.delay(attempt)).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1000, 1000].map(Duration::from_millis)
        );
    }

    #[test]
    fn jitter_stays_between_the_delay_and_the_cap() {
        let policy = BackoffPolicy {
            base: Duration::from_millis(100),
            factor: 3.0,
            cap: Duration::from_secs(2),
            jitter: true,
        };
        for _ in 0..100 {
            let delay = policy.delay(2);
            assert!(delay >= Duration::from_millis(300) && delay <= Duration::from_millis(600));
            assert!(policy.delay(10) <= Duration::from_secs(2));
        }
    }
}
