//! Asking for a sync against a real Redis: one per connection and entity, duplicates answer the
//! existing sync, and the run record exists either way.

use conveyor_core::job::SYNC_QUEUE;
use conveyor_core::{ConnectionId, Entity, SyncJob, SyncMode, SyncTrigger};
use conveyor_queue::{Queue, QueueConfig};
use conveyor_store::{EncryptionKey, RunStatus, Store, StoreConfig};
use conveyor_sync::{enqueue_sync, job_id_of, sync_id_of};
use conveyor_testkit::RedisServer;

async fn parts(server: &RedisServer) -> (Store, Queue<SyncJob>) {
    let key = EncryptionKey::new("k1", [7; 32]).unwrap();
    let store = Store::connect(&server.url(), StoreConfig::new(key))
        .await
        .unwrap();
    let queue = Queue::connect(&server.url(), QueueConfig::new(SYNC_QUEUE))
        .await
        .unwrap();
    (store, queue)
}

#[tokio::test]
async fn second_request_returns_the_existing_sync_until_it_is_done() {
    let server = RedisServer::start().unwrap();
    let (store, queue) = parts(&server).await;
    let connection_id = ConnectionId::new();

    let first = enqueue_sync(
        &store,
        &queue,
        connection_id,
        Entity::Assets,
        SyncMode::Full,
        SyncTrigger::Manual,
    )
    .await
    .unwrap();
    assert!(!first.existing);
    assert_eq!(first.job_id, job_id_of(first.sync_id));
    assert_eq!(sync_id_of(first.job_id), first.sync_id);

    let again = enqueue_sync(
        &store,
        &queue,
        connection_id,
        Entity::Assets,
        SyncMode::Incremental,
        SyncTrigger::Scheduled,
    )
    .await
    .unwrap();
    assert!(again.existing);
    assert_eq!(
        again.sync_id, first.sync_id,
        "the existing sync is returned"
    );

    // Another entity, or another connection, is a separate sync.
    let other = enqueue_sync(
        &store,
        &queue,
        connection_id,
        Entity::Vendors,
        SyncMode::Full,
        SyncTrigger::Manual,
    )
    .await
    .unwrap();
    assert!(!other.existing);
    assert_ne!(other.sync_id, first.sync_id);

    let run = store.get_run(&connection_id, &first.sync_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.mode, SyncMode::Full);
    assert_eq!(run.trigger, SyncTrigger::Manual);

    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.ready, 2);
}

/// A manual request for a sync waiting in its retry backoff runs that retry now; a scheduled
/// request leaves it waiting.
#[tokio::test]
async fn a_manual_request_brings_a_waiting_retry_forward() {
    use std::time::Duration;

    use conveyor_queue::{JobContext, JobError, JobState, WorkerOptions, run_worker};

    let server = RedisServer::start().unwrap();
    let (store, _) = parts(&server).await;
    let mut config = QueueConfig::new(SYNC_QUEUE);
    config.backoff.base = Duration::from_secs(600);
    config.backoff.cap = Duration::from_secs(600);
    let queue: Queue<SyncJob> = Queue::connect(&server.url(), config).await.unwrap();
    let connection_id = ConnectionId::new();
    let first = enqueue_sync(
        &store,
        &queue,
        connection_id,
        Entity::Assets,
        SyncMode::Incremental,
        SyncTrigger::Scheduled,
    )
    .await
    .unwrap();

    // One worker fails the first delivery (the source was unreachable), then stops.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run_worker(
        queue.clone(),
        WorkerOptions::default(),
        |_job: SyncJob, _context: JobContext| async { Err(JobError::retry("connection refused")) },
        async move {
            let _ = stopped.await;
        },
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let state = queue.status(first.job_id).await.unwrap().unwrap().state;
        if matches!(state, JobState::Retrying { .. }) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never retrying: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();

    let scheduled = enqueue_sync(
        &store,
        &queue,
        connection_id,
        Entity::Assets,
        SyncMode::Incremental,
        SyncTrigger::Scheduled,
    )
    .await
    .unwrap();
    assert!(scheduled.existing);
    assert!(matches!(
        queue.status(first.job_id).await.unwrap().unwrap().state,
        JobState::Retrying { .. }
    ));

    let manual = enqueue_sync(
        &store,
        &queue,
        connection_id,
        Entity::Assets,
        SyncMode::Incremental,
        SyncTrigger::Manual,
    )
    .await
    .unwrap();
    assert!(manual.existing);
    assert_eq!(manual.sync_id, first.sync_id);
    let status = queue.status(first.job_id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Queued, "the retry runs now");
    assert_eq!(status.attempts, 1, "the failed attempt still counts");
    assert_eq!(queue.stats().await.unwrap().ready, 1);
}
