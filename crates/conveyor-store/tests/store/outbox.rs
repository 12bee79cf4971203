//! The event outbox: ordered sequences, consumer-group reads, crash recovery.

use std::collections::HashSet;
use std::time::Duration;

use conveyor_core::{ConnectionId, EventType};
use conveyor_store::StoreConfig;

use crate::{harness, key};

#[tokio::test]
async fn events_are_delivered_once_acknowledged_and_recovered_after_a_crash() {
    let h = harness().await;
    let conn = ConnectionId::new();
    for i in 1..=5u64 {
        let event = h
            .store
            .append_event(&conn, EventType::SyncCompleted, serde_json::json!({"n": i}))
            .await
            .unwrap();
        assert_eq!(event.sequence, i);
        assert_eq!(event.connection_id, conn);
    }
    // Dispatcher A reads two and crashes before acknowledging.
    let taken = h.store.read_events(&conn, "dispatcher-a", 2).await.unwrap();
    assert_eq!(
        taken.iter().map(|e| e.event.sequence).collect::<Vec<_>>(),
        [1, 2]
    );
    // Dispatcher B gets only the rest as new events...
    let rest = h
        .store
        .read_events(&conn, "dispatcher-b", 10)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|e| e.event.sequence).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert_eq!(rest[0].event.data["n"], 3);
    h.store
        .ack_events(
            &conn,
            &rest.iter().map(|e| e.entry_id.clone()).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    // ...and claims A's stale ones (idle long enough: a whole minute is not needed with 0).
    let none_yet = h
        .store
        .claim_stale_events(&conn, "dispatcher-b", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert!(none_yet.is_empty(), "fresh pending entries are not stale");
    let claimed = h
        .store
        .claim_stale_events(&conn, "dispatcher-b", Duration::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(claimed, taken);
    h.store
        .ack_events(
            &conn,
            &claimed
                .iter()
                .map(|e| e.entry_id.clone())
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();

    assert!(h.store.pending_events(&conn, 10).await.unwrap().is_empty());
    assert!(
        h.store
            .read_events(&conn, "dispatcher-a", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Sequences keep counting after the outbox empties.
    let next = h
        .store
        .append_event(&conn, EventType::SyncFailed, serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(next.sequence, 6);
}

#[tokio::test]
async fn concurrent_appends_get_gapless_unique_sequences_in_stream_order() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = h.store_with(StoreConfig::new(key("k1", 1))).await;
        for _ in 0..25 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .append_event(&conn, EventType::SystemError, serde_json::json!({}))
                    .await
                    .unwrap()
                    .sequence
            }));
        }
    }
    let mut sequences: Vec<u64> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=100).collect::<Vec<_>>());
    // The stream order is the sequence order.
    let stored = h.store.pending_events(&conn, 1000).await.unwrap();
    let in_stream: Vec<_> = stored.iter().map(|e| e.event.sequence).collect();
    assert_eq!(in_stream, (1..=100).collect::<Vec<_>>());
    let ids: HashSet<_> = stored.iter().map(|e| e.event.id).collect();
    assert_eq!(ids.len(), 100);
}

#[tokio::test]
async fn the_ready_set_keeps_connections_with_new_events() {
    let h = harness().await;
    let a = ConnectionId::new();
    let b = ConnectionId::new();
    h.store
        .append_event(&a, EventType::SyncCompleted, serde_json::json!({}))
        .await
        .unwrap();
    h.store
        .append_event(&b, EventType::SyncCompleted, serde_json::json!({}))
        .await
        .unwrap();
    let ready = h.store.outbox_ready_connections(10).await.unwrap();
    let ids: HashSet<_> = ready.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, HashSet::from([a, b]));

    let score_a = ready.iter().find(|(id, _)| *id == a).unwrap().1.clone();
    // An event appended after the dispatcher read the score keeps the connection ready.
    h.store
        .append_event(&a, EventType::SyncFailed, serde_json::json!({}))
        .await
        .unwrap();
    assert!(!h.store.settle_outbox(&a, &score_a).await.unwrap());
    let ready = h.store.outbox_ready_connections(10).await.unwrap();
    let score_a = ready.iter().find(|(id, _)| *id == a).unwrap().1.clone();
    assert!(h.store.settle_outbox(&a, &score_a).await.unwrap());
    let ready = h.store.outbox_ready_connections(10).await.unwrap();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].0, b);
}
