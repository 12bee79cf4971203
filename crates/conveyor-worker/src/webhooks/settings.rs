//! Webhook settings of a worker, read from `CONVEYOR_WEBHOOK*` variables.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `CONVEYOR_WEBHOOKS_ENABLED` | whether this process dispatches and delivers webhooks (at least one process of the fleet must) | true |
//! | `CONVEYOR_WEBHOOKS_ALLOW_PRIVATE` | deliver to private, loopback and link-local addresses (demos and tests only) | false |
//! | `CONVEYOR_WEBHOOK_TIMEOUT` | how long a receiver has to answer one attempt | 10s |
//! | `CONVEYOR_WEBHOOK_RETRY_SCALE` | multiplies the retry schedule (30 s, 5 min, ... 24 h); tests use 0.001 | 1 |
//! | `CONVEYOR_WEBHOOK_CONCURRENCY` | deliveries in flight in this process, 1–1024 | 32 |
//! | `CONVEYOR_WEBHOOK_ENDPOINT_CONCURRENCY` | deliveries in flight to one endpoint in this process, 1–64 | 4 |
//! | `CONVEYOR_WEBHOOK_POLL_INTERVAL` | how often an idle dispatcher looks for new events | 500ms |
//! | `CONVEYOR_WEBHOOK_SWEEP_INTERVAL` | how often the dispatcher reads every connection's outbox, not only the ready ones | 60s |
//! | `CONVEYOR_WEBHOOK_CLAIM_IDLE` | how long an event read by a dispatcher stays unacknowledged before another takes it over | 60s |

use std::time::Duration;

use conveyor_runtime::ConfigReader;
use conveyor_webhooks::{DeliveryConfig, RetrySchedule, UrlPolicy};

/// How this worker dispatches and delivers webhooks.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    /// `CONVEYOR_WEBHOOKS_ENABLED`: whether this process dispatches and delivers webhooks.
    /// Defaults to true. A fleet may keep webhooks on some processes only; at least one process
    /// must have them on, or events wait in the outbox.
    pub enabled: bool,
    /// `CONVEYOR_WEBHOOKS_ALLOW_PRIVATE`: call non-public addresses. Defaults to false; only
    /// demos and tests, whose receivers listen on loopback, set it.
    pub allow_private_networks: bool,
    /// `CONVEYOR_WEBHOOK_TIMEOUT`: the time a receiver has to answer. Defaults to 10 seconds.
    pub timeout: Duration,
    /// `CONVEYOR_WEBHOOK_RETRY_SCALE`: multiplies every delay of the retry schedule. Defaults to
    /// 1; 0 to 1000.
    pub retry_scale: f64,
    /// `CONVEYOR_WEBHOOK_CONCURRENCY`: deliveries in flight in this process. Defaults to 32.
    pub concurrency: usize,
    /// `CONVEYOR_WEBHOOK_ENDPOINT_CONCURRENCY`: deliveries in flight to one endpoint in this
    /// process. Defaults to 4.
    pub permits_per_endpoint: usize,
    /// `CONVEYOR_WEBHOOK_POLL_INTERVAL`: the idle dispatcher's polling interval. Defaults to
    /// 500 milliseconds.
    pub poll_interval: Duration,
    /// `CONVEYOR_WEBHOOK_SWEEP_INTERVAL`: how often every connection's outbox is read, which
    /// finds events whose ready mark was lost and events a crashed dispatcher held. Defaults to
    /// 60 seconds.
    pub sweep_interval: Duration,
    /// `CONVEYOR_WEBHOOK_CLAIM_IDLE`: how long an event read but not acknowledged stays with its
    /// dispatcher before another takes it over. Defaults to 60 seconds.
    pub claim_idle: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            enabled: true,
            allow_private_networks: false,
            timeout: conveyor_webhooks::delivery::DEFAULT_TIMEOUT,
            retry_scale: 1.0,
            concurrency: 32,
            permits_per_endpoint: conveyor_webhooks::limiter::DEFAULT_PERMITS_PER_ENDPOINT,
            poll_interval: Duration::from_millis(500),
            sweep_interval: Duration::from_secs(60),
            claim_idle: Duration::from_secs(60),
        }
    }
}

impl WebhookSettings {
    /// Reads the settings, adding any bad variable to the reader's problems.
    pub fn read<F: Fn(&str) -> Option<String>>(reader: &mut ConfigReader<F>) -> Self {
        let defaults = WebhookSettings::default();
        let retry_scale = reader.parse("CONVEYOR_WEBHOOK_RETRY_SCALE", defaults.retry_scale);
        let retry_scale = if retry_scale.is_finite() && (0.0..=1000.0).contains(&retry_scale) {
            retry_scale
        } else {
            reader.problem(
                "CONVEYOR_WEBHOOK_RETRY_SCALE",
                "must be a number from 0 to 1000",
            );
            defaults.retry_scale
        };
        let mut positive = |key: &str, default: Duration| {
            let value = reader.duration(key, default);
            if value.is_zero() {
                reader.problem(key, "must be longer than zero");
                return default;
            }
            value
        };
        let timeout = positive("CONVEYOR_WEBHOOK_TIMEOUT", defaults.timeout);
        let poll_interval = positive("CONVEYOR_WEBHOOK_POLL_INTERVAL", defaults.poll_interval);
        let sweep_interval = positive("CONVEYOR_WEBHOOK_SWEEP_INTERVAL", defaults.sweep_interval);
        let claim_idle = positive("CONVEYOR_WEBHOOK_CLAIM_IDLE", defaults.claim_idle);
        WebhookSettings {
            enabled: reader.flag("CONVEYOR_WEBHOOKS_ENABLED", defaults.enabled),
            allow_private_networks: reader.flag("CONVEYOR_WEBHOOKS_ALLOW_PRIVATE", false),
            timeout,
            retry_scale,
            concurrency: reader.ranged(
                "CONVEYOR_WEBHOOK_CONCURRENCY",
                defaults.concurrency,
                1,
                1024,
            ),
            permits_per_endpoint: reader.ranged(
                "CONVEYOR_WEBHOOK_ENDPOINT_CONCURRENCY",
                defaults.permits_per_endpoint,
                1,
                64,
            ),
            poll_interval,
            sweep_interval,
            claim_idle,
        }
    }

    /// The URL policy these settings allow.
    pub fn url_policy(&self) -> UrlPolicy {
        UrlPolicy {
            allow_private_networks: self.allow_private_networks,
        }
    }

    /// How one attempt is made.
    pub fn delivery_config(&self) -> DeliveryConfig {
        DeliveryConfig {
            timeout: self.timeout,
            url_policy: self.url_policy(),
            ..DeliveryConfig::default()
        }
    }

    /// The retry schedule, scaled.
    pub fn schedule(&self) -> RetrySchedule {
        // `read` only accepts finite scales from 0 to 1000, which `with_scale` accepts too; a
        // hand-built settings value with a bad scale falls back to the real schedule.
        RetrySchedule::default()
            .with_scale(self.retry_scale)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(
        pairs: &[(&str, &str)],
    ) -> (WebhookSettings, Result<(), conveyor_runtime::ConfigError>) {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        let mut reader = ConfigReader::new(|key: &str| map.get(key).cloned());
        let settings = WebhookSettings::read(&mut reader);
        (settings, reader.finish())
    }

    #[test]
    fn defaults_are_production_values() {
        let (settings, result) = read(&[]);
        result.unwrap();
        assert_eq!(settings, WebhookSettings::default());
        assert!(!settings.url_policy().allow_private_networks);
        assert_eq!(settings.timeout, Duration::from_secs(10));
        assert_eq!(
            settings.schedule().base_delay(1),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn tests_scale_the_schedule_and_allow_loopback() {
        let (settings, result) = read(&[
            ("CONVEYOR_WEBHOOKS_ALLOW_PRIVATE", "true"),
            ("CONVEYOR_WEBHOOK_RETRY_SCALE", "0.001"),
            ("CONVEYOR_WEBHOOK_TIMEOUT", "300ms"),
            ("CONVEYOR_WEBHOOKS_ENABLED", "false"),
        ]);
        result.unwrap();
        assert!(settings.allow_private_networks);
        assert!(!settings.enabled);
        assert_eq!(
            settings.schedule().base_delay(1),
            Some(Duration::from_millis(30))
        );
        assert_eq!(
            settings.delivery_config().timeout,
            Duration::from_millis(300)
        );
    }

    #[test]
    fn every_bad_variable_is_reported() {
        let (_, result) = read(&[
            ("CONVEYOR_WEBHOOK_RETRY_SCALE", "-1"),
            ("CONVEYOR_WEBHOOK_TIMEOUT", "0s"),
            ("CONVEYOR_WEBHOOK_CONCURRENCY", "0"),
        ]);
        let message = result.unwrap_err().to_string();
        for key in [
            "CONVEYOR_WEBHOOK_RETRY_SCALE",
            "CONVEYOR_WEBHOOK_TIMEOUT",
            "CONVEYOR_WEBHOOK_CONCURRENCY",
        ] {
            assert!(message.contains(key), "{message}");
        }
    }
}
