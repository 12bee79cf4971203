//! Every class of source failure ends in the right job outcome, connection status and events:
//! outage (offline, retried), 401 (auth_required, aborted), 429 (snoozed, no attempt used),
//! malformed page (retried), 404 entity path (aborted). Real redis-server, the simulator, the
//! worker library in-process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

#[path = "sync_support.rs"]
mod support;

use chrono::Utc;
use conveyor_core::{ConnectionStatus, Entity, EventType, SyncMode};
use conveyor_queue::JobState;
use conveyor_sim::{FaultKind, FaultSpec};
use conveyor_store::RunStatus;
use support::{Harness, InProcessWorker, MAX_ATTEMPTS, Setup, worker_env};

async fn harness() -> Harness {
    Harness::start(Setup {
        records: 30,
        page_size: 10,
        ..Setup::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_goes_offline_is_retried_and_recovers_online() {
    let harness = harness().await;
    let worker = InProcessWorker::start(worker_env(&harness.redis.url(), &[]));
    let entity = Entity::Assets;
    let connection_id = harness.connection_id();
    let first = harness.enqueue(entity, SyncMode::Full).await;
    assert_eq!(
        harness.wait_finished(first).await.status,
        RunStatus::Succeeded
    );

    harness
        .sim
        .sim()
        .set_fault(harness.profile, FaultSpec::new(FaultKind::Outage));
    let failing = harness.enqueue(entity, SyncMode::Incremental).await;
    let run = harness.wait_finished(failing).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert_eq!(run.attempts, MAX_ATTEMPTS, "retried, then out of attempts");
    assert_eq!(run.error.as_ref().unwrap().code, "server_error");
    let job = harness.wait_dead(failing).await;
    assert_eq!(job.errors.len(), MAX_ATTEMPTS as usize);
    assert_eq!(job.errors[0].kind, "server_error");

    let status = harness.store.get_status(&connection_id).await.unwrap();
    assert_eq!(status.status, ConnectionStatus::Offline);
    assert_eq!(status.consecutive_failures, u64::from(MAX_ATTEMPTS));
    assert_eq!(status.last_error.as_ref().unwrap().code, "server_error");
    let transitions = harness
        .store
        .list_transitions(&connection_id, 10)
        .await
        .unwrap();
    assert_eq!(
        transitions.len(),
        2,
        "unknown -> online -> offline, once each"
    );
    assert_eq!(transitions[0].to, ConnectionStatus::Offline);
    assert_eq!(transitions[0].reason.code, "server_error");
    assert_eq!(
        harness
            .count_events(EventType::ConnectionStatusChanged)
            .await,
        1
    );
    let failed: Vec<_> = harness
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == EventType::SyncFailed)
        .collect();
    assert_eq!(failed.len(), 1, "sync.failed once, on the last attempt");
    assert_eq!(failed[0].data["sync_id"], failing.to_string());
    assert_eq!(failed[0].data["error"]["code"], "server_error");
    let cursor_after_failure = harness
        .store
        .get_cursor(&connection_id, entity)
        .await
        .unwrap();

    // The system is back: the next sync flips the status online, with one more event.
    harness.sim.sim().clear_faults();
    let recovery = harness.enqueue(entity, SyncMode::Incremental).await;
    assert_eq!(
        harness.wait_finished(recovery).await.status,
        RunStatus::Succeeded
    );
    let status = harness.store.get_status(&connection_id).await.unwrap();
    assert_eq!(status.status, ConnectionStatus::Online);
    assert_eq!(status.consecutive_failures, 0);
    let changes: Vec<_> = harness
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == EventType::ConnectionStatusChanged)
        .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1].data["from"], "offline");
    assert_eq!(changes[1].data["to"], "online");
    let cursor = harness
        .store
        .get_cursor(&connection_id, entity)
        .await
        .unwrap();
    assert!(
        cursor > cursor_after_failure,
        "the failed run never moved the cursor"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_require_auth_and_abort_without_retry() {
    let harness = harness().await;
    harness
        .sim
        .sim()
        .set_fault(harness.profile, FaultSpec::new(FaultKind::Unauthorized));
    let worker = InProcessWorker::start(worker_env(&harness.redis.url(), &[]));
    let sync_id = harness.enqueue(Entity::Vendors, SyncMode::Full).await;
    let run = harness.wait_finished(sync_id).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert_eq!(run.attempts, 1, "no retry");
    assert_eq!(run.error.as_ref().unwrap().code, "auth_rejected");
    assert_eq!(harness.list_requests(), 1, "one request, not retried");
    let job = harness.wait_dead(sync_id).await.status;
    assert_eq!(job.attempts, 1);

    let status = harness
        .store
        .get_status(&harness.connection_id())
        .await
        .unwrap();
    assert_eq!(status.status, ConnectionStatus::AuthRequired);
    assert_eq!(
        harness
            .count_events(EventType::ConnectionAuthRequired)
            .await,
        1
    );
    assert_eq!(harness.count_events(EventType::SyncFailed).await, 1);
    assert_eq!(
        harness
            .count_events(EventType::ConnectionStatusChanged)
            .await,
        0
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_snoozes_without_using_an_attempt() {
    let harness = harness().await;
    harness.sim.sim().set_fault(
        harness.profile,
        FaultSpec {
            retry_after_secs: Some(30),
            ..FaultSpec::new(FaultKind::RateLimit).times(1)
        },
    );
    let worker = InProcessWorker::start(worker_env(&harness.redis.url(), &[]));
    let sync_id = harness
        .enqueue(Entity::PurchaseOrders, SyncMode::Full)
        .await;
    let started = Utc::now();
    let run = harness
        .wait_run(sync_id, support::SYNC_TIMEOUT, |run| {
            run.status == RunStatus::Retrying
        })
        .await;
    assert_eq!(run.error.as_ref().unwrap().code, "rate_limited");
    let job = harness
        .wait_job(sync_id, |job| {
            matches!(job.status.state, JobState::Scheduled { .. })
        })
        .await
        .status;
    let JobState::Scheduled { run_at } = job.state else {
        unreachable!("matched above")
    };
    assert!(
        run_at >= started + chrono::Duration::seconds(25),
        "snoozed for the Retry-After: {run_at}"
    );
    assert_eq!(job.attempts, 0, "a snooze uses no attempt");
    let status = harness
        .store
        .get_status(&harness.connection_id())
        .await
        .unwrap();
    assert_eq!(status.status, ConnectionStatus::Unknown, "status unchanged");
    assert!(
        harness.events().await.is_empty(),
        "no events: {:?}",
        harness.events().await
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_page_is_retried() {
    let harness = harness().await;
    harness.sim.sim().set_fault(
        harness.profile,
        FaultSpec::new(FaultKind::MalformedPage).after(1).times(1),
    );
    let worker = InProcessWorker::start(worker_env(&harness.redis.url(), &[]));
    let sync_id = harness.enqueue(Entity::WorkOrders, SyncMode::Full).await;
    let run = harness.wait_finished(sync_id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.attempts, 2);
    assert_eq!(run.records_fetched, 30);
    assert_eq!(harness.list_requests(), run.pages + 1);
    harness
        .assert_store_matches_source(Entity::WorkOrders)
        .await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_entity_path_aborts() {
    let harness = Harness::start(Setup {
        records: 30,
        page_size: 10,
        paths: vec![(
            Entity::Assets,
            "/fscmRestApi/resources/11.13.18.05/noSuchResource".to_owned(),
        )],
        ..Setup::default()
    })
    .await;
    let worker = InProcessWorker::start(worker_env(&harness.redis.url(), &[]));
    let sync_id = harness.enqueue(Entity::Assets, SyncMode::Full).await;
    let run = harness.wait_finished(sync_id).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert_eq!(run.attempts, 1);
    assert_eq!(run.error.as_ref().unwrap().code, "config");
    harness.wait_dead(sync_id).await;
    let status = harness
        .store
        .get_status(&harness.connection_id())
        .await
        .unwrap();
    assert_eq!(status.status, ConnectionStatus::Unknown);
    assert_eq!(harness.count_events(EventType::SyncFailed).await, 1);
    assert_eq!(harness.events().await.len(), 1);
    worker.stop().await;
}
