//! The small closed vocabularies of the domain: entities, sync modes and triggers, connection
//! status.
//!
//! Each is spelled on the wire as a fixed snake_case string constant (never derived from the Rust
//! variant name), parses with a clear error listing the accepted values, and can be extended by
//! adding a variant: none is ever renamed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string that is not one of a vocabulary's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`; expected one of: {expected}")]
pub struct UnknownVariant {
    /// What was being parsed ("entity", "sync mode", ...).
    pub kind: &'static str,
    /// The rejected input, truncated.
    pub value: String,
    /// The accepted values, comma separated.
    pub expected: String,
}

macro_rules! vocabulary {
    (
        $(#[$doc:meta])*
        $name:ident, $kind:literal {
            $( $(#[$vdoc:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vdoc])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownVariant {
                        kind: $kind,
                        value: other.chars().take(64).collect(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
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

vocabulary!(
    /// A kind of business record Conveyor keeps a copy of.
    Entity, "entity" {
        /// Purchase orders, with their lines.
        PurchaseOrders => "purchase_orders",
        /// Maintenance work orders.
        WorkOrders => "work_orders",
        /// Physical assets (equipment, locations' installed base).
        Assets => "assets",
        /// Vendors (suppliers).
        Vendors => "vendors",
    }
);

vocabulary!(
    /// How much of the source a sync reads.
    SyncMode, "sync mode" {
        /// Only records changed since the last successful sync, minus a small overlap.
        Incremental => "incremental",
        /// Every record within the connection's historical period; finds deletions.
        Full => "full",
    }
);

vocabulary!(
    /// Why a sync was started.
    SyncTrigger, "sync trigger" {
        /// By the fleet's scheduler.
        Scheduled => "scheduled",
        /// By an API call.
        Manual => "manual",
        /// By an operator retrying a dead-lettered sync.
        Retry => "retry",
    }
);

vocabulary!(
    /// Whether Conveyor can currently reach and use a connection's source system.
    ConnectionStatus, "connection status" {
        /// Never reached yet.
        Unknown => "unknown",
        /// The last attempt succeeded.
        Online => "online",
        /// The system is unreachable (refused, timed out, DNS failure).
        Offline => "offline",
        /// The system rejected the credentials; nothing is retried until they change.
        AuthRequired => "auth_required",
    }
);

#[allow(
    clippy::derivable_impls,
    reason = "variants are declared by the vocabulary! macro"
)]
impl Default for SyncMode {
    fn default() -> Self {
        SyncMode::Incremental
    }
}

#[allow(
    clippy::derivable_impls,
    reason = "variants are declared by the vocabulary! macro"
)]
impl Default for ConnectionStatus {
    fn default() -> Self {
        ConnectionStatus::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T>(values: &[T])
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + fmt::Debug + fmt::Display + FromStr,
        <T as FromStr>::Err: fmt::Debug,
    {
        for value in values {
            let json = serde_json::to_string(value).unwrap();
            assert_eq!(json, format!("\"{value}\""));
            assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), value);
            assert_eq!(&value.to_string().parse::<T>().unwrap(), value);
        }
    }

    #[test]
    fn every_vocabulary_round_trips() {
        round_trip(Entity::ALL);
        round_trip(SyncMode::ALL);
        round_trip(SyncTrigger::ALL);
        round_trip(ConnectionStatus::ALL);
    }

    #[test]
    fn wire_spellings_are_fixed() {
        let spelled: Vec<_> = Entity::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(
            spelled,
            ["purchase_orders", "work_orders", "assets", "vendors"]
        );
        assert_eq!(SyncMode::Incremental.as_str(), "incremental");
        assert_eq!(SyncMode::Full.as_str(), "full");
        let triggers: Vec<_> = SyncTrigger::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(triggers, ["scheduled", "manual", "retry"]);
        let statuses: Vec<_> = ConnectionStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(statuses, ["unknown", "online", "offline", "auth_required"]);
    }

    #[test]
    fn unknown_values_name_the_accepted_ones() {
        let err = "invoices".parse::<Entity>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown entity `invoices`; expected one of: purchase_orders, work_orders, assets, vendors"
        );
        let err = serde_json::from_str::<SyncMode>("\"partial\"").unwrap_err();
        assert!(err.to_string().contains("incremental, full"), "{err}");
    }

    #[test]
    fn defaults() {
        assert_eq!(SyncMode::default(), SyncMode::Incremental);
        assert_eq!(ConnectionStatus::default(), ConnectionStatus::Unknown);
    }
}
