//! conveyor-queue, our own apalis backend, with leases on: `QueueConfig` defaults (30 s
//! leases, fetch batches of 100, outcomes committed in batches by the lease keeper), pushed with
//! `Queue::push` / `Queue::push_bulk` and drained by `run_worker`, the same path the worker
//! binary uses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_queue::{
    JobContext, JobError, JobSpec, Queue, QueueConfig, WorkerOptions, run_worker,
};

use super::child::{ChildArgs, JobNumbers, NoOpJob, Progress, STALL_LIMIT};
use crate::BenchError;
use crate::machine::locked_version;
use crate::phase::{PhaseReport, Stopwatch};

/// The benchmark's queue name.
const QUEUE_NAME: &str = "bench";

/// How long the drain waits for the last outcomes to be committed after the worker stopped.
const COMMIT_WAIT: Duration = Duration::from_secs(30);

/// The queue with `QueueConfig` defaults, but for `fetch_batch` when the harness sets it.
fn config(args: &ChildArgs) -> QueueConfig {
    let mut config = QueueConfig::new(QUEUE_NAME);
    if let Some(fetch_batch) = args.fetch_batch {
        config.fetch_batch = fetch_batch;
    }
    config
}

async fn queue(args: &ChildArgs) -> Result<Queue<NoOpJob>, BenchError> {
    Queue::connect(&args.url, config(args))
        .await
        .map_err(|err| BenchError::System(format!("conveyor-queue could not connect: {err}")))
}

fn report(args: &ChildArgs, (seconds, cpu_seconds): (f64, Option<f64>)) -> PhaseReport {
    PhaseReport {
        jobs: args.jobs,
        seconds,
        cpu_seconds,
        version: locked_version("conveyor-queue"),
        ..PhaseReport::default()
    }
}

/// Pushes `jobs` jobs one at a time from `in_flight` tasks sharing the queue's connection.
pub(crate) async fn push(args: &ChildArgs) -> Result<PhaseReport, BenchError> {
    let queue = queue(args).await?;
    let numbers = Arc::new(JobNumbers::new(args.jobs));
    let stopwatch = Stopwatch::start();
    let mut pushers = tokio::task::JoinSet::new();
    for _ in 0..args.in_flight {
        let queue = queue.clone();
        let numbers = Arc::clone(&numbers);
        pushers.spawn(async move {
            while let Some(n) = numbers.take() {
                queue
                    .push(JobSpec::new(NoOpJob { n }))
                    .await
                    .map_err(|err| err.to_string())?;
            }
            Ok::<(), String>(())
        });
    }
    let mut error = None;
    while let Some(result) = pushers.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(err)) => error = error.or(Some(err)),
            Err(err) => error = error.or(Some(format!("a pusher panicked: {err}"))),
        }
    }
    let mut report = report(args, stopwatch.stop());
    report.in_flight = Some(args.in_flight);
    report.error = error;
    Ok(report)
}

/// Pushes `jobs` jobs in `push_bulk` calls of `chunk` jobs.
pub(crate) async fn push_bulk(args: &ChildArgs) -> Result<PhaseReport, BenchError> {
    let queue = queue(args).await?;
    let stopwatch = Stopwatch::start();
    let mut error = None;
    let mut first = 0;
    while first < args.jobs {
        let last = (first + args.chunk as u64).min(args.jobs);
        let specs = (first..last).map(|n| JobSpec::new(NoOpJob { n }));
        if let Err(err) = queue.push_bulk(specs).await {
            error = Some(err.to_string());
            break;
        }
        first = last;
    }
    let mut report = report(args, stopwatch.stop());
    report.chunk = Some(args.chunk);
    report.error = error;
    Ok(report)
}

/// Drains the backlog with `run_worker` running `concurrency` no-op jobs at once. The clock
/// stops when every outcome is committed: the worker has shut down and no job is still leased.
pub(crate) async fn drain(args: &ChildArgs) -> Result<PhaseReport, BenchError> {
    let queue = queue(args).await?;
    let progress = Arc::new(Progress::new(args.jobs));
    let handler_progress = Arc::clone(&progress);
    let handler = move |_job: NoOpJob, _context: JobContext| {
        handler_progress.record();
        async { Ok::<(), JobError>(()) }
    };
    let waiter_progress = Arc::clone(&progress);
    let stall = Arc::new(std::sync::Mutex::new(None));
    let stall_slot = Arc::clone(&stall);
    let shutdown = async move {
        if let Err(reason) = waiter_progress.wait(STALL_LIMIT).await
            && let Ok(mut slot) = stall_slot.lock()
        {
            *slot = Some(reason);
        }
    };
    let options = WorkerOptions {
        concurrency: args.concurrency,
        shutdown_deadline: Duration::from_secs(10),
    };
    let stopwatch = Stopwatch::start();
    let outcome = run_worker(queue.clone(), options, handler, shutdown).await;
    // Outcomes are committed in the background; the drain is over when none is pending.
    let commit_deadline = Instant::now() + COMMIT_WAIT;
    let mut stats = queue.stats().await;
    while let Ok(current) = &stats
        && current.running > 0
        && Instant::now() < commit_deadline
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
        stats = queue.stats().await;
    }
    let timing = stopwatch.stop();

    let mut report = report(args, timing);
    report.concurrency = Some(args.concurrency);
    report.fetch_batch = Some(queue.config().fetch_batch);
    report.handled = Some(progress.handled());
    let stats = stats.map_err(|err| BenchError::System(format!("conveyor-queue stats: {err}")))?;
    report.left_in_queue = Some(stats.ready + stats.scheduled + stats.running);
    let stalled = stall.lock().ok().and_then(|mut slot| slot.take());
    report.error = match (outcome, stalled) {
        (Err(err), _) => Some(format!("the conveyor worker failed: {err}")),
        (Ok(()), Some(stall)) => Some(stall),
        (Ok(()), None) if stats.running > 0 => Some(format!(
            "{} outcomes still uncommitted {} s after the worker stopped",
            stats.running,
            COMMIT_WAIT.as_secs()
        )),
        (Ok(()), None) if stats.dead > 0 => Some(format!("{} jobs were dead-lettered", stats.dead)),
        (Ok(()), None) => None,
    };
    Ok(report)
}
