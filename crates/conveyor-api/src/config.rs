//! Configuration of the API process, read once from `CONVEYOR_*` variables.

use std::net::SocketAddr;

use conveyor_runtime::config::CommonConfig;
use conveyor_runtime::{ConfigError, ConfigReader};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The API's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Redis and logging.
    pub common: CommonConfig,
    /// `CONVEYOR_API_LISTEN`: the address to bind. Defaults to `127.0.0.1:8080`; use
    /// `0.0.0.0:8080` in a container.
    pub listen: SocketAddr,
}

impl Config {
    /// Reads the configuration through `lookup`, reporting every bad variable at once.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut reader = ConfigReader::new(lookup);
        let common = CommonConfig::read(&mut reader);
        let default_listen: SocketAddr =
            DEFAULT_LISTEN.parse().expect("the default address parses");
        let listen = reader.parse("CONVEYOR_API_LISTEN", default_listen);
        reader.finish()?;
        Ok(Config { common, listen })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn reads_defaults_and_reports_all_problems() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);

        let env: HashMap<&str, &str> = [
            ("CONVEYOR_API_LISTEN", "localhost"),
            ("CONVEYOR_REDIS_URL", "mysql://x"),
            ("CONVEYOR_LOG_FORMAT", "xml"),
        ]
        .into();
        let err = Config::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
    }
}
