//! The Conveyor worker: pulls jobs from Redis and runs them.
//!
//! Workers are stateless; any number run side by side on any number of machines. The binary only
//! reads [`Config`] and calls [`run`].

pub mod config;

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use conveyor_runtime::{RedisLink, Shutdown};

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
    tracing::info!(concurrency = config.concurrency, "conveyor-worker ready");
    shutdown.cancelled().await;
    tracing::info!("conveyor-worker stopped");
    Ok(())
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
