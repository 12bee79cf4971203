//! A worker process killed with SIGKILL in the middle of a sync loses nothing: once its lease
//! runs out the job goes to another worker process, which resumes from the checkpoint within
//! the window frozen by the first attempt. Real redis-server, the simulator, the real
//! `conveyor-worker` binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

#[path = "sync_support.rs"]
mod support;

use std::time::Duration;

use chrono::Utc;
use conveyor_core::{Entity, SyncMode};
use conveyor_sim::{FaultKind, FaultSpec};
use conveyor_store::RunStatus;
use conveyor_testkit::Spawned;
use support::{Harness, Setup, between, worker_env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_sync_is_finished_by_another_from_its_checkpoint() {
    let harness = Harness::start(Setup {
        records: 300,
        page_size: 20,
        ..Setup::default()
    })
    .await;
    let entity = Entity::PurchaseOrders;
    // Slow answers, so the kill lands mid-crawl: 15 pages of 150 ms each.
    harness.sim.sim().set_fault(
        harness.profile,
        FaultSpec {
            delay_ms: Some(150),
            ..FaultSpec::new(FaultKind::Slow)
        },
    );
    let env = worker_env(
        &harness.redis.url(),
        &[
            ("CONVEYOR_JOB_LEASE", "1s"),
            ("CONVEYOR_SOURCE_PERMIT_TTL", "1s"),
        ],
    );
    let mut first = Spawned::start("conveyor-worker", &env).unwrap();
    first.wait_for_output("conveyor-worker ready", Duration::from_secs(30));

    let before = Utc::now();
    let sync_id = harness.enqueue(entity, SyncMode::Full).await;
    let partial = harness
        .wait_run(sync_id, support::SYNC_TIMEOUT, |run| run.pages >= 3)
        .await;
    first.process().kill();
    let killed_at = Utc::now();
    assert_eq!(partial.status, RunStatus::Running);
    let checkpoint = harness
        .store
        .get_checkpoint(&harness.connection_id(), entity, &sync_id)
        .await
        .unwrap()
        .expect("a running sync has a checkpoint");
    let stored_pages = checkpoint.pages;
    let requests_before_kill = harness.list_requests();

    let mut second = Spawned::start("conveyor-worker", &env).unwrap();
    let run = harness.wait_finished(sync_id).await;
    assert_eq!(
        run.status,
        RunStatus::Succeeded,
        "{run:?}\n{}",
        second.output()
    );
    assert_eq!(run.attempts, 2, "the crash redelivery counts as an attempt");
    assert_eq!(run.records_fetched, 300, "{run:?}");
    assert_eq!(run.records_written, 300, "{run:?}");
    harness.assert_store_matches_source(entity).await;

    // The second worker resumed: at most the pages in flight at the kill were read again.
    let total_requests = harness.list_requests();
    assert!(
        total_requests <= run.pages + 2,
        "{total_requests} requests for {} pages (killed after {stored_pages} stored, {requests_before_kill} requested)",
        run.pages
    );
    // The cursor is the bound frozen by the first attempt, not the second's start.
    let cursor = harness
        .store
        .get_cursor(&harness.connection_id(), entity)
        .await
        .unwrap()
        .unwrap();
    assert!(
        between(cursor, before - chrono::Duration::seconds(1), killed_at),
        "cursor {cursor} outside [{before}, {killed_at}]"
    );
    assert!(second.output().contains("resuming from checkpoint"));
    second.process().kill();
}
