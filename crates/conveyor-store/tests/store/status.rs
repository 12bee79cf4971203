//! Connection status transitions and the events they emit.

use std::collections::HashSet;

use conveyor_core::{ConnectionId, ConnectionStatus, Entity, EventType};
use conveyor_store::{StatusReason, StoreConfig};

use crate::{harness, harness_with, key};

fn unreachable() -> StatusReason {
    StatusReason::new("SOURCE_UNREACHABLE", "connection refused")
}

fn ok() -> StatusReason {
    StatusReason::new("SYNC_SUCCEEDED", "sync completed")
}

#[tokio::test]
async fn transitions_update_health_and_emit_the_matching_events() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let fresh = h.store.get_status(&conn).await.unwrap();
    assert_eq!(fresh.status, ConnectionStatus::Unknown);
    assert_eq!(fresh.since, None);

    // unknown -> online: a change, but a first success is not news.
    let first = h
        .store
        .transition(&conn, ConnectionStatus::Online, &ok())
        .await
        .unwrap();
    assert!(first.changed);
    assert_eq!(first.from, ConnectionStatus::Unknown);
    assert!(first.event.is_none());

    let offline = h
        .store
        .transition(&conn, ConnectionStatus::Offline, &unreachable())
        .await
        .unwrap();
    let event = offline.event.unwrap();
    assert_eq!(event.event_type, EventType::ConnectionStatusChanged);
    assert_eq!(event.sequence, 1);
    assert_eq!(event.data["from"], "online");
    assert_eq!(event.data["to"], "offline");
    assert_eq!(event.data["reason"]["code"], "SOURCE_UNREACHABLE");

    // Still offline: counted, not recorded, not emitted.
    let again = h
        .store
        .transition(&conn, ConnectionStatus::Offline, &unreachable())
        .await
        .unwrap();
    assert!(!again.changed);
    assert!(again.event.is_none());
    let status = h.store.get_status(&conn).await.unwrap();
    assert_eq!(status.status, ConnectionStatus::Offline);
    assert_eq!(status.consecutive_failures, 2);
    assert_eq!(
        status.last_error.as_ref().unwrap().code,
        "SOURCE_UNREACHABLE"
    );
    assert!(status.last_success_at.is_some());

    let auth = h
        .store
        .transition(
            &conn,
            ConnectionStatus::AuthRequired,
            &StatusReason::new("AUTH_REJECTED", "401 from source"),
        )
        .await
        .unwrap();
    let auth_event = auth.event.unwrap();
    assert_eq!(auth_event.event_type, EventType::ConnectionAuthRequired);
    assert_eq!(auth_event.sequence, 2);

    let back = h
        .store
        .transition(&conn, ConnectionStatus::Online, &ok())
        .await
        .unwrap();
    assert_eq!(back.event.unwrap().sequence, 3);
    let status = h.store.get_status(&conn).await.unwrap();
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.status, ConnectionStatus::Online);

    let transitions = h.store.list_transitions(&conn, 10).await.unwrap();
    let path: Vec<_> = transitions.iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        path,
        [
            (ConnectionStatus::AuthRequired, ConnectionStatus::Online),
            (ConnectionStatus::Offline, ConnectionStatus::AuthRequired),
            (ConnectionStatus::Online, ConnectionStatus::Offline),
            (ConnectionStatus::Unknown, ConnectionStatus::Online),
        ]
    );
    assert_eq!(transitions[1].reason.code, "AUTH_REJECTED");

    // The outbox holds exactly the three emitted events, in order.
    let pending = h.store.pending_events(&conn, 100).await.unwrap();
    let sequences: Vec<_> = pending.iter().map(|e| e.event.sequence).collect();
    assert_eq!(sequences, [1, 2, 3]);
    assert_eq!(pending[1].event, auth_event);

    // Scheduler and data freshness fields.
    let at = chrono::DateTime::from_timestamp_millis(1_763_900_000_000).unwrap();
    h.store.set_next_attempt_at(&conn, Some(at)).await.unwrap();
    h.store
        .set_data_as_of(&conn, Entity::Assets, at)
        .await
        .unwrap();
    let status = h.store.get_status(&conn).await.unwrap();
    assert_eq!(status.next_attempt_at, Some(at));
    assert_eq!(status.data_as_of.get(&Entity::Assets), Some(&at));
    h.store.set_next_attempt_at(&conn, None).await.unwrap();
    assert_eq!(
        h.store.get_status(&conn).await.unwrap().next_attempt_at,
        None
    );
}

#[tokio::test]
async fn racing_workers_record_and_emit_a_change_exactly_once() {
    let h = harness().await;
    let conn = ConnectionId::new();
    h.store
        .transition(&conn, ConnectionStatus::Online, &ok())
        .await
        .unwrap();
    // Eight "workers", each with its own Redis connection, four tasks each.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = h.store_with(StoreConfig::new(key("k1", 1))).await;
        for _ in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .transition(&conn, ConnectionStatus::Offline, &unreachable())
                    .await
                    .unwrap()
            }));
        }
    }
    let outcomes = futures::future::join_all(tasks).await;
    let changed: Vec<_> = outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap())
        .filter(|outcome| outcome.changed)
        .collect();
    assert_eq!(changed.len(), 1);
    assert!(changed[0].event.is_some());

    let transitions = h.store.list_transitions(&conn, 100).await.unwrap();
    assert_eq!(transitions.len(), 2, "unknown->online, online->offline");
    let events = h.store.pending_events(&conn, 100).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].event.event_type,
        EventType::ConnectionStatusChanged
    );
    let status = h.store.get_status(&conn).await.unwrap();
    assert_eq!(status.consecutive_failures, 32);
}

#[tokio::test]
async fn transition_history_is_bounded() {
    let h = harness_with(|config| config.transition_history_len = 3).await;
    let conn = ConnectionId::new();
    for _ in 0..5 {
        for status in [ConnectionStatus::Online, ConnectionStatus::Offline] {
            h.store.transition(&conn, status, &ok()).await.unwrap();
        }
    }
    let transitions = h.store.list_transitions(&conn, 100).await.unwrap();
    assert_eq!(transitions.len(), 3);
    assert_eq!(transitions[0].to, ConnectionStatus::Offline);
    // Events are not trimmed with the history: 9 changes emitted (the first was unknown->online).
    let events = h.store.pending_events(&conn, 100).await.unwrap();
    let ids: HashSet<_> = events.iter().map(|e| e.event.id).collect();
    assert_eq!((events.len(), ids.len()), (9, 9));
}
