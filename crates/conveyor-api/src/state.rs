//! What every handler can reach: the Redis link, and the store and queue handles made from it.
//!
//! The API must start, answer `/healthz` and report "not ready" while Redis is down, then
//! recover by itself. The store and the queues need a live connection to be built, so they are
//! made on first use ([`AppState::backends`]) and, until that succeeds, every request that needs
//! them answers 503 SERVICE_UNAVAILABLE and the next one tries again. Once made, their
//! connections reconnect by themselves, so a later outage is also a 503 until Redis returns.

use std::sync::Arc;

use anyhow::Context as _;
use conveyor_core::SyncJob;
use conveyor_core::job::{SYNC_QUEUE, WEBHOOK_QUEUE};
use conveyor_queue::{Queue, QueueConfig};
use conveyor_runtime::RedisLink;
use conveyor_store::{RateLimitPolicy, Store, StoreConfig};
use tokio::sync::OnceCell;

use crate::auth::KeyCache;
use crate::config::Config;
use crate::error::ApiError;

/// The handles on Redis that handlers use.
#[derive(Debug, Clone)]
pub struct Backends {
    /// Connections, runs, status, records, API keys, rate limits.
    pub store: Store,
    /// The sync job queue.
    pub syncs: Queue<SyncJob>,
    /// The webhook delivery queue (payloads are opaque here: the API only inspects it).
    pub webhooks: Queue<serde_json::Value>,
}

/// What every request handler can reach; clone it freely.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The Redis server holding queues, configuration and records.
    pub redis: RedisLink,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    redis_url: String,
    store_config: StoreConfig,
    backends: OnceCell<Backends>,
    rate_limit: RateLimitPolicy,
    key_cache: KeyCache,
    webhooks_allow_private: bool,
}

impl AppState {
    /// State for `config`. Makes no connection yet: the API starts while Redis is down.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let redis = RedisLink::new(&config.common.redis_url).context("opening the Redis URL")?;
        let store_config = StoreConfig::from_keys(config.encryption_keys.clone())
            .context("CONVEYOR_ENCRYPTION_KEYS")?;
        Ok(AppState {
            redis,
            inner: Arc::new(Inner {
                redis_url: config.common.redis_url.clone(),
                store_config,
                backends: OnceCell::new(),
                rate_limit: config.rate_limit,
                key_cache: KeyCache::new(config.key_cache),
                webhooks_allow_private: config.webhooks_allow_private,
            }),
        })
    }

    /// The store and queues, made now if this is the first request since start that reaches
    /// Redis; 503 while Redis cannot be reached.
    pub async fn backends(&self) -> Result<&Backends, ApiError> {
        self.inner
            .backends
            .get_or_try_init(|| async {
                let manager = self
                    .redis
                    .get()
                    .await
                    .context("connecting to Redis")
                    .map_err(ApiError::unavailable)?;
                let store = Store::new(manager, self.inner.store_config.clone())
                    .map_err(ApiError::internal)?;
                let syncs = Queue::connect(&self.inner.redis_url, QueueConfig::new(SYNC_QUEUE))
                    .await
                    .map_err(ApiError::unavailable)?;
                let webhooks =
                    Queue::connect(&self.inner.redis_url, QueueConfig::new(WEBHOOK_QUEUE))
                        .await
                        .map_err(ApiError::unavailable)?;
                Ok(Backends {
                    store,
                    syncs,
                    webhooks,
                })
            })
            .await
    }

    /// The handles if they were made already (metrics must not connect on their own).
    pub fn backends_if_ready(&self) -> Option<&Backends> {
        self.inner.backends.get()
    }

    /// Each API key's request budget.
    pub fn rate_limit(&self) -> RateLimitPolicy {
        self.inner.rate_limit
    }

    pub(crate) fn key_cache(&self) -> &KeyCache {
        &self.inner.key_cache
    }

    /// Whether webhook URLs may name non-public addresses (`CONVEYOR_WEBHOOKS_ALLOW_PRIVATE`).
    pub fn webhooks_allow_private(&self) -> bool {
        self.inner.webhooks_allow_private
    }
}
