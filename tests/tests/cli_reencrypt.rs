//! `conveyorctl reencrypt`, the middle step of an encryption key rotation, as an operator runs
//! it: the real binary against a real redis-server holding credentials sealed with the old key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

#[path = "sync_support.rs"]
mod support;

use std::process::Command;

use conveyor_core::ProfileKind;
use conveyor_store::{EncryptionKey, Store, StoreConfig};
use conveyor_testkit::{RedisServer, cargo_bin};
use support::{KEYS, connection, credentials, store};

const NEW_KEY: &str = "k2:QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";

fn reencrypt(redis: &RedisServer, keys: &str) -> (i32, String) {
    let output = Command::new(cargo_bin("conveyorctl"))
        .arg("reencrypt")
        .env("CONVEYOR_REDIS_URL", redis.url())
        .env("CONVEYOR_ENCRYPTION_KEYS", keys)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

async fn store_with(redis: &RedisServer, keys: &str) -> Store {
    let keys = EncryptionKey::parse_list(keys).unwrap();
    Store::connect(&redis.url(), StoreConfig::from_keys(keys).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencrypt_moves_every_credential_to_the_active_key() {
    let redis = RedisServer::start().unwrap();
    let old = store(&redis.url()).await;
    let mut ids = Vec::new();
    for profile in [
        ProfileKind::ODataV4,
        ProfileKind::Oslc,
        ProfileKind::OffsetHasMore,
    ] {
        let connection = connection(profile, "http://127.0.0.1:9", 100);
        old.create_connection(&connection, &credentials(profile, "http://127.0.0.1:9"))
            .await
            .unwrap();
        ids.push((connection.id, profile));
    }

    let rotated = format!("{NEW_KEY},{KEYS}");
    let (code, text) = reencrypt(&redis, &rotated);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("examined: 3"), "{text}");
    assert!(text.contains("reencrypted: 3"), "{text}");
    assert!(text.contains("failed: none"), "{text}");
    // The key material never reaches the output.
    assert!(
        !text.contains("QkJCQkJC") && !text.contains("AAAAAAAA"),
        "{text}"
    );

    // The old key can go: the new one alone reads every credential.
    let new_only = store_with(&redis, NEW_KEY).await;
    for (id, profile) in &ids {
        assert_eq!(
            new_only.get_credentials(id).await.unwrap(),
            credentials(*profile, "http://127.0.0.1:9")
        );
    }
    let (code, text) = reencrypt(&redis, &rotated);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("reencrypted: 0"),
        "a second run has nothing left: {text}"
    );

    // Keys that cannot open the stored credentials: reported, left alone, non-zero exit.
    let (code, text) = reencrypt(&redis, "k3:Q0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0M=");
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("could not be decrypted"), "{text}");
    let (code, text) = reencrypt(&redis, "not a key list");
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("CONVEYOR_ENCRYPTION_KEYS"), "{text}");
}
