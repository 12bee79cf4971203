//! The sync engine end to end with the worker library: full and incremental syncs, overlap
//! duplicates, deletions, and resuming from a checkpoint after a fault at page N. Real
//! redis-server, the simulator on a loopback port.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

#[path = "sync_support.rs"]
mod support;

use chrono::Utc;
use conveyor_core::{ConnectionStatus, Entity, EventType, SyncMode};
use conveyor_sim::{ChangeRequest, FaultKind, FaultSpec};
use conveyor_store::RunStatus;
use support::{Harness, InProcessWorker, Setup, between, worker_env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_incremental_then_full_finds_changes_and_deletions() {
    let harness = Harness::start(Setup {
        records: 120,
        page_size: 25,
        ..Setup::default()
    })
    .await;
    let worker = InProcessWorker::start(worker_env(&harness.redis.url(), &[]));
    let entity = Entity::PurchaseOrders;
    let connection_id = harness.connection_id();

    // Full: everything is new.
    let before = Utc::now();
    let full = harness.enqueue(entity, SyncMode::Full).await;
    let run = harness.wait_finished(full).await;
    let after = Utc::now();
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(
        (
            run.records_fetched,
            run.records_written,
            run.records_unchanged
        ),
        (120, 120, 0)
    );
    assert_eq!(run.records_deleted, 0);
    assert_eq!(run.attempts, 1);
    assert!(run.pages >= 5, "120 records in pages of 25: {}", run.pages);
    harness.assert_store_matches_source(entity).await;
    let cursor = harness
        .store
        .get_cursor(&connection_id, entity)
        .await
        .unwrap()
        .expect("a completed run sets the cursor");
    assert!(between(
        cursor,
        before - chrono::Duration::seconds(1),
        after
    ));
    let status = harness.store.get_status(&connection_id).await.unwrap();
    assert_eq!(status.status, ConnectionStatus::Online);
    assert_eq!(status.data_as_of.get(&entity), Some(&cursor));
    assert!(status.last_success_at.is_some());

    // Incremental: exactly the changed records are written; the newest seeded record lies
    // inside the overlap and is read again without being written.
    let changes = harness.sim.sim().apply_changes(
        entity,
        ChangeRequest {
            create: 3,
            update: 5,
            delete: 0,
        },
    );
    let changed = (changes.created.len() + changes.updated.len()) as u64;
    assert_eq!(changed, 8);
    let incremental = harness.enqueue(entity, SyncMode::Incremental).await;
    let run = harness.wait_finished(incremental).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.records_written, changed, "{run:?}");
    assert!(
        run.records_unchanged >= 1,
        "overlap duplicates are read and counted unchanged: {run:?}"
    );
    assert!(
        run.records_fetched < 30,
        "an incremental run reads the changes, not the dataset: {run:?}"
    );
    assert_eq!(
        run.records_fetched,
        run.records_written + run.records_unchanged
    );
    harness.assert_store_matches_source(entity).await;
    let newer = harness
        .store
        .get_cursor(&connection_id, entity)
        .await
        .unwrap()
        .unwrap();
    assert!(newer > cursor, "the cursor moved forward");

    // Deleted records vanish from this source's listings: an incremental run cannot see that,
    // a full run finds them.
    let changes = harness.sim.sim().apply_changes(
        entity,
        ChangeRequest {
            create: 0,
            update: 2,
            delete: 4,
        },
    );
    assert_eq!(changes.deleted.len(), 4);
    let full_again = harness.enqueue(entity, SyncMode::Full).await;
    let run = harness.wait_finished(full_again).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.records_deleted, 4, "{run:?}");
    assert_eq!(run.records_written, 2, "{run:?}");
    assert_eq!(run.records_fetched, harness.sim.sim().live_count(entity));
    harness.assert_store_matches_source(entity).await;

    // Three sync.completed events with counts; no status change event (unknown -> online is
    // not news).
    let events = harness.events().await;
    let completed: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == EventType::SyncCompleted)
        .collect();
    assert_eq!(completed.len(), 3);
    let last = &completed[2].data;
    assert_eq!(last["sync_id"], full_again.to_string());
    assert_eq!(last["entity"], "purchase_orders");
    assert_eq!(last["mode"], "full");
    assert_eq!(last["trigger"], "manual");
    assert_eq!(last["counts"]["records_deleted"], 4);
    assert!(last.get("error").is_none());
    assert_eq!(
        harness
            .count_events(EventType::ConnectionStatusChanged)
            .await,
        0
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_at_page_four_resumes_from_the_checkpoint() {
    let harness = Harness::start(Setup {
        records: 100,
        page_size: 10,
        ..Setup::default()
    })
    .await;
    // Pages 1 to 3 answer; the 4th request fails once with a 500.
    harness.sim.sim().set_fault(
        harness.profile,
        FaultSpec {
            status: Some(500),
            ..FaultSpec::new(FaultKind::ServerError).after(3).times(1)
        },
    );
    let worker = InProcessWorker::start(worker_env(&harness.redis.url(), &[]));
    let sync_id = harness.enqueue(Entity::WorkOrders, SyncMode::Full).await;
    let run = harness.wait_finished(sync_id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.attempts, 2, "one failed attempt, one retry");
    assert_eq!(
        run.records_fetched, 100,
        "counts carried over, nothing counted twice"
    );
    assert_eq!(run.records_written, 100);
    assert!(run.pages >= 10);
    // Every page was requested once, and page 4 twice: the retry did not read pages 1-3 again.
    assert_eq!(harness.list_requests(), run.pages + 1, "{run:?}");
    harness
        .assert_store_matches_source(Entity::WorkOrders)
        .await;
    // A 500 says nothing about reachability: the connection went online with the success.
    let status = harness
        .store
        .get_status(&harness.connection_id())
        .await
        .unwrap();
    assert_eq!(status.status, ConnectionStatus::Online);
    assert!(
        harness
            .store
            .get_checkpoint(&harness.connection_id(), Entity::WorkOrders, &sync_id)
            .await
            .unwrap()
            .is_none(),
        "the checkpoint is dropped when the cursor moves"
    );
    worker.stop().await;
}
