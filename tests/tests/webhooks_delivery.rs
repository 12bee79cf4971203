//! Webhook dispatch and delivery end to end with the worker's webhook code running in-process:
//! retries with the same `webhook-id`, timeouts, signatures and rotation, 410 Gone, subscribed
//! types only, slow endpoints not holding back others, dead letters and redelivery. Real
//! redis-server, real axum receivers on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

#[path = "webhooks_support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use conveyor_core::{EventType, JobId};
use conveyor_queue::{DeadFilter, Page};
use conveyor_store::{DeliveryFilter, DeliveryState, delivery_id_for};
use conveyor_webhooks::{Verifier, WebhookError};
use support::{Answer, Fixture, Receiver, test_settings, wait_until};

#[tokio::test]
async fn a_failing_receiver_gets_retries_with_the_same_webhook_id_until_it_succeeds() {
    const FAILURES: usize = 3;
    let fixture = Fixture::start().await;
    let receiver = Receiver::start(|n| {
        if n < FAILURES {
            Answer::status(500)
        } else {
            Answer::ok()
        }
    })
    .await;
    let (endpoint, secrets) = fixture
        .endpoint(&receiver.url, &[EventType::SyncCompleted])
        .await;
    let webhooks = fixture.serve(test_settings());
    let event = fixture.append(EventType::SyncCompleted, 1).await;

    // 30 ms, 300 ms and 1.8 s between attempts with the schedule scaled by 0.001.
    let received = receiver
        .wait_for(FAILURES + 1, Duration::from_secs(10))
        .await;
    let delivery_id = delivery_id_for(&event.id, &endpoint.id);
    wait_until(Duration::from_secs(5), || async {
        fixture
            .store
            .get_delivery(&fixture.connection_id, &delivery_id)
            .await
            .unwrap()
            .state
            == DeliveryState::Delivered
    })
    .await;

    assert_eq!(received.len(), FAILURES + 1);
    let verifier = Verifier::new([secrets.current.clone()]);
    for request in &received {
        assert_eq!(request.webhook_id(), event.id.to_string());
        verifier.verify(&request.headers, &request.body).unwrap();
        let body = request.json();
        assert_eq!(body["id"], event.id.to_string());
        assert_eq!(body["type"], "sync.completed");
        assert_eq!(body["connection_id"], fixture.connection_id.to_string());
        assert_eq!(body["sequence"], 1);
        assert_eq!(body["data"]["n"], 1);
        assert!(body["timestamp"].is_string());
    }

    // One delivery, every attempt logged in order.
    let deliveries = fixture
        .store
        .list_deliveries(&fixture.connection_id, &DeliveryFilter::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(deliveries.items.len(), 1);
    let delivery = &deliveries.items[0];
    assert_eq!(delivery.id, delivery_id);
    assert_eq!(delivery.attempts, 4);
    let attempts = fixture
        .store
        .delivery_attempts(&fixture.connection_id, &delivery_id)
        .await
        .unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.attempt, a.record.status, a.outcome.as_str()))
            .collect::<Vec<_>>(),
        [
            (1, Some(500), "failed"),
            (2, Some(500), "failed"),
            (3, Some(500), "failed"),
            (4, Some(200), "delivered"),
        ]
    );
    assert_eq!(attempts[0].record.url, receiver.url);
    assert_eq!(attempts[0].record.response_body, "receiver says hi");
    assert!(attempts[0].record.error.as_deref().unwrap().contains("500"));
    // The outbox entry was acknowledged.
    assert!(
        fixture
            .store
            .pending_events(&fixture.connection_id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    webhooks.stop().await;
}

#[tokio::test]
async fn a_receiver_hanging_past_the_timeout_counts_as_failed() {
    let fixture = Fixture::start().await;
    // The first request hangs for 3 s; the timeout is 500 ms.
    let receiver = Receiver::start(|n| {
        if n == 0 {
            Answer {
                delay: Duration::from_secs(3),
                ..Answer::ok()
            }
        } else {
            Answer::ok()
        }
    })
    .await;
    let (endpoint, _) = fixture
        .endpoint(&receiver.url, &[EventType::SyncFailed])
        .await;
    let webhooks = fixture.serve(test_settings());
    let event = fixture.append(EventType::SyncFailed, 1).await;
    let delivery_id = delivery_id_for(&event.id, &endpoint.id);
    wait_until(Duration::from_secs(10), || async {
        fixture
            .store
            .get_delivery(&fixture.connection_id, &delivery_id)
            .await
            .is_ok_and(|delivery| delivery.state == DeliveryState::Delivered)
    })
    .await;
    let attempts = fixture
        .store
        .delivery_attempts(&fixture.connection_id, &delivery_id)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].outcome, "failed");
    assert_eq!(attempts[0].record.status, None);
    assert!(
        attempts[0]
            .record
            .error
            .as_deref()
            .unwrap()
            .contains("timed out"),
        "{attempts:?}"
    );
    assert!(attempts[0].record.duration_ms >= 500);
    assert!(attempts[0].record.duration_ms < 3_000);
    assert_eq!(attempts[1].outcome, "delivered");
    webhooks.stop().await;
}

#[tokio::test]
async fn signatures_fail_on_a_tampered_body_and_rotation_signs_with_both_secrets() {
    let fixture = Fixture::start().await;
    let receiver = Receiver::always_ok().await;
    let (endpoint, old) = fixture
        .endpoint(&receiver.url, &[EventType::SystemError])
        .await;
    let webhooks = fixture.serve(test_settings());

    fixture.append(EventType::SystemError, 1).await;
    let first = receiver.wait_for(1, Duration::from_secs(5)).await[0].clone();
    let verifier = Verifier::new([old.current.clone()]);
    verifier.verify(&first.headers, &first.body).unwrap();
    let mut tampered = first.body.to_vec();
    let position = tampered.iter().position(|&b| b == b'1').unwrap();
    tampered[position] = b'2';
    assert_eq!(
        verifier.verify(&first.headers, &tampered),
        Err(WebhookError::NoMatchingSignature)
    );
    // Another secret does not verify either.
    let stranger = Verifier::new([conveyor_webhooks::SigningSecret::generate()]);
    assert!(stranger.verify(&first.headers, &first.body).is_err());

    // After a rotation both secrets sign: receivers on either verify.
    let new_secret = fixture
        .store
        .rotate_webhook_secret(&fixture.connection_id, &endpoint.id, Utc::now())
        .await
        .unwrap();
    fixture.append(EventType::SystemError, 2).await;
    let second = receiver.wait_for(2, Duration::from_secs(5)).await[1].clone();
    let signatures = support::header(&second.headers, "webhook-signature");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    for secret in [old.current.clone(), new_secret.clone()] {
        Verifier::new([secret])
            .verify(&second.headers, &second.body)
            .unwrap();
    }
    webhooks.stop().await;
}

#[tokio::test]
async fn a_410_disables_the_endpoint_and_dead_letters_the_delivery() {
    let fixture = Fixture::start().await;
    let receiver = Receiver::start(|_| Answer::status(410)).await;
    let (endpoint, _) = fixture
        .endpoint(&receiver.url, &[EventType::SyncCompleted])
        .await;
    let webhooks = fixture.serve(test_settings());
    let event = fixture.append(EventType::SyncCompleted, 1).await;
    let delivery_id = delivery_id_for(&event.id, &endpoint.id);
    wait_until(Duration::from_secs(5), || async {
        !fixture
            .store
            .get_webhook_endpoint(&fixture.connection_id, &endpoint.id)
            .await
            .unwrap()
            .enabled
    })
    .await;
    let disabled = fixture
        .store
        .get_webhook_endpoint(&fixture.connection_id, &endpoint.id)
        .await
        .unwrap();
    assert!(disabled.disabled_reason.unwrap().contains("410"));
    let delivery = fixture
        .store
        .get_delivery(&fixture.connection_id, &delivery_id)
        .await
        .unwrap();
    assert_eq!(delivery.state, DeliveryState::Failed);
    assert_eq!(delivery.attempts, 1);
    wait_until(Duration::from_secs(5), || async {
        fixture.queue.stats().await.unwrap().dead == 1
    })
    .await;
    let dead = fixture
        .queue
        .dead_list(&DeadFilter::default(), Page::default())
        .await
        .unwrap();
    assert_eq!(dead.jobs[0].error_kind, "endpoint_gone");

    // A disabled endpoint gets nothing more.
    fixture.append(EventType::SyncCompleted, 2).await;
    wait_until(Duration::from_secs(5), || async {
        fixture
            .store
            .pending_events(&fixture.connection_id, 10)
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    assert_eq!(receiver.received().len(), 1);
    webhooks.stop().await;
}

#[tokio::test]
async fn endpoints_get_only_the_types_they_subscribed_to() {
    let fixture = Fixture::start().await;
    let syncs = Receiver::always_ok().await;
    let status = Receiver::always_ok().await;
    let everything = Receiver::always_ok().await;
    fixture
        .endpoint(
            &syncs.url,
            &[EventType::SyncCompleted, EventType::SyncFailed],
        )
        .await;
    fixture
        .endpoint(
            &status.url,
            &[
                EventType::ConnectionStatusChanged,
                EventType::ConnectionAuthRequired,
            ],
        )
        .await;
    fixture
        .endpoint(&everything.url, EventType::SUBSCRIBABLE)
        .await;
    let webhooks = fixture.serve(test_settings());
    let types = [
        EventType::SyncCompleted,
        EventType::ConnectionStatusChanged,
        EventType::SyncFailed,
        EventType::SystemError,
        EventType::ConnectionAuthRequired,
        EventType::SyncCompleted,
    ];
    for (n, event_type) in types.iter().enumerate() {
        fixture.append(*event_type, n as u64).await;
    }
    everything
        .wait_for(types.len(), Duration::from_secs(5))
        .await;
    syncs.wait_for(3, Duration::from_secs(5)).await;
    status.wait_for(2, Duration::from_secs(5)).await;
    // Let stray deliveries (there must be none) arrive before counting.
    wait_until(Duration::from_secs(5), || async {
        fixture
            .store
            .list_deliveries(
                &fixture.connection_id,
                &DeliveryFilter::default(),
                100,
                None,
            )
            .await
            .unwrap()
            .items
            .iter()
            .all(|delivery| delivery.state == DeliveryState::Delivered)
    })
    .await;
    let types_of = |receiver: &Receiver| -> Vec<String> {
        let mut types: Vec<String> = receiver
            .received()
            .iter()
            .map(|r| r.json()["type"].as_str().unwrap().to_owned())
            .collect();
        types.sort();
        types
    };
    assert_eq!(
        types_of(&syncs),
        ["sync.completed", "sync.completed", "sync.failed"]
    );
    assert_eq!(
        types_of(&status),
        ["connection.auth_required", "connection.status_changed"]
    );
    assert_eq!(types_of(&everything).len(), types.len());
    webhooks.stop().await;
}

#[tokio::test]
async fn a_slow_endpoint_does_not_hold_back_the_others() {
    const EVENTS: u64 = 12;
    let fixture = Fixture::start().await;
    let slow = Receiver::start(|_| Answer {
        delay: Duration::from_millis(1_500),
        ..Answer::ok()
    })
    .await;
    let fast = Receiver::always_ok().await;
    fixture
        .endpoint(&slow.url, &[EventType::SyncCompleted])
        .await;
    fixture
        .endpoint(&fast.url, &[EventType::SyncCompleted])
        .await;
    let mut settings = test_settings();
    settings.timeout = Duration::from_secs(5);
    settings.concurrency = 4;
    settings.permits_per_endpoint = 2;
    let webhooks = fixture.serve(settings);
    for n in 0..EVENTS {
        fixture.append(EventType::SyncCompleted, n).await;
    }
    fast.wait_for(EVENTS as usize, Duration::from_secs(10))
        .await;
    // The slow endpoint, two at a time at 1.5 s each, needs 9 s for all of them: the fast one
    // got everything while the slow one had received only a few.
    assert!(slow.received().len() < EVENTS as usize);
    webhooks.stop().await;
}

#[tokio::test]
async fn exhausted_deliveries_are_dead_lettered_and_can_be_redelivered() {
    let fixture = Fixture::start().await;
    let receiver = Receiver::start(|n| {
        // Every attempt of the first round fails; the redelivery succeeds.
        if n < 10 {
            Answer::status(503)
        } else {
            Answer::ok()
        }
    })
    .await;
    let (endpoint, _) = fixture
        .endpoint(&receiver.url, &[EventType::SyncFailed])
        .await;
    let mut settings = test_settings();
    // The whole table (about three days) in under 3 seconds.
    settings.retry_scale = 0.00001;
    let webhooks = fixture.serve(settings);
    let event = fixture.append(EventType::SyncFailed, 1).await;
    let delivery_id = delivery_id_for(&event.id, &endpoint.id);
    wait_until(Duration::from_secs(15), || async {
        fixture.queue.stats().await.unwrap().dead == 1
    })
    .await;
    let delivery = fixture
        .store
        .get_delivery(&fixture.connection_id, &delivery_id)
        .await
        .unwrap();
    assert_eq!(delivery.state, DeliveryState::Failed);
    assert_eq!(delivery.attempts, 10);
    assert_eq!(receiver.received().len(), 10);
    let dead = fixture
        .queue
        .dead_list(&DeadFilter::default(), Page::default())
        .await
        .unwrap();
    assert_eq!(dead.jobs[0].error_kind, "webhook_exhausted");

    // Redelivery: a fresh round under a new job, same webhook-id.
    let job_id = JobId::new();
    fixture
        .store
        .requeue_delivery(&fixture.connection_id, &delivery_id, &job_id)
        .await
        .unwrap();
    let job = conveyor_store::DeliveryJob {
        delivery_id,
        connection_id: fixture.connection_id,
        endpoint_id: endpoint.id,
    };
    let unique_key = job.unique_key();
    fixture
        .queue
        .push(
            conveyor_queue::JobSpec::new(job)
                .job_id(job_id)
                .unique_key(unique_key),
        )
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), || async {
        fixture
            .store
            .get_delivery(&fixture.connection_id, &delivery_id)
            .await
            .unwrap()
            .state
            == DeliveryState::Delivered
    })
    .await;
    let ids: BTreeSet<String> = receiver.received().iter().map(|r| r.webhook_id()).collect();
    assert_eq!(ids, BTreeSet::from([event.id.to_string()]));
    let attempts = fixture
        .store
        .delivery_attempts(&fixture.connection_id, &delivery_id)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 11);
    let outcomes: BTreeMap<&str, usize> =
        attempts
            .iter()
            .fold(BTreeMap::new(), |mut counts, attempt| {
                *counts.entry(attempt.outcome.as_str()).or_default() += 1;
                counts
            });
    assert_eq!(outcomes, BTreeMap::from([("delivered", 1), ("failed", 10)]));
    webhooks.stop().await;
}

#[tokio::test]
async fn retries_follow_the_jittered_table_and_a_retry_after_overrides_it() {
    let fixture = Fixture::start().await;
    // 500, 500, then 429 asking for three seconds, then 200.
    let receiver = Receiver::start(|n| match n {
        0 | 1 => Answer::status(500),
        2 => Answer {
            retry_after: Some(3),
            ..Answer::status(429)
        },
        _ => Answer::ok(),
    })
    .await;
    let (endpoint, _) = fixture
        .endpoint(&receiver.url, &[EventType::SyncCompleted])
        .await;
    let webhooks = fixture.serve(test_settings());
    let event = fixture.append(EventType::SyncCompleted, 1).await;
    let delivery_id = delivery_id_for(&event.id, &endpoint.id);
    // (The dispatcher creates the delivery a moment after the event is appended.)
    wait_until(Duration::from_secs(15), || async {
        fixture
            .store
            .get_delivery(&fixture.connection_id, &delivery_id)
            .await
            .is_ok_and(|delivery| delivery.state == DeliveryState::Delivered)
    })
    .await;
    let attempts = fixture
        .store
        .delivery_attempts(&fixture.connection_id, &delivery_id)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 4);
    let gaps: Vec<i64> = attempts
        .windows(2)
        .map(|pair| (pair[1].record.attempted_at - pair[0].record.attempted_at).num_milliseconds())
        .collect();
    eprintln!("gaps between attempts (ms): {gaps:?}");
    // The table scaled by 0.001: 30 ms and 300 ms, ±20 % jitter, plus the queue's polling and
    // the attempt itself; then the receiver's Retry-After (not scaled) instead of the table's
    // 1.8 s (1.44 to 2.16 s with jitter).
    assert!((24..=300).contains(&gaps[0]), "{gaps:?}");
    assert!((240..=700).contains(&gaps[1]), "{gaps:?}");
    assert!((3_000..=3_700).contains(&gaps[2]), "{gaps:?}");
    let ids: BTreeSet<String> = receiver.received().iter().map(|r| r.webhook_id()).collect();
    assert_eq!(ids.len(), 1, "one webhook-id for every attempt");
    webhooks.stop().await;
}
