//! Webhook endpoints, encrypted signing secrets and the delivery log, against a real
//! `redis-server` (one per test).

use chrono::{TimeDelta, Utc};
use conveyor_core::{ConnectionId, EndpointId, EventType, JobId};
use conveyor_store::webhooks::MAX_ENDPOINTS_PER_CONNECTION;
use conveyor_store::{
    AttemptUpdate, DeliveryFilter, DeliveryState, EncryptionKey, LoggedAttempt, Store, StoreConfig,
    StoreError, WebhookEndpoint, delivery_id_for,
};
use conveyor_testkit::RedisServer;
use conveyor_webhooks::{AttemptRecord, SigningSecrets};

async fn store(server: &RedisServer) -> Store {
    let key = EncryptionKey::new("k1", [7; 32]).unwrap();
    Store::connect(&server.url(), StoreConfig::new(key))
        .await
        .unwrap()
}

fn endpoint(connection_id: ConnectionId, types: &[EventType]) -> WebhookEndpoint {
    WebhookEndpoint::new(
        connection_id,
        "https://hooks.example.com/conveyor".to_owned(),
        types.to_vec(),
    )
}

#[tokio::test]
async fn endpoints_are_created_listed_updated_and_deleted() {
    let server = RedisServer::start().unwrap();
    let store = store(&server).await;
    let conn = ConnectionId::new();
    let first = store
        .create_webhook_endpoint(
            &endpoint(conn, &[EventType::SyncCompleted]),
            &SigningSecrets::generate(),
        )
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    let second = store
        .create_webhook_endpoint(
            &endpoint(conn, &[EventType::SyncFailed]),
            &SigningSecrets::generate(),
        )
        .await
        .unwrap();
    let listed = store.list_webhook_endpoints(&conn).await.unwrap();
    assert_eq!(listed, [first.clone(), second.clone()]);
    assert!(first.wants(EventType::SyncCompleted));
    assert!(!first.wants(EventType::SyncFailed));

    // Optimistic updates: the version read must be sent back.
    let mut changed = first.clone();
    changed.event_types.push(EventType::SystemError);
    let updated = store.update_webhook_endpoint(&changed).await.unwrap();
    assert_eq!(updated.version, 2);
    assert!(matches!(
        store.update_webhook_endpoint(&changed).await,
        Err(StoreError::Conflict { .. })
    ));

    // Disabling (a 410) works whatever the version and records why.
    let disabled = store
        .disable_webhook_endpoint(&conn, &first.id, "receiver answered 410 Gone")
        .await
        .unwrap();
    assert!(!disabled.enabled);
    assert!(!disabled.wants(EventType::SyncCompleted));
    assert_eq!(
        disabled.disabled_reason.as_deref(),
        Some("receiver answered 410 Gone")
    );

    store
        .delete_webhook_endpoint(&conn, &first.id)
        .await
        .unwrap();
    assert!(matches!(
        store.get_webhook_endpoint(&conn, &first.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.webhook_secrets(&conn, &first.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_webhook_endpoints(&conn).await.unwrap(), [second]);
}

#[tokio::test]
async fn a_connection_has_a_bounded_number_of_endpoints() {
    let server = RedisServer::start().unwrap();
    let store = store(&server).await;
    let conn = ConnectionId::new();
    for _ in 0..MAX_ENDPOINTS_PER_CONNECTION {
        store
            .create_webhook_endpoint(
                &endpoint(conn, &[EventType::SyncCompleted]),
                &SigningSecrets::generate(),
            )
            .await
            .unwrap();
    }
    assert!(matches!(
        store
            .create_webhook_endpoint(
                &endpoint(conn, &[EventType::SyncCompleted]),
                &SigningSecrets::generate()
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));
}

#[tokio::test]
async fn secrets_are_encrypted_at_rest_bound_to_their_endpoint_and_rotate() {
    let server = RedisServer::start().unwrap();
    let store = store(&server).await;
    let conn = ConnectionId::new();
    let secrets = SigningSecrets::generate();
    let created = store
        .create_webhook_endpoint(&endpoint(conn, &[EventType::SyncCompleted]), &secrets)
        .await
        .unwrap();
    assert_eq!(
        store.webhook_secrets(&conn, &created.id).await.unwrap(),
        secrets
    );

    // Nothing in Redis contains the secret's text.
    let mut raw = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    let secret_text = secrets.current.expose();
    let secret_key_part = &secret_text["whsec_".len()..];
    for key in &keys {
        let dump: Vec<String> = redis::cmd("HVALS")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap();
        for value in dump {
            assert!(!value.contains(secret_key_part), "{key} holds the secret");
        }
    }

    // A ciphertext copied onto another endpoint of the same connection is refused.
    let other = store
        .create_webhook_endpoint(
            &endpoint(conn, &[EventType::SyncCompleted]),
            &SigningSecrets::generate(),
        )
        .await
        .unwrap();
    let secrets_key = format!("conveyor:{{{conn}}}:webhooks:secrets");
    let sealed: String = redis::cmd("HGET")
        .arg(&secrets_key)
        .arg(created.id.to_string())
        .query_async(&mut raw)
        .await
        .unwrap();
    let () = redis::cmd("HSET")
        .arg(&secrets_key)
        .arg(other.id.to_string())
        .arg(sealed)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(matches!(
        store.webhook_secrets(&conn, &other.id).await,
        Err(StoreError::Crypto { .. })
    ));

    // Rotation: a new current secret, the old one kept for 24 hours.
    let now = Utc::now();
    let new_secret = store
        .rotate_webhook_secret(&conn, &created.id, now)
        .await
        .unwrap();
    let rotated = store.webhook_secrets(&conn, &created.id).await.unwrap();
    assert_eq!(rotated.current, new_secret);
    assert_ne!(rotated.current, secrets.current);
    let previous = rotated.previous.clone().unwrap();
    assert_eq!(previous.secret, secrets.current);
    assert_eq!(previous.expires_at, now + TimeDelta::hours(24));
    assert_eq!(rotated.active(now).count(), 2);
    assert_eq!(rotated.active(now + TimeDelta::hours(25)).count(), 1);
    let shown = store
        .get_webhook_endpoint(&conn, &created.id)
        .await
        .unwrap();
    assert_eq!(shown.secret_rotated_at, Some(now));
}

fn attempt(number: u32, status: u16, outcome: &str) -> LoggedAttempt {
    LoggedAttempt {
        attempt: number,
        outcome: outcome.to_owned(),
        record: AttemptRecord {
            attempted_at: Utc::now(),
            url: "https://hooks.example.com/conveyor".to_owned(),
            status: Some(status),
            duration_ms: 12,
            error: (status >= 300).then(|| format!("receiver answered {status}")),
            response_body: "nope".to_owned(),
        },
    }
}

#[tokio::test]
async fn deliveries_are_created_once_logged_listed_and_requeued() {
    let server = RedisServer::start().unwrap();
    let store = store(&server).await;
    let conn = ConnectionId::new();
    let endpoint_a = EndpointId::new();
    let endpoint_b = EndpointId::new();
    let first = store
        .append_event(&conn, EventType::SyncCompleted, serde_json::json!({"n": 1}))
        .await
        .unwrap();
    let second = store
        .append_event(&conn, EventType::SyncFailed, serde_json::json!({"n": 2}))
        .await
        .unwrap();

    let delivery_a1 = delivery_id_for(&first.id, &endpoint_a);
    let job_id = JobId::new();
    let state = store
        .ensure_delivery(&delivery_a1, &endpoint_a, &first, &job_id, false)
        .await
        .unwrap();
    assert_eq!(state, DeliveryState::Pending);
    // A second dispatch of the same event finds the same delivery, not a new one.
    let again = store
        .ensure_delivery(&delivery_a1, &endpoint_a, &first, &JobId::new(), false)
        .await
        .unwrap();
    assert_eq!(again, DeliveryState::Pending);
    assert_eq!(
        store
            .get_delivery(&conn, &delivery_a1)
            .await
            .unwrap()
            .job_id,
        job_id
    );

    for (event, endpoint_id) in [(&first, &endpoint_b), (&second, &endpoint_a)] {
        store
            .ensure_delivery(
                &delivery_id_for(&event.id, endpoint_id),
                endpoint_id,
                event,
                &JobId::new(),
                false,
            )
            .await
            .unwrap();
    }

    // Two failures then a success, all logged in order.
    let retry_at = Utc::now() + TimeDelta::seconds(30);
    for (number, status) in [(1, 500), (2, 502)] {
        let total = store
            .record_delivery_attempt(
                &conn,
                &delivery_a1,
                &AttemptUpdate {
                    attempt: attempt(number, status, "failed"),
                    state: DeliveryState::Retrying,
                    next_attempt_at: Some(retry_at),
                },
            )
            .await
            .unwrap();
        assert_eq!(total, number);
    }
    let retrying = store.get_delivery(&conn, &delivery_a1).await.unwrap();
    assert_eq!(retrying.state, DeliveryState::Retrying);
    assert_eq!(retrying.last_status, Some(502));
    assert_eq!(retrying.round_attempts, 2);
    assert_eq!(
        retrying.next_attempt_at.map(|at| at.timestamp_millis()),
        Some(retry_at.timestamp_millis())
    );
    assert_eq!(
        store
            .ensure_delivery(&delivery_a1, &endpoint_a, &first, &JobId::new(), false)
            .await
            .unwrap(),
        DeliveryState::Retrying
    );
    store
        .record_delivery_attempt(
            &conn,
            &delivery_a1,
            &AttemptUpdate {
                attempt: attempt(3, 200, "delivered"),
                state: DeliveryState::Delivered,
                next_attempt_at: None,
            },
        )
        .await
        .unwrap();
    let attempts = store.delivery_attempts(&conn, &delivery_a1).await.unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.record.status).collect::<Vec<_>>(),
        [Some(500), Some(502), Some(200)]
    );
    let delivered = store.get_delivery(&conn, &delivery_a1).await.unwrap();
    assert_eq!(delivered.state, DeliveryState::Delivered);
    assert_eq!(delivered.attempts, 3);
    assert_eq!(delivered.last_error, None);
    assert_eq!(delivered.event, first);

    // Lists: newest first, by endpoint, by event, by state, paged.
    let all = store
        .list_deliveries(&conn, &DeliveryFilter::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(all.items.len(), 3);
    assert_eq!(all.items[0].event.id, second.id);
    let by_endpoint = store
        .list_deliveries(
            &conn,
            &DeliveryFilter {
                endpoint_id: Some(endpoint_b),
                ..DeliveryFilter::default()
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(by_endpoint.items.len(), 1);
    assert_eq!(by_endpoint.items[0].endpoint_id, endpoint_b);
    let by_event = store
        .list_deliveries(
            &conn,
            &DeliveryFilter {
                event_id: Some(first.id),
                ..DeliveryFilter::default()
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(by_event.items.len(), 2);
    let delivered_only = store
        .list_deliveries(
            &conn,
            &DeliveryFilter {
                states: vec![DeliveryState::Delivered],
                ..DeliveryFilter::default()
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(delivered_only.items.len(), 1);
    let page_one = store
        .list_deliveries(&conn, &DeliveryFilter::default(), 2, None)
        .await
        .unwrap();
    assert_eq!(page_one.items.len(), 2);
    let page_two = store
        .list_deliveries(
            &conn,
            &DeliveryFilter::default(),
            2,
            page_one.next_cursor.as_deref(),
        )
        .await
        .unwrap();
    assert_eq!(page_two.items.len(), 1);
    assert_ne!(page_two.items[0].id, page_one.items[0].id);
    assert_ne!(page_two.items[0].id, page_one.items[1].id);
    let future = store
        .list_deliveries(
            &conn,
            &DeliveryFilter {
                since: Some(Utc::now() + TimeDelta::minutes(1)),
                ..DeliveryFilter::default()
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert!(future.items.is_empty());

    // Redelivery starts a fresh round under a new job; the total keeps counting.
    let new_job = JobId::new();
    let requeued = store
        .requeue_delivery(&conn, &delivery_a1, &new_job)
        .await
        .unwrap();
    assert_eq!(requeued.state, DeliveryState::Pending);
    assert_eq!(requeued.round_attempts, 0);
    assert_eq!(requeued.attempts, 3);
    assert_eq!(requeued.job_id, new_job);

    let b1 = delivery_id_for(&first.id, &endpoint_b);
    store
        .cancel_delivery(&conn, &b1, "endpoint disabled")
        .await
        .unwrap();
    let cancelled = store.get_delivery(&conn, &b1).await.unwrap();
    assert_eq!(cancelled.state, DeliveryState::Cancelled);
    assert_eq!(cancelled.last_error.as_deref(), Some("endpoint disabled"));
}
