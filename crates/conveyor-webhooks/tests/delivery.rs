//! Delivery attempts against a real HTTP receiver on 127.0.0.1: what is sent, and how each kind
//! of answer is classified and recorded.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

mod support;

use std::time::Duration;

use conveyor_core::{ConnectionId, Event, EventType};
use conveyor_webhooks::delivery::{DEFAULT_TIMEOUT, RESPONSE_EXCERPT_LIMIT};
use conveyor_webhooks::{
    Deliverer, DeliveryConfig, DeliveryOutcome, SigningSecret, SigningSecrets, UrlPolicy, Verifier,
    WebhookError, sample_event,
};
use support::{Receiver, big_body};

fn deliverer(timeout: Duration) -> Deliverer {
    Deliverer::new(DeliveryConfig {
        timeout,
        url_policy: UrlPolicy::ALLOW_PRIVATE,
        ..DeliveryConfig::default()
    })
    .unwrap()
}

fn event() -> Event {
    sample_event(EventType::SyncCompleted, ConnectionId::new())
}

#[tokio::test]
async fn a_2xx_answer_is_delivered_with_signed_standard_headers() {
    let mut receiver = Receiver::start().await;
    let deliverer = deliverer(Duration::from_secs(5));
    let secrets = SigningSecrets::generate();
    let event = event();
    let url = receiver.url("ok");

    let before = chrono::Utc::now();
    let attempt = deliverer.deliver(&url, &event, &secrets).await;
    assert_eq!(attempt.outcome, DeliveryOutcome::Delivered);
    assert_eq!(attempt.record.status, Some(204));
    assert_eq!(attempt.record.url, url);
    assert_eq!(attempt.record.error, None);
    assert!(attempt.record.attempted_at >= before - chrono::TimeDelta::seconds(1));

    let request = receiver.next_request().await;
    assert_eq!(request.header("content-type"), "application/json");
    assert!(
        request
            .header("user-agent")
            .starts_with("Conveyor-Webhooks/")
    );
    assert_eq!(request.header("webhook-id"), event.id.to_string());
    let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
    assert!((timestamp - chrono::Utc::now().timestamp()).abs() <= 5);
    assert!(request.header("webhook-signature").starts_with("v1,"));
    // The body is the event's JSON, and the receiver's verifier accepts it.
    assert_eq!(
        serde_json::from_slice::<Event>(&request.body).unwrap(),
        event
    );
    Verifier::new([secrets.current.clone()])
        .verify(&request.headers, &request.body)
        .unwrap();

    // Any 2xx counts, and the answer's body is kept for the log.
    let attempt = deliverer
        .deliver(&receiver.url("accepted"), &event, &secrets)
        .await;
    assert_eq!(attempt.outcome, DeliveryOutcome::Delivered);
    assert_eq!(attempt.record.status, Some(202));
    assert_eq!(attempt.record.response_body, "queued");
    // Every attempt of one event carries the same webhook-id.
    let again = receiver.next_request().await;
    assert_eq!(again.header("webhook-id"), event.id.to_string());
}

#[tokio::test]
async fn a_tampered_body_or_a_wrong_secret_fails_verification() {
    let mut receiver = Receiver::start().await;
    let secrets = SigningSecrets::generate();
    deliverer(Duration::from_secs(5))
        .deliver(&receiver.url("ok"), &event(), &secrets)
        .await;
    let request = receiver.next_request().await;
    let verifier = Verifier::new([secrets.current.clone()]);
    verifier.verify(&request.headers, &request.body).unwrap();

    let mut tampered = request.body.to_vec();
    let position = tampered.iter().position(|byte| *byte == b'7').unwrap();
    tampered[position] = b'8';
    assert_eq!(
        verifier.verify(&request.headers, &tampered),
        Err(WebhookError::NoMatchingSignature)
    );
    assert_eq!(
        Verifier::new([SigningSecret::generate()]).verify(&request.headers, &request.body),
        Err(WebhookError::NoMatchingSignature)
    );
}

#[tokio::test]
async fn during_rotation_both_secrets_verify_a_real_delivery() {
    let mut receiver = Receiver::start().await;
    let mut secrets = SigningSecrets::generate();
    let old = secrets.current.clone();
    let new = secrets.rotate(chrono::Utc::now()).clone();
    deliverer(Duration::from_secs(5))
        .deliver(&receiver.url("ok"), &event(), &secrets)
        .await;
    let request = receiver.next_request().await;
    assert_eq!(request.header("webhook-signature").split(' ').count(), 2);
    for secret in [old, new] {
        Verifier::new([secret])
            .verify(&request.headers, &request.body)
            .unwrap();
    }
}

#[tokio::test]
async fn error_statuses_are_failed_gone_or_retry() {
    let receiver = Receiver::start().await;
    let deliverer = deliverer(Duration::from_secs(5));
    let secrets = SigningSecrets::generate();
    let event = event();

    let attempt = deliverer
        .deliver(&receiver.url("error"), &event, &secrets)
        .await;
    assert_eq!(
        attempt.outcome,
        DeliveryOutcome::Failed {
            error: "receiver answered 500 Internal Server Error".to_owned()
        }
    );
    assert_eq!(attempt.record.status, Some(500));
    assert_eq!(attempt.record.response_body, "boom");
    assert_eq!(
        attempt.record.error.as_deref(),
        Some("receiver answered 500 Internal Server Error")
    );

    let attempt = deliverer
        .deliver(&receiver.url("gone"), &event, &secrets)
        .await;
    assert_eq!(attempt.outcome, DeliveryOutcome::Gone);
    assert_eq!(attempt.record.status, Some(410));

    let attempt = deliverer
        .deliver(&receiver.url("busy"), &event, &secrets)
        .await;
    assert_eq!(
        attempt.outcome,
        DeliveryOutcome::Retry {
            after: Duration::from_secs(7)
        }
    );
    assert_eq!(attempt.record.status, Some(429));
    assert_eq!(attempt.record.error, None);

    let attempt = deliverer
        .deliver(&receiver.url("unavailable-until"), &event, &secrets)
        .await;
    match attempt.outcome {
        DeliveryOutcome::Retry { after } => assert!(
            after > Duration::from_secs(100) && after <= Duration::from_secs(120),
            "{after:?}"
        ),
        other => panic!("expected a retry, got {other:?}"),
    }

    // 429 without Retry-After, and redirects (never followed), go on the normal schedule.
    for (path, status) in [("busy-without-retry-after", 429), ("redirect", 302)] {
        let attempt = deliverer
            .deliver(&receiver.url(path), &event, &secrets)
            .await;
        assert!(
            matches!(attempt.outcome, DeliveryOutcome::Failed { .. }),
            "{path}: {:?}",
            attempt.outcome
        );
        assert_eq!(attempt.record.status, Some(status));
    }
}

#[tokio::test]
async fn a_receiver_that_hangs_past_the_timeout_fails_the_attempt() {
    assert_eq!(DeliveryConfig::default().timeout, Duration::from_secs(10));
    assert_eq!(DEFAULT_TIMEOUT, Duration::from_secs(10));

    let mut receiver = Receiver::start().await;
    let deliverer = deliverer(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let attempt = deliverer
        .deliver(&receiver.url("hang"), &event(), &SigningSecrets::generate())
        .await;
    let elapsed = started.elapsed();
    assert_eq!(
        attempt.outcome,
        DeliveryOutcome::Failed {
            error: "timed out after 300 ms".to_owned()
        }
    );
    assert_eq!(attempt.record.status, None);
    assert!(attempt.record.duration_ms >= 300, "{:?}", attempt.record);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    // The request did reach the receiver: it was the answer that never came.
    assert_eq!(receiver.next_request().await.path, "hang");
}

#[tokio::test]
async fn a_connection_refused_fails_the_attempt() {
    // Bind then drop a listener so the port is very likely closed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let attempt = deliverer(Duration::from_secs(5))
        .deliver(
            &format!("http://127.0.0.1:{port}/ok"),
            &event(),
            &SigningSecrets::generate(),
        )
        .await;
    match attempt.outcome {
        DeliveryOutcome::Failed { error } => {
            assert!(error.starts_with("could not connect"), "{error}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn the_response_excerpt_is_capped_at_1_kib_on_a_char_boundary() {
    let receiver = Receiver::start().await;
    let attempt = deliverer(Duration::from_secs(5))
        .deliver(&receiver.url("big"), &event(), &SigningSecrets::generate())
        .await;
    assert_eq!(attempt.outcome, DeliveryOutcome::Delivered);
    let excerpt = attempt.record.response_body;
    // "x" then two-byte characters: 1024 bytes would split one, so the cut is at 1023.
    assert_eq!(excerpt.len(), RESPONSE_EXCERPT_LIMIT - 1);
    assert!(big_body().starts_with(&excerpt));
    assert!(!excerpt.contains('\u{fffd}'));
}

#[tokio::test]
async fn loopback_is_refused_at_delivery_time_unless_allowed() {
    let mut receiver = Receiver::start().await;
    let strict = Deliverer::new(DeliveryConfig::default()).unwrap();
    let secrets = SigningSecrets::generate();
    let event = event();

    // A name that resolves to loopback: refused by the checked resolver, after DNS.
    let attempt = strict
        .deliver(&receiver.localhost_url("ok"), &event, &secrets)
        .await;
    match &attempt.outcome {
        DeliveryOutcome::Failed { error } => assert!(
            error.contains("host `localhost` resolves to") && error.contains("not a public"),
            "{error}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(attempt.record.status, None);

    // A literal loopback address: refused before any connection.
    let attempt = strict.deliver(&receiver.url("ok"), &event, &secrets).await;
    match &attempt.outcome {
        DeliveryOutcome::Failed { error } => {
            assert!(error.contains("loopback"), "{error}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(receiver.nothing_received(), "nothing reached the receiver");

    // With private networks allowed (demo and tests), the same name delivers.
    let attempt = deliverer(Duration::from_secs(5))
        .deliver(&receiver.localhost_url("ok"), &event, &secrets)
        .await;
    assert_eq!(attempt.outcome, DeliveryOutcome::Delivered);
    assert_eq!(receiver.next_request().await.path, "ok");
}

#[tokio::test]
async fn attempt_records_serialize_for_the_delivery_log() {
    let receiver = Receiver::start().await;
    let attempt = deliverer(Duration::from_secs(5))
        .deliver(
            &receiver.url("error"),
            &event(),
            &SigningSecrets::generate(),
        )
        .await;
    let json = serde_json::to_value(&attempt.record).unwrap();
    assert_eq!(json["status"], 500);
    assert_eq!(json["response_body"], "boom");
    assert!(json["duration_ms"].is_u64());
    assert!(json["attempted_at"].is_string());
    assert_eq!(
        serde_json::from_value::<conveyor_webhooks::AttemptRecord>(json).unwrap(),
        attempt.record
    );
}
