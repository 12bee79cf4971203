//! Every event reaches every subscribed endpoint even when worker processes die mid-work: real
//! `conveyor-worker` processes dispatch the outbox and deliver, two of them are SIGKILLed while
//! deliveries are in flight (and while more events arrive), and every event still arrives at
//! every endpoint that subscribed to its type, signed, with its `webhook-id` and sequence.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

#[path = "webhooks_support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use conveyor_core::{Event, EventType};
use conveyor_store::{DeliveryFilter, DeliveryState};
use conveyor_testkit::Spawned;
use conveyor_webhooks::Verifier;
use nix::sys::signal::Signal;
use support::{Answer, Fixture, Receiver, wait_until, worker_env};

fn start_worker(env: &BTreeMap<String, String>) -> Spawned {
    let mut worker = Spawned::start("conveyor-worker", env).unwrap();
    worker.wait_for_output("conveyor-worker ready", Duration::from_secs(30));
    worker
}

fn kill(worker: &mut Spawned) {
    worker.process().signal(Signal::SIGKILL);
    assert!(
        worker
            .process()
            .wait_timeout(Duration::from_secs(5))
            .is_some(),
        "the worker died"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_every_subscribed_endpoint_across_worker_crashes() {
    const FIRST_BATCH: u64 = 30;
    const SECOND_BATCH: u64 = 20;
    let fixture = Fixture::start().await;
    // Slow answers keep deliveries in flight when a worker dies.
    let slow = || Answer {
        delay: Duration::from_millis(80),
        ..Answer::ok()
    };
    let all_types = Receiver::start(move |_| slow()).await;
    let completed_only = Receiver::start(move |_| slow()).await;
    let (_, all_secrets) = fixture
        .endpoint(
            &all_types.url,
            &[EventType::SyncCompleted, EventType::SyncFailed],
        )
        .await;
    let (_, completed_secrets) = fixture
        .endpoint(&completed_only.url, &[EventType::SyncCompleted])
        .await;
    let env = worker_env(
        &fixture.redis.url(),
        &[
            ("CONVEYOR_SCHEDULER_ENABLED", "false"),
            ("CONVEYOR_WEBHOOK_CONCURRENCY", "4"),
        ],
    );
    let mut workers: Vec<Spawned> = (0..2).map(|_| start_worker(&env)).collect();

    let event_type = |n: u64| {
        if n.is_multiple_of(3) {
            EventType::SyncFailed
        } else {
            EventType::SyncCompleted
        }
    };
    let mut events: Vec<Event> = Vec::new();
    for n in 1..=FIRST_BATCH {
        events.push(fixture.append(event_type(n), n).await);
    }
    // Mid-delivery, the first worker dies; a replacement starts.
    all_types.wait_for(5, Duration::from_secs(10)).await;
    kill(&mut workers[0]);
    workers.push(start_worker(&env));
    // More events while the second worker, which holds dispatched and in-flight work, dies too.
    for n in FIRST_BATCH + 1..=FIRST_BATCH + SECOND_BATCH {
        events.push(fixture.append(event_type(n), n).await);
        if n == FIRST_BATCH + 5 {
            kill(&mut workers[1]);
        }
    }
    let killed_at = all_types.received().len();

    let wanted_all: BTreeSet<String> = events.iter().map(|event| event.id.to_string()).collect();
    let wanted_completed: BTreeSet<String> = events
        .iter()
        .filter(|event| event.event_type == EventType::SyncCompleted)
        .map(|event| event.id.to_string())
        .collect();
    let ids = |receiver: &Receiver| -> BTreeSet<String> {
        receiver
            .received()
            .iter()
            .map(|request| request.webhook_id())
            .collect()
    };
    wait_until(Duration::from_secs(30), || async {
        ids(&all_types) == wanted_all && ids(&completed_only) == wanted_completed
    })
    .await;
    wait_until(Duration::from_secs(10), || async {
        let deliveries = fixture
            .store
            .list_deliveries(
                &fixture.connection_id,
                &DeliveryFilter::default(),
                1000,
                None,
            )
            .await
            .unwrap();
        deliveries.items.len() == wanted_all.len() + wanted_completed.len()
            && deliveries
                .items
                .iter()
                .all(|delivery| delivery.state == DeliveryState::Delivered)
    })
    .await;
    assert!(
        fixture
            .store
            .pending_events(&fixture.connection_id, 10)
            .await
            .unwrap()
            .is_empty(),
        "every outbox entry acknowledged"
    );

    // What arrived is what was appended: signed, same ids, the connection's sequence.
    let by_id: BTreeMap<String, &Event> = events
        .iter()
        .map(|event| (event.id.to_string(), event))
        .collect();
    for (receiver, secrets) in [
        (&all_types, &all_secrets),
        (&completed_only, &completed_secrets),
    ] {
        let verifier = Verifier::new([secrets.current.clone()]);
        for request in receiver.received() {
            verifier.verify(&request.headers, &request.body).unwrap();
            let event = by_id[&request.webhook_id()];
            let body = request.json();
            assert_eq!(body["id"], event.id.to_string());
            assert_eq!(body["type"], event.event_type.as_str());
            assert_eq!(body["sequence"], event.sequence);
        }
    }
    let sequences: BTreeSet<u64> = events.iter().map(|event| event.sequence).collect();
    assert_eq!(
        sequences,
        (1..=FIRST_BATCH + SECOND_BATCH).collect(),
        "one sequence number per event, no gaps"
    );
    let duplicates = all_types.received().len() + completed_only.received().len()
        - wanted_all.len()
        - wanted_completed.len();
    eprintln!(
        "{} events, {} requests before the second kill, {duplicates} duplicate requests",
        events.len(),
        killed_at
    );
    for worker in workers.iter_mut().skip(2) {
        worker.process().signal(Signal::SIGTERM);
        assert!(
            worker
                .process()
                .wait_timeout(Duration::from_secs(15))
                .is_some_and(|status| status.success())
        );
    }
}
