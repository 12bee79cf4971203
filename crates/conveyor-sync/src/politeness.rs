//! Fleet-wide politeness: at most N requests in flight to one connection's source system,
//! however many workers and syncs run.
//!
//! A customer's ERP is sized for its users, not for a fleet of workers all syncing its entities
//! at once. Every page request therefore holds one of the connection's permits (the store's
//! Redis semaphore, shared by every worker): taken before the request, renewed while the request
//! runs (a slow page must not lose its permit and let an extra request in), given back after.
//! A worker that dies holding a permit frees it when the permit's time-to-live runs out.

use std::future::Future;
use std::time::Duration;

use conveyor_core::ConnectionId;
use conveyor_store::{Permit, Store, StoreError};

/// How permits are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermitSettings {
    /// Requests in flight per connection across the fleet; `None` uses the store's configured
    /// default (`StoreConfig::permits_per_connection`, 2 unless set).
    pub limit: Option<u32>,
    /// How long a permit lives without renewal: how long a crashed worker's permit blocks
    /// others. Renewed every third of it while held. Defaults to 15 seconds.
    pub ttl: Duration,
}

impl Default for PermitSettings {
    fn default() -> Self {
        PermitSettings {
            limit: None,
            ttl: Duration::from_secs(15),
        }
    }
}

/// How long one call to the store waits for a permit before it logs and waits again.
const WAIT_STEP: Duration = Duration::from_secs(10);

/// Runs `request` while holding a permit of `connection_id`.
pub(crate) async fn with_permit<T>(
    store: &Store,
    settings: PermitSettings,
    connection_id: &ConnectionId,
    request: impl Future<Output = T>,
) -> Result<T, StoreError> {
    let mut permit = acquire(store, settings, connection_id).await?;
    let renew_every = (settings.ttl / 3).max(Duration::from_millis(10));
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
    tokio::pin!(request);
    let output = loop {
        tokio::select! {
            output = &mut request => break output,
            _ = ticker.tick() => renew(store, settings, &mut permit).await,
        }
    };
    // If the release fails the permit still frees itself when its time-to-live runs out.
    if let Err(err) = store.release_permit(&permit).await {
        tracing::warn!(connection_id = %connection_id, error = %err, "permit release failed; it expires by itself");
    }
    Ok(output)
}

async fn acquire(
    store: &Store,
    settings: PermitSettings,
    connection_id: &ConnectionId,
) -> Result<Permit, StoreError> {
    loop {
        if let Some(permit) = store
            .acquire_permit(connection_id, settings.limit, settings.ttl, WAIT_STEP)
            .await?
        {
            return Ok(permit);
        }
        tracing::info!(
            connection_id = %connection_id,
            waited_secs = WAIT_STEP.as_secs(),
            "every request permit of the connection is taken; still waiting"
        );
    }
}

async fn renew(store: &Store, settings: PermitSettings, permit: &mut Permit) {
    match store.renew_permit(permit, settings.ttl).await {
        Ok(true) => {}
        // The permit expired (a stall longer than its time-to-live): the request is already in
        // flight and cannot be taken back, so it finishes; the next request takes a new permit.
        Ok(false) => tracing::warn!(
            connection_id = %permit.connection_id,
            "request permit expired while the request ran"
        ),
        Err(err) => tracing::warn!(
            connection_id = %permit.connection_id,
            error = %err,
            "request permit renewal failed"
        ),
    }
}
