//! Connections: one customer's source system, how to talk to it, and what to sync from it.
//!
//! A [`Connection`] holds no secrets and may be logged and returned by the API. Its
//! [`Credentials`] are kept apart: write-only through the API, encrypted at rest by the store,
//! and wrapped in [`Secret`] so no `Debug` or log line can print them.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ConnectionId, Entity, TenantId};

/// The API family a source system speaks; decides auth defaults, paging and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ProfileKind {
    /// SAP S/4HANA OData v2 services (`d.results`, `d.__next`, `/Date(ms)/`).
    #[serde(rename = "odata_v2")]
    ODataV2,
    /// OData v4 services: SAP v4, Dynamics 365 (`value`, `@odata.nextLink`).
    #[serde(rename = "odata_v4")]
    ODataV4,
    /// IBM Maximo OSLC/JSON API (`member`, `responseInfo.nextPage`).
    #[serde(rename = "oslc")]
    Oslc,
    /// Oracle Fusion Cloud REST (`items`, `hasMore`, `limit`/`offset`).
    #[serde(rename = "offset_hasmore")]
    OffsetHasMore,
}

impl ProfileKind {
    /// Every profile.
    pub const ALL: &'static [ProfileKind] = &[
        ProfileKind::ODataV2,
        ProfileKind::ODataV4,
        ProfileKind::Oslc,
        ProfileKind::OffsetHasMore,
    ];

    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProfileKind::ODataV2 => "odata_v2",
            ProfileKind::ODataV4 => "odata_v4",
            ProfileKind::Oslc => "oslc",
            ProfileKind::OffsetHasMore => "offset_hasmore",
        }
    }
}

impl fmt::Display for ProfileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret string: its `Debug` and `Display` never show the value.
///
/// It serializes as the plain value, because the store must encrypt it; API response types never
/// contain one.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must send it (an HTTP header, a cipher).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"***\")")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

/// How to authenticate to a source system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Credentials {
    /// No authentication (test systems only).
    None,
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// An API key sent in a header (Maximo: `apikey`).
    ApiKey {
        /// Header name; defaults to `apikey`.
        #[serde(default = "default_api_key_header")]
        header: String,
        /// The key.
        key: Secret,
    },
    /// A static bearer token.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// OAuth2 client credentials: a token is fetched, cached until it expires, and refreshed once
    /// on a 401.
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials {
        /// The token endpoint.
        token_url: String,
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: Secret,
        /// Requested scope, if the server needs one.
        #[serde(default)]
        scope: Option<String>,
    },
}

fn default_api_key_header() -> String {
    "apikey".to_owned()
}

impl Credentials {
    /// The `type` tag, safe to show (no secret).
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::None => "none",
            Credentials::Basic { .. } => "basic",
            Credentials::ApiKey { .. } => "api_key",
            Credentials::Bearer { .. } => "bearer",
            Credentials::OAuth2ClientCredentials { .. } => "oauth2_client_credentials",
        }
    }
}

/// Default interval between scheduled syncs of an entity: one hour.
pub const DEFAULT_SYNC_INTERVAL_SECS: u64 = 3_600;
/// Shortest allowed schedule interval: 15 minutes.
pub const MIN_SYNC_INTERVAL_SECS: u64 = 15 * 60;
/// Longest allowed schedule interval: 24 hours.
pub const MAX_SYNC_INTERVAL_SECS: u64 = 24 * 3_600;
/// Default historical period of a full sync: 90 days.
pub const DEFAULT_HISTORICAL_DAYS: u32 = 90;
/// Default overlap subtracted from an incremental cursor: 2 minutes.
pub const DEFAULT_OVERLAP_SECS: u64 = 120;

/// One entity synced from a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityConfig {
    /// Which entity.
    pub entity: Entity,
    /// Path of the entity's resource, relative to the connection's base URL
    /// (e.g. `/sap/opu/odata/sap/API_PURCHASEORDER_PROCESS_SRV/A_PurchaseOrder`). Defaults to the
    /// profile's usual path for the entity when omitted.
    #[serde(default)]
    pub path: Option<String>,
    /// Seconds between scheduled syncs. Defaults to 1 hour; 15 minutes to 24 hours.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Whether scheduled syncs run. Defaults to true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Source field names that differ from the profile's default mapping, keyed by unified field
    /// name (e.g. `{"external_key": "PurchaseOrderID"}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub field_overrides: BTreeMap<String, String>,
}

fn default_interval() -> u64 {
    DEFAULT_SYNC_INTERVAL_SECS
}

fn default_true() -> bool {
    true
}

/// Settings of how to read pages from the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// Records per page asked of the source. Defaults to the profile's usual size.
    #[serde(default)]
    pub page_size: Option<u32>,
    /// The source server's UTC offset, such as `-04:00`, for profiles whose timestamps and
    /// filters carry one (Maximo). Defaults to `+00:00`.
    #[serde(default)]
    pub utc_offset: Option<String>,
    /// Per-request timeout in seconds. Defaults to 30.
    #[serde(default)]
    pub request_timeout_secs: Option<u64>,
}

#[allow(
    clippy::derivable_impls,
    reason = "spelled out so the defaults are visible here"
)]
impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            page_size: None,
            utc_offset: None,
            request_timeout_secs: None,
        }
    }
}

/// A customer's source system, without its credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// Its id.
    pub id: ConnectionId,
    /// The tenant that owns it.
    pub tenant_id: TenantId,
    /// A human name ("ACME plant 3 SAP").
    pub name: String,
    /// The API family it speaks.
    pub profile: ProfileKind,
    /// Base URL of the source API (scheme and host, maybe a path prefix).
    pub base_url: String,
    /// How to read pages.
    #[serde(default)]
    pub settings: SourceSettings,
    /// The entities to sync and their schedules.
    pub entities: Vec<EntityConfig>,
    /// How far back a full sync reaches, in days. Defaults to 90.
    #[serde(default = "default_historical_days")]
    pub historical_days: u32,
    /// Overlap subtracted from the incremental cursor, in seconds. Defaults to 120.
    #[serde(default = "default_overlap")]
    pub overlap_secs: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
    /// Bumped on every change; lets writers detect a concurrent update.
    #[serde(default)]
    pub version: u64,
}

fn default_historical_days() -> u32 {
    DEFAULT_HISTORICAL_DAYS
}

fn default_overlap() -> u64 {
    DEFAULT_OVERLAP_SECS
}

impl Connection {
    /// The configuration of `entity`, if the connection syncs it.
    pub fn entity(&self, entity: Entity) -> Option<&EntityConfig> {
        self.entities.iter().find(|e| e.entity == entity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_or_display() {
        let creds = Credentials::Basic {
            username: "svc".into(),
            password: "hunter2".into(),
        };
        let debug = format!("{creds:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("svc"));
        assert_eq!(Secret::new("x").to_string(), "***");
    }

    #[test]
    fn credentials_round_trip_with_type_tags() {
        let all = [
            Credentials::None,
            Credentials::Basic {
                username: "u".into(),
                password: "p".into(),
            },
            Credentials::ApiKey {
                header: "apikey".into(),
                key: "k".into(),
            },
            Credentials::Bearer { token: "t".into() },
            Credentials::OAuth2ClientCredentials {
                token_url: "http://127.0.0.1:1/oauth/token".into(),
                client_id: "c".into(),
                client_secret: "s".into(),
                scope: Some("read".into()),
            },
        ];
        for creds in all {
            let json = serde_json::to_value(&creds).unwrap();
            assert_eq!(json["type"], creds.kind());
            assert_eq!(serde_json::from_value::<Credentials>(json).unwrap(), creds);
        }
        let key: Credentials = serde_json::from_str(r#"{"type":"api_key","key":"k"}"#).unwrap();
        assert_eq!(
            key,
            Credentials::ApiKey {
                header: "apikey".into(),
                key: "k".into()
            }
        );
        assert!(serde_json::from_str::<Credentials>(r#"{"type":"basic","username":"u"}"#).is_err());
        assert!(serde_json::from_str::<Credentials>(r#"{"type":"kerberos"}"#).is_err());
    }

    #[test]
    fn connection_round_trips_and_fills_defaults() {
        let json = serde_json::json!({
            "id": ConnectionId::new(),
            "tenant_id": TenantId::new(),
            "name": "plant 3",
            "profile": "oslc",
            "base_url": "http://127.0.0.1:9000",
            "entities": [{"entity": "work_orders"}],
            "created_at": "2026-11-23T08:00:00Z",
            "updated_at": "2026-11-23T08:00:00Z",
        });
        let conn: Connection = serde_json::from_value(json).unwrap();
        assert_eq!(conn.profile, ProfileKind::Oslc);
        assert_eq!(conn.historical_days, 90);
        assert_eq!(conn.overlap_secs, 120);
        let wo = conn.entity(Entity::WorkOrders).unwrap();
        assert_eq!(wo.interval_secs, 3_600);
        assert!(wo.enabled);
        assert!(conn.entity(Entity::Assets).is_none());
        let back: Connection =
            serde_json::from_value(serde_json::to_value(&conn).unwrap()).unwrap();
        assert_eq!(back, conn);
    }

    #[test]
    fn profile_kinds_have_fixed_spellings() {
        for p in ProfileKind::ALL {
            let json = serde_json::to_string(p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(&serde_json::from_str::<ProfileKind>(&json).unwrap(), p);
        }
    }
}
