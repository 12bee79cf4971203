//! Workers: lease renewal while a handler runs, graceful shutdown (finish, then hand back),
//! a large backlog, and a Redis Cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Work, config, eventually, queue, redis, start_worker};
use conveyor_queue::{JobError, JobSpec, JobState, Queue, QueueStats, WorkerOptions};
use conveyor_testkit::RedisCluster;
use tokio::sync::Semaphore;

async fn state_of(queue: &Queue<Work>, job_id: conveyor_core::JobId) -> JobState {
    queue.status(job_id).await.unwrap().unwrap().state
}

#[tokio::test]
async fn leases_are_renewed_while_a_long_handler_runs() {
    let redis = redis();
    let mut config = config("renew");
    config.lease = Duration::from_millis(300);
    let queue = queue(&redis, config).await;
    let runs = Arc::new(AtomicU64::new(0));
    let handler = {
        let runs = runs.clone();
        move |_work: Work, _context| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                // Four lease lengths: without renewal the other worker would take the job.
                tokio::time::sleep(Duration::from_millis(1200)).await;
                Ok(())
            }
        }
    };
    let first = start_worker(&queue, WorkerOptions::default(), handler.clone());
    let second = start_worker(&queue, WorkerOptions::default(), handler);
    let pushed = queue.push(JobSpec::new(Work { number: 1 })).await.unwrap();
    let status = eventually(
        "the long job to succeed",
        Duration::from_secs(15),
        || async {
            queue
                .status(pushed.job_id)
                .await
                .unwrap()
                .filter(|status| matches!(status.state, JobState::Succeeded { .. }))
        },
    )
    .await;
    assert_eq!(status.attempts, 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_running_jobs_finish_and_hands_back_unstarted_ones() {
    let redis = redis();
    let queue = queue(&redis, config("graceful")).await;
    let release = Arc::new(Semaphore::new(0));
    let gate = release.clone();
    let options = WorkerOptions {
        concurrency: 1,
        shutdown_deadline: Duration::from_secs(10),
    };
    let worker = start_worker(&queue, options, move |_work: Work, _context| {
        let gate = gate.clone();
        async move {
            let _permit = gate.acquire().await.map_err(JobError::retry)?;
            Ok(())
        }
    });
    let running = queue.push(JobSpec::new(Work { number: 1 })).await.unwrap();
    eventually("the first job to run", Duration::from_secs(10), || async {
        matches!(
            state_of(&queue, running.job_id).await,
            JobState::Running { .. }
        )
        .then_some(())
    })
    .await;
    // The second job is fetched (leased) but cannot start: concurrency is 1.
    let waiting = queue.push(JobSpec::new(Work { number: 2 })).await.unwrap();
    eventually(
        "the second job to be fetched",
        Duration::from_secs(10),
        || async {
            matches!(
                state_of(&queue, waiting.job_id).await,
                JobState::Running { .. }
            )
            .then_some(())
        },
    )
    .await;

    worker.stop.cancel();
    release.add_permits(1);
    tokio::time::timeout(Duration::from_secs(15), worker.task)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
    let finished = queue.status(running.job_id).await.unwrap().unwrap();
    assert!(matches!(finished.state, JobState::Succeeded { .. }));
    let handed_back = queue.status(waiting.job_id).await.unwrap().unwrap();
    assert_eq!(
        (handed_back.state, handed_back.attempts),
        (JobState::Queued, 0),
        "an unstarted job goes back without using an attempt"
    );
    assert_eq!(queue.stats().await.unwrap().running, 0);
}

#[tokio::test]
async fn jobs_still_running_at_the_deadline_are_handed_back() {
    let redis = redis();
    let queue = queue(&redis, config("deadline")).await;
    let options = WorkerOptions {
        concurrency: 4,
        shutdown_deadline: Duration::from_millis(300),
    };
    let worker = start_worker(&queue, options, |_work: Work, _context| {
        std::future::pending::<Result<(), JobError>>()
    });
    let pushed = queue
        .push_bulk((0..3).map(|number| JobSpec::new(Work { number })))
        .await
        .unwrap();
    eventually("all jobs to run", Duration::from_secs(10), || async {
        (queue.stats().await.unwrap().running == 3).then_some(())
    })
    .await;
    worker.stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), worker.task)
        .await
        .expect("the worker stops soon after its deadline")
        .unwrap()
        .unwrap();
    for pushed in pushed {
        let status = queue.status(pushed.job_id).await.unwrap().unwrap();
        assert_eq!((status.state, status.attempts), (JobState::Queued, 0));
    }
    assert_eq!(
        queue.stats().await.unwrap(),
        QueueStats {
            ready: 3,
            ..QueueStats::default()
        }
    );
}

#[tokio::test]
async fn a_large_backlog_of_ready_and_delayed_jobs_drains_completely() {
    const READY: u64 = 100_000;
    const DELAYED: u64 = 20_000;
    let redis = redis();
    let mut config = config("backlog");
    config.fetch_batch = 500;
    let queue = queue(&redis, config).await;
    queue
        .push_bulk((0..READY).map(|number| JobSpec::new(Work { number })))
        .await
        .unwrap();
    queue
        .push_bulk(
            (READY..READY + DELAYED)
                .map(|number| JobSpec::new(Work { number }).run_in(Duration::from_millis(300))),
        )
        .await
        .unwrap();
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.ready, stats.scheduled), (READY, DELAYED));

    let done = Arc::new(AtomicU64::new(0));
    let counter = done.clone();
    let options = WorkerOptions {
        concurrency: 256,
        shutdown_deadline: Duration::from_secs(5),
    };
    let worker = start_worker(&queue, options, move |_work: Work, _context| {
        counter.fetch_add(1, Ordering::Relaxed);
        async { Ok(()) }
    });
    eventually("the backlog to drain", Duration::from_secs(60), || async {
        let stats = queue.stats().await.unwrap();
        (done.load(Ordering::Relaxed) == READY + DELAYED && stats == QueueStats::default())
            .then_some(())
    })
    .await;
    worker.shutdown().await;
}

#[tokio::test]
async fn push_fetch_and_ack_work_on_a_redis_cluster() {
    let cluster = RedisCluster::start().expect("starting a 3-node redis cluster");
    let queue: Queue<Work> = Queue::connect_cluster(&cluster.urls(), config("clustered"))
        .await
        .unwrap();
    let pushed = queue
        .push_bulk((0..50).map(|number| JobSpec::new(Work { number })))
        .await
        .unwrap();
    let unique = queue
        .push(JobSpec::new(Work { number: 99 }).unique_key("k"))
        .await
        .unwrap();
    assert!(
        queue
            .push(JobSpec::new(Work { number: 100 }).unique_key("k"))
            .await
            .unwrap()
            .duplicate
    );
    let worker = start_worker(
        &queue,
        WorkerOptions::default(),
        |work: Work, context| async move {
            if work.number == 0 && context.attempt() == 1 {
                return Err(JobError::retry("first try fails"));
            }
            Ok(())
        },
    );
    eventually("every job to succeed", Duration::from_secs(20), || async {
        let stats = queue.stats().await.unwrap();
        (stats == QueueStats::default()).then_some(())
    })
    .await;
    for pushed in pushed.iter().chain([&unique]) {
        assert!(matches!(
            state_of(&queue, pushed.job_id).await,
            JobState::Succeeded { .. }
        ));
    }
    assert_eq!(
        queue
            .status(pushed[0].job_id)
            .await
            .unwrap()
            .unwrap()
            .attempts,
        2
    );
    worker.shutdown().await;
}

#[tokio::test]
async fn a_worker_keeps_going_when_redis_restarts() {
    let mut redis = conveyor_testkit::RedisServer::start_persistent().unwrap();
    let queue = queue(&redis, config("restart")).await;
    let worker = start_worker(
        &queue,
        WorkerOptions::default(),
        |_work: Work, _context| async { Ok(()) },
    );
    let before = queue.push(JobSpec::new(Work { number: 1 })).await.unwrap();
    eventually(
        "the first job to succeed",
        Duration::from_secs(10),
        || async {
            matches!(
                state_of(&queue, before.job_id).await,
                JobState::Succeeded { .. }
            )
            .then_some(())
        },
    )
    .await;

    redis.restart().unwrap();
    // The shared connection reconnects by itself; the first calls may fail while it does.
    let after = eventually(
        "a push after the restart",
        Duration::from_secs(15),
        || async { queue.push(JobSpec::new(Work { number: 2 })).await.ok() },
    )
    .await;
    eventually(
        "the worker to run a job after the restart",
        Duration::from_secs(20),
        || async {
            match queue.status(after.job_id).await {
                Ok(Some(status)) => {
                    matches!(status.state, JobState::Succeeded { .. }).then_some(())
                }
                _ => None,
            }
        },
    )
    .await;
    worker.shutdown().await;
}

/// A worker asked to stop after its Redis went away does not wait for Redis to come back: the
/// outcome it cannot commit is given up after the flush deadline (the job will be redelivered
/// when its lease runs out), and the worker exits.
#[tokio::test]
async fn a_worker_stops_even_when_redis_is_gone_with_outcomes_pending() {
    let mut redis = redis();
    let queue = queue(&redis, config("redis-gone")).await;
    let started = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let worker = start_worker(
        &queue,
        WorkerOptions {
            concurrency: 1,
            shutdown_deadline: Duration::from_secs(5),
        },
        {
            let started = started.clone();
            let release = release.clone();
            move |_work: Work, _context| {
                let started = started.clone();
                let release = release.clone();
                async move {
                    started.notify_one();
                    release.notified().await;
                    Ok::<(), JobError>(())
                }
            }
        },
    );
    queue.push(JobSpec::new(Work { number: 1 })).await.unwrap();
    started.notified().await;
    redis.stop();
    // The job finishes while Redis is away; its outcome cannot be committed.
    release.notify_one();
    worker.stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(40), worker.task).await;
    assert!(
        stopped.is_ok(),
        "the worker still ran 40 s after shutdown with Redis gone"
    );
}
