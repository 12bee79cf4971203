//! Helpers shared by the queue's integration tests: a real redis-server per test, a queue on
//! it, a worker running in the background, and waiting for a condition with a deadline.

#![allow(
    dead_code,
    reason = "each test file uses a different subset of the helpers"
)]

use std::future::Future;
use std::time::Duration;

use conveyor_queue::{JobContext, JobError, Queue, QueueConfig, WorkerOptions, run_worker};
use conveyor_testkit::RedisServer;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The payload used by the tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Work {
    pub(crate) number: u64,
}

/// A fast-moving configuration: short backoff so retries come back quickly.
pub(crate) fn config(name: &str) -> QueueConfig {
    let mut config = QueueConfig::new(name);
    config.backoff.base = Duration::from_millis(20);
    config.backoff.cap = Duration::from_millis(100);
    config.backoff.jitter = false;
    config
}

pub(crate) async fn queue(redis: &RedisServer, config: QueueConfig) -> Queue<Work> {
    Queue::connect(&redis.url(), config)
        .await
        .expect("connecting to the test redis")
}

pub(crate) fn redis() -> RedisServer {
    RedisServer::start().expect("starting redis-server for the test")
}

/// A worker running `handler` in the background until the returned token is cancelled.
pub(crate) struct RunningWorker {
    pub(crate) stop: CancellationToken,
    pub(crate) task: JoinHandle<Result<(), conveyor_queue::QueueError>>,
}

impl RunningWorker {
    pub(crate) async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the worker stops within 20 s")
            .expect("the worker task does not panic")
            .expect("the worker stops cleanly");
    }
}

pub(crate) fn start_worker<H, F>(
    queue: &Queue<Work>,
    options: WorkerOptions,
    handler: H,
) -> RunningWorker
where
    H: Fn(Work, JobContext) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), JobError>> + Send + 'static,
{
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_worker(
        queue.clone(),
        options,
        handler,
        stop.clone().cancelled_owned(),
    ));
    RunningWorker { stop, task }
}

/// Polls `check` every 10 ms until it returns `Some`, failing the test after `timeout`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
