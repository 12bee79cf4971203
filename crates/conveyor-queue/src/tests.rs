//! Redis-level tests that need the crate's internals: fencing by lease token, lease expiry
//! counting as an attempt, retention and the data layout.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use conveyor_testkit::RedisServer;

use crate::job::{JobSpec, JobState};
use crate::keys::Keys;
use crate::queue::{Ack, AckOutcome, AckResult, FetchedJob, Queue};
use crate::{DeadFilter, Page, QueueConfig};

async fn setup(name: &str, lease: Duration) -> (RedisServer, Queue<u32>) {
    let redis = RedisServer::start().unwrap();
    let mut config = QueueConfig::new(name);
    config.lease = lease;
    config.succeeded_ttl = Duration::from_secs(60);
    let queue = Queue::connect(&redis.url(), config).await.unwrap();
    (redis, queue)
}

/// Fetches until `worker` gets a job (leases expire on the server clock), with a deadline.
async fn fetch_one(queue: &Queue<u32>, worker: &str) -> FetchedJob {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut fetched = queue.fetch(1, worker).await.unwrap();
        if let Some(job) = fetched.jobs.pop() {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{worker} got no job"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ack(job: &FetchedJob, outcome: AckOutcome) -> Ack {
    Ack::for_job(job, outcome)
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_can_neither_ack_nor_renew() {
    let (_redis, queue) = setup("fencing", Duration::from_millis(200)).await;
    let pushed = queue.push(JobSpec::new(7)).await.unwrap();

    let first = fetch_one(&queue, "worker-a").await;
    assert_eq!((first.attempt, first.payload.as_str()), (1, "7"));
    // worker-a stalls; after its lease runs out worker-b gets the job.
    let second = fetch_one(&queue, "worker-b").await;
    assert_eq!(second.job_id, first.job_id);
    assert_eq!(
        second.attempt, 2,
        "the crash redelivery counts as an attempt"
    );
    assert!(second.token > first.token);

    let stale = queue
        .commit(&[ack(&first, AckOutcome::Succeeded)])
        .await
        .unwrap();
    assert_eq!(stale, [AckResult::Stale]);
    let lost = queue
        .renew(&[(first.job_id.clone(), first.token)])
        .await
        .unwrap();
    assert_eq!(lost, std::slice::from_ref(&first.job_id));
    match queue.status(pushed.job_id).await.unwrap().unwrap().state {
        JobState::Running { worker, .. } => assert_eq!(worker, "worker-b"),
        other => panic!("the new owner's run must be untouched, got {other:?}"),
    }
    // A late "abort" from the old owner cannot dead-letter the job either.
    let stale = queue
        .commit(&[ack(
            &first,
            AckOutcome::Abort {
                kind: "late".to_owned(),
                message: "late".to_owned(),
            },
        )])
        .await
        .unwrap();
    assert_eq!(stale, [AckResult::Stale]);

    assert!(
        queue
            .renew(&[(second.job_id.clone(), second.token)])
            .await
            .unwrap()
            .is_empty()
    );
    let done = queue
        .commit(&[ack(&second, AckOutcome::Succeeded)])
        .await
        .unwrap();
    assert_eq!(done, [AckResult::Recorded]);
    let status = queue.status(pushed.job_id).await.unwrap().unwrap();
    assert!(matches!(status.state, JobState::Succeeded { .. }));
    assert_eq!(status.attempts, 2);
}

#[tokio::test]
async fn a_job_that_keeps_killing_its_worker_ends_dead() {
    let (_redis, queue) = setup("crash-loop", Duration::from_millis(150)).await;
    let pushed = queue
        .push(JobSpec::new(1).max_attempts(2).unique_key("only-one"))
        .await
        .unwrap();
    // Two deliveries, neither acknowledged (the worker "dies" each time).
    assert_eq!(fetch_one(&queue, "worker-a").await.attempt, 1);
    assert_eq!(fetch_one(&queue, "worker-b").await.attempt, 2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        assert!(queue.fetch(1, "worker-c").await.unwrap().jobs.is_empty());
        let status = queue.status(pushed.job_id).await.unwrap().unwrap();
        if matches!(status.state, JobState::Dead { .. }) {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dead: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.attempts, 2);
    let page = queue
        .dead_list(
            &DeadFilter {
                error_kind: Some("lease_expired".to_owned()),
            },
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    // Dead frees the unique key.
    assert!(
        !queue
            .push(JobSpec::new(2).unique_key("only-one"))
            .await
            .unwrap()
            .duplicate
    );
}

#[tokio::test]
async fn payloads_are_stored_once_and_succeeded_records_expire() {
    let (redis, mut queue) = setup("layout", Duration::from_secs(30)).await;
    let pushed = queue
        .push(JobSpec::new(42).unique_key("key"))
        .await
        .unwrap();
    let keys = Keys::new("layout");
    let id = pushed.job_id.to_string();
    let mut conn = redis.client().get_connection().unwrap();
    let ready: Vec<String> = redis::cmd("LRANGE")
        .arg(&keys.ready)
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        ready,
        std::slice::from_ref(&id),
        "the ready list holds ids, not payloads"
    );
    let payload: String = redis::cmd("HGET")
        .arg(&keys.payloads)
        .arg(&id)
        .query(&mut conn)
        .unwrap();
    assert_eq!(payload, "42");

    // Succeeded records are kept for `succeeded_ttl`, then forgotten.
    Arc::get_mut(&mut queue.inner)
        .expect("no other handle yet")
        .config
        .succeeded_ttl = Duration::from_millis(300);
    let job = fetch_one(&queue, "worker").await;
    queue
        .commit(&[ack(&job, AckOutcome::Succeeded)])
        .await
        .unwrap();
    let status = queue.status(pushed.job_id).await.unwrap().unwrap();
    assert!(matches!(status.state, JobState::Succeeded { .. }));
    assert_eq!(status.attempts, 1);
    for key in [&keys.payloads, &keys.attempts, &keys.running, &keys.unique] {
        let left: usize = redis::cmd("HLEN").arg(key).query(&mut conn).unwrap();
        assert_eq!(left, 0, "{key} is empty once the job succeeded");
    }
    let leases: usize = redis::cmd("ZCARD")
        .arg(&keys.leases)
        .query(&mut conn)
        .unwrap();
    let job_hash: usize = redis::cmd("EXISTS")
        .arg(keys.job(&id))
        .query(&mut conn)
        .unwrap();
    assert_eq!((leases, job_hash), (0, 0), "nothing else is left behind");
    // Idle fetches trim expired records.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queue.status(pushed.job_id).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the record never expired"
        );
        assert!(queue.fetch(1, "worker").await.unwrap().jobs.is_empty());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done: usize = redis::cmd("HLEN").arg(&keys.done).query(&mut conn).unwrap();
    assert_eq!(done, 0);
}

#[tokio::test]
async fn handing_back_returns_the_attempt_and_puts_the_job_first_in_line() {
    let (_redis, queue) = setup("release", Duration::from_secs(30)).await;
    let first = queue.push(JobSpec::new(1)).await.unwrap();
    queue.push(JobSpec::new(2)).await.unwrap();
    let job = fetch_one(&queue, "worker").await;
    assert_eq!(job.job_id, first.job_id.to_string());
    queue
        .commit(&[ack(&job, AckOutcome::Release)])
        .await
        .unwrap();
    let status = queue.status(first.job_id).await.unwrap().unwrap();
    assert_eq!((status.state, status.attempts), (JobState::Queued, 0));
    let again = fetch_one(&queue, "worker").await;
    assert_eq!((again.job_id, again.attempt), (job.job_id, 1));
}
