//! A worker process killed with SIGKILL mid-job loses nothing: once its lease runs out the job
//! runs on another worker, once, as attempt 2.
//!
//! The killed worker is this test binary re-executed with an environment variable that makes
//! `child_worker_process` run a real worker instead of returning.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Work, config, eventually, queue, redis, start_worker};
use conveyor_queue::{JobSpec, JobState, Queue, WorkerOptions, run_worker};
use conveyor_testkit::ChildGuard;
use nix::sys::signal::Signal;

/// Set (to the Redis URL) in the re-executed child only.
const CHILD_REDIS_URL: &str = "CONVEYOR_QUEUE_TEST_CHILD_REDIS_URL";
const QUEUE: &str = "crash";

fn crash_config() -> conveyor_queue::QueueConfig {
    let mut config = config(QUEUE);
    config.lease = Duration::from_secs(1);
    config
}

/// The child worker: takes jobs and never finishes them, until it is killed. Returns at once
/// when run as an ordinary test (without the environment variable).
#[test]
fn child_worker_process() {
    let Ok(redis_url) = std::env::var(CHILD_REDIS_URL) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let queue: Queue<Work> = Queue::connect(&redis_url, crash_config()).await.unwrap();
        run_worker(
            queue,
            WorkerOptions::default(),
            |_work: Work, _context| std::future::pending(),
            std::future::pending(),
        )
        .await
        .unwrap();
    });
}

#[tokio::test]
async fn a_worker_killed_mid_job_loses_nothing() {
    let redis = redis();
    let queue = queue(&redis, crash_config()).await;
    let pushed = queue.push(JobSpec::new(Work { number: 1 })).await.unwrap();

    let child = Command::new(std::env::current_exe().unwrap())
        .args(["child_worker_process", "--exact", "--nocapture"])
        .env(CHILD_REDIS_URL, redis.url())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = ChildGuard::new("crashing worker", child);
    let child_marker = format!("-{}-", child.pid());
    eventually(
        "the child worker to run the job",
        Duration::from_secs(30),
        || async {
            match queue.status(pushed.job_id).await.unwrap()?.state {
                JobState::Running { worker, .. } if worker.contains(&child_marker) => Some(()),
                _ => None,
            }
        },
    )
    .await;
    child.signal(Signal::SIGKILL);
    assert!(
        child.wait_timeout(Duration::from_secs(10)).is_some(),
        "the child died"
    );

    let attempts_seen = Arc::new(Mutex::new(Vec::new()));
    let seen = attempts_seen.clone();
    let worker = start_worker(
        &queue,
        WorkerOptions::default(),
        move |_work: Work, context| {
            seen.lock().unwrap().push(context.attempt());
            async { Ok(()) }
        },
    );
    let status = eventually(
        "the job to complete on the second worker",
        Duration::from_secs(20),
        || async {
            queue
                .status(pushed.job_id)
                .await
                .unwrap()
                .filter(|status| matches!(status.state, JobState::Succeeded { .. }))
        },
    )
    .await;
    assert_eq!(status.attempts, 2);
    assert_eq!(
        *attempts_seen.lock().unwrap(),
        [2],
        "it ran once more, as attempt 2"
    );
    let detail = queue.dead_show(pushed.job_id).await.unwrap().unwrap();
    assert_eq!(detail.errors.len(), 1);
    assert_eq!(detail.errors[0].kind, "lease_expired");
    assert!(detail.errors[0].message.contains(&child_marker));
    worker.shutdown().await;
}
