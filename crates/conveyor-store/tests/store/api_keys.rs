//! Tenants and API keys.

use conveyor_core::{ApiKeyId, TenantId};
use conveyor_store::{ApiRole, StoreError};
use redis::AsyncCommands;

use crate::harness;

#[tokio::test]
async fn keys_authenticate_by_secret_list_without_secrets_and_revoke() {
    let h = harness().await;
    let tenant = h.store.create_tenant("ACME").await.unwrap();
    assert_eq!(h.store.get_tenant(&tenant.id).await.unwrap(), tenant);
    let other = h.store.create_tenant("Globex").await.unwrap();
    let tenants = h.store.list_tenants(10, None).await.unwrap();
    assert_eq!(tenants.items.len(), 2);

    let admin = h
        .store
        .create_api_key(&tenant.id, ApiRole::Admin, "ci")
        .await
        .unwrap();
    let ops = h
        .store
        .create_api_key(&tenant.id, ApiRole::Operator, "pager")
        .await
        .unwrap();
    let secret = admin.secret.expose().to_owned();
    assert!(secret.starts_with("cvk_"));
    assert_eq!(secret.len(), 4 + 43, "32 random bytes in base64url");
    assert_ne!(secret, ops.secret.expose());
    assert!(secret.starts_with(&admin.key.prefix));

    let found = h.store.authenticate_api_key(&secret).await.unwrap();
    assert_eq!(found, admin.key);
    assert_eq!(found.role, ApiRole::Admin);
    assert_eq!(
        h.store
            .authenticate_api_key(ops.secret.expose())
            .await
            .unwrap()
            .role,
        ApiRole::Operator
    );
    for wrong in ["cvk_nope", "", "Bearer x", &secret[..secret.len() - 1]] {
        assert!(matches!(
            h.store.authenticate_api_key(wrong).await,
            Err(StoreError::NotFound { .. })
        ));
    }

    // Lists show prefixes, never the secret or its hash; nothing in Redis holds the secret.
    let listed = h.store.list_api_keys(&tenant.id, 10, None).await.unwrap();
    assert_eq!(listed.items.len(), 2);
    let json = serde_json::to_string(&listed.items).unwrap();
    assert!(!json.contains(&secret));
    assert!(!json.contains("hash"));
    let mut raw = h.raw().await;
    for key in h.all_keys().await {
        assert!(!key.contains(&secret));
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        let values: Vec<String> = match kind.as_str() {
            "hash" => raw.hvals(&key).await.unwrap(),
            "string" => vec![raw.get(&key).await.unwrap()],
            _ => Vec::new(),
        };
        assert!(values.iter().all(|v| !v.contains(&secret)), "{key}");
    }
    assert!(
        h.store
            .list_api_keys(&other.id, 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Another tenant cannot revoke it; its own tenant can, and it stops working at once.
    assert!(matches!(
        h.store.revoke_api_key(&other.id, &admin.key.id).await,
        Err(StoreError::NotFound { .. })
    ));
    let revoked = h
        .store
        .revoke_api_key(&tenant.id, &admin.key.id)
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(matches!(
        h.store.authenticate_api_key(&secret).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        h.store
            .authenticate_api_key(ops.secret.expose())
            .await
            .is_ok()
    );
    let listed = h.store.list_api_keys(&tenant.id, 10, None).await.unwrap();
    let shown = listed.items.iter().find(|k| k.id == admin.key.id).unwrap();
    assert!(shown.revoked_at.is_some());
    // Revoking twice is fine.
    h.store
        .revoke_api_key(&tenant.id, &admin.key.id)
        .await
        .unwrap();

    assert!(matches!(
        h.store
            .create_api_key(&TenantId::new(), ApiRole::Developer, "x")
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        h.store.revoke_api_key(&tenant.id, &ApiKeyId::new()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!("operator".parse::<ApiRole>().unwrap(), ApiRole::Operator);
    assert!("root".parse::<ApiRole>().is_err());
}
