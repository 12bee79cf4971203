//! Pushing, statuses, unique keys, fetch latency and handler outcomes, through real workers
//! on a real redis-server.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::{Work, config, eventually, queue, redis, start_worker};
use conveyor_core::JobId;
use conveyor_queue::{JobError, JobSpec, JobState, QueueStats, WorkerOptions};

fn options(concurrency: usize) -> WorkerOptions {
    WorkerOptions {
        concurrency,
        shutdown_deadline: Duration::from_secs(5),
    }
}

async fn wait_for_state(
    queue: &conveyor_queue::Queue<Work>,
    job_id: JobId,
    done: fn(&JobState) -> bool,
) -> conveyor_queue::JobStatus {
    eventually(
        "the job to reach the expected state",
        Duration::from_secs(15),
        || async {
            queue
                .status(job_id)
                .await
                .unwrap()
                .filter(|status| done(&status.state))
        },
    )
    .await
}

#[tokio::test]
async fn push_single_bulk_and_delayed_jobs_report_their_state() {
    let redis = redis();
    let queue = queue(&redis, config("push")).await;

    let single = queue.push(JobSpec::new(Work { number: 1 })).await.unwrap();
    assert!(!single.duplicate);
    let bulk = queue
        .push_bulk((2..5).map(|number| JobSpec::new(Work { number })))
        .await
        .unwrap();
    assert_eq!(bulk.len(), 3);
    let later = queue
        .push(JobSpec::new(Work { number: 9 }).run_in(Duration::from_secs(3600)))
        .await
        .unwrap();
    let at = Utc::now() + chrono::Duration::hours(2);
    let at_time = queue
        .push(JobSpec::new(Work { number: 10 }).run_at(at))
        .await
        .unwrap();
    let past = queue
        .push(JobSpec::new(Work { number: 11 }).run_at(Utc::now() - chrono::Duration::hours(1)))
        .await
        .unwrap();

    let status = queue.status(single.job_id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Queued);
    assert_eq!((status.attempts, status.max_attempts), (0, 5));
    assert_eq!(
        queue.status(past.job_id).await.unwrap().unwrap().state,
        JobState::Queued
    );
    match queue.status(later.job_id).await.unwrap().unwrap().state {
        JobState::Scheduled { run_at } => {
            assert!(
                run_at > Utc::now() + chrono::Duration::minutes(59),
                "{run_at}"
            )
        }
        other => panic!("expected scheduled, got {other:?}"),
    }
    match queue.status(at_time.job_id).await.unwrap().unwrap().state {
        JobState::Scheduled { run_at } => {
            assert_eq!(run_at.timestamp_millis(), at.timestamp_millis())
        }
        other => panic!("expected scheduled, got {other:?}"),
    }
    assert_eq!(
        queue.payload(bulk[1].job_id).await.unwrap(),
        Some(Work { number: 3 })
    );
    assert_eq!(queue.status(JobId::new()).await.unwrap(), None);
    assert_eq!(
        queue.stats().await.unwrap(),
        QueueStats {
            ready: 5,
            scheduled: 2,
            running: 0,
            dead: 0
        }
    );
}

#[tokio::test]
async fn unique_keys_allow_one_live_job_and_are_freed_on_success() {
    let redis = redis();
    let queue = queue(&redis, config("unique")).await;
    let first = queue
        .push(JobSpec::new(Work { number: 1 }).unique_key("conn_1:assets"))
        .await
        .unwrap();
    let second = queue
        .push(JobSpec::new(Work { number: 2 }).unique_key("conn_1:assets"))
        .await
        .unwrap();
    assert!(second.duplicate);
    assert_eq!(second.job_id, first.job_id);
    // Duplicates inside one bulk push are caught too.
    let bulk = queue
        .push_bulk([
            JobSpec::new(Work { number: 3 }).unique_key("conn_2:assets"),
            JobSpec::new(Work { number: 4 }).unique_key("conn_2:assets"),
        ])
        .await
        .unwrap();
    assert!(!bulk[0].duplicate && bulk[1].duplicate);
    assert_eq!(bulk[0].job_id, bulk[1].job_id);
    assert_eq!(queue.stats().await.unwrap().ready, 2);

    let worker = start_worker(&queue, options(2), |_work, _context| async { Ok(()) });
    wait_for_state(&queue, first.job_id, |state| {
        matches!(state, JobState::Succeeded { .. })
    })
    .await;
    let third = queue
        .push(JobSpec::new(Work { number: 5 }).unique_key("conn_1:assets"))
        .await
        .unwrap();
    assert!(!third.duplicate);
    assert_ne!(third.job_id, first.job_id);
    worker.shutdown().await;
}

#[tokio::test]
async fn an_idle_worker_starts_a_new_job_without_polling_delay() {
    let redis = redis();
    let mut config = config("latency");
    // Polling every 30 s would show: only the push's wake-up can start the job quickly.
    config.idle_wait = Duration::from_secs(30);
    let queue = queue(&redis, config).await;
    let started = Arc::new(Mutex::new(Vec::new()));
    let seen = started.clone();
    let worker = start_worker(&queue, options(4), move |work: Work, _context| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push((work.number, Instant::now()));
            Ok(())
        }
    });
    // Warm up: the first job proves the worker runs; after it the worker is idle and blocked.
    queue.push(JobSpec::new(Work { number: 0 })).await.unwrap();
    eventually("the warm-up job", Duration::from_secs(10), || async {
        (!started.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    eventually("the worker to go idle", Duration::from_secs(10), || async {
        (queue.stats().await.unwrap().running == 0).then_some(())
    })
    .await;
    for number in 1..=3 {
        let pushed_at = Instant::now();
        queue.push(JobSpec::new(Work { number })).await.unwrap();
        let began = eventually(
            "the pushed job to start",
            Duration::from_secs(10),
            || async {
                started
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(seen, _)| *seen == number)
                    .map(|(_, at)| *at)
            },
        )
        .await;
        let latency = began - pushed_at;
        assert!(
            latency < Duration::from_millis(500),
            "job {number} started {latency:?} after its push"
        );
        eventually(
            "the worker to go idle again",
            Duration::from_secs(10),
            || async { (queue.stats().await.unwrap().running == 0).then_some(()) },
        )
        .await;
    }
    worker.shutdown().await;
}

#[tokio::test]
async fn retry_then_success_counts_attempts_and_records_the_error() {
    let redis = redis();
    let queue = queue(&redis, config("retry")).await;
    let attempts_seen = Arc::new(Mutex::new(Vec::new()));
    let seen = attempts_seen.clone();
    let worker = start_worker(&queue, options(2), move |_work: Work, context| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap()
                .push((context.job_id(), context.attempt()));
            if context.attempt() == 1 {
                Err(JobError::retry("source timed out").with_kind("source_timeout"))
            } else {
                Ok(())
            }
        }
    });
    let pushed = queue.push(JobSpec::new(Work { number: 1 })).await.unwrap();
    let status = wait_for_state(&queue, pushed.job_id, |state| {
        matches!(state, JobState::Succeeded { .. })
    })
    .await;
    assert_eq!(status.attempts, 2);
    assert_eq!(
        *attempts_seen.lock().unwrap(),
        [(pushed.job_id, 1), (pushed.job_id, 2)]
    );
    let detail = queue.dead_show(pushed.job_id).await.unwrap().unwrap();
    assert_eq!(detail.errors.len(), 1);
    assert_eq!(detail.errors[0].kind, "source_timeout");
    assert_eq!(detail.errors[0].attempt, 1);
    assert_eq!(detail.errors[0].message, "source timed out");
    worker.shutdown().await;
}

#[tokio::test]
async fn a_retrying_job_reports_its_next_attempt_and_error() {
    let redis = redis();
    let mut config = config("retrying");
    config.backoff.base = Duration::from_secs(600);
    config.backoff.cap = Duration::from_secs(600);
    let queue = queue(&redis, config).await;
    let worker = start_worker(&queue, options(1), |_work: Work, _context| async {
        Err(JobError::retry("connection refused"))
    });
    let pushed = queue.push(JobSpec::new(Work { number: 1 })).await.unwrap();
    let status = wait_for_state(&queue, pushed.job_id, |state| {
        matches!(state, JobState::Retrying { .. })
    })
    .await;
    let JobState::Retrying {
        next_attempt_at,
        last_error,
    } = status.state
    else {
        unreachable!("filtered above");
    };
    assert_eq!(last_error, "connection refused");
    assert!(next_attempt_at > Utc::now() + chrono::Duration::seconds(590));
    assert_eq!(status.attempts, 1);
    assert_eq!(queue.stats().await.unwrap().scheduled, 1);
    worker.shutdown().await;
}

#[tokio::test]
async fn exhausted_attempts_abort_and_panics_end_in_dead_letters() {
    let redis = redis();
    let queue = queue(&redis, config("outcomes")).await;
    let worker = start_worker(&queue, options(4), |work: Work, context| async move {
        match work.number {
            1 => Err(JobError::retry("always failing")),
            2 => Err(JobError::abort("credentials rejected").with_kind("auth_rejected")),
            3 if context.attempt() == 1 => panic!("handler bug"),
            _ => Ok(()),
        }
    });
    let failing = queue
        .push(JobSpec::new(Work { number: 1 }).max_attempts(3))
        .await
        .unwrap();
    let aborted = queue.push(JobSpec::new(Work { number: 2 })).await.unwrap();
    let panicking = queue.push(JobSpec::new(Work { number: 3 })).await.unwrap();

    let dead = wait_for_state(&queue, failing.job_id, |state| {
        matches!(state, JobState::Dead { .. })
    })
    .await;
    assert_eq!((dead.attempts, dead.max_attempts), (3, 3));
    let detail = queue.dead_show(failing.job_id).await.unwrap().unwrap();
    assert_eq!(
        detail.errors.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(detail.payload, serde_json::json!({"number": 1}));

    let dead = wait_for_state(&queue, aborted.job_id, |state| {
        matches!(state, JobState::Dead { .. })
    })
    .await;
    assert_eq!(dead.attempts, 1, "abort dead-letters at once");

    let recovered = wait_for_state(&queue, panicking.job_id, |state| {
        matches!(state, JobState::Succeeded { .. })
    })
    .await;
    assert_eq!(recovered.attempts, 2, "a panic is a failed attempt");
    let detail = queue.dead_show(panicking.job_id).await.unwrap().unwrap();
    assert_eq!(detail.errors[0].kind, "panic");

    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.dead, stats.running, stats.ready), (2, 0, 0));
    worker.shutdown().await;
}

#[tokio::test]
async fn snooze_reschedules_without_using_an_attempt() {
    let redis = redis();
    let queue = queue(&redis, config("snooze")).await;
    let runs = Arc::new(Mutex::new(Vec::new()));
    let seen = runs.clone();
    let worker = start_worker(&queue, options(1), move |_work: Work, context| {
        let seen = seen.clone();
        async move {
            let mut runs = seen.lock().unwrap();
            runs.push(context.attempt());
            if runs.len() < 3 {
                Err(JobError::snooze(Duration::from_millis(50)))
            } else {
                Ok(())
            }
        }
    });
    let pushed = queue
        .push(JobSpec::new(Work { number: 1 }).max_attempts(1))
        .await
        .unwrap();
    let status = wait_for_state(&queue, pushed.job_id, |state| {
        matches!(state, JobState::Succeeded { .. })
    })
    .await;
    assert_eq!(status.attempts, 1);
    assert_eq!(*runs.lock().unwrap(), [1, 1, 1]);
    worker.shutdown().await;
}

#[tokio::test]
async fn run_now_brings_a_retrying_or_delayed_job_forward() {
    let redis = redis();
    let mut config = config("run-now");
    config.backoff.base = Duration::from_secs(600);
    config.backoff.cap = Duration::from_secs(600);
    let queue = queue(&redis, config).await;
    let delayed = queue
        .push(JobSpec::new(Work { number: 2 }).run_in(Duration::from_secs(3600)))
        .await
        .unwrap();
    // The first delivery fails (ten minutes of backoff); the second succeeds.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let worker = start_worker(&queue, options(1), {
        let seen = seen.clone();
        move |work: Work, context: conveyor_queue::JobContext| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((work.number, context.attempt()));
                if work.number == 1 && context.attempt() == 1 {
                    Err(JobError::retry("connection refused"))
                } else {
                    Ok(())
                }
            }
        }
    });
    let retrying = queue.push(JobSpec::new(Work { number: 1 })).await.unwrap();
    wait_for_state(&queue, retrying.job_id, |state| {
        matches!(state, JobState::Retrying { .. })
    })
    .await;
    assert!(
        !queue.run_now(JobId::new()).await.unwrap(),
        "an unknown job is not moved"
    );

    assert!(queue.run_now(retrying.job_id).await.unwrap());
    let status = wait_for_state(&queue, retrying.job_id, |state| {
        matches!(state, JobState::Succeeded { .. })
    })
    .await;
    assert_eq!(status.attempts, 2, "the retry kept its attempt count");
    assert!(queue.run_now(delayed.job_id).await.unwrap());
    wait_for_state(&queue, delayed.job_id, |state| {
        matches!(state, JobState::Succeeded { .. })
    })
    .await;
    assert!(
        !queue.run_now(delayed.job_id).await.unwrap(),
        "a finished job is not moved"
    );
    assert_eq!(*seen.lock().unwrap(), [(1, 1), (1, 2), (2, 1)]);
    worker.shutdown().await;
}
