//! Identifiers: a short readable prefix on a ULID, such as `conn_01J9Z8K3QW6XH5V7M2N4P8R0ST`.
//!
//! The prefix tells a human (and a log search) what kind of thing an id names; the ULID makes ids
//! unique without coordination and sortable by creation time, which keeps "newest first" lists
//! cheap. Parsing checks both the prefix and the ULID, so an id of the wrong kind is rejected at
//! the edge (a `sync_` id given where a `conn_` id is expected is a 400, not a lookup miss).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

/// Why a string is not a valid id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string does not start with the kind's prefix.
    #[error("expected an id starting with `{expected}`")]
    WrongPrefix {
        /// The prefix the kind requires, underscore included.
        expected: &'static str,
    },
    /// The part after the prefix is not a 26-character ULID.
    #[error("`{value}` is not a valid id: the part after `{prefix}` must be a 26-character ULID")]
    BadUlid {
        /// The prefix that matched.
        prefix: &'static str,
        /// The offending input, truncated to keep error messages short.
        value: String,
    },
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            /// The prefix every id of this kind starts with, underscore included.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id, unique and ordered by creation time.
            pub fn new() -> Self {
                Self(Ulid::new())
            }

            /// Wraps an existing ULID (for ids derived from stored data).
            pub const fn from_ulid(ulid: Ulid) -> Self {
                Self(ulid)
            }

            /// The ULID under the prefix.
            pub const fn ulid(&self) -> Ulid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", Self::PREFIX, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let rest = s
                    .strip_prefix(Self::PREFIX)
                    .ok_or(IdError::WrongPrefix { expected: Self::PREFIX })?;
                // ULIDs are case-insensitive Crockford base32; we always print upper case.
                Ulid::from_string(rest).map(Self).map_err(|_| IdError::BadUlid {
                    prefix: Self::PREFIX,
                    value: s.chars().take(64).collect(),
                })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// A connection: one customer's source system.
    ConnectionId,
    "conn_"
);
prefixed_id!(
    /// One sync run of one entity of one connection.
    SyncId,
    "sync_"
);
prefixed_id!(
    /// A job in a Conveyor queue.
    JobId,
    "job_"
);
prefixed_id!(
    /// A webhook event; also the `webhook-id` header of every delivery attempt of it.
    EventId,
    "evt_"
);
prefixed_id!(
    /// One HTTP request to the API, echoed in `X-Request-Id` and in error bodies.
    RequestId,
    "req_"
);
prefixed_id!(
    /// A tenant: the owner of connections and API keys.
    TenantId,
    "ten_"
);
prefixed_id!(
    /// An API key (the id, never the secret).
    ApiKeyId,
    "key_"
);
prefixed_id!(
    /// A webhook endpoint of a connection.
    EndpointId,
    "whe_"
);
prefixed_id!(
    /// One delivery of one event to one endpoint (all its attempts).
    DeliveryId,
    "dlv_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_with_prefix_and_parse_back() {
        let id = ConnectionId::new();
        let text = id.to_string();
        assert!(text.starts_with("conn_"));
        assert_eq!(text.len(), "conn_".len() + 26);
        assert_eq!(text.parse::<ConnectionId>().unwrap(), id);
    }

    #[test]
    fn ids_round_trip_through_json() {
        let id = SyncId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<SyncId>(&json).unwrap(), id);
    }

    #[test]
    fn wrong_prefix_is_rejected() {
        let sync = SyncId::new().to_string();
        assert_eq!(
            sync.parse::<ConnectionId>(),
            Err(IdError::WrongPrefix { expected: "conn_" })
        );
        let err = serde_json::from_str::<ConnectionId>(&format!("\"{sync}\"")).unwrap_err();
        assert!(err.to_string().contains("conn_"), "{err}");
    }

    #[test]
    fn bad_ulid_is_rejected() {
        for bad in [
            "job_",
            "job_123",
            "job_01J9Z8K3QW6XH5V7M2N4P8R0S!",
            "job_01J9Z8K3QW6XH5V7M2N4P8R0STX",
        ] {
            assert!(
                matches!(bad.parse::<JobId>(), Err(IdError::BadUlid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn lower_case_ulids_are_accepted_and_normalised() {
        let id = EventId::new();
        let lower = format!("evt_{}", id.ulid().to_string().to_lowercase());
        assert_eq!(
            lower.parse::<EventId>().unwrap().to_string(),
            id.to_string()
        );
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let a = RequestId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = RequestId::new();
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_text_never_panics(s in ".{0,64}") {
            let _ = s.parse::<DeliveryId>();
            let _ = s.parse::<TenantId>();
        }
    }
}
