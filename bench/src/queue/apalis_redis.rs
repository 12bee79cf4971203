//! apalis-redis 1.0, the baseline: its `RedisStorage` in the default configuration
//! (`Config::default()`: fetch batches of 10, task locks and result persistence on), pushed
//! through apalis's `TaskSink` and drained by an apalis 1.0 worker.

use std::sync::Arc;

use apalis::layers::WorkerBuilderExt;
use apalis_core::backend::TaskSink;
use apalis_core::error::BoxDynError;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_core::worker::context::WorkerContext;
use apalis_core::worker::ext::parallelize::ParallelizeExt;
use apalis_redis::RedisStorage;
use redis::AsyncCommands;

use super::child::{ChildArgs, JobNumbers, NoOpJob, Progress, STALL_LIMIT};
use crate::BenchError;
use crate::machine::locked_version;
use crate::phase::{PhaseReport, Stopwatch};

async fn storage(url: &str) -> Result<RedisStorage<NoOpJob>, BenchError> {
    let connection = apalis_redis::connect(url)
        .await
        .map_err(|err| BenchError::System(format!("apalis-redis could not connect: {err}")))?;
    Ok(RedisStorage::new(connection))
}

fn report(args: &ChildArgs, (seconds, cpu_seconds): (f64, Option<f64>)) -> PhaseReport {
    PhaseReport {
        jobs: args.jobs,
        seconds,
        cpu_seconds,
        version: locked_version("apalis-redis"),
        ..PhaseReport::default()
    }
}

/// Pushes `jobs` jobs one at a time from `in_flight` tasks sharing one connection.
pub(crate) async fn push(args: &ChildArgs) -> Result<PhaseReport, BenchError> {
    let storage = storage(&args.url).await?;
    let numbers = Arc::new(JobNumbers::new(args.jobs));
    let stopwatch = Stopwatch::start();
    let mut pushers = tokio::task::JoinSet::new();
    for _ in 0..args.in_flight {
        let mut storage = storage.clone();
        let numbers = Arc::clone(&numbers);
        pushers.spawn(async move {
            while let Some(n) = numbers.take() {
                storage
                    .push(NoOpJob { n })
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
    let mut storage = storage(&args.url).await?;
    let stopwatch = Stopwatch::start();
    let mut error = None;
    let mut first = 0;
    while first < args.jobs {
        let last = (first + args.chunk as u64).min(args.jobs);
        let batch = (first..last).map(|n| NoOpJob { n }).collect();
        if let Err(err) = storage.push_bulk(batch).await {
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

/// Drains the backlog with one apalis worker running `concurrency` no-op jobs at once.
pub(crate) async fn drain(args: &ChildArgs) -> Result<PhaseReport, BenchError> {
    let storage = storage(&args.url).await?;
    let config = storage.get_config().clone();
    let progress = Arc::new(Progress::new(args.jobs));
    let handler_progress = Arc::clone(&progress);
    let stopwatch = Stopwatch::start();
    // A fresh name per worker: apalis-redis refuses a name that was registered recently.
    let name = format!("conveyor-bench-apalis-redis-{}", ulid::Ulid::new());
    let worker = WorkerBuilder::new(name.as_str())
        .backend(storage)
        .parallelize(tokio::spawn)
        .concurrency(args.concurrency)
        .build(move |_job: NoOpJob| {
            let progress = Arc::clone(&handler_progress);
            async move {
                progress.record();
                Ok::<(), BoxDynError>(())
            }
        });
    let waiter_progress = Arc::clone(&progress);
    let outcome = worker
        .run_with_ctx(move |worker: WorkerContext| {
            let progress = Arc::clone(&waiter_progress);
            async move {
                let waited = progress.wait(STALL_LIMIT).await;
                if let Err(stall) = &waited {
                    eprintln!("apalis-redis drain: {stall}");
                }
                worker.stop()
            }
        })
        .await;
    let timing = stopwatch.stop();

    let mut report = report(args, timing);
    report.concurrency = Some(args.concurrency);
    report.fetch_batch = Some(config.batch_size);
    report.handled = Some(progress.handled());
    let mut connection = redis::Client::open(args.url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let waiting: u64 = connection.llen(config.active_jobs_list()).await?;
    let scheduled: u64 = connection.zcard(config.scheduled_jobs_set()).await?;
    report.left_in_queue = Some(waiting + scheduled);
    report.error = match outcome {
        Err(err) => Some(format!(
            "the apalis-redis worker stopped with an error after {} of {} jobs: {err}",
            progress.handled(),
            args.jobs
        )),
        Ok(()) if progress.handled() < args.jobs => Some(format!(
            "stalled: handled {} of {} jobs",
            progress.handled(),
            args.jobs
        )),
        Ok(()) => None,
    };
    Ok(report)
}
