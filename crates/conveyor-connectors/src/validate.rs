//! Checking a connection's configuration without calling its system.
//!
//! The API validates a connection before storing it and must never reach a customer's system
//! itself, so everything that can be known from the configuration alone is checked here: the URL,
//! credential kind against the profile, page size limits, the UTC offset, entity paths and field
//! overrides. [`crate::Connector::new`] runs the same checks.

use conveyor_core::{Connection, Credentials, ProfileKind};
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::mapping::{default_fields, override_problems};
use crate::profile::{accepted_credentials, limits};
use crate::timestamp::parse_utc_offset;

/// One problem with a connection's configuration, named by its field path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldProblem {
    /// Where: `base_url`, `settings.page_size`, `entities[1].field_overrides`, `credentials`.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl FieldProblem {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldProblem {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The longest request timeout accepted, in seconds.
pub const MAX_REQUEST_TIMEOUT_SECS: u64 = 300;

/// Checks a connection and its credentials without any network call; reports every problem.
pub fn validate(
    connection: &Connection,
    credentials: &Credentials,
) -> Result<(), Vec<FieldProblem>> {
    let mut problems = Vec::new();
    check_url("base_url", &connection.base_url, &mut problems);

    let profile = connection.profile;
    // `ProfileKind` is non-exhaustive: a profile added to the core before this crate learns it
    // must be refused here, not read with another profile's rules.
    if !matches!(
        profile,
        ProfileKind::ODataV2
            | ProfileKind::ODataV4
            | ProfileKind::Oslc
            | ProfileKind::OffsetHasMore
    ) {
        problems.push(FieldProblem::new(
            "profile",
            format!("profile {profile} is not supported by this connector version"),
        ));
        return Err(problems);
    }
    let accepted = accepted_credentials(profile);
    if !accepted.contains(&credentials.kind()) {
        problems.push(FieldProblem::new(
            "credentials",
            format!(
                "{profile} systems do not accept {} credentials; use one of: {}",
                credentials.kind(),
                accepted.join(", ")
            ),
        ));
    }
    match credentials {
        Credentials::Basic { username, .. } if username.is_empty() || username.contains(':') => {
            problems.push(FieldProblem::new(
                "credentials.username",
                "must be non-empty and must not contain `:`",
            ));
        }
        Credentials::ApiKey { header, key } => {
            if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                problems.push(FieldProblem::new(
                    "credentials.header",
                    format!("`{header}` is not a valid header name"),
                ));
            }
            if key.expose().is_empty() {
                problems.push(FieldProblem::new("credentials.key", "must not be empty"));
            }
        }
        Credentials::OAuth2ClientCredentials {
            token_url,
            client_id,
            ..
        } => {
            check_url("credentials.token_url", token_url, &mut problems);
            if client_id.is_empty() {
                problems.push(FieldProblem::new(
                    "credentials.client_id",
                    "must not be empty",
                ));
            }
        }
        _ => {}
    }

    let settings = &connection.settings;
    let limit = limits(profile);
    if let Some(page_size) = settings.page_size
        && (page_size == 0 || page_size > limit.max_page_size)
    {
        problems.push(FieldProblem::new(
            "settings.page_size",
            format!(
                "must be between 1 and {} for {profile} systems",
                limit.max_page_size
            ),
        ));
    }
    if let Some(offset) = &settings.utc_offset
        && parse_utc_offset(offset).is_none()
    {
        problems.push(FieldProblem::new(
            "settings.utc_offset",
            format!("`{offset}` is not an offset like -04:00, +05:30 or Z"),
        ));
    }
    if let Some(timeout) = settings.request_timeout_secs
        && (timeout == 0 || timeout > MAX_REQUEST_TIMEOUT_SECS)
    {
        problems.push(FieldProblem::new(
            "settings.request_timeout_secs",
            format!("must be between 1 and {MAX_REQUEST_TIMEOUT_SECS}"),
        ));
    }

    for (index, config) in connection.entities.iter().enumerate() {
        let field = format!("entities[{index}]");
        if default_fields(profile, config.entity).is_empty() {
            problems.push(FieldProblem::new(
                format!("{field}.entity"),
                format!("{profile} systems have no {} mapping", config.entity),
            ));
        }
        if let Some(path) = &config.path
            && (!path.starts_with('/') || path.contains(['?', '#']) || path.contains("//"))
        {
            problems.push(FieldProblem::new(
                format!("{field}.path"),
                "must start with `/` and have no query or fragment",
            ));
        }
        for message in override_problems(config.entity, &config.field_overrides) {
            problems.push(FieldProblem::new(
                format!("{field}.field_overrides"),
                message,
            ));
        }
        // The change time is the subject of the filter, so it must be a plain field name.
        if let Some(updated) = config.field_overrides.get("updated_at")
            && updated.contains('/')
        {
            problems.push(FieldProblem::new(
                format!("{field}.field_overrides"),
                "updated_at must name a top-level field: sources filter on it",
            ));
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn check_url(field: &str, text: &str, problems: &mut Vec<FieldProblem>) {
    match Url::parse(text) {
        Err(error) => problems.push(FieldProblem::new(field, format!("not a URL: {error}"))),
        Ok(url) => {
            if !matches!(url.scheme(), "http" | "https") {
                problems.push(FieldProblem::new(field, "must be an http or https URL"));
            }
            if url.host_str().is_none_or(str::is_empty) {
                problems.push(FieldProblem::new(field, "must name a host"));
            }
            if !url.username().is_empty() || url.password().is_some() {
                problems.push(FieldProblem::new(
                    field,
                    "must not carry credentials; put them in the credentials",
                ));
            }
            if url.query().is_some() || url.fragment().is_some() {
                problems.push(FieldProblem::new(
                    field,
                    "must not have a query or fragment",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conveyor_core::{ConnectionId, Entity, EntityConfig, SourceSettings, TenantId};
    use std::collections::BTreeMap;

    fn connection(profile: ProfileKind) -> Connection {
        Connection {
            id: ConnectionId::new(),
            tenant_id: TenantId::new(),
            name: "plant".into(),
            profile,
            base_url: "https://erp.example.com".into(),
            settings: SourceSettings::default(),
            entities: vec![EntityConfig {
                entity: Entity::PurchaseOrders,
                path: None,
                interval_secs: 3_600,
                enabled: true,
                field_overrides: BTreeMap::new(),
            }],
            historical_days: 90,
            overlap_secs: 120,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            version: 0,
        }
    }

    fn basic() -> Credentials {
        Credentials::Basic {
            username: "svc".into(),
            password: "p".into(),
        }
    }

    fn fields(result: Result<(), Vec<FieldProblem>>) -> Vec<String> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.field)
            .collect()
    }

    #[test]
    fn a_good_connection_passes() {
        for profile in ProfileKind::ALL {
            assert_eq!(
                validate(&connection(*profile), &basic()),
                Ok(()),
                "{profile}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut conn = connection(ProfileKind::OffsetHasMore);
        conn.base_url = "ftp://user:pw@erp.example.com/x?y=1".into();
        conn.settings = SourceSettings {
            page_size: Some(501),
            utc_offset: Some("EST".into()),
            request_timeout_secs: Some(0),
        };
        conn.entities[0].path = Some("purchaseOrders?x".into());
        conn.entities[0]
            .field_overrides
            .insert("colour".into(), "x".into());
        let apikey = Credentials::ApiKey {
            header: "bad header".into(),
            key: "".into(),
        };
        assert_eq!(
            fields(validate(&conn, &apikey)),
            [
                "base_url",
                "base_url",
                "base_url",
                "credentials",
                "credentials.header",
                "credentials.key",
                "settings.page_size",
                "settings.utc_offset",
                "settings.request_timeout_secs",
                "entities[0].path",
                "entities[0].field_overrides",
            ]
        );
    }

    #[test]
    fn profile_and_credentials_must_match() {
        let oauth = Credentials::OAuth2ClientCredentials {
            token_url: "https://login.example.com/oauth2/token".into(),
            client_id: "c".into(),
            client_secret: "s".into(),
            scope: None,
        };
        assert_eq!(validate(&connection(ProfileKind::ODataV4), &oauth), Ok(()));
        assert_eq!(
            fields(validate(&connection(ProfileKind::Oslc), &oauth)),
            ["credentials"]
        );
        let mut big = connection(ProfileKind::Oslc);
        big.settings.page_size = Some(5_000);
        assert_eq!(
            validate(
                &big,
                &Credentials::ApiKey {
                    header: "apikey".into(),
                    key: "k".into()
                }
            ),
            Ok(())
        );
    }
}
