//! Webhook events: what integrators are told happened.
//!
//! Events are appended to a connection's outbox by the sync engine and delivered by the webhook
//! dispatcher. `sequence` increases per connection so receivers can detect gaps and reorder.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::UnknownVariant;
use crate::{ConnectionId, EventId};

/// The type of an event, as named in the product brief.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventType {
    /// A sync finished successfully.
    SyncCompleted,
    /// A sync failed for good (dead-lettered or aborted).
    SyncFailed,
    /// The source system rejected the connection's credentials.
    ConnectionAuthRequired,
    /// The connection went online or offline.
    ConnectionStatusChanged,
    /// Something went wrong on Conveyor's side that an integrator should know about.
    SystemError,
    /// A test delivery asked for through the API.
    WebhookTest,
}

impl EventType {
    /// Every type, in declaration order.
    pub const ALL: &'static [EventType] = &[
        EventType::SyncCompleted,
        EventType::SyncFailed,
        EventType::ConnectionAuthRequired,
        EventType::ConnectionStatusChanged,
        EventType::SystemError,
        EventType::WebhookTest,
    ];

    /// The types an endpoint may subscribe to (every type but `webhook.test`, which is only sent
    /// on request).
    pub const SUBSCRIBABLE: &'static [EventType] = &[
        EventType::SyncCompleted,
        EventType::SyncFailed,
        EventType::ConnectionAuthRequired,
        EventType::ConnectionStatusChanged,
        EventType::SystemError,
    ];

    /// The wire spelling, such as `sync.completed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::SyncCompleted => "sync.completed",
            EventType::SyncFailed => "sync.failed",
            EventType::ConnectionAuthRequired => "connection.auth_required",
            EventType::ConnectionStatusChanged => "connection.status_changed",
            EventType::SystemError => "system.error",
            EventType::WebhookTest => "webhook.test",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownVariant {
                kind: "event type",
                value: s.chars().take(64).collect(),
                expected: EventType::ALL
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One event, exactly as it is delivered in a webhook body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id; the `webhook-id` of every delivery attempt.
    pub id: EventId,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// The connection it concerns.
    pub connection_id: ConnectionId,
    /// Position in the connection's event stream, starting at 1, without gaps at the source.
    pub sequence: u64,
    /// The event's details (sync id, entity, counts, error, old and new status...).
    #[serde(default)]
    pub data: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_have_the_product_names() {
        let names: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "sync.completed",
                "sync.failed",
                "connection.auth_required",
                "connection.status_changed",
                "system.error",
                "webhook.test"
            ]
        );
        for t in EventType::ALL {
            assert_eq!(&t.as_str().parse::<EventType>().unwrap(), t);
        }
        assert!(!EventType::SUBSCRIBABLE.contains(&EventType::WebhookTest));
        assert!("sync.done".parse::<EventType>().is_err());
    }

    #[test]
    fn event_round_trips_with_the_documented_shape() {
        let event = Event {
            id: EventId::new(),
            event_type: EventType::ConnectionStatusChanged,
            timestamp: "2026-11-23T08:00:00Z".parse().unwrap(),
            connection_id: ConnectionId::new(),
            sequence: 7,
            data: serde_json::json!({"from": "online", "to": "offline"}),
        };
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["type"], "connection.status_changed");
        assert_eq!(value["sequence"], 7);
        assert_eq!(value["timestamp"], "2026-11-23T08:00:00Z");
        assert_eq!(value["id"], event.id.to_string());
        assert_eq!(serde_json::from_value::<Event>(value).unwrap(), event);
    }
}
