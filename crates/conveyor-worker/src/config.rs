//! Configuration of the worker process, read once from `CONVEYOR_*` variables.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `CONVEYOR_REDIS_URL`, `CONVEYOR_LOG_FORMAT`, `CONVEYOR_LOG` | see `CommonConfig` | |
//! | `CONVEYOR_ENCRYPTION_KEYS` | **required**: credential keys `id:base64,...`, the active key first (same list as the API's) | — |
//! | `CONVEYOR_WORKER_CONCURRENCY` | jobs run at once by this process, 1–1024 | 8 |
//! | `CONVEYOR_SOURCE_CONCURRENCY` | requests in flight per connection across the fleet, 1–64 | 2 |
//! | `CONVEYOR_SOURCE_RETRIES` | quick in-process retries of one page request, 0–10 | 3 |
//! | `CONVEYOR_SOURCE_PERMIT_TTL` | life of a request permit without renewal (a crashed worker's permit frees after it) | 15s |
//! | `CONVEYOR_JOB_LEASE` | how long a job stays leased without renewal (a crashed worker's job is redelivered after it) | 30s |
//! | `CONVEYOR_RETRY_BACKOFF_BASE` | delay before the first retry of a failed job (doubles per retry, with jitter) | 1s |
//! | `CONVEYOR_RETRY_BACKOFF_CAP` | longest delay between retries | 10m |
//! | `CONVEYOR_SHUTDOWN_DEADLINE` | after SIGTERM, how long running jobs may take before they are handed back | 30s |
//! | `CONVEYOR_SCHEDULER_*`, `CONVEYOR_OFFLINE_BACKOFF_*` | the scheduler: see [`SchedulerConfig`](crate::scheduler::SchedulerConfig) | |
//! | `CONVEYOR_WEBHOOK*` | webhook dispatch and delivery: see [`WebhookSettings`](crate::webhooks::WebhookSettings) | |
//!
//! Durations are written with a unit: `250ms`, `30s`, `5m`, `2h`. A job's attempt limit is not
//! a worker setting: the producer (API, scheduler) stores it with each job when it pushes it.

use std::time::Duration;

use conveyor_runtime::config::CommonConfig;
use conveyor_runtime::{ConfigError, ConfigReader};
use conveyor_store::EncryptionKey;

/// The worker's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Redis and logging.
    pub common: CommonConfig,
    /// `CONVEYOR_ENCRYPTION_KEYS` (required): the keys credentials are encrypted with, active
    /// first, in [`EncryptionKey::parse_list`]'s form. Workers decrypt credentials to call
    /// sources, so they need the same list as the API. `Debug` shows only key ids.
    pub encryption_keys: Vec<EncryptionKey>,
    /// `CONVEYOR_WORKER_CONCURRENCY`: jobs run at once by this process. Defaults to 8; 1 to 1024.
    pub concurrency: usize,
    /// `CONVEYOR_SOURCE_CONCURRENCY`: requests in flight to one connection's source across the
    /// whole fleet. Defaults to 2; 1 to 64. Every worker of a fleet should use the same value.
    pub source_concurrency: u32,
    /// `CONVEYOR_SOURCE_RETRIES`: quick in-process retries of one page request before its error
    /// goes to the queue. Defaults to 3; 0 to 10.
    pub source_retries: usize,
    /// `CONVEYOR_SOURCE_PERMIT_TTL`: how long a request permit lives without renewal. Defaults
    /// to 15 seconds.
    pub permit_ttl: Duration,
    /// `CONVEYOR_JOB_LEASE`: how long a fetched job stays leased without renewal. Defaults to 30
    /// seconds.
    pub lease: Duration,
    /// `CONVEYOR_RETRY_BACKOFF_BASE`: delay before a failed job's first retry. Defaults to 1
    /// second.
    pub backoff_base: Duration,
    /// `CONVEYOR_RETRY_BACKOFF_CAP`: the longest delay between retries. Defaults to 10 minutes.
    pub backoff_cap: Duration,
    /// `CONVEYOR_SHUTDOWN_DEADLINE`: after SIGTERM, how long running jobs may take to finish
    /// before they are handed back to the queue. Defaults to 30 seconds.
    pub shutdown_deadline: Duration,
    /// The scheduler's settings (`CONVEYOR_SCHEDULER_*`, `CONVEYOR_OFFLINE_BACKOFF_*`).
    pub scheduler: crate::scheduler::SchedulerConfig,
    /// Webhook dispatch and delivery (`CONVEYOR_WEBHOOK*`).
    pub webhooks: crate::webhooks::WebhookSettings,
}

impl Config {
    /// Reads the configuration through `lookup`, reporting every bad variable at once.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut reader = ConfigReader::new(lookup);
        let common = CommonConfig::read(&mut reader);
        let encryption_keys = match reader.required("CONVEYOR_ENCRYPTION_KEYS") {
            // The message never contains key material: parse_list names ids and shapes only.
            Some(text) => EncryptionKey::parse_list(&text).unwrap_or_else(|err| {
                reader.problem("CONVEYOR_ENCRYPTION_KEYS", err.to_string());
                Vec::new()
            }),
            None => Vec::new(),
        };
        let concurrency = reader.ranged("CONVEYOR_WORKER_CONCURRENCY", 8usize, 1, 1024);
        let source_concurrency = reader.ranged("CONVEYOR_SOURCE_CONCURRENCY", 2u32, 1, 64);
        let source_retries = reader.ranged("CONVEYOR_SOURCE_RETRIES", 3usize, 0, 10);
        let permit_ttl = positive(
            &mut reader,
            "CONVEYOR_SOURCE_PERMIT_TTL",
            Duration::from_secs(15),
        );
        let lease = positive(&mut reader, "CONVEYOR_JOB_LEASE", Duration::from_secs(30));
        let backoff_base = positive(
            &mut reader,
            "CONVEYOR_RETRY_BACKOFF_BASE",
            Duration::from_secs(1),
        );
        let backoff_cap = positive(
            &mut reader,
            "CONVEYOR_RETRY_BACKOFF_CAP",
            Duration::from_secs(600),
        );
        if backoff_cap < backoff_base {
            reader.problem(
                "CONVEYOR_RETRY_BACKOFF_CAP",
                "must not be shorter than CONVEYOR_RETRY_BACKOFF_BASE",
            );
        }
        let shutdown_deadline =
            reader.duration("CONVEYOR_SHUTDOWN_DEADLINE", Duration::from_secs(30));
        let scheduler = crate::scheduler::SchedulerConfig::read(&mut reader);
        let webhooks = crate::webhooks::WebhookSettings::read(&mut reader);
        reader.finish()?;
        Ok(Config {
            common,
            encryption_keys,
            concurrency,
            source_concurrency,
            source_retries,
            permit_ttl,
            lease,
            backoff_base,
            backoff_cap,
            shutdown_deadline,
            scheduler,
            webhooks,
        })
    }
}

/// A duration that must not be zero.
fn positive<F: Fn(&str) -> Option<String>>(
    reader: &mut ConfigReader<F>,
    key: &str,
    default: Duration,
) -> Duration {
    let value = reader.duration(key, default);
    if value.is_zero() {
        reader.problem(key, "must be longer than zero");
        return default;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    fn with(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_need_only_the_keys() {
        let config = Config::from_lookup(with(&[("CONVEYOR_ENCRYPTION_KEYS", KEYS)])).unwrap();
        assert_eq!(config.concurrency, 8);
        assert_eq!(config.source_concurrency, 2);
        assert_eq!(config.lease, Duration::from_secs(30));
        assert_eq!(config.encryption_keys[0].id(), "k1");
        assert!(
            !format!("{config:?}").contains("AAAA"),
            "no key material in Debug"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let err = Config::from_lookup(with(&[
            ("CONVEYOR_WORKER_CONCURRENCY", "0"),
            ("CONVEYOR_JOB_LEASE", "0s"),
            ("CONVEYOR_SOURCE_CONCURRENCY", "many"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "CONVEYOR_ENCRYPTION_KEYS",
            "CONVEYOR_WORKER_CONCURRENCY",
            "CONVEYOR_JOB_LEASE",
            "CONVEYOR_SOURCE_CONCURRENCY",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        let bad_key =
            Config::from_lookup(with(&[("CONVEYOR_ENCRYPTION_KEYS", "k1:c2hvcnQ=")])).unwrap_err();
        assert_eq!(bad_key.problems[0].key, "CONVEYOR_ENCRYPTION_KEYS");
    }
}
