//! Sync jobs: the `syncs` queue, each job one run of the sync engine.

use conveyor_core::SyncJob;
use conveyor_queue::{JobContext, Queue, WorkerOptions, run_worker};
use conveyor_runtime::Shutdown;
use conveyor_sync::{Attempt, SyncEngine};

/// Serves the sync queue until `shutdown` trips, then lets running syncs finish within the
/// deadline in `options` and hands back the rest (their checkpoints let the next worker resume).
pub(crate) async fn run(
    queue: Queue<SyncJob>,
    engine: SyncEngine,
    options: WorkerOptions,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let handler = move |job: SyncJob, context: JobContext| {
        let engine = engine.clone();
        async move {
            engine
                .run(&job, Attempt::from(&context))
                .await
                .map(|_| ())
                .map_err(|failure| failure.to_job_error())
        }
    };
    run_worker(queue, options, handler, async move {
        shutdown.cancelled().await
    })
    .await?;
    Ok(())
}
