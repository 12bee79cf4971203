//! Tests of the store against a real `redis-server` (one per test, from conveyor-testkit).

mod api_keys;
mod connections;
mod outbox;
mod permits;
mod progress;
mod records;
mod runs;
mod status;

use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor_core::{
    Connection, ConnectionId, Credentials, Entity, EntityConfig, ProfileKind, RecordData,
    SourceSettings, TenantId, UnifiedRecord, WorkOrder,
};
use conveyor_store::{EncryptionKey, Store, StoreConfig};
use conveyor_testkit::RedisServer;

/// A Redis server of the test's own and a store over it.
pub(crate) struct Harness {
    pub(crate) server: RedisServer,
    pub(crate) store: Store,
}

pub(crate) fn key(id: &str, byte: u8) -> EncryptionKey {
    EncryptionKey::new(id, [byte; 32]).unwrap()
}

pub(crate) async fn harness() -> Harness {
    harness_with(|_| {}).await
}

pub(crate) async fn harness_with(adjust: impl FnOnce(&mut StoreConfig)) -> Harness {
    let server = RedisServer::start().expect("redis-server starts");
    let mut config = StoreConfig::new(key("k1", 1));
    adjust(&mut config);
    let store = Store::connect(&server.url(), config).await.unwrap();
    Harness { server, store }
}

impl Harness {
    /// Another store on the same server with its own connection and `config`.
    pub(crate) async fn store_with(&self, config: StoreConfig) -> Store {
        Store::connect(&self.server.url(), config).await.unwrap()
    }

    /// A raw async connection for looking at keys directly.
    pub(crate) async fn raw(&self) -> redis::aio::MultiplexedConnection {
        self.server
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Every key on the server.
    pub(crate) async fn all_keys(&self) -> Vec<String> {
        let mut raw = self.raw().await;
        redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut raw)
            .await
            .unwrap()
    }
}

pub(crate) fn connection(tenant_id: TenantId, name: &str) -> Connection {
    let now = Utc::now();
    Connection {
        id: ConnectionId::new(),
        tenant_id,
        name: name.to_owned(),
        profile: ProfileKind::ODataV4,
        base_url: "http://127.0.0.1:9/".to_owned(),
        settings: SourceSettings::default(),
        entities: vec![EntityConfig {
            entity: Entity::WorkOrders,
            path: None,
            interval_secs: 3_600,
            enabled: true,
            field_overrides: Default::default(),
        }],
        historical_days: 90,
        overlap_secs: 120,
        created_at: now,
        updated_at: now,
        version: 0,
    }
}

pub(crate) fn basic_credentials(password: &str) -> Credentials {
    Credentials::Basic {
        username: "svc".into(),
        password: password.into(),
    }
}

pub(crate) fn work_order(key: &str, description: &str, updated: DateTime<Utc>) -> UnifiedRecord {
    UnifiedRecord {
        external_key: key.to_owned(),
        source_updated_at: updated,
        deleted: false,
        data: RecordData::WorkOrder(WorkOrder {
            number: Some(key.to_owned()),
            description: Some(description.to_owned()),
            ..Default::default()
        }),
        raw: raw_json(&serde_json::json!({"wonum": key, "description": description})),
    }
}

/// A raw source record holding `value`.
pub(crate) fn raw_json(value: &serde_json::Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(value).unwrap()
}

/// The `description` of a record's raw source record.
pub(crate) fn raw_description(record: &UnifiedRecord) -> String {
    record.raw_value().unwrap()["description"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Polls `condition` until it holds or `timeout` passes.
pub(crate) async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the Redis server clock is past `at`, so the next write is stamped strictly later.
pub(crate) async fn wait_for_redis_clock_past(h: &Harness, at: DateTime<Utc>) {
    let raw = h.raw().await;
    let passed = eventually(Duration::from_secs(2), || {
        let mut raw = raw.clone();
        async move {
            let (secs, micros): (i64, i64) =
                redis::cmd("TIME").query_async(&mut raw).await.unwrap();
            secs * 1000 + micros / 1000 > at.timestamp_millis()
        }
    })
    .await;
    assert!(passed, "the redis clock did not advance");
}
