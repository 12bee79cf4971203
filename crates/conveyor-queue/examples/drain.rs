//! A quick throughput check: push a backlog, then drain it through an apalis worker with
//! leases on, and print jobs per second for both.
//!
//! `cargo run -p conveyor-queue --example drain --release [-- JOBS [CONCURRENCY]]`
//!
//! Starts its own redis-server (conveyor-testkit) unless `DRAIN_REDIS_URL` is set. This is a
//! sanity check, not the benchmark: see bench/ for that.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conveyor_queue::{JobSpec, Queue, QueueConfig, WorkerOptions, run_worker};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    number: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let jobs: u64 = args
        .next()
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(200_000);
    let concurrency: usize = args
        .next()
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(256);

    let server;
    let url = match std::env::var("DRAIN_REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            server = conveyor_testkit::RedisServer::start()?;
            server.url()
        }
    };
    let mut config = QueueConfig::new("drain");
    config.fetch_batch = 1_000;
    let queue: Queue<Payload> = Queue::connect(&url, config).await?;

    let started = Instant::now();
    let batch: Vec<_> = (0..jobs)
        .map(|number| JobSpec::new(Payload { number }))
        .collect();
    queue.push_bulk(batch).await?;
    let push_time = started.elapsed();
    println!(
        "pushed {jobs} jobs in {push_time:.2?} ({:.0} jobs/s)",
        jobs as f64 / push_time.as_secs_f64()
    );

    let done = Arc::new(AtomicU64::new(0));
    let counter = done.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let options = WorkerOptions {
        concurrency,
        shutdown_deadline: Duration::from_secs(5),
    };
    let started = Instant::now();
    let worker = tokio::spawn(run_worker(
        queue.clone(),
        options,
        move |_payload: Payload, _context| {
            counter.fetch_add(1, Ordering::Relaxed);
            async { Ok(()) }
        },
        stop.clone().cancelled_owned(),
    ));
    while done.load(Ordering::Relaxed) < jobs {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let handled = started.elapsed();
    // Outcomes are committed in the background; wait for the last ones.
    while queue.stats().await?.running > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let committed = started.elapsed();
    println!(
        "drained {jobs} jobs in {committed:.2?} ({:.0} jobs/s; handlers done after {handled:.2?}), concurrency {concurrency}",
        jobs as f64 / committed.as_secs_f64()
    );
    stop.cancel();
    worker.await??;
    Ok(())
}
