//! Dead letters: listing, showing, retrying and purging, and retry racing purge.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Work, config, eventually, queue, redis, start_worker};
use conveyor_queue::{
    DeadFilter, DeadSelector, JobError, JobSpec, JobState, Page, Queue, WorkerOptions,
};

fn options() -> WorkerOptions {
    WorkerOptions {
        concurrency: 8,
        shutdown_deadline: Duration::from_secs(5),
    }
}

/// Pushes `count` jobs and lets a worker abort them all (even numbers as `auth_rejected`, odd
/// as `bad_data`), returning the ids in push order.
async fn dead_jobs(queue: &Queue<Work>, count: u64) -> Vec<conveyor_core::JobId> {
    let pushed = queue
        .push_bulk((0..count).map(|number| JobSpec::new(Work { number })))
        .await
        .unwrap();
    let worker = start_worker(queue, options(), |work: Work, _context| async move {
        let kind = if work.number.is_multiple_of(2) {
            "auth_rejected"
        } else {
            "bad_data"
        };
        Err(JobError::abort(format!("job {} cannot run", work.number)).with_kind(kind))
    });
    eventually("every job to die", Duration::from_secs(20), || async {
        (queue.stats().await.unwrap().dead == count).then_some(())
    })
    .await;
    worker.shutdown().await;
    pushed.into_iter().map(|pushed| pushed.job_id).collect()
}

#[tokio::test]
async fn dead_jobs_can_be_listed_shown_retried_and_purged() {
    let redis = redis();
    let queue = queue(&redis, config("dead")).await;
    let ids = dead_jobs(&queue, 6).await;

    let first = queue
        .dead_list(
            &DeadFilter::default(),
            Page {
                offset: 0,
                limit: 4,
            },
        )
        .await
        .unwrap();
    assert_eq!((first.jobs.len(), first.total), (4, 6));
    let second = queue
        .dead_list(
            &DeadFilter::default(),
            Page {
                offset: 4,
                limit: 4,
            },
        )
        .await
        .unwrap();
    assert_eq!(second.jobs.len(), 2);
    let all: Vec<_> = first.jobs.iter().chain(&second.jobs).collect();
    assert!(
        all.windows(2)
            .all(|pair| pair[0].dead_at >= pair[1].dead_at),
        "newest first"
    );
    let listed: HashSet<_> = all.iter().map(|job| job.job_id).collect();
    assert_eq!(listed, ids.iter().copied().collect());

    let auth = DeadFilter {
        error_kind: Some("auth_rejected".to_owned()),
    };
    let auth_page = queue.dead_list(&auth, Page::default()).await.unwrap();
    assert_eq!(auth_page.total, 3);
    assert!(
        auth_page
            .jobs
            .iter()
            .all(|job| job.error_kind == "auth_rejected")
    );
    assert!(auth_page.jobs.iter().all(|job| job.attempts == 1));

    let shown = queue.dead_show(ids[0]).await.unwrap().unwrap();
    assert_eq!(shown.payload, serde_json::json!({"number": 0}));
    assert_eq!(shown.errors.len(), 1);
    assert_eq!(shown.errors[0].message, "job 0 cannot run");
    assert!(matches!(shown.status.state, JobState::Dead { .. }));

    // Retry one: same id, attempts reset, back in the ready list.
    let retried = queue
        .dead_retry(&DeadSelector::One { job_id: ids[0] })
        .await
        .unwrap();
    assert_eq!(retried, 1);
    let status = queue.status(ids[0]).await.unwrap().unwrap();
    assert_eq!((status.state, status.attempts), (JobState::Queued, 0));
    // Retrying it again does nothing: it is no longer dead.
    assert_eq!(
        queue
            .dead_retry(&DeadSelector::One { job_id: ids[0] })
            .await
            .unwrap(),
        0
    );
    // Retry by filter: the two other auth_rejected jobs.
    assert_eq!(
        queue
            .dead_retry(&DeadSelector::ErrorKind {
                error_kind: "auth_rejected".to_owned()
            })
            .await
            .unwrap(),
        2
    );
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.ready, stats.dead), (3, 3));
    assert_eq!(
        queue.dead_list(&auth, Page::default()).await.unwrap().total,
        0
    );

    // Purge one, then by age.
    assert_eq!(
        queue
            .dead_purge(&DeadSelector::One { job_id: ids[1] })
            .await
            .unwrap(),
        1
    );
    assert_eq!(queue.status(ids[1]).await.unwrap(), None);
    assert_eq!(
        queue
            .dead_purge(&DeadSelector::OlderThan {
                age: Duration::from_secs(3600)
            })
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        queue
            .dead_purge(&DeadSelector::OlderThan {
                age: Duration::ZERO
            })
            .await
            .unwrap(),
        2
    );
    assert_eq!(queue.stats().await.unwrap().dead, 0);
    assert_eq!(queue.dead_retry(&DeadSelector::All).await.unwrap(), 0);

    // The retried jobs run again under their old ids and succeed on their first new attempt.
    let worker = start_worker(&queue, options(), |_work: Work, _context| async { Ok(()) });
    for job_id in [ids[0], ids[2], ids[4]] {
        let status = eventually(
            "the retried job to succeed",
            Duration::from_secs(10),
            || async {
                queue
                    .status(job_id)
                    .await
                    .unwrap()
                    .filter(|status| matches!(status.state, JobState::Succeeded { .. }))
            },
        )
        .await;
        assert_eq!(status.attempts, 1);
    }
    worker.shutdown().await;
}

#[tokio::test]
async fn concurrent_retry_and_purge_never_lose_or_duplicate_a_job() {
    let redis = redis();
    let queue = queue(&redis, config("race")).await;
    let ids = dead_jobs(&queue, 400).await;

    // Per-job races, and whole-queue retry against whole-queue purge.
    let mut races = Vec::new();
    for job_id in ids.iter().copied().take(200) {
        let retry_queue = queue.clone();
        let purge_queue = queue.clone();
        races.push(tokio::spawn(async move {
            let selector = DeadSelector::One { job_id };
            let (retried, purged) = tokio::join!(
                retry_queue.dead_retry(&selector),
                purge_queue.dead_purge(&selector),
            );
            (retried.unwrap(), purged.unwrap())
        }));
    }
    let (retried_all, purged_all) = tokio::join!(
        queue.dead_retry(&DeadSelector::All),
        queue.dead_purge(&DeadSelector::All)
    );
    let mut retried = retried_all.unwrap();
    let mut purged = purged_all.unwrap();
    for race in races {
        let (one_retried, one_purged) = race.await.unwrap();
        assert!(one_retried + one_purged <= 1);
        retried += one_retried;
        purged += one_purged;
    }
    assert_eq!(
        retried + purged,
        400,
        "every job was retried or purged exactly once"
    );

    let mut queued = 0;
    for job_id in &ids {
        match queue.status(*job_id).await.unwrap() {
            None => {}
            Some(status) => {
                assert_eq!(status.state, JobState::Queued);
                queued += 1;
            }
        }
    }
    assert_eq!(queued, retried);
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        stats.ready, retried,
        "each retried job is in the ready list once"
    );
    assert_eq!(stats.dead, 0);
}

#[tokio::test]
async fn dead_jobs_expire_after_the_configured_dead_ttl() {
    let redis = redis();
    let mut config = config("dead-ttl");
    config.lease = Duration::from_millis(300);
    config.dead_ttl = Some(Duration::from_millis(200));
    let queue = queue(&redis, config).await;
    let failed = Arc::new(AtomicBool::new(false));
    let seen = failed.clone();
    let pushed = queue.push(JobSpec::new(Work { number: 1 })).await.unwrap();
    let worker = start_worker(&queue, options(), move |_work: Work, _context| {
        seen.store(true, Ordering::SeqCst);
        async { Err(JobError::abort("no")) }
    });
    eventually(
        "the job to be purged after its dead ttl",
        Duration::from_secs(10),
        || async {
            (failed.load(Ordering::SeqCst) && queue.status(pushed.job_id).await.unwrap().is_none())
                .then_some(())
        },
    )
    .await;
    assert_eq!(queue.stats().await.unwrap().dead, 0);
    worker.shutdown().await;
}
