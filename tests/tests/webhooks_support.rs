//! Shared parts of the webhook end-to-end tests (`webhooks_*.rs` include this file as a module):
//! a real redis-server, receivers that are real axum servers on loopback port 0 with scripted
//! answers, the store, and the worker's webhook code (in-process through
//! `conveyor_worker::webhooks::serve`, or as real worker processes).
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
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use conveyor_core::{
    Connection, ConnectionId, Credentials, EventType, ProfileKind, SourceSettings, TenantId,
};
use conveyor_queue::Queue;
use conveyor_runtime::Shutdown;
use conveyor_store::{DeliveryJob, EncryptionKey, Store, StoreConfig, WebhookEndpoint};
use conveyor_testkit::RedisServer;
use conveyor_webhooks::SigningSecrets;
use conveyor_worker::webhooks::{WebhookSettings, queue_config, serve};

/// The credential key every test process shares (32 zero bytes).
pub const KEYS: &str = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// How a receiver answers one request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub delay: Duration,
    pub retry_after: Option<u64>,
}

impl Answer {
    pub fn ok() -> Self {
        Answer::status(200)
    }

    pub fn status(status: u16) -> Self {
        Answer {
            status,
            delay: Duration::ZERO,
            retry_after: None,
        }
    }
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: u16,
}

impl Received {
    pub fn webhook_id(&self) -> String {
        header(&self.headers, "webhook-id")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

pub fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

type Script = Arc<dyn Fn(usize) -> Answer + Send + Sync>;

#[derive(Clone)]
struct ReceiverState {
    script: Script,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A webhook receiver on 127.0.0.1, port 0, answering request n (from 0) with `script(n)`.
#[derive(Debug)]
pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(state): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> Response {
    let index = {
        let received = state.received.lock().unwrap();
        received.len()
    };
    let answer = (state.script)(index);
    // Recorded when it arrives, so a receiver that hangs still counts the request.
    state.received.lock().unwrap().push(Received {
        headers,
        body,
        status: answer.status,
    });
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let status = StatusCode::from_u16(answer.status).unwrap();
    let mut response = (status, "receiver says hi").into_response();
    if let Some(seconds) = answer.retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(seconds));
    }
    response
}

impl Receiver {
    pub async fn start(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = ReceiverState {
            script: Arc::new(script),
            received: received.clone(),
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url,
            received,
            task,
        }
    }

    pub async fn always_ok() -> Receiver {
        Receiver::start(|_| Answer::ok()).await
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived.
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<Received> {
        wait_until(within, || async { self.received().len() >= count }).await;
        self.received()
    }
}

/// Polls `condition` every 20 ms until it holds; panics after `within`.
pub async fn wait_until<F, Fut>(within: Duration, condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Settings for tests: loopback allowed, the schedule in milliseconds, short timeouts.
pub fn test_settings() -> WebhookSettings {
    WebhookSettings {
        enabled: true,
        allow_private_networks: true,
        timeout: Duration::from_millis(500),
        retry_scale: 0.001,
        concurrency: 8,
        permits_per_endpoint: 4,
        poll_interval: Duration::from_millis(50),
        sweep_interval: Duration::from_secs(1),
        claim_idle: Duration::from_secs(1),
    }
}

/// The same settings as environment variables of a worker process.
pub fn worker_env(redis_url: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("CONVEYOR_REDIS_URL", redis_url),
        ("CONVEYOR_ENCRYPTION_KEYS", KEYS),
        ("CONVEYOR_WORKER_CONCURRENCY", "2"),
        ("CONVEYOR_SHUTDOWN_DEADLINE", "2s"),
        ("CONVEYOR_JOB_LEASE", "2s"),
        ("CONVEYOR_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("CONVEYOR_WEBHOOK_TIMEOUT", "2s"),
        ("CONVEYOR_WEBHOOK_RETRY_SCALE", "0.001"),
        ("CONVEYOR_WEBHOOK_POLL_INTERVAL", "50ms"),
        ("CONVEYOR_WEBHOOK_SWEEP_INTERVAL", "1s"),
        ("CONVEYOR_WEBHOOK_CLAIM_IDLE", "1s"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (key, value) in extra {
        env.insert((*key).to_owned(), (*value).to_owned());
    }
    env
}

pub async fn store(redis_url: &str) -> Store {
    let keys = EncryptionKey::parse_list(KEYS).unwrap();
    Store::connect(redis_url, StoreConfig::from_keys(keys).unwrap())
        .await
        .unwrap()
}

/// A connection with no entities (nothing to sync, so no sync events): only its webhooks and
/// outbox matter here. It is listed, so the dispatcher's sweep reads its outbox.
pub async fn connection(store: &Store) -> ConnectionId {
    let now = Utc::now();
    let connection = Connection {
        id: ConnectionId::new(),
        tenant_id: TenantId::new(),
        name: "webhook test".to_owned(),
        profile: ProfileKind::ODataV4,
        base_url: "http://127.0.0.1:9/".to_owned(),
        settings: SourceSettings::default(),
        entities: Vec::new(),
        historical_days: 90,
        overlap_secs: 120,
        created_at: now,
        updated_at: now,
        version: 0,
    };
    store
        .create_connection(&connection, &Credentials::None)
        .await
        .unwrap()
        .id
}

/// A redis-server, a store, the webhook queue, and one connection.
#[derive(Debug)]
pub struct Fixture {
    pub redis: RedisServer,
    pub store: Store,
    pub queue: Queue<DeliveryJob>,
    pub connection_id: ConnectionId,
}

impl Fixture {
    pub async fn start() -> Fixture {
        let redis = RedisServer::start().unwrap();
        let store = store(&redis.url()).await;
        let queue = Queue::connect(
            &redis.url(),
            queue_config(&test_settings(), Duration::from_secs(2)),
        )
        .await
        .unwrap();
        let connection_id = connection(&store).await;
        Fixture {
            redis,
            store,
            queue,
            connection_id,
        }
    }

    /// Adds an enabled endpoint for `types`; returns it with its secrets.
    pub async fn endpoint(
        &self,
        url: &str,
        types: &[EventType],
    ) -> (WebhookEndpoint, SigningSecrets) {
        let secrets = SigningSecrets::generate();
        let endpoint = WebhookEndpoint::new(self.connection_id, url.to_owned(), types.to_vec());
        let endpoint = self
            .store
            .create_webhook_endpoint(&endpoint, &secrets)
            .await
            .unwrap();
        (endpoint, secrets)
    }

    pub async fn append(&self, event_type: EventType, n: u64) -> conveyor_core::Event {
        self.store
            .append_event(&self.connection_id, event_type, serde_json::json!({"n": n}))
            .await
            .unwrap()
    }

    /// Runs the webhook dispatcher and delivery workers in this process.
    pub fn serve(&self, settings: WebhookSettings) -> InProcessWebhooks {
        let shutdown = Shutdown::new();
        let task = tokio::spawn(serve(
            self.store.clone(),
            self.queue.clone(),
            settings,
            Duration::from_secs(2),
            shutdown.clone(),
        ));
        InProcessWebhooks { shutdown, task }
    }
}

/// The worker's webhook code running in this process.
#[derive(Debug)]
pub struct InProcessWebhooks {
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcessWebhooks {
    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the webhook worker stops within its deadline")
            .unwrap()
            .unwrap();
    }
}
