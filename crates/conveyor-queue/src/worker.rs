//! Running a worker in a few lines: concurrency, panics caught, graceful shutdown with a
//! deadline, under the apalis monitor.
//!
//! On the shutdown signal the worker stops fetching and lets running jobs finish. When the
//! deadline passes, jobs still running are handed back: their handler futures are dropped, their
//! leases released and their attempts returned, so another worker picks them up at once.
//! Fetched jobs that never started are handed back the same way.

use std::future::Future;
use std::time::Duration;

use apalis::layers::WorkerBuilderExt;
use apalis_core::monitor::Monitor;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_core::worker::ext::parallelize::ParallelizeExt;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::backend::RedisBackend;
use crate::error::QueueError;
use crate::outcome::{JobContext, JobError};
use crate::queue::Queue;

/// How a worker runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOptions {
    /// Jobs run at the same time. Defaults to 16.
    pub concurrency: usize,
    /// After the shutdown signal, how long running jobs may take to finish before they are
    /// handed back. Defaults to 30 seconds.
    pub shutdown_deadline: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 16,
            shutdown_deadline: Duration::from_secs(30),
        }
    }
}

/// How long a shutdown requested during startup waits for the worker to start, so that it can
/// be stopped.
const STARTUP_GRACE: Duration = Duration::from_secs(5);

/// Runs `handler` over `queue` until `shutdown` resolves, then shuts down gracefully.
///
/// ```ignore
/// async fn handle(job: SyncJob, context: JobContext) -> Result<(), JobError> { ... }
/// run_worker(queue, WorkerOptions::default(), handle, shutdown_token.cancelled_owned()).await?;
/// ```
pub async fn run_worker<T, H, F, S>(
    queue: Queue<T>,
    options: WorkerOptions,
    handler: H,
    shutdown: S,
) -> Result<(), QueueError>
where
    T: DeserializeOwned + Send + Sync + 'static,
    H: Fn(T, JobContext) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), JobError>> + Send + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    let hard_stop = CancellationToken::new();
    let signalled = CancellationToken::new();
    let started = CancellationToken::new();
    let backend = RedisBackend::new(queue.clone())
        .with_hard_stop(hard_stop.clone())
        .with_started(started.clone());
    let name = format!("conveyor-{}", queue.name());
    let concurrency = options.concurrency.max(1);
    // Past the deadline a running handler resolves as "handed back"; the outcome layer then
    // releases its lease without using an attempt.
    let guarded = move |args: T, context: JobContext| {
        let handler = handler.clone();
        async move {
            let deadline = context.hard_stop.clone();
            tokio::select! {
                biased;
                result = handler(args, context) => result,
                () = deadline.cancelled() => Err(JobError::hand_back()),
            }
        }
    };
    let monitor = Monitor::new().register(move |_restarts| {
        WorkerBuilder::new(name.as_str())
            .backend(backend.clone())
            .concurrency(concurrency)
            .parallelize(tokio::spawn)
            .catch_panic()
            .build(guarded.clone())
    });
    let signal = {
        let signalled = signalled.clone();
        async move {
            shutdown.await;
            // apalis only stops a worker that is already running when the monitor's shutdown
            // starts; a signal that came earlier (during startup) would be lost and the worker
            // would run on. Wait until the worker has polled its backend (bounded, in case it
            // failed to start: then there is nothing to stop).
            let _ = tokio::time::timeout(STARTUP_GRACE, started.cancelled()).await;
            tracing::info!("shutdown requested: no new jobs, waiting for running ones");
            signalled.cancel();
            Ok(())
        }
    };
    let deadline = options.shutdown_deadline;
    let deadline_timer = tokio::spawn(async move {
        signalled.cancelled().await;
        tokio::time::sleep(deadline).await;
        tracing::warn!(
            ?deadline,
            "shutdown deadline passed: handing back running jobs"
        );
        hard_stop.cancel();
    });
    let result = monitor.run_with_signal(signal).await;
    deadline_timer.abort();
    result.map_err(|err| QueueError::Worker(err.to_string()))
}
