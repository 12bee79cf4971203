//! Configuration of the API process, read once from `CONVEYOR_*` variables.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `CONVEYOR_REDIS_URL`, `CONVEYOR_LOG_FORMAT`, `CONVEYOR_LOG` | see `CommonConfig` | |
//! | `CONVEYOR_API_LISTEN` | address to bind | `127.0.0.1:8080` |
//! | `CONVEYOR_ENCRYPTION_KEYS` | **required**: credential keys `id:base64,...`, the active key first (the same list as the workers') | — |
//! | `CONVEYOR_API_RATE_LIMIT` | requests per minute per API key, shared by every replica, 1–10,000,000 | 1200 |
//! | `CONVEYOR_API_RATE_BURST` | requests one key may make at once after a quiet period, 1–1,000,000 | 100 |
//! | `CONVEYOR_WEBHOOKS_ALLOW_PRIVATE` | accept webhook URLs on private, loopback and link-local addresses (demos and tests only) | false |
//! | `CONVEYOR_API_KEY_CACHE` | how long a replica trusts an authenticated key before asking Redis again (`0s` turns the cache off) | 5s |

use std::net::SocketAddr;
use std::time::Duration;

use conveyor_runtime::config::CommonConfig;
use conveyor_runtime::{ConfigError, ConfigReader};
use conveyor_store::{EncryptionKey, RateLimitPolicy};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default of `CONVEYOR_API_RATE_LIMIT`.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 1_200;
/// Default of `CONVEYOR_API_RATE_BURST`.
pub const DEFAULT_RATE_BURST: u32 = 100;
/// Default of `CONVEYOR_API_KEY_CACHE`.
pub const DEFAULT_KEY_CACHE: Duration = Duration::from_secs(5);

/// The API's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Redis and logging.
    pub common: CommonConfig,
    /// `CONVEYOR_API_LISTEN`: the address to bind. Defaults to `127.0.0.1:8080`; use
    /// `0.0.0.0:8080` in a container.
    pub listen: SocketAddr,
    /// `CONVEYOR_ENCRYPTION_KEYS` (required): the keys credentials are encrypted with, active
    /// first, in [`EncryptionKey::parse_list`]'s form. `Debug` shows only key ids.
    pub encryption_keys: Vec<EncryptionKey>,
    /// `CONVEYOR_API_RATE_LIMIT` and `CONVEYOR_API_RATE_BURST`: each API key's budget, shared by
    /// every replica. Defaults to 1200 a minute with bursts of 100.
    pub rate_limit: RateLimitPolicy,
    /// `CONVEYOR_API_KEY_CACHE`: how long a replica reuses an authenticated key without asking
    /// Redis. Defaults to 5 seconds; `0s` asks Redis on every request. A key revoked through
    /// another replica keeps working here for at most this long.
    pub key_cache: Duration,
    /// `CONVEYOR_WEBHOOKS_ALLOW_PRIVATE`: accept webhook URLs whose host is a private, loopback
    /// or link-local address. Defaults to false; demos and tests set it (workers read the same
    /// variable for deliveries).
    pub webhooks_allow_private: bool,
}

impl Config {
    /// Reads the configuration through `lookup`, reporting every bad variable at once.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut reader = ConfigReader::new(lookup);
        let common = CommonConfig::read(&mut reader);
        let default_listen: SocketAddr =
            DEFAULT_LISTEN.parse().expect("the default address parses");
        let listen = reader.parse("CONVEYOR_API_LISTEN", default_listen);
        let encryption_keys = match reader.required("CONVEYOR_ENCRYPTION_KEYS") {
            // The message never contains key material: parse_list names ids and shapes only.
            Some(text) => EncryptionKey::parse_list(&text).unwrap_or_else(|err| {
                reader.problem("CONVEYOR_ENCRYPTION_KEYS", err.to_string());
                Vec::new()
            }),
            None => Vec::new(),
        };
        let per_minute = reader.ranged(
            "CONVEYOR_API_RATE_LIMIT",
            DEFAULT_RATE_LIMIT_PER_MINUTE,
            1,
            10_000_000,
        );
        let burst = reader.ranged("CONVEYOR_API_RATE_BURST", DEFAULT_RATE_BURST, 1, 1_000_000);
        let key_cache = reader.duration("CONVEYOR_API_KEY_CACHE", DEFAULT_KEY_CACHE);
        let webhooks_allow_private = reader.flag("CONVEYOR_WEBHOOKS_ALLOW_PRIVATE", false);
        reader.finish()?;
        Ok(Config {
            common,
            listen,
            encryption_keys,
            rate_limit: RateLimitPolicy { per_minute, burst },
            key_cache,
            webhooks_allow_private,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const KEYS: &str = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    #[test]
    fn reads_defaults_and_reports_all_problems() {
        let config =
            Config::from_lookup(|key| (key == "CONVEYOR_ENCRYPTION_KEYS").then(|| KEYS.into()))
                .unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.rate_limit.per_minute, DEFAULT_RATE_LIMIT_PER_MINUTE);
        assert_eq!(config.rate_limit.burst, DEFAULT_RATE_BURST);
        assert_eq!(config.key_cache, DEFAULT_KEY_CACHE);
        assert_eq!(config.encryption_keys[0].id(), "k1");

        let env: HashMap<&str, &str> = [
            ("CONVEYOR_API_LISTEN", "localhost"),
            ("CONVEYOR_REDIS_URL", "mysql://x"),
            ("CONVEYOR_LOG_FORMAT", "xml"),
            ("CONVEYOR_API_RATE_LIMIT", "0"),
            ("CONVEYOR_API_RATE_BURST", "many"),
        ]
        .into();
        let err = Config::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap_err();
        // The five above, plus the missing encryption keys.
        assert_eq!(err.problems.len(), 6, "{err}");
        assert!(err.to_string().contains("CONVEYOR_ENCRYPTION_KEYS"));
    }

    #[test]
    fn bad_keys_are_reported_without_their_material() {
        let secret = "c2hvcnQ=";
        let err = Config::from_lookup(|key| {
            (key == "CONVEYOR_ENCRYPTION_KEYS").then(|| format!("k1:{secret}"))
        })
        .unwrap_err();
        assert_eq!(err.problems[0].key, "CONVEYOR_ENCRYPTION_KEYS");
        assert!(!err.to_string().contains(secret), "{err}");
    }
}
