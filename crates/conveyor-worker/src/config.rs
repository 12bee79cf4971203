//! Configuration of the worker process, read once from `CONVEYOR_*` variables.

use conveyor_runtime::config::CommonConfig;
use conveyor_runtime::{ConfigError, ConfigReader};

/// The worker's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Redis and logging.
    pub common: CommonConfig,
    /// `CONVEYOR_WORKER_CONCURRENCY`: jobs run at once by this process. Defaults to 8; 1 to 1024.
    pub concurrency: usize,
}

impl Config {
    /// Reads the configuration through `lookup`, reporting every bad variable at once.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut reader = ConfigReader::new(lookup);
        let common = CommonConfig::read(&mut reader);
        let concurrency = reader.ranged("CONVEYOR_WORKER_CONCURRENCY", 8usize, 1, 1024);
        reader.finish()?;
        Ok(Config {
            common,
            concurrency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_is_bounded() {
        assert_eq!(Config::from_lookup(|_| None).unwrap().concurrency, 8);
        let err = Config::from_lookup(|k| (k == "CONVEYOR_WORKER_CONCURRENCY").then(|| "0".into()))
            .unwrap_err();
        assert_eq!(err.problems[0].key, "CONVEYOR_WORKER_CONCURRENCY");
    }
}
