//! Sample events for test deliveries and documentation.
//!
//! An integrator setting up a receiver wants to see each event type's shape before a real sync
//! produces one, so the API can send any of these on request. Sample events carry `sequence` 0,
//! which no real event has (real sequences start at 1), so a receiver can tell them apart from
//! its connection's event stream.

use chrono::{TimeDelta, Utc};
use conveyor_core::{
    ConnectionId, ConnectionStatus, Entity, ErrorCode, Event, EventId, EventType, SyncId, SyncMode,
    SyncTrigger,
};
use serde_json::{Value, json};

/// A sample event of `event_type` for `connection_id`, with a fresh id and the current time.
pub fn sample_event(event_type: EventType, connection_id: ConnectionId) -> Event {
    Event {
        id: EventId::new(),
        event_type,
        timestamp: Utc::now(),
        connection_id,
        sequence: 0,
        data: sample_data(event_type),
    }
}

/// The `webhook.test` event sent by a test delivery.
pub fn test_event(connection_id: ConnectionId) -> Event {
    sample_event(EventType::WebhookTest, connection_id)
}

/// A realistic `data` object for `event_type`.
pub fn sample_data(event_type: EventType) -> Value {
    let finished_at = Utc::now();
    let started_at = finished_at - TimeDelta::seconds(42);
    match event_type {
        EventType::SyncCompleted => json!({
            "sync_id": SyncId::new(),
            "entity": Entity::WorkOrders,
            "mode": SyncMode::Incremental,
            "trigger": SyncTrigger::Scheduled,
            "started_at": started_at,
            "finished_at": finished_at,
            "duration_ms": 42_000,
            "attempts": 1,
            "pages": 3,
            "records_fetched": 250,
            "records_written": 37,
            "records_unchanged": 213,
            "records_deleted": 0,
        }),
        EventType::SyncFailed => json!({
            "sync_id": SyncId::new(),
            "entity": Entity::PurchaseOrders,
            "mode": SyncMode::Full,
            "trigger": SyncTrigger::Manual,
            "started_at": started_at,
            "finished_at": finished_at,
            "attempts": 10,
            "records_written": 120,
            "error": {
                "code": ErrorCode::ConnectionUnreachable,
                "message": "connecting to https://erp.example.com timed out after 30 s",
            },
        }),
        EventType::ConnectionAuthRequired => json!({
            "from": ConnectionStatus::Online,
            "to": ConnectionStatus::AuthRequired,
            "error": {
                "message": "the source system answered 401 Unauthorized; update the connection's credentials",
            },
        }),
        EventType::ConnectionStatusChanged => json!({
            "from": ConnectionStatus::Online,
            "to": ConnectionStatus::Offline,
            "last_success_at": started_at - TimeDelta::minutes(15),
            "next_attempt_at": finished_at + TimeDelta::minutes(1),
            "error": {
                "message": "connection refused by erp.example.com:443",
            },
        }),
        EventType::SystemError => json!({
            "error": {
                "code": ErrorCode::InternalError,
                "message": "records of this connection could not be stored; the sync will be retried",
            },
        }),
        EventType::WebhookTest => json!({
            "message": "This is a test delivery from Conveyor. If you can read it, your endpoint works.",
        }),
        // `EventType` is non-exhaustive: a type added later still gets a (minimal) sample.
        _ => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_a_sample_that_round_trips() {
        let connection_id = ConnectionId::new();
        for event_type in EventType::ALL {
            let event = sample_event(*event_type, connection_id);
            assert_eq!(event.event_type, *event_type);
            assert_eq!(event.sequence, 0);
            let data = event.data.as_object().expect("data is an object");
            assert!(!data.is_empty(), "{event_type} has an empty sample");
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["type"], event_type.as_str());
            assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
        }
        let completed = sample_data(EventType::SyncCompleted);
        assert_eq!(completed["entity"], "work_orders");
        assert!(completed["sync_id"].as_str().unwrap().starts_with("sync_"));
        let failed = sample_data(EventType::SyncFailed);
        assert_eq!(failed["error"]["code"], "CONNECTION_UNREACHABLE");
        assert_eq!(
            sample_data(EventType::ConnectionStatusChanged)["to"],
            "offline"
        );
        assert_eq!(test_event(connection_id).event_type, EventType::WebhookTest);
    }
}
