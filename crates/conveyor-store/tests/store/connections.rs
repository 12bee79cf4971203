//! Connections, credentials encryption and key rotation.

use std::collections::HashSet;

use conveyor_core::{ConnectionId, Credentials, Entity, SyncId, SyncMode, SyncTrigger, TenantId};
use conveyor_store::{NewRun, StoreConfig, StoreError};
use redis::AsyncCommands;

use crate::{basic_credentials, connection, harness, key, work_order};

#[tokio::test]
async fn connections_are_created_listed_newest_first_and_paged() {
    let h = harness().await;
    let tenant = TenantId::new();
    let mut created = Vec::new();
    for name in ["a", "b", "c", "d", "e"] {
        let stored = h
            .store
            .create_connection(&connection(tenant, name), &basic_credentials("pw"))
            .await
            .unwrap();
        assert_eq!(stored.version, 1);
        created.push(stored);
    }
    let other = h
        .store
        .create_connection(&connection(TenantId::new(), "other"), &Credentials::None)
        .await
        .unwrap();

    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let page = h
            .store
            .list_connections(&tenant, 2, cursor.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        listed.extend(page.items.iter().map(|c| c.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    // Newest first: by id, and ULIDs order by creation millisecond.
    let mut expected: Vec<_> = created.iter().map(|c| c.id).collect();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(listed, expected);

    let got = h.store.get_connection(&created[2].id).await.unwrap();
    assert_eq!(got, created[2]);

    let mut all = HashSet::new();
    let mut cursor = None;
    loop {
        let page = h
            .store
            .list_connection_ids(4, cursor.as_deref())
            .await
            .unwrap();
        for id in page.items {
            assert!(all.insert(id), "{id} listed twice");
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(all.len(), 6);
    assert!(all.contains(&other.id));

    let duplicate = h
        .store
        .create_connection(&created[0], &Credentials::None)
        .await;
    assert!(matches!(duplicate, Err(StoreError::Conflict { .. })));
    assert!(matches!(
        h.store.get_connection(&ConnectionId::new()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        h.store.list_connections(&tenant, 2, Some("%%%")).await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn updates_check_the_version() {
    let h = harness().await;
    let stored = h
        .store
        .create_connection(&connection(TenantId::new(), "plant"), &Credentials::None)
        .await
        .unwrap();
    let mut first = stored.clone();
    first.name = "plant 3".into();
    let updated = h.store.update_connection(&first).await.unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(h.store.get_connection(&stored.id).await.unwrap(), updated);

    // A writer still holding version 1 loses.
    let mut stale = stored.clone();
    stale.name = "lost update".into();
    let err = h.store.update_connection(&stale).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(
        h.store.get_connection(&stored.id).await.unwrap().name,
        "plant 3"
    );

    let mut moved = updated.clone();
    moved.tenant_id = TenantId::new();
    assert!(matches!(
        h.store.update_connection(&moved).await,
        Err(StoreError::Conflict { .. })
    ));
    let mut missing = updated.clone();
    missing.id = ConnectionId::new();
    assert!(matches!(
        h.store.update_connection(&missing).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn credentials_are_encrypted_at_rest_and_never_in_the_connection() {
    let h = harness().await;
    let conn = h
        .store
        .create_connection(
            &connection(TenantId::new(), "x"),
            &basic_credentials("hunter2"),
        )
        .await
        .unwrap();
    assert_eq!(
        h.store.get_credentials(&conn.id).await.unwrap(),
        basic_credentials("hunter2")
    );
    // Nothing in Redis holds the password in clear.
    let mut raw = h.raw().await;
    for key in h.all_keys().await {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        if kind == "hash" {
            let fields: Vec<Vec<u8>> = raw.hgetall(&key).await.unwrap();
            for value in fields {
                assert!(
                    !String::from_utf8_lossy(&value).contains("hunter2"),
                    "{key} holds the password"
                );
            }
        }
    }
    let json = serde_json::to_string(&h.store.get_connection(&conn.id).await.unwrap()).unwrap();
    assert!(!json.contains("hunter2"));

    // New credentials replace the old, with a fresh nonce.
    let credentials_key = format!("conveyor:{{{}}}:credentials", conn.id);
    let nonce_before: Vec<u8> = raw.hget(&credentials_key, "nonce").await.unwrap();
    h.store
        .set_credentials(
            &conn.id,
            &Credentials::Bearer {
                token: "t0k".into(),
            },
        )
        .await
        .unwrap();
    let nonce_after: Vec<u8> = raw.hget(&credentials_key, "nonce").await.unwrap();
    assert_ne!(nonce_before, nonce_after);
    assert_eq!(
        h.store.get_credentials(&conn.id).await.unwrap(),
        Credentials::Bearer {
            token: "t0k".into()
        }
    );
    assert!(matches!(
        h.store
            .set_credentials(&ConnectionId::new(), &Credentials::None)
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn tampered_or_moved_ciphertext_is_a_crypto_error() {
    let h = harness().await;
    let tenant = TenantId::new();
    let a = h
        .store
        .create_connection(&connection(tenant, "a"), &basic_credentials("pa"))
        .await
        .unwrap();
    let b = h
        .store
        .create_connection(&connection(tenant, "b"), &basic_credentials("pb"))
        .await
        .unwrap();
    let mut raw = h.raw().await;
    let a_key = format!("conveyor:{{{}}}:credentials", a.id);
    let b_key = format!("conveyor:{{{}}}:credentials", b.id);

    let mut ciphertext: Vec<u8> = raw.hget(&a_key, "ciphertext").await.unwrap();
    ciphertext[0] ^= 0x01;
    let _: () = raw.hset(&a_key, "ciphertext", ciphertext).await.unwrap();
    let err = h.store.get_credentials(&a.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Crypto { .. }), "{err}");
    assert!(!err.is_retryable());

    // B's intact ciphertext copied onto A does not decrypt as A's.
    let fields: Vec<(String, Vec<u8>)> = raw.hgetall(&b_key).await.unwrap();
    let _: () = raw.hset_multiple(&a_key, &fields).await.unwrap();
    assert!(matches!(
        h.store.get_credentials(&a.id).await,
        Err(StoreError::Crypto { .. })
    ));
    assert_eq!(
        h.store.get_credentials(&b.id).await.unwrap(),
        basic_credentials("pb")
    );
}

#[tokio::test]
async fn rotation_reads_old_keys_and_reencrypt_moves_everything_to_the_new_key() {
    let h = harness().await;
    let tenant = TenantId::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let conn = h
            .store
            .create_connection(
                &connection(tenant, &format!("c{i}")),
                &basic_credentials(&format!("pw{i}")),
            )
            .await
            .unwrap();
        ids.push(conn.id);
    }
    // Deploy k2 as active with k1 kept for reading.
    let mut rotated = StoreConfig::new(key("k2", 2));
    rotated.previous_keys.push(key("k1", 1));
    let store = h.store_with(rotated).await;
    assert_eq!(
        store.get_credentials(&ids[0]).await.unwrap(),
        basic_credentials("pw0")
    );
    // Writes after the rotation use k2 already.
    store
        .set_credentials(&ids[2], &basic_credentials("new2"))
        .await
        .unwrap();

    let report = store.reencrypt_all().await.unwrap();
    assert_eq!(report.examined, 3);
    assert_eq!(report.reencrypted, 2);
    assert!(report.failed.is_empty());
    let mut raw = h.raw().await;
    for id in &ids {
        let key_id: String = raw
            .hget(format!("conveyor:{{{id}}}:credentials"), "key_id")
            .await
            .unwrap();
        assert_eq!(key_id, "k2");
    }
    // k1 can now be dropped.
    let only_new = h.store_with(StoreConfig::new(key("k2", 2))).await;
    assert_eq!(
        only_new.get_credentials(&ids[1]).await.unwrap(),
        basic_credentials("pw1")
    );
    assert_eq!(
        only_new.get_credentials(&ids[2]).await.unwrap(),
        basic_credentials("new2")
    );
    // A process that only knows k1 cannot read k2's ciphertexts.
    let err = h.store.get_credentials(&ids[0]).await.unwrap_err();
    assert!(matches!(err, StoreError::Crypto { .. }), "{err}");
    assert!(err.to_string().contains("k2"), "{err}");
    // A second run has nothing left to do.
    assert_eq!(only_new.reencrypt_all().await.unwrap().reencrypted, 0);
}

#[tokio::test]
async fn delete_removes_everything_kept_for_the_connection() {
    let h = harness().await;
    let tenant = TenantId::new();
    let keep = h
        .store
        .create_connection(&connection(tenant, "keep"), &Credentials::None)
        .await
        .unwrap();
    let doomed = h
        .store
        .create_connection(&connection(tenant, "doomed"), &basic_credentials("pw"))
        .await
        .unwrap();
    let now = chrono::Utc::now();
    for conn in [&keep, &doomed] {
        let records: Vec<_> = (0..50)
            .map(|i| work_order(&format!("WO-{i}"), "pump", now))
            .collect();
        h.store
            .upsert_records(&conn.id, Entity::WorkOrders, &records, None)
            .await
            .unwrap();
        let sync_id = SyncId::new();
        h.store
            .create_run(&NewRun {
                id: sync_id,
                connection_id: conn.id,
                entity: Entity::WorkOrders,
                mode: SyncMode::Full,
                trigger: SyncTrigger::Manual,
                queued_at: now,
            })
            .await
            .unwrap();
        h.store
            .complete_cursor(&conn.id, Entity::WorkOrders, &sync_id, now)
            .await
            .unwrap();
        h.store
            .transition(
                &conn.id,
                conveyor_core::ConnectionStatus::Offline,
                &conveyor_store::StatusReason::new("SOURCE_UNREACHABLE", "refused"),
            )
            .await
            .unwrap();
    }
    h.store.delete_connection(&doomed.id).await.unwrap();

    let tag = format!("{{{}}}", doomed.id);
    let left: Vec<String> = h
        .all_keys()
        .await
        .into_iter()
        .filter(|k| k.contains(&tag))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let owners: Vec<String> = h
        .all_keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with("conveyor:sync_run:"))
        .collect();
    assert_eq!(
        owners.len(),
        1,
        "only the kept connection's run: {owners:?}"
    );
    assert!(matches!(
        h.store.get_connection(&doomed.id).await,
        Err(StoreError::NotFound { .. })
    ));
    let listed = h.store.list_connections(&tenant, 10, None).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].id, keep.id);
    let ids = h.store.list_connection_ids(10, None).await.unwrap();
    assert_eq!(ids.items, vec![keep.id]);
    // The other connection is untouched.
    assert_eq!(
        h.store
            .count_records(&keep.id, Entity::WorkOrders)
            .await
            .unwrap(),
        50
    );
    assert!(matches!(
        h.store.delete_connection(&doomed.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn redis_down_is_retryable_and_the_store_reconnects() {
    let mut h = harness().await;
    let conn = h
        .store
        .create_connection(&connection(TenantId::new(), "x"), &Credentials::None)
        .await
        .unwrap();
    h.server.stop();
    let err = h.store.get_connection(&conn.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.is_retryable());
    h.server.start_again().unwrap();
    // The data is gone (no persistence), but the same store answers again by itself.
    let store = h.store.clone();
    let id = conn.id;
    let answered = crate::eventually(std::time::Duration::from_secs(10), || {
        let store = store.clone();
        async move {
            matches!(
                store.get_connection(&id).await,
                Err(StoreError::NotFound { .. })
            )
        }
    })
    .await;
    assert!(answered, "the store did not reconnect");
}
