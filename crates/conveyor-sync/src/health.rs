//! When a connection's next scheduled sync is due, given its health.
//!
//! - **online / unknown**: every entity follows its own interval.
//! - **offline**: the schedule is replaced by probes that back off exponentially with jitter
//!   (1 min, 2, 4, 8 … capped at 1 h by default), counted from the connection's consecutive
//!   failures, so a system that is down is asked less and less often. The first success restores
//!   the normal schedule.
//! - **auth_required**: nothing is scheduled until the credentials change or someone asks for a
//!   manual sync; retrying with credentials the source rejected cannot help and may lock the
//!   account.

use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor_core::ConnectionStatus;
use rand::Rng;

/// Backoff of scheduled probes while a connection is offline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OfflineBackoff {
    /// Delay after the first failure. Defaults to 1 minute.
    pub base: Duration,
    /// Multiplier per further failure. Defaults to 2.
    pub factor: f64,
    /// Largest delay. Defaults to 1 hour.
    pub cap: Duration,
    /// Relative jitter, 0 to 1: each delay is drawn from `delay × (1 ± jitter)`, then capped.
    /// Defaults to 0.2. Jitter spreads the probes of many connections behind one outage.
    pub jitter: f64,
}

impl Default for OfflineBackoff {
    fn default() -> Self {
        OfflineBackoff {
            base: Duration::from_secs(60),
            factor: 2.0,
            cap: Duration::from_secs(3_600),
            jitter: 0.2,
        }
    }
}

impl OfflineBackoff {
    /// The delay before the next probe after `consecutive_failures` failures (1 = the first),
    /// without jitter.
    pub fn nominal(&self, consecutive_failures: u32) -> Duration {
        let exponent = consecutive_failures.saturating_sub(1).min(64);
        let secs = self.base.as_secs_f64() * self.factor.powi(exponent as i32);
        Duration::from_secs_f64(secs.min(self.cap.as_secs_f64()))
    }

    /// The delay with jitter drawn from `rng`, never above the cap.
    pub fn delay_with(&self, consecutive_failures: u32, rng: &mut impl Rng) -> Duration {
        let nominal = self.nominal(consecutive_failures).as_secs_f64();
        let jitter = self.jitter.clamp(0.0, 1.0);
        let scale = if jitter > 0.0 {
            rng.random_range(1.0 - jitter..=1.0 + jitter)
        } else {
            1.0
        };
        Duration::from_secs_f64((nominal * scale).min(self.cap.as_secs_f64()))
    }

    /// The delay with jitter from the thread's generator.
    pub fn delay(&self, consecutive_failures: u32) -> Duration {
        self.delay_with(consecutive_failures, &mut rand::rng())
    }
}

/// When the next scheduled sync of an entity is due.
///
/// `last_finished` is when the entity's last run ended (`None`: never ran, due now);
/// `last_failure` is when the connection's last failed attempt ended.
pub fn next_due(
    status: ConnectionStatus,
    interval: Duration,
    last_finished: Option<DateTime<Utc>>,
    consecutive_failures: u32,
    last_failure: Option<DateTime<Utc>>,
    backoff: &OfflineBackoff,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match status {
        ConnectionStatus::AuthRequired => None,
        ConnectionStatus::Offline => {
            let from = last_failure.unwrap_or(now);
            Some(
                from + chrono::Duration::from_std(backoff.delay(consecutive_failures.max(1)))
                    .ok()?,
            )
        }
        _ => Some(match last_finished {
            None => now,
            Some(at) => at + chrono::Duration::from_std(interval).ok()?,
        }),
    }
}

/// How far an entity's stored copy is behind its schedule: `now - data_as_of - interval`,
/// floored at zero. Zero while the last sync is at most one interval old; an entity that never
/// synced has no lag to report (`None`).
pub fn lag(
    now: DateTime<Utc>,
    data_as_of: Option<DateTime<Utc>>,
    interval: Duration,
) -> Option<Duration> {
    let behind = (now - data_as_of?).to_std().unwrap_or_default();
    Some(behind.saturating_sub(interval))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn offline_delays_double_and_stop_at_the_cap() {
        let backoff = OfflineBackoff::default();
        let minutes: Vec<u64> = (1..=9).map(|n| backoff.nominal(n).as_secs() / 60).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff.nominal(u32::MAX), Duration::from_secs(3_600));
    }

    #[test]
    fn jitter_stays_within_bounds_and_under_the_cap() {
        let backoff = OfflineBackoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        for failures in 1..=12 {
            let nominal = backoff.nominal(failures).as_secs_f64();
            for _ in 0..200 {
                let delay = backoff.delay_with(failures, &mut rng).as_secs_f64();
                assert!(
                    delay >= nominal * 0.8 - 1e-9,
                    "{failures}: {delay} < {nominal}×0.8"
                );
                assert!(
                    delay <= (nominal * 1.2).min(3_600.0) + 1e-9,
                    "{failures}: {delay}"
                );
            }
        }
    }

    #[test]
    fn lag_counts_only_time_beyond_the_interval() {
        let now: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let hour = Duration::from_secs(3_600);
        let at = |text: &str| Some(text.parse::<DateTime<Utc>>().unwrap());
        assert_eq!(
            lag(now, at("2026-11-23T09:30:00Z"), hour),
            Some(Duration::ZERO)
        );
        assert_eq!(
            lag(now, at("2026-11-23T08:45:00Z"), hour),
            Some(Duration::from_secs(15 * 60))
        );
        assert_eq!(
            lag(now, at("2026-11-23T10:05:00Z"), hour),
            Some(Duration::ZERO),
            "a source clock ahead of ours is not negative lag"
        );
        assert_eq!(lag(now, None, hour), None);
    }

    #[test]
    fn schedule_follows_status() {
        let now: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let hour = Duration::from_secs(3_600);
        let last = Some("2026-11-23T09:30:00Z".parse().unwrap());
        let backoff = OfflineBackoff {
            jitter: 0.0,
            ..Default::default()
        };

        let online = next_due(ConnectionStatus::Online, hour, last, 0, None, &backoff, now);
        assert_eq!(online, Some("2026-11-23T10:30:00Z".parse().unwrap()));
        let never = next_due(
            ConnectionStatus::Unknown,
            hour,
            None,
            0,
            None,
            &backoff,
            now,
        );
        assert_eq!(never, Some(now));

        let failed_at = Some("2026-11-23T09:59:00Z".parse().unwrap());
        let offline = next_due(
            ConnectionStatus::Offline,
            hour,
            last,
            3,
            failed_at,
            &backoff,
            now,
        );
        assert_eq!(
            offline,
            Some("2026-11-23T10:03:00Z".parse().unwrap()),
            "4 minutes after the 3rd failure"
        );

        assert_eq!(
            next_due(
                ConnectionStatus::AuthRequired,
                hour,
                last,
                5,
                failed_at,
                &backoff,
                now
            ),
            None
        );
    }
}
