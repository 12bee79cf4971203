//! Scheduled syncs across a fleet: several real `conveyor-worker` processes, each running a
//! scheduler, enqueue every due sync exactly once and miss none, across a worker restart; and
//! configuration changes (interval, added and disabled entities, deleted connections) take
//! effect without restarting anything. Real redis-server and the simulator.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

#[path = "schedule_support.rs"]
mod support;

use std::time::Duration;

use chrono::Utc;
use conveyor_core::Entity;
use conveyor_store::RunStatus;
use support::{Fleet, TICK, millis, scheduled, start_worker, stop_worker, wait_until};

/// How late a claim may come after its slot: the tick plus generous room for a loaded machine.
const LATE_MS: i64 = TICK.as_millis() as i64 + 900;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_enqueue_every_due_sync_exactly_once() {
    let fleet = Fleet::start().await;
    let mut connections = Vec::new();
    for index in 0..12 {
        let entities = if index % 2 == 0 {
            [(Entity::WorkOrders, 1), (Entity::Assets, 2)]
        } else {
            [(Entity::WorkOrders, 2), (Entity::Vendors, 3)]
        };
        connections.push(fleet.connect(&entities).await);
    }

    let env = fleet.worker_env(&[]);
    let mut workers: Vec<_> = (0..3).map(|_| start_worker(&env)).collect();
    let fleet_ready = Utc::now();

    // Halfway, one worker is stopped and another started: schedules live in Redis, not in a
    // process, so nothing is missed or doubled.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop_worker(&mut workers[0]);
    workers[0] = start_worker(&env);
    tokio::time::sleep(Duration::from_secs(6)).await;

    let stopped_at = Utc::now();
    for worker in &mut workers {
        stop_worker(worker);
    }
    // Syncs claimed just before the stop still run, on a worker that schedules nothing.
    let mut drain = start_worker(&fleet.worker_env(&[("CONVEYOR_SCHEDULER_ENABLED", "false")]));
    for connection in &connections {
        for entity in connection.entities.iter().map(|config| config.entity) {
            wait_until("every run finished", Duration::from_secs(30), || async {
                fleet
                    .runs(&connection.id, entity)
                    .await
                    .iter()
                    .all(|run| run.status.is_finished())
            })
            .await;
        }
    }
    stop_worker(&mut drain);

    let mut total = 0;
    let mut latest = 0;
    for connection in &connections {
        let schedule = fleet.store.get_schedule(&connection.id).await.unwrap();
        for config in &connection.entities {
            let entity = config.entity;
            let slot = schedule.entities[&entity];
            let interval_ms = slot.interval.as_millis() as i64;
            assert_eq!(interval_ms, config.interval_secs as i64 * 1000);
            let runs = scheduled(fleet.runs(&connection.id, entity).await);
            let count = runs.len() as i64;
            total += runs.len();
            assert!(count >= 3, "{entity} ran only {count} times");
            for (index, run) in runs.iter().enumerate() {
                assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
                assert_eq!(run.attempts, 1, "each sync ran once: {run:?}");
                // Slot j of k claimed slots lies (k - j) intervals before the next due time;
                // run j was enqueued at that slot (not before it, at most a tick and load
                // after it). So every slot was claimed once, in order, none skipped.
                let slot_at = slot.next_due
                    - chrono::Duration::milliseconds((count - index as i64) * interval_ms);
                let late = millis(slot_at, run.queued_at);
                latest = latest.max(late);
                assert!(
                    (-50..=LATE_MS).contains(&late),
                    "{entity} run {index} of {count} enqueued {late} ms after its slot {slot_at}"
                );
            }
            // None missed at either end: the first slot came one interval after the fleet
            // started scheduling, and every slot before the stop was claimed.
            let first_slot = slot.next_due - chrono::Duration::milliseconds(count * interval_ms);
            assert!(
                millis(fleet_ready, first_slot) <= interval_ms + LATE_MS,
                "{entity}: first slot {first_slot} long after the fleet started at {fleet_ready}"
            );
            assert!(
                millis(stopped_at, slot.next_due) >= -LATE_MS,
                "{entity}: the slot at {} before the stop at {stopped_at} was missed",
                slot.next_due
            );
        }
    }
    assert!(total >= 100, "only {total} scheduled syncs ran");
    eprintln!("{total} scheduled syncs, each enqueued at most {latest} ms after its slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_changes_apply_without_restarts() {
    let fleet = Fleet::start().await;
    let retimed = fleet.connect(&[(Entity::WorkOrders, 30)]).await;
    let extended = fleet.connect(&[(Entity::WorkOrders, 30)]).await;
    let disabled = fleet.connect(&[(Entity::WorkOrders, 1)]).await;
    let deleted = fleet.connect(&[(Entity::WorkOrders, 1)]).await;

    let env = fleet.worker_env(&[]);
    let mut workers: Vec<_> = (0..2).map(|_| start_worker(&env)).collect();
    for connection in [&disabled, &deleted] {
        wait_until(
            "a first scheduled sync",
            Duration::from_secs(10),
            || async {
                scheduled(fleet.runs(&connection.id, Entity::WorkOrders).await)
                    .iter()
                    .any(|run| run.status == RunStatus::Succeeded)
            },
        )
        .await;
    }

    // Change everything at once, through the store as the API does.
    let changed_at = Utc::now();
    let mut update = retimed.clone();
    update.entities[0].interval_secs = 1;
    fleet.store.update_connection(&update).await.unwrap();
    let mut update = extended.clone();
    let mut assets = update.entities[0].clone();
    assets.entity = Entity::Assets;
    assets.interval_secs = 1;
    update.entities.push(assets);
    fleet.store.update_connection(&update).await.unwrap();
    let mut update = disabled.clone();
    update.entities[0].enabled = false;
    fleet.store.update_connection(&update).await.unwrap();
    fleet.store.delete_connection(&deleted.id).await.unwrap();

    // The 30-second interval became 1 second, and the added entity syncs every second.
    for (connection, entity) in [(&retimed, Entity::WorkOrders), (&extended, Entity::Assets)] {
        wait_until(
            "three syncs at the new interval",
            Duration::from_secs(15),
            || async {
                scheduled(fleet.runs(&connection.id, entity).await)
                    .iter()
                    .filter(|run| run.queued_at > changed_at && run.status == RunStatus::Succeeded)
                    .count()
                    >= 3
            },
        )
        .await;
    }
    // The deleted connection's schedule is gone, index entry included.
    wait_until(
        "the deleted schedule cleaned up",
        Duration::from_secs(5),
        || async {
            fleet
                .store
                .list_schedule_index()
                .await
                .unwrap()
                .iter()
                .all(|(id, _)| *id != deleted.id)
        },
    )
    .await;
    assert!(
        fleet
            .store
            .get_schedule(&deleted.id)
            .await
            .unwrap()
            .entities
            .is_empty()
    );
    // The disabled entity is unscheduled: nothing was enqueued for it after the change had been
    // seen (one rescan, plus a claim that may already have been under way).
    let schedule = fleet.store.get_schedule(&disabled.id).await.unwrap();
    assert!(schedule.entities.is_empty(), "{schedule:?}");
    let late = scheduled(fleet.runs(&disabled.id, Entity::WorkOrders).await)
        .into_iter()
        .filter(|run| millis(changed_at, run.queued_at) > 500)
        .count();
    assert_eq!(late, 0, "a disabled entity kept syncing");

    for worker in &mut workers {
        stop_worker(worker);
    }
}
