//! The simulator's configuration, read once from `CONVEYOR_SIM_*` variables by the binary or
//! built in code by tests.

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

/// Fewest records per entity.
pub const MIN_RECORDS: u64 = 10;
/// Most records per entity.
pub const MAX_RECORDS: u64 = 1_000_000;

/// How the simulator is set up.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Seed of every generated value. Defaults to 42 (`CONVEYOR_SIM_SEED`).
    pub seed: u64,
    /// Seeded records per entity, 10 to 1,000,000. Defaults to 1,000 (`CONVEYOR_SIM_RECORDS`).
    pub records_per_entity: u64,
    /// Change time of the last seeded record; earlier records are spread before it. Defaults to
    /// the start time, rounded down to the second (`CONVEYOR_SIM_SEEDED_UNTIL`, RFC 3339).
    pub seeded_until: DateTime<Utc>,
    /// Milliseconds between the change times of consecutive seeded records. Defaults to 30 days
    /// divided by the record count, at least 1 (`CONVEYOR_SIM_STEP_MS`).
    pub step_ms: Option<i64>,
    /// What the simulated systems accept.
    pub credentials: SimCredentials,
    /// Lifetime of OAuth2 tokens in seconds. Defaults to 3600 (`CONVEYOR_SIM_TOKEN_TTL_SECS`).
    pub token_ttl_secs: u64,
    /// Maximo's UTC offset, as `-04:00`. Defaults to `-04:00` (`CONVEYOR_SIM_MAXIMO_UTC_OFFSET`).
    pub maximo_utc_offset: String,
    /// The host Maximo writes into `nextPage` links, as a real Maximo behind a proxy names its
    /// internal host. Defaults to `http://maximo-internal.invalid:9080`
    /// (`CONVEYOR_SIM_MAXIMO_INTERNAL_BASE`); empty means the simulator's own address.
    pub maximo_internal_base: String,
    /// The largest page served by OData and Maximo; larger requests are cut with a next link.
    /// Defaults to 5,000 (`CONVEYOR_SIM_MAX_PAGE_SIZE`).
    pub max_page_size: u32,
    /// Background changes per second over all entities (creates, updates, deletes). Defaults to
    /// 0: none (`CONVEYOR_SIM_CHURN_PER_SECOND`).
    pub churn_per_second: f64,
}

/// Credentials the simulated systems accept.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCredentials {
    /// Basic auth user of SAP v2 and Oracle. Defaults to `conveyor` (`CONVEYOR_SIM_USERNAME`).
    pub username: String,
    /// Basic auth password. Defaults to `conveyor-sim` (`CONVEYOR_SIM_PASSWORD`).
    pub password: String,
    /// Maximo's API key. Defaults to `sim-api-key` (`CONVEYOR_SIM_API_KEY`).
    pub api_key: String,
    /// OAuth2 client id of the v4 token endpoint. Defaults to `conveyor`
    /// (`CONVEYOR_SIM_CLIENT_ID`).
    pub client_id: String,
    /// OAuth2 client secret. Defaults to `sim-client-secret` (`CONVEYOR_SIM_CLIENT_SECRET`).
    pub client_secret: String,
}

impl Default for SimCredentials {
    fn default() -> Self {
        SimCredentials {
            username: "conveyor".into(),
            password: "conveyor-sim".into(),
            api_key: "sim-api-key".into(),
            client_id: "conveyor".into(),
            client_secret: "sim-client-secret".into(),
        }
    }
}

impl fmt::Debug for SimCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimCredentials")
            .field("username", &self.username)
            .field("password", &"***")
            .field("api_key", &"***")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish()
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("seed", &self.seed)
            .field("records_per_entity", &self.records_per_entity)
            .field("seeded_until", &self.seeded_until)
            .field("step_ms", &self.step_ms)
            .field("credentials", &self.credentials)
            .field("churn_per_second", &self.churn_per_second)
            .finish_non_exhaustive()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            records_per_entity: 1_000,
            seeded_until: Utc::now().trunc_subsecs(0),
            step_ms: None,
            credentials: SimCredentials::default(),
            token_ttl_secs: 3_600,
            maximo_utc_offset: "-04:00".into(),
            maximo_internal_base: "http://maximo-internal.invalid:9080".into(),
            max_page_size: 5_000,
            churn_per_second: 0.0,
        }
    }
}

/// Every problem with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid simulator configuration: {}", problems.join("; "))]
pub struct ConfigProblems {
    /// One message per problem, naming the variable.
    pub problems: Vec<String>,
}

impl SimConfig {
    /// Reads `CONVEYOR_SIM_*` variables through `lookup`, reporting every bad one at once.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<SimConfig, ConfigProblems> {
        let mut config = SimConfig::default();
        let mut problems = Vec::new();
        fn parse<T: std::str::FromStr>(
            lookup: &impl Fn(&str) -> Option<String>,
            key: &str,
            target: &mut T,
            problems: &mut Vec<String>,
        ) {
            if let Some(text) = lookup(key) {
                match text.trim().parse() {
                    Ok(value) => *target = value,
                    Err(_) => problems.push(format!("{key}: cannot read `{text}`")),
                }
            }
        }
        parse(
            &lookup,
            "CONVEYOR_SIM_SEED",
            &mut config.seed,
            &mut problems,
        );
        parse(
            &lookup,
            "CONVEYOR_SIM_RECORDS",
            &mut config.records_per_entity,
            &mut problems,
        );
        parse(
            &lookup,
            "CONVEYOR_SIM_SEEDED_UNTIL",
            &mut config.seeded_until,
            &mut problems,
        );
        let mut step = 0i64;
        parse(&lookup, "CONVEYOR_SIM_STEP_MS", &mut step, &mut problems);
        if step != 0 {
            config.step_ms = Some(step);
        }
        parse(
            &lookup,
            "CONVEYOR_SIM_TOKEN_TTL_SECS",
            &mut config.token_ttl_secs,
            &mut problems,
        );
        parse(
            &lookup,
            "CONVEYOR_SIM_MAX_PAGE_SIZE",
            &mut config.max_page_size,
            &mut problems,
        );
        parse(
            &lookup,
            "CONVEYOR_SIM_CHURN_PER_SECOND",
            &mut config.churn_per_second,
            &mut problems,
        );
        let credentials = &mut config.credentials;
        for (key, target) in [
            ("CONVEYOR_SIM_USERNAME", &mut credentials.username),
            ("CONVEYOR_SIM_PASSWORD", &mut credentials.password),
            ("CONVEYOR_SIM_API_KEY", &mut credentials.api_key),
            ("CONVEYOR_SIM_CLIENT_ID", &mut credentials.client_id),
            ("CONVEYOR_SIM_CLIENT_SECRET", &mut credentials.client_secret),
            (
                "CONVEYOR_SIM_MAXIMO_UTC_OFFSET",
                &mut config.maximo_utc_offset,
            ),
            (
                "CONVEYOR_SIM_MAXIMO_INTERNAL_BASE",
                &mut config.maximo_internal_base,
            ),
        ] {
            if let Some(value) = lookup(key) {
                *target = value;
            }
        }
        if let Err(more) = config.check() {
            problems.extend(more.problems);
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigProblems { problems })
        }
    }

    /// Checks ranges and syntax.
    pub fn check(&self) -> Result<(), ConfigProblems> {
        let mut problems = Vec::new();
        if !(MIN_RECORDS..=MAX_RECORDS).contains(&self.records_per_entity) {
            problems.push(format!(
                "records_per_entity must be between {MIN_RECORDS} and {MAX_RECORDS}"
            ));
        }
        if self.step_ms.is_some_and(|step| step < 1) {
            problems.push("step_ms must be at least 1".into());
        }
        if self.maximo_offset_secs().is_none() {
            problems.push(format!(
                "maximo_utc_offset `{}` is not an offset like -04:00",
                self.maximo_utc_offset
            ));
        }
        if self.max_page_size == 0 {
            problems.push("max_page_size must be at least 1".into());
        }
        if !(self.churn_per_second >= 0.0 && self.churn_per_second <= 100_000.0) {
            problems.push("churn_per_second must be between 0 and 100000".into());
        }
        for (name, value) in [
            ("username", &self.credentials.username),
            ("password", &self.credentials.password),
            ("api_key", &self.credentials.api_key),
            ("client_id", &self.credentials.client_id),
            ("client_secret", &self.credentials.client_secret),
        ] {
            if value.is_empty() {
                problems.push(format!("credentials.{name} must not be empty"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigProblems { problems })
        }
    }

    /// Milliseconds between consecutive seeded change times.
    pub fn step_ms(&self) -> i64 {
        self.step_ms
            .unwrap_or_else(|| (30 * 86_400_000 / self.records_per_entity.max(1) as i64).max(1))
    }

    pub(crate) fn maximo_offset_secs(&self) -> Option<i32> {
        let text = self.maximo_utc_offset.as_str();
        if text == "Z" {
            return Some(0);
        }
        let bytes = text.as_bytes();
        if bytes.len() != 6 || bytes[3] != b':' {
            return None;
        }
        let sign = match bytes[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let hours: i32 = text.get(1..3)?.parse().ok()?;
        let minutes: i32 = text.get(4..6)?.parse().ok()?;
        (hours <= 14 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn reads_variables_and_reports_every_problem() {
        let vars = HashMap::from([
            ("CONVEYOR_SIM_SEED", "7"),
            ("CONVEYOR_SIM_RECORDS", "100000"),
            ("CONVEYOR_SIM_SEEDED_UNTIL", "2024-05-01T00:00:00Z"),
            ("CONVEYOR_SIM_API_KEY", "k"),
        ]);
        let config = SimConfig::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(config.seed, 7);
        assert_eq!(config.records_per_entity, 100_000);
        assert_eq!(config.credentials.api_key, "k");
        assert_eq!(config.step_ms(), 25_920);
        assert!(
            !format!("{config:?}").contains("conveyor-sim"),
            "password hidden"
        );

        let bad = HashMap::from([
            ("CONVEYOR_SIM_RECORDS", "5"),
            ("CONVEYOR_SIM_SEED", "x"),
            ("CONVEYOR_SIM_MAXIMO_UTC_OFFSET", "EST"),
        ]);
        let problems = SimConfig::from_lookup(|k| bad.get(k).map(|v| v.to_string()))
            .unwrap_err()
            .problems;
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
