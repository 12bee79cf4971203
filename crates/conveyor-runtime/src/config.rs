//! Reading configuration from `CONVEYOR_*` variables.
//!
//! Binaries build their `Config` with a [`ConfigReader`] over a lookup function
//! (`|key| std::env::var(key).ok()` in production, a map in tests), so tests never mutate the
//! process environment. The reader collects every problem instead of stopping at the first, and
//! [`ConfigReader::finish`] returns them all, so an operator fixes a deployment in one pass.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One bad variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The variable, such as `CONVEYOR_REDIS_URL`.
    pub key: String,
    /// What is wrong with it. Never contains the value of a secret.
    pub message: String,
}

/// Every bad variable found while reading a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in the order the variables were read.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for problem in &self.problems {
            writeln!(f, "  {}: {}", problem.key, problem.message)?;
        }
        Ok(())
    }
}

/// Reads typed values through a lookup function, collecting problems.
pub struct ConfigReader<F> {
    lookup: F,
    problems: Vec<ConfigProblem>,
}

impl<F> fmt::Debug for ConfigReader<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigReader")
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

impl<F: Fn(&str) -> Option<String>> ConfigReader<F> {
    /// A reader over `lookup`.
    pub fn new(lookup: F) -> Self {
        ConfigReader {
            lookup,
            problems: Vec::new(),
        }
    }

    /// The raw value of `key`, if set and not blank.
    pub fn raw(&self, key: &str) -> Option<String> {
        (self.lookup)(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// Records a problem with `key` found by the caller's own validation.
    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// A string, or `default` when unset.
    pub fn string(&mut self, key: &str, default: &str) -> String {
        self.raw(key).unwrap_or_else(|| default.to_owned())
    }

    /// A required string; records a problem when unset.
    pub fn required(&mut self, key: &str) -> Option<String> {
        let value = self.raw(key);
        if value.is_none() {
            self.problem(key, "is required but not set");
        }
        value
    }

    /// A value parsed with `FromStr`, or `default` when unset. A value that does not parse is a
    /// problem; `default` is returned so reading can go on.
    pub fn parse<T>(&mut self, key: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(key) {
            None => default,
            Some(text) => match text.parse() {
                Ok(value) => value,
                Err(err) => {
                    self.problem(key, format!("`{text}` is not valid: {err}"));
                    default
                }
            },
        }
    }

    /// An integer within `min..=max`, or `default` when unset.
    pub fn ranged<T>(&mut self, key: &str, default: T, min: T, max: T) -> T
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
        T::Err: fmt::Display,
    {
        let value = self.parse(key, default);
        if value < min || value > max {
            self.problem(
                key,
                format!("{value} is out of range; expected {min} to {max}"),
            );
            return default;
        }
        value
    }

    /// A duration written as a number with a unit (`250ms`, `30s`, `5m`, `2h`), or `default`.
    pub fn duration(&mut self, key: &str, default: Duration) -> Duration {
        match self.raw(key) {
            None => default,
            Some(text) => match parse_duration(&text) {
                Some(value) => value,
                None => {
                    self.problem(
                        key,
                        format!("`{text}` is not a duration; write a number with a unit: 250ms, 30s, 5m, 2h"),
                    );
                    default
                }
            },
        }
    }

    /// A boolean (`true`/`false`/`1`/`0`/`yes`/`no`), or `default`.
    pub fn flag(&mut self, key: &str, default: bool) -> bool {
        match self.raw(key).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => true,
            Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => false,
            Some(v) => {
                self.problem(key, format!("`{v}` is not a boolean; use true or false"));
                default
            }
        }
    }

    /// A `redis://` or `rediss://` URL, or `default`.
    pub fn redis_url(&mut self, key: &str, default: &str) -> String {
        let url = self.string(key, default);
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("unix://"))
        {
            // Never echo the value: a Redis URL may carry a password.
            self.problem(key, "must start with redis://, rediss:// or unix://");
        } else if redis::Client::open(url.as_str()).is_err() {
            self.problem(key, "is not a valid Redis URL");
        }
        url
    }

    /// Ends reading: every problem found, or `Ok(())`.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }
}

/// Parses `250ms`, `30s`, `5m`, `2h`, `1d`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis = match unit.trim() {
        "ms" => number,
        "" | "s" => number.checked_mul(1_000)?,
        "m" => number.checked_mul(60_000)?,
        "h" => number.checked_mul(3_600_000)?,
        "d" => number.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn reader(pairs: &[(&str, &str)]) -> ConfigReader<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ConfigReader::new(move |key: &str| map.get(key).cloned())
    }

    #[test]
    fn defaults_apply_when_unset_or_blank() {
        let mut r = reader(&[("CONVEYOR_BLANK", "  ")]);
        assert_eq!(r.string("CONVEYOR_BLANK", "d"), "d");
        assert_eq!(r.parse("CONVEYOR_N", 7u32), 7);
        assert_eq!(
            r.duration("CONVEYOR_D", Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert!(r.flag("CONVEYOR_F", true));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn every_bad_variable_is_reported_at_once() {
        let mut r = reader(&[
            ("CONVEYOR_WORKERS", "many"),
            ("CONVEYOR_LEASE", "30 parsecs"),
            ("CONVEYOR_REDIS_URL", "http://user:pw@example"),
            ("CONVEYOR_FLAG", "maybe"),
            ("CONVEYOR_PORT", "70000"),
        ]);
        r.parse("CONVEYOR_WORKERS", 1u32);
        r.duration("CONVEYOR_LEASE", Duration::from_secs(30));
        r.redis_url("CONVEYOR_REDIS_URL", "redis://127.0.0.1:6379");
        r.flag("CONVEYOR_FLAG", false);
        r.ranged("CONVEYOR_PORT", 8080u32, 1, 65_535);
        r.required("CONVEYOR_SECRET");
        let err = r.finish().unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "CONVEYOR_WORKERS",
                "CONVEYOR_LEASE",
                "CONVEYOR_REDIS_URL",
                "CONVEYOR_FLAG",
                "CONVEYOR_PORT",
                "CONVEYOR_SECRET"
            ]
        );
        let text = err.to_string();
        assert!(text.contains("6 problem(s)"), "{text}");
        assert!(
            !text.contains("pw@"),
            "a Redis URL's password is never echoed: {text}"
        );
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        for bad in ["", "ms", "-1s", "1.5s", "5 weeks", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}

/// Settings every binary reads: where Redis is and how to log.
#[derive(Clone, PartialEq, Eq)]
pub struct CommonConfig {
    /// `CONVEYOR_REDIS_URL`: the Redis server. Defaults to `redis://127.0.0.1:6379/`.
    pub redis_url: String,
    /// `CONVEYOR_LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: crate::LogFormat,
    /// `CONVEYOR_LOG`: a tracing filter such as `info,conveyor_queue=debug`. Defaults to `info`.
    pub log_filter: String,
}

impl fmt::Debug for CommonConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A Redis URL may embed a password; show only what follows the last `@`.
        let redis = self.redis_url.rsplit('@').next().unwrap_or_default();
        f.debug_struct("CommonConfig")
            .field("redis_url", &redis)
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            .finish()
    }
}

/// Default Redis URL.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";

impl CommonConfig {
    /// Reads the common settings, recording problems in `reader`.
    pub fn read<F: Fn(&str) -> Option<String>>(reader: &mut ConfigReader<F>) -> Self {
        let redis_url = reader.redis_url("CONVEYOR_REDIS_URL", DEFAULT_REDIS_URL);
        let log_format = reader.parse("CONVEYOR_LOG_FORMAT", crate::LogFormat::Text);
        let log_filter = reader.string("CONVEYOR_LOG", "info");
        if let Err(err) = crate::telemetry::check_filter(&log_filter) {
            reader.problem("CONVEYOR_LOG", format!("is not a valid filter: {err}"));
        }
        CommonConfig {
            redis_url,
            log_format,
            log_filter,
        }
    }
}
