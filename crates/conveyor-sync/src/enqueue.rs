//! Asking for a sync: the one way the API (manual syncs) and the scheduler (scheduled syncs)
//! put a sync job on the queue.
//!
//! The job's id carries the same ULID as its sync id (`job_01J…` ↔ `sync_01J…`), so a sync and
//! its job find each other without a lookup table, and a duplicate push, which answers with the
//! *existing* job's id, names the existing sync too.
//!
//! The job is pushed with the unique key connection + entity: at most one sync per connection
//! and entity is queued or running, and asking again returns the existing one. The run record is
//! written after the push; the worker creates it too if it gets there first, so neither order
//! of the two can lose it.
//!
//! A manual request that finds the existing sync waiting in its retry backoff (the system was
//! offline a moment ago, say) brings that retry forward to run now: someone asked for the data
//! now, and the retry is the sync they would get. A sync snoozed for the source's `Retry-After`
//! keeps its time: running it early would only be refused again.

use chrono::Utc;
use conveyor_core::{ConnectionId, Entity, JobId, SyncId, SyncJob, SyncMode, SyncTrigger};
use conveyor_queue::{JobSpec, JobState, Queue, QueueError};
use conveyor_store::{NewRun, Store, StoreError};

/// The sync a request resulted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The sync that will run (new, or the one already queued or running).
    pub sync_id: SyncId,
    /// Its job.
    pub job_id: JobId,
    /// True when a sync of this connection and entity was already queued or running and no new
    /// one was made.
    pub existing: bool,
}

/// Why a sync could not be asked for.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The queue is unavailable.
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    /// The store is unavailable.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl EnqueueError {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            EnqueueError::Queue(err) => err.is_retryable(),
            EnqueueError::Store(err) => err.is_retryable(),
        }
    }
}

/// The job id that belongs to `sync_id`.
pub fn job_id_of(sync_id: SyncId) -> JobId {
    JobId::from_ulid(sync_id.ulid())
}

/// The sync id that belongs to `job_id`.
pub fn sync_id_of(job_id: JobId) -> SyncId {
    SyncId::from_ulid(job_id.ulid())
}

/// Pushes a sync of `entity` on `connection_id` unless one is already queued or running, and
/// records its run as queued. The caller has checked that the connection exists, belongs to the
/// caller's tenant and syncs `entity`.
pub async fn enqueue_sync(
    store: &Store,
    queue: &Queue<SyncJob>,
    connection_id: ConnectionId,
    entity: Entity,
    mode: SyncMode,
    trigger: SyncTrigger,
) -> Result<Enqueued, EnqueueError> {
    let sync_id = SyncId::new();
    let job = SyncJob {
        sync_id,
        connection_id,
        entity,
        mode,
        trigger,
        requested_at: Utc::now(),
    };
    let spec = JobSpec::new(job.clone())
        .unique_key(job.unique_key())
        .job_id(job_id_of(sync_id));
    let pushed = queue.push(spec).await?;
    if pushed.duplicate {
        if trigger == SyncTrigger::Manual {
            let waiting_retry = queue
                .status(pushed.job_id)
                .await?
                .is_some_and(|status| matches!(status.state, JobState::Retrying { .. }));
            if waiting_retry && queue.run_now(pushed.job_id).await? {
                tracing::info!(job_id = %pushed.job_id, "manual sync request: the waiting retry runs now");
            }
        }
        return Ok(Enqueued {
            sync_id: sync_id_of(pushed.job_id),
            job_id: pushed.job_id,
            existing: true,
        });
    }
    ensure_run(store, &job).await?;
    Ok(Enqueued {
        sync_id,
        job_id: pushed.job_id,
        existing: false,
    })
}

/// Creates the run record of `job` as queued unless it exists (the worker and the producer both
/// call this; whichever comes second finds it there).
pub async fn ensure_run(store: &Store, job: &SyncJob) -> Result<(), StoreError> {
    let new = NewRun {
        id: job.sync_id,
        connection_id: job.connection_id,
        entity: job.entity,
        mode: job.mode,
        trigger: job.trigger,
        queued_at: job.requested_at,
    };
    match store.create_run(&new).await {
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(err) => Err(err),
    }
}
