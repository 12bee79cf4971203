//! The API router in-process for end-to-end tests (`health_api.rs`, `webhooks_api.rs` include
//! this file as a module): served on 127.0.0.1 port 0 over a test's own redis-server, with an
//! admin key of a tenant of its own, and a small JSON client.
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

use conveyor_runtime::Shutdown;
use conveyor_store::{ApiRole, Store};
use reqwest::Method;
use serde_json::Value;

/// Encryption keys of the in-process API (the same list the tests' stores use).
pub const KEYS: &str = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// A running API router; stops when dropped.
#[derive(Debug)]
pub struct Api {
    pub base: String,
    pub key: String,
    pub client: reqwest::Client,
    shutdown: Shutdown,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl Api {
    /// Serves the API over `redis_url` with `CONVEYOR_*` settings `extra` on top of the keys,
    /// and makes an admin key of a new tenant named `tenant` through `store`.
    pub async fn start(
        redis_url: &str,
        store: &Store,
        tenant: &str,
        extra: &[(&str, &str)],
    ) -> Api {
        let mut env: Vec<(&str, &str)> = vec![
            ("CONVEYOR_REDIS_URL", redis_url),
            ("CONVEYOR_ENCRYPTION_KEYS", KEYS),
        ];
        env.extend_from_slice(extra);
        let config = conveyor_api::Config::from_lookup(|key| {
            env.iter()
                .rev()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| (*value).to_owned())
        })
        .unwrap();
        let state = conveyor_api::AppState::new(&config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = Shutdown::new();
        tokio::spawn(conveyor_api::serve(listener, state, shutdown.clone()));
        let tenant = store.create_tenant(tenant).await.unwrap();
        let key = store
            .create_api_key(&tenant.id, ApiRole::Admin, "tests")
            .await
            .unwrap()
            .secret
            .expose()
            .to_owned();
        Api {
            base,
            key,
            client: reqwest::Client::new(),
            shutdown,
        }
    }

    /// One request with the admin key: (status, JSON body or null).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// One request that must succeed (2xx); its JSON body.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        answer
    }
}
