//! The Conveyor worker: pulls jobs from Redis and runs them.
//!
//! Workers are stateless; any number run side by side on any number of machines. The binary only
//! reads [`Config`] and calls [`run`].
//!
//! [`run`] waits for Redis, builds the shared parts (the store, the queues, one HTTP client for
//! every source) and starts one task per job kind (see [`jobs`]) under a small supervisor: when
//! shutdown trips every kind stops fetching and drains; when one kind fails, the others are
//! told to stop too, and the error is returned, so the process exits non-zero and its
//! orchestrator restarts it.

pub mod config;
mod jobs;
pub mod scheduler;
pub mod webhooks;

use std::time::Duration;

use anyhow::Context as _;
use backon::{BackoffBuilder, ExponentialBuilder};
use conveyor_connectors::RetryPolicy;
use conveyor_core::SyncJob;
use conveyor_core::job::{SYNC_QUEUE, WEBHOOK_QUEUE};
use conveyor_queue::{BackoffPolicy, Queue, QueueConfig, WorkerOptions};
use conveyor_runtime::{RedisLink, Shutdown};
use conveyor_store::{Store, StoreConfig};
use conveyor_sync::{EngineSettings, PermitSettings, SyncEngine};
use tokio::task::JoinSet;

pub use config::Config;

/// Runs a worker until `shutdown` trips.
///
/// Waits for Redis (retrying with capped exponential backoff, so a fleet started before Redis
/// comes up by itself), then serves jobs.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let redis = RedisLink::new(&config.common.redis_url)?;
    if !wait_for_redis(&redis, &shutdown).await {
        tracing::info!("shutdown before Redis became reachable");
        return Ok(());
    }

    let mut store_config = StoreConfig::from_keys(config.encryption_keys.clone())
        .context("CONVEYOR_ENCRYPTION_KEYS")?;
    store_config.permits_per_connection = config.source_concurrency;
    let store = Store::new(
        redis.get().await.context("connecting the store to Redis")?,
        store_config,
    )
    .context("building the store")?;
    let sync_queue =
        Queue::<SyncJob>::connect(&config.common.redis_url, queue_config(&config, SYNC_QUEUE))
            .await
            .context("connecting the sync queue")?;
    let scheduler =
        scheduler::Scheduler::new(store.clone(), sync_queue.clone(), config.scheduler.clone());
    let engine = SyncEngine::new(
        store.clone(),
        reqwest::Client::new(),
        EngineSettings {
            permits: PermitSettings {
                limit: Some(config.source_concurrency),
                ttl: config.permit_ttl,
            },
            retry_policy: RetryPolicy {
                max_retries: config.source_retries,
                ..RetryPolicy::default()
            },
        },
    );
    let options = WorkerOptions {
        concurrency: config.concurrency,
        shutdown_deadline: config.shutdown_deadline,
    };

    // The supervisor: one task per job kind.
    let mut kinds = JoinSet::new();
    kinds.spawn(named(
        SYNC_QUEUE,
        jobs::sync::run(sync_queue, engine, options, shutdown.clone()),
    ));
    kinds.spawn(named(
        "scheduler",
        scheduler::run(scheduler, shutdown.clone()),
    ));
    if config.webhooks.enabled {
        kinds.spawn(named(
            WEBHOOK_QUEUE,
            webhooks::run(store, &config, shutdown.clone()),
        ));
    } else {
        tracing::info!("webhooks are off in this process (CONVEYOR_WEBHOOKS_ENABLED=false)");
    }
    tracing::info!(
        concurrency = config.concurrency,
        source_concurrency = config.source_concurrency,
        queues = SYNC_QUEUE,
        "conveyor-worker ready"
    );
    let mut first_error = None;
    while let Some(joined) = kinds.join_next().await {
        let (kind, result) = match joined {
            Ok(done) => done,
            Err(err) => (
                "(panicked)",
                Err(anyhow::anyhow!("job kind task failed: {err}")),
            ),
        };
        if let Err(err) = result {
            tracing::error!(queue = kind, error = %err, "job kind stopped with an error; stopping the worker");
            shutdown.trigger();
            first_error.get_or_insert(err.context(format!("serving queue {kind}")));
        }
    }
    tracing::info!("conveyor-worker stopped");
    first_error.map_or(Ok(()), Err)
}

/// Tags a job kind's future with its queue name for the supervisor's log.
async fn named(
    kind: &'static str,
    future: impl std::future::Future<Output = anyhow::Result<()>>,
) -> (&'static str, anyhow::Result<()>) {
    (kind, future.await)
}

/// The queue settings every worker of the fleet shares.
fn queue_config(config: &Config, name: &str) -> QueueConfig {
    QueueConfig {
        lease: config.lease,
        backoff: BackoffPolicy {
            base: config.backoff_base,
            cap: config.backoff_cap,
            ..BackoffPolicy::default()
        },
        // Syncs run for seconds to minutes: a worker that fetched more jobs than it can start
        // would sit on them while other workers idle.
        fetch_batch: config.concurrency,
        ..QueueConfig::new(name)
    }
}

/// Returns true once Redis answers PING, false if shutdown trips first.
async fn wait_for_redis(redis: &RedisLink, shutdown: &Shutdown) -> bool {
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        match redis.ping().await {
            Ok(()) => return true,
            Err(err) => {
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "Redis unavailable");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
