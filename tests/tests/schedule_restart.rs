//! Schedules survive restarts of every process: real `conveyor-worker` processes and a real
//! redis-server with append-only persistence are all killed (SIGKILL, as a crash would) and
//! started again; the schedule comes back as it was and the syncs resume on the same grid, each
//! slot run once, with no manual step.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

#[path = "schedule_support.rs"]
mod support;

use std::time::Duration;

use chrono::Utc;
use conveyor_core::{ConnectionStatus, Entity};
use conveyor_store::{RunStatus, SyncRun};
use nix::sys::signal::Signal;
use support::{Fleet, TICK, millis, scheduled, start_worker, stop_worker, wait_until};

const ENTITIES: [(Entity, u64); 2] = [(Entity::WorkOrders, 1), (Entity::Assets, 2)];

async fn succeeded(
    fleet: &Fleet,
    id: &conveyor_core::ConnectionId,
    entity: Entity,
) -> Vec<SyncRun> {
    scheduled(fleet.runs(id, entity).await)
        .into_iter()
        .filter(|run| run.status == RunStatus::Succeeded)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_survive_a_restart_of_every_process() {
    let mut fleet = Fleet::start_persistent().await;
    let connection = fleet.connect(&ENTITIES).await;
    let id = connection.id;
    // A sync that was running when its worker died holds its entity's unique key until its
    // lease runs out and another worker takes it over; keep that short.
    let env = fleet.worker_env(&[("CONVEYOR_JOB_LEASE", "1s")]);
    let mut workers: Vec<_> = (0..2).map(|_| start_worker(&env)).collect();
    wait_until(
        "two syncs of each entity",
        Duration::from_secs(15),
        || async { succeeded(&fleet, &id, Entity::Assets).await.len() >= 2 },
    )
    .await;

    // Everything dies at once: both workers and Redis.
    for worker in &mut workers {
        worker.process().signal(Signal::SIGKILL);
        assert!(
            worker
                .process()
                .wait_timeout(Duration::from_secs(5))
                .is_some()
        );
    }
    let before = fleet.store.get_schedule(&id).await.unwrap();
    let runs_before: Vec<usize> = run_counts(&fleet, &id).await;
    fleet.redis.restart().unwrap();
    let restarted_at = Utc::now();

    // The schedule is back as it was: same revision, same entities, same grid. (The store's
    // connection notices the restart on its first call and reconnects.)
    wait_until("the store reconnects", Duration::from_secs(5), || async {
        fleet.store.get_schedule(&id).await.is_ok()
    })
    .await;
    let after = fleet.store.get_schedule(&id).await.unwrap();
    assert_eq!(after, before);
    let index = fleet.store.list_schedule_index().await.unwrap();
    assert!(index.iter().any(|(entry, _)| *entry == id), "{index:?}");
    assert_eq!(
        fleet.store.get_status(&id).await.unwrap().status,
        ConnectionStatus::Online
    );
    assert_eq!(
        run_counts(&fleet, &id).await,
        runs_before,
        "the run history survived"
    );

    // New processes pick the schedule up with no manual step.
    let mut workers: Vec<_> = (0..2).map(|_| start_worker(&env)).collect();
    let schedulers_up = Utc::now();
    wait_until("syncs resume", Duration::from_secs(15), || async {
        let mut resumed = Vec::new();
        for (entity, _) in ENTITIES {
            resumed.push(
                succeeded(&fleet, &id, entity)
                    .await
                    .iter()
                    .filter(|run| run.queued_at > restarted_at)
                    .count(),
            );
        }
        resumed.iter().all(|count| *count >= 3)
    })
    .await;
    for worker in &mut workers {
        stop_worker(worker);
    }

    for (entity, interval_secs) in ENTITIES {
        let interval_ms = interval_secs as i64 * 1_000;
        let runs = scheduled(fleet.runs(&id, entity).await);
        let original = before.entities[&entity].next_due;
        let resumed: Vec<&SyncRun> = runs
            .iter()
            .filter(|run| run.queued_at > restarted_at)
            .collect();
        assert!(resumed.len() >= 3, "{entity}: {runs:#?}");
        // The slots missed while everything was down collapse into one catch-up sync, claimed
        // at the first tick of the new schedulers (so off the grid); from then on every sync
        // is claimed at most a tick (plus load) after a slot of the grid from before the
        // restart, one interval apart.
        let tolerance = TICK.as_millis() as i64 + 400;
        let on_grid =
            |run: &SyncRun| millis(original, run.queued_at).rem_euclid(interval_ms) <= tolerance;
        let catch_up = resumed[0];
        assert!(
            on_grid(catch_up) || millis(schedulers_up, catch_up.queued_at) <= tolerance,
            "{entity}: the first sync after the restart waited: {catch_up:?}"
        );
        for run in &resumed[1..] {
            assert!(on_grid(run), "{entity}: off the old grid: {run:?}");
        }
        let before_restart: Vec<&SyncRun> = runs
            .iter()
            .filter(|run| run.queued_at <= restarted_at)
            .collect();
        for pair in before_restart.windows(2).chain(resumed[1..].windows(2)) {
            let gap = millis(pair[0].queued_at, pair[1].queued_at);
            assert!(
                gap >= interval_ms - 150,
                "{entity}: two syncs {gap} ms apart with a {interval_ms} ms interval"
            );
        }
    }
}

/// How many runs each entity has.
async fn run_counts(fleet: &Fleet, id: &conveyor_core::ConnectionId) -> Vec<usize> {
    let mut counts = Vec::new();
    for (entity, _) in ENTITIES {
        counts.push(fleet.runs(id, entity).await.len());
    }
    counts
}
