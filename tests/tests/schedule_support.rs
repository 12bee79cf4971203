//! Shared parts of the scheduler end-to-end tests (`schedule_*.rs` include this file as a
//! module): a real redis-server, the simulator, connections with second-scale intervals, and
//! real `conveyor-worker` processes with the scheduler scaled down for tests.
//!
//! Cargo also builds this file as a test target of its own, with no tests in it.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different subset of these helpers"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor_core::{
    Connection, ConnectionId, Credentials, Entity, EntityConfig, ProfileKind, SourceSettings,
    SyncTrigger, TenantId,
};
use conveyor_sim::{SimConfig, SimHandle};
use conveyor_store::{EncryptionKey, RunFilter, Store, StoreConfig, SyncRun};
use conveyor_testkit::{RedisServer, Spawned};
use nix::sys::signal::Signal;

/// The credential key every test process shares (32 zero bytes).
pub const KEYS: &str = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// The profile every scheduler test uses (basic auth, offset paging).
pub const PROFILE: ProfileKind = ProfileKind::OffsetHasMore;

/// The scheduler's tick in these tests: a due sync is enqueued at most this late (plus load).
pub const TICK: Duration = Duration::from_millis(100);

/// Redis, the simulator and a store over them.
#[derive(Debug)]
pub struct Fleet {
    pub redis: RedisServer,
    pub sim: SimHandle,
    pub store: Store,
}

impl Fleet {
    pub async fn start() -> Fleet {
        Fleet::over(RedisServer::start().unwrap()).await
    }

    /// Over a redis-server with append-only persistence (`redis.restart()` keeps the data).
    pub async fn start_persistent() -> Fleet {
        Fleet::over(RedisServer::start_persistent().unwrap()).await
    }

    async fn over(redis: RedisServer) -> Fleet {
        let sim = SimHandle::start(SimConfig {
            records_per_entity: 10,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let keys = EncryptionKey::parse_list(KEYS).unwrap();
        let store = Store::connect(&redis.url(), StoreConfig::from_keys(keys).unwrap())
            .await
            .unwrap();
        Fleet { redis, sim, store }
    }

    /// A connection to the simulator syncing `entities` (entity, interval in seconds).
    pub async fn connect(&self, entities: &[(Entity, u64)]) -> Connection {
        self.connect_with(entities, &self.credentials()).await
    }

    pub async fn connect_with(
        &self,
        entities: &[(Entity, u64)],
        credentials: &Credentials,
    ) -> Connection {
        let connection = Connection {
            id: ConnectionId::new(),
            tenant_id: TenantId::new(),
            name: "scheduled".to_owned(),
            profile: PROFILE,
            base_url: self.sim.base_url(),
            settings: SourceSettings {
                page_size: Some(10),
                utc_offset: None,
                request_timeout_secs: Some(5),
            },
            entities: entities
                .iter()
                .map(|(entity, interval_secs)| EntityConfig {
                    entity: *entity,
                    path: None,
                    interval_secs: *interval_secs,
                    enabled: true,
                    field_overrides: BTreeMap::new(),
                })
                .collect(),
            historical_days: 90,
            overlap_secs: 120,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 0,
        };
        self.store
            .create_connection(&connection, credentials)
            .await
            .unwrap()
    }

    /// The credentials the simulator accepts.
    pub fn credentials(&self) -> Credentials {
        let sim = SimConfig::default().credentials;
        Credentials::Basic {
            username: sim.username,
            password: sim.password.as_str().into(),
        }
    }

    /// Every run of one entity of a connection, oldest first.
    pub async fn runs(&self, connection_id: &ConnectionId, entity: Entity) -> Vec<SyncRun> {
        let mut runs = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .store
                .list_runs(
                    connection_id,
                    RunFilter {
                        entity: Some(entity),
                        status: None,
                    },
                    1000,
                    cursor.as_deref(),
                )
                .await
                .unwrap();
            runs.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        runs.sort_by_key(|run| run.queued_at);
        runs
    }

    /// Worker settings: the scheduler at test scale, quick queue retries, plus `extra`.
    pub fn worker_env(&self, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let redis_url = self.redis.url();
        let mut env: BTreeMap<String, String> = [
            ("CONVEYOR_REDIS_URL", redis_url.as_str()),
            ("CONVEYOR_ENCRYPTION_KEYS", KEYS),
            ("CONVEYOR_WORKER_CONCURRENCY", "4"),
            ("CONVEYOR_SOURCE_RETRIES", "0"),
            ("CONVEYOR_RETRY_BACKOFF_BASE", "20ms"),
            ("CONVEYOR_RETRY_BACKOFF_CAP", "50ms"),
            ("CONVEYOR_SHUTDOWN_DEADLINE", "2s"),
            ("CONVEYOR_SCHEDULER_MIN_INTERVAL", "1s"),
            ("CONVEYOR_SCHEDULER_TICK", "100ms"),
            ("CONVEYOR_SCHEDULER_RESCAN", "200ms"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        for (key, value) in extra {
            env.insert((*key).to_owned(), (*value).to_owned());
        }
        env
    }
}

/// A `conveyor-worker` process whose scheduler has started.
pub fn start_worker(env: &BTreeMap<String, String>) -> Spawned {
    let mut worker = Spawned::start("conveyor-worker", env).unwrap();
    let ready = if env
        .get("CONVEYOR_SCHEDULER_ENABLED")
        .is_some_and(|v| v == "false")
    {
        "conveyor-worker ready"
    } else {
        "scheduler started"
    };
    worker.wait_for_output(ready, Duration::from_secs(30));
    worker
}

/// Stops a worker with SIGTERM and waits for it to exit.
pub fn stop_worker(worker: &mut Spawned) {
    worker.process().signal(Signal::SIGTERM);
    let status = worker.process().wait_timeout(Duration::from_secs(15));
    assert!(
        status.is_some_and(|status| status.success()),
        "the worker did not stop cleanly ({status:?}):\n{}",
        worker.output()
    );
}

/// Polls `condition` every 20 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Only scheduled runs.
pub fn scheduled(runs: Vec<SyncRun>) -> Vec<SyncRun> {
    runs.into_iter()
        .filter(|run| run.trigger == SyncTrigger::Scheduled)
        .collect()
}

/// Milliseconds from `from` to `to`.
pub fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_milliseconds()
}
