//! Shared by the API's integration tests: a real Redis per test, the router over it, tenants
//! with keys, and a one-call request helper.

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use conveyor_api::{AppState, Config, router};
use conveyor_core::TenantId;
use conveyor_store::{ApiRole, EncryptionKey, Store, StoreConfig};
use conveyor_testkit::RedisServer;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The encryption key list every test process uses (32 zero bytes).
pub(crate) const KEYS: &str = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// A configuration for `redis_url` with `extra` variables on top.
pub(crate) fn config(redis_url: &str, extra: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = HashMap::from([
        ("CONVEYOR_REDIS_URL".to_owned(), redis_url.to_owned()),
        ("CONVEYOR_ENCRYPTION_KEYS".to_owned(), KEYS.to_owned()),
    ]);
    for (key, value) in extra {
        env.insert((*key).to_owned(), (*value).to_owned());
    }
    Config::from_lookup(|key| env.get(key).cloned()).unwrap()
}

/// A state that needs no Redis (routing and error-shape tests).
pub(crate) fn offline_state() -> AppState {
    AppState::new(&config("redis://127.0.0.1:1/", &[])).unwrap()
}

/// A response, read whole.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
    pub(crate) text: String,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

impl Answer {
    /// The error code of an error answer.
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Sends one request to `app`.
pub(crate) async fn call(
    app: &Router,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    send(app, request).await
}

/// Sends a prepared request.
pub(crate) async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

/// A Redis of the test's own, the API's router over it, and a store to arrange data with.
pub(crate) struct Harness {
    pub(crate) server: RedisServer,
    pub(crate) state: AppState,
    pub(crate) app: Router,
    pub(crate) store: Store,
}

impl Harness {
    pub(crate) async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub(crate) async fn start_with(extra: &[(&str, &str)]) -> Self {
        Self::over(RedisServer::start().unwrap(), extra).await
    }

    /// Over a Redis that keeps its data across `stop` and `start_again`.
    pub(crate) async fn start_persistent(extra: &[(&str, &str)]) -> Self {
        Self::over(RedisServer::start_persistent().unwrap(), extra).await
    }

    async fn over(server: RedisServer, extra: &[(&str, &str)]) -> Self {
        let config = config(&server.url(), extra);
        let state = AppState::new(&config).unwrap();
        let store_config = StoreConfig::new(EncryptionKey::new("k1", [0; 32]).unwrap());
        let store = Store::connect(&server.url(), store_config).await.unwrap();
        Harness {
            app: router(state.clone()),
            server,
            state,
            store,
        }
    }

    /// A new tenant and a key of `role` for it: (tenant, secret).
    pub(crate) async fn tenant(&self, role: ApiRole) -> (TenantId, String) {
        let tenant = self.store.create_tenant("test tenant").await.unwrap();
        let key = self.key(tenant.id, role).await;
        (tenant.id, key)
    }

    /// Another key of `role` for `tenant`.
    pub(crate) async fn key(&self, tenant: TenantId, role: ApiRole) -> String {
        let created = self
            .store
            .create_api_key(&tenant, role, "test key")
            .await
            .unwrap();
        created.secret.expose().to_owned()
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> Answer {
        call(&self.app, method, path, Some(key), body).await
    }
}

/// A valid connection body with a secret password.
pub(crate) fn connection_body(password: &str) -> Value {
    serde_json::json!({
        "name": "plant 3",
        "profile": "odata_v4",
        "base_url": "http://127.0.0.1:9/odata",
        "credentials": {"type": "basic", "username": "svc", "password": password},
        "entities": [{"entity": "purchase_orders"}, {"entity": "assets", "interval_secs": 900}]
    })
}

/// Pushes `count` jobs `{"n": i}` (one attempt each) to the `webhooks` queue of `redis_url` and
/// runs a worker that aborts each one with the error kind `kind_of(i)` until all are dead
/// letters. Returns the queue and the jobs' ids in push order.
pub(crate) async fn dead_webhook_jobs(
    redis_url: &str,
    count: u64,
    kind_of: fn(u64) -> &'static str,
) -> (conveyor_queue::Queue<Value>, Vec<conveyor_core::JobId>) {
    use conveyor_queue::{JobError, JobSpec, Queue, QueueConfig, WorkerOptions, run_worker};
    use std::time::Duration;

    let queue: Queue<Value> = Queue::connect(redis_url, QueueConfig::new("webhooks"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..count {
        let spec = JobSpec::new(serde_json::json!({ "n": n })).max_attempts(1);
        ids.push(queue.push(spec).await.unwrap().job_id);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run_worker(
        queue.clone(),
        WorkerOptions {
            concurrency: 2,
            shutdown_deadline: Duration::from_secs(5),
        },
        move |job: Value, _context| async move {
            let kind = kind_of(job["n"].as_u64().unwrap_or(0));
            Err::<(), _>(JobError::abort("cannot deliver").with_kind(kind))
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while queue.stats().await.unwrap().dead < count {
        assert!(std::time::Instant::now() < deadline, "jobs never died");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
    (queue, ids)
}
