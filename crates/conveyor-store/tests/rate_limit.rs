//! The shared rate limiter against a real `redis-server`: the burst, the refusal with its wait,
//! the refill, independence of keys, and one budget shared by separate store handles.

use std::time::Duration;

use conveyor_core::ApiKeyId;
use conveyor_store::{EncryptionKey, RateLimitPolicy, Store, StoreConfig};
use conveyor_testkit::RedisServer;

async fn store(server: &RedisServer) -> Store {
    let config = StoreConfig::new(EncryptionKey::new("k1", [1; 32]).unwrap());
    Store::connect(&server.url(), config).await.unwrap()
}

#[tokio::test]
async fn burst_then_refusal_with_retry_after_then_refill() {
    let server = RedisServer::start().unwrap();
    let store = store(&server).await;
    let key = ApiKeyId::new();
    // One token every 100 ms, five at once.
    let policy = RateLimitPolicy {
        per_minute: 600,
        burst: 5,
    };
    for expected_remaining in (0..5).rev() {
        let decision = store.take_rate_limit_token(&key, policy).await.unwrap();
        assert!(decision.allowed);
        assert_eq!(decision.retry_after, Duration::ZERO);
        // Tokens trickle back while the loop runs, so remaining can only be higher.
        assert!(decision.remaining >= expected_remaining, "{decision:?}");
        assert!(decision.reset_after <= Duration::from_millis(500));
    }
    let refused = store.take_rate_limit_token(&key, policy).await.unwrap();
    assert!(!refused.allowed, "{refused:?}");
    assert_eq!(refused.remaining, 0);
    assert!(refused.retry_after > Duration::ZERO);
    assert!(
        refused.retry_after <= Duration::from_millis(100),
        "{refused:?}"
    );

    // After the announced wait, one request goes through again.
    tokio::time::sleep(refused.retry_after + Duration::from_millis(5)).await;
    let again = store.take_rate_limit_token(&key, policy).await.unwrap();
    assert!(again.allowed, "{again:?}");
}

#[tokio::test]
async fn keys_have_separate_budgets_and_handles_share_one() {
    let server = RedisServer::start().unwrap();
    let first = store(&server).await;
    let second = store(&server).await;
    // One token a minute: nothing refills during the test.
    let policy = RateLimitPolicy {
        per_minute: 1,
        burst: 3,
    };
    let shared = ApiKeyId::new();
    let mut allowed = 0;
    for round in 0..10 {
        let handle = if round % 2 == 0 { &first } else { &second };
        if handle
            .take_rate_limit_token(&shared, policy)
            .await
            .unwrap()
            .allowed
        {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 3, "two handles spend one budget");

    let other = ApiKeyId::new();
    let decision = first.take_rate_limit_token(&other, policy).await.unwrap();
    assert!(decision.allowed);
    assert_eq!(decision.remaining, 2);
}

#[tokio::test]
async fn concurrent_takes_never_overspend() {
    let server = RedisServer::start().unwrap();
    let store = store(&server).await;
    let key = ApiKeyId::new();
    let policy = RateLimitPolicy {
        per_minute: 1,
        burst: 20,
    };
    let takes = (0..100).map(|_| store.take_rate_limit_token(&key, policy));
    let decisions = futures::future::join_all(takes).await;
    let allowed = decisions
        .into_iter()
        .filter(|decision| decision.as_ref().unwrap().allowed)
        .count();
    assert_eq!(allowed, 20);
}

#[tokio::test]
async fn unavailable_redis_is_a_retryable_error() {
    let mut server = RedisServer::start().unwrap();
    let store = store(&server).await;
    server.stop();
    let policy = RateLimitPolicy {
        per_minute: 60,
        burst: 1,
    };
    let err = store
        .take_rate_limit_token(&ApiKeyId::new(), policy)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}
