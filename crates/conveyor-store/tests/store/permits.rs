//! The fleet-wide per-connection semaphore.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use conveyor_core::ConnectionId;
use conveyor_store::StoreConfig;

use crate::{eventually, harness, key};

#[tokio::test]
async fn never_more_holders_than_the_limit() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let in_use = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = h.store_with(StoreConfig::new(key("k1", 1))).await;
        for _ in 0..6 {
            let (store, in_use, peak, done) =
                (store.clone(), in_use.clone(), peak.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    let permit = store
                        .acquire_permit(
                            &conn,
                            None,
                            Duration::from_secs(30),
                            Duration::from_secs(20),
                        )
                        .await
                        .unwrap()
                        .expect("a permit frees within the wait");
                    let now = in_use.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    // Hold it across a Redis round trip, as a request would.
                    assert!(store.permits_in_use(&conn).await.unwrap() <= 2);
                    in_use.fetch_sub(1, Ordering::SeqCst);
                    store.release_permit(&permit).await.unwrap();
                }
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
    }
    for task in futures::future::join_all(tasks).await {
        task.unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 24);
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 2, "peak {peak}");
    assert_eq!(h.store.permits_in_use(&conn).await.unwrap(), 0);
}

#[tokio::test]
async fn a_crashed_holders_permit_frees_itself() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let ttl = Duration::from_millis(300);
    // Two workers take the permits and "crash" (never release).
    let first = h
        .store
        .try_acquire_permit(&conn, Some(2), ttl)
        .await
        .unwrap()
        .unwrap();
    let _second = h
        .store
        .try_acquire_permit(&conn, Some(2), ttl)
        .await
        .unwrap()
        .unwrap();
    assert!(
        h.store
            .try_acquire_permit(&conn, Some(2), ttl)
            .await
            .unwrap()
            .is_none()
    );
    // A higher limit for the same connection admits one more.
    assert!(
        h.store
            .try_acquire_permit(&conn, Some(3), ttl)
            .await
            .unwrap()
            .is_some()
    );

    let store = h.store.clone();
    let freed = eventually(Duration::from_secs(5), || {
        let store = store.clone();
        async move {
            store
                .try_acquire_permit(&conn, Some(2), Duration::from_secs(30))
                .await
                .unwrap()
                .is_some()
        }
    })
    .await;
    assert!(freed, "an expired permit must free itself");
    // The crashed holder cannot renew what it lost.
    let mut lost = first;
    assert!(!h.store.renew_permit(&mut lost, ttl).await.unwrap());
}

#[tokio::test]
async fn renewing_keeps_a_permit_and_releasing_frees_it() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let mut permit = h
        .store
        .try_acquire_permit(&conn, Some(1), Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let before = permit.expires_at;
    assert!(
        h.store
            .renew_permit(&mut permit, Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(permit.expires_at > before);
    assert!(
        h.store
            .try_acquire_permit(&conn, Some(1), Duration::from_secs(5))
            .await
            .unwrap()
            .is_none()
    );
    h.store.release_permit(&permit).await.unwrap();
    assert!(
        h.store
            .try_acquire_permit(&conn, Some(1), Duration::from_secs(5))
            .await
            .unwrap()
            .is_some()
    );
}
