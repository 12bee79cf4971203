//! Shared parts of the sync end-to-end tests (`sync_*.rs` include this file as a module): a real
//! redis-server, the simulator on a free loopback port, a connection to it in the store, the
//! worker (in-process through `conveyor_worker::run`, or as real processes), and checks that the
//! stored copy matches the source.
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

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use conveyor_core::job::SYNC_QUEUE;
use conveyor_core::{
    Connection, ConnectionId, Credentials, Entity, EntityConfig, Event, EventType, ProfileKind,
    SourceSettings, SyncId, SyncJob, SyncMode, SyncTrigger, TenantId,
};
use conveyor_queue::{JobDetail, Queue, QueueConfig};
use conveyor_runtime::Shutdown;
use conveyor_sim::{SimConfig, SimHandle, external_key};
use conveyor_store::{EncryptionKey, Store, StoreConfig, SyncRun};
use conveyor_sync::enqueue_sync;
use conveyor_testkit::RedisServer;

/// The credential key every test process shares (32 zero bytes).
pub const KEYS: &str = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// Attempts every test job gets.
pub const MAX_ATTEMPTS: u32 = 3;

/// How long a test waits for a sync before it fails.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Redis, the simulator, a store and queue over them, and one connection to the simulator.
#[derive(Debug)]
pub struct Harness {
    pub redis: RedisServer,
    pub sim: SimHandle,
    pub store: Store,
    pub queue: Queue<SyncJob>,
    pub connection: Connection,
    pub profile: ProfileKind,
    pub records: u64,
}

/// What a harness is made of.
#[derive(Debug)]
pub struct Setup {
    pub profile: ProfileKind,
    pub records: u64,
    pub page_size: u32,
    /// The base URL the connection uses instead of the simulator's (a proxy in front of it).
    pub base_url: Option<String>,
    /// Entity paths to override.
    pub paths: Vec<(Entity, String)>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            profile: ProfileKind::OffsetHasMore,
            records: 100,
            page_size: 10,
            base_url: None,
            paths: Vec::new(),
        }
    }
}

impl Harness {
    pub async fn start(setup: Setup) -> Harness {
        let redis = RedisServer::start().unwrap();
        let sim = SimHandle::start(SimConfig {
            records_per_entity: setup.records,
            // The newest seeded record is 30 s old: inside an incremental run's overlap, so
            // overlap duplicates are part of every incremental test.
            seeded_until: (Utc::now() - chrono::Duration::seconds(30)).trunc_subsecs(0),
            step_ms: Some(60_000),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let store = store(&redis.url()).await;
        // The producer sets a job's attempt limit when it pushes it.
        let queue = Queue::connect(
            &redis.url(),
            QueueConfig {
                max_attempts: MAX_ATTEMPTS,
                ..QueueConfig::new(SYNC_QUEUE)
            },
        )
        .await
        .unwrap();
        let base_url = setup.base_url.clone().unwrap_or_else(|| sim.base_url());
        let mut connection = connection(setup.profile, &base_url, setup.page_size);
        for (entity, path) in &setup.paths {
            if let Some(config) = connection.entities.iter_mut().find(|c| c.entity == *entity) {
                config.path = Some(path.clone());
            }
        }
        let connection = store
            .create_connection(&connection, &credentials(setup.profile, &base_url))
            .await
            .unwrap();
        Harness {
            redis,
            sim,
            store,
            queue,
            connection,
            profile: setup.profile,
            records: setup.records,
        }
    }

    pub fn connection_id(&self) -> ConnectionId {
        self.connection.id
    }

    /// Asks for a sync as the API does.
    pub async fn enqueue(&self, entity: Entity, mode: SyncMode) -> SyncId {
        let enqueued = enqueue_sync(
            &self.store,
            &self.queue,
            self.connection.id,
            entity,
            mode,
            SyncTrigger::Manual,
        )
        .await
        .unwrap();
        assert!(!enqueued.existing);
        enqueued.sync_id
    }

    /// Polls the run until `done` says so; panics after `timeout`.
    pub async fn wait_run(
        &self,
        sync_id: SyncId,
        timeout: Duration,
        done: impl Fn(&SyncRun) -> bool,
    ) -> SyncRun {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(run) = self.store.get_run(&self.connection.id, &sync_id).await
                && done(&run)
            {
                return run;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {sync_id} not done within {timeout:?}: {:?}",
                self.store.get_run(&self.connection.id, &sync_id).await
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls the sync's job until `done` says so (the queue records an outcome just after the
    /// handler has written the run); panics after 10 seconds.
    pub async fn wait_job(&self, sync_id: SyncId, done: impl Fn(&JobDetail) -> bool) -> JobDetail {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let job = self
                .queue
                .job_detail(conveyor_sync::job_id_of(sync_id))
                .await
                .unwrap()
                .expect("the job exists");
            if done(&job) {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job of {sync_id} never got there: {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the sync's job is dead-lettered.
    pub async fn wait_dead(&self, sync_id: SyncId) -> JobDetail {
        self.wait_job(sync_id, |job| {
            matches!(job.status.state, conveyor_queue::JobState::Dead { .. })
        })
        .await
    }

    /// Waits until the run is finished (succeeded or failed).
    pub async fn wait_finished(&self, sync_id: SyncId) -> SyncRun {
        self.wait_run(sync_id, SYNC_TIMEOUT, |run| run.status.is_finished())
            .await
    }

    /// Every event in the connection's outbox, oldest first.
    pub async fn events(&self) -> Vec<Event> {
        self.store
            .pending_events(&self.connection.id, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|entry| entry.event)
            .collect()
    }

    /// How many events of `event_type` the outbox holds.
    pub async fn count_events(&self, event_type: EventType) -> usize {
        self.events()
            .await
            .iter()
            .filter(|event| event.event_type == event_type)
            .count()
    }

    /// Listing requests the simulator received for this harness's profile.
    pub fn list_requests(&self) -> u64 {
        self.sim.sim().stats(self.profile).list_requests
    }

    /// Asserts that the stored copy of `entity` is exactly the source's: every live record
    /// stored with its change time, every deleted or missing one absent or marked deleted.
    pub async fn assert_store_matches_source(&self, entity: Entity) {
        let sim = self.sim.sim();
        let mut live = 0;
        // Created records get the next indexes; look a little past the seeded ones.
        for index in 0..self.records + 50 {
            let key = external_key(self.profile, entity, index);
            let stored = self
                .store
                .get_record(&self.connection.id, entity, &key)
                .await
                .unwrap();
            match sim.record(entity, index) {
                Some(state) if !state.deleted => {
                    live += 1;
                    let stored = stored
                        .unwrap_or_else(|| panic!("record {key} (index {index}) is not stored"));
                    assert!(!stored.record.deleted, "record {key} is marked deleted");
                    assert_eq!(
                        stored.record.source_updated_at.timestamp_millis(),
                        state.updated_ms,
                        "record {key} is stale"
                    );
                }
                _ => assert!(
                    stored.as_ref().is_none_or(|stored| stored.record.deleted),
                    "record {key} (index {index}) is gone at the source but live in the store"
                ),
            }
        }
        assert_eq!(
            live,
            sim.live_count(entity),
            "every live record was checked"
        );
    }
}

pub async fn store(redis_url: &str) -> Store {
    let keys = EncryptionKey::parse_list(KEYS).unwrap();
    Store::connect(redis_url, StoreConfig::from_keys(keys).unwrap())
        .await
        .unwrap()
}

pub fn connection(profile: ProfileKind, base_url: &str, page_size: u32) -> Connection {
    Connection {
        id: ConnectionId::new(),
        tenant_id: TenantId::new(),
        name: format!("sim {profile}"),
        profile,
        base_url: base_url.to_owned(),
        settings: SourceSettings {
            page_size: Some(page_size),
            utc_offset: (profile == ProfileKind::Oslc).then(|| "-04:00".to_owned()),
            request_timeout_secs: Some(10),
        },
        entities: Entity::ALL
            .iter()
            .map(|entity| EntityConfig {
                entity: *entity,
                path: None,
                interval_secs: 3_600,
                enabled: true,
                field_overrides: BTreeMap::new(),
            })
            .collect(),
        historical_days: 90,
        overlap_secs: 120,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        version: 0,
    }
}

pub fn credentials(profile: ProfileKind, base_url: &str) -> Credentials {
    let sim = SimConfig::default().credentials;
    match profile {
        ProfileKind::ODataV4 => Credentials::OAuth2ClientCredentials {
            token_url: format!("{base_url}/oauth2/token"),
            client_id: sim.client_id,
            client_secret: sim.client_secret.as_str().into(),
            scope: None,
        },
        ProfileKind::Oslc => Credentials::ApiKey {
            header: "apikey".into(),
            key: sim.api_key.as_str().into(),
        },
        _ => Credentials::Basic {
            username: sim.username,
            password: sim.password.as_str().into(),
        },
    }
}

/// Worker settings for tests: quick backoff, no in-process retries (so faults reach the
/// queue), plus `extra`.
pub fn worker_env(redis_url: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("CONVEYOR_REDIS_URL", redis_url),
        ("CONVEYOR_ENCRYPTION_KEYS", KEYS),
        ("CONVEYOR_WORKER_CONCURRENCY", "4"),
        ("CONVEYOR_SOURCE_RETRIES", "0"),
        ("CONVEYOR_RETRY_BACKOFF_BASE", "50ms"),
        ("CONVEYOR_RETRY_BACKOFF_CAP", "200ms"),
        ("CONVEYOR_SHUTDOWN_DEADLINE", "2s"),
        // These tests read the event outbox itself; a dispatcher would take events out of it.
        ("CONVEYOR_WEBHOOKS_ENABLED", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (key, value) in extra {
        env.insert((*key).to_owned(), (*value).to_owned());
    }
    env
}

/// The worker library running in this process; stops (and is awaited) on drop of the returned
/// guard's `stop`.
#[derive(Debug)]
pub struct InProcessWorker {
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcessWorker {
    pub fn start(env: BTreeMap<String, String>) -> InProcessWorker {
        let env: HashMap<String, String> = env.into_iter().collect();
        let config = conveyor_worker::Config::from_lookup(|key| env.get(key).cloned()).unwrap();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(conveyor_worker::run(config, shutdown.clone()));
        InProcessWorker { shutdown, task }
    }

    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the worker stops within its deadline")
            .unwrap()
            .unwrap();
    }
}

/// Whether `at` lies within `[from, to]`.
pub fn between(at: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    from <= at && at <= to
}
