//! What goes into the queue (a [`JobSpec`]) and what the queue tells about a job.

use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor_core::JobId;
use serde::{Deserialize, Serialize};

/// A job to push: its payload and how to queue it.
#[derive(Debug, Clone)]
pub struct JobSpec<T> {
    pub(crate) payload: T,
    pub(crate) job_id: JobId,
    pub(crate) unique_key: Option<String>,
    pub(crate) run_at: RunAt,
    pub(crate) max_attempts: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum RunAt {
    Now,
    At(DateTime<Utc>),
    In(Duration),
}

impl<T> JobSpec<T> {
    /// A job carrying `payload`, ready now, with a fresh id and the queue's attempt limit.
    pub fn new(payload: T) -> Self {
        JobSpec {
            payload,
            job_id: JobId::new(),
            unique_key: None,
            run_at: RunAt::Now,
            max_attempts: None,
        }
    }

    /// At most one job per `key` is queued, scheduled or running; pushing another returns the
    /// existing job's id with `duplicate: true`. The key is freed when the job succeeds or dies.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Runs no earlier than `at`.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = RunAt::At(at);
        self
    }

    /// Runs no earlier than `delay` from now (Redis server time).
    pub fn run_in(mut self, delay: Duration) -> Self {
        self.run_at = RunAt::In(delay);
        self
    }

    /// Attempts this job gets before it is dead-lettered (at least 1).
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = Some(max_attempts.max(1));
        self
    }

    /// Uses `job_id` instead of a fresh id (e.g. an id the caller already handed out).
    pub fn job_id(mut self, job_id: JobId) -> Self {
        self.job_id = job_id;
        self
    }

    /// The id the job will have unless it is a duplicate.
    pub fn id(&self) -> JobId {
        self.job_id
    }
}

/// The answer to a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    /// The job's id: the new job's, or for a duplicate unique key the existing job's.
    pub job_id: JobId,
    /// True when a job with the same unique key was already queued, scheduled or running, and
    /// nothing new was pushed.
    pub duplicate: bool,
}

/// Where a job is in its life (see docs/job-states.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Waiting in the ready list for a worker.
    Queued,
    /// Delayed (pushed with a run time, or snoozed) until `run_at`.
    Scheduled {
        /// When it becomes ready.
        run_at: DateTime<Utc>,
    },
    /// Leased to a worker.
    Running {
        /// The worker's identity (hostname-pid-ULID).
        worker: String,
        /// When this attempt started.
        since: DateTime<Utc>,
    },
    /// Failed; waits for its next attempt.
    Retrying {
        /// When the next attempt becomes ready.
        next_attempt_at: DateTime<Utc>,
        /// The error of the failed attempt.
        last_error: String,
    },
    /// Finished successfully; the record expires after the queue's `succeeded_ttl`.
    Succeeded {
        /// When it finished.
        finished_at: DateTime<Utc>,
    },
    /// Dead-lettered: out of attempts, aborted, or its worker kept dying.
    Dead {
        /// When it died.
        dead_at: DateTime<Utc>,
        /// Why.
        last_error: String,
    },
}

/// A job's state and attempt count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job.
    pub job_id: JobId,
    /// Where it is.
    #[serde(flatten)]
    pub state: JobState,
    /// Deliveries so far (crash redeliveries included; snoozes and hand-backs excluded).
    pub attempts: u32,
    /// Its attempt limit.
    pub max_attempts: u32,
}

/// One failed attempt of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobErrorRecord {
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// Which attempt failed.
    pub attempt: u32,
    /// The error kind (e.g. `timeout`, `panic`, `lease_expired`, or a handler's own).
    pub kind: String,
    /// The error message.
    pub message: String,
}

/// Everything the queue knows about one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDetail {
    /// State and attempts.
    #[serde(flatten)]
    pub status: JobStatus,
    /// The payload as JSON.
    pub payload: serde_json::Value,
    /// Its unique key, if it has one.
    pub unique_key: Option<String>,
    /// When its id was made: the push time for ids made by [`JobSpec::new`] (ids are ULIDs).
    pub created_at: DateTime<Utc>,
    /// Its failed attempts, oldest first (the newest 50 are kept).
    pub errors: Vec<JobErrorRecord>,
}

/// Job counts of one queue, each read in O(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueStats {
    /// Ready to run.
    pub ready: u64,
    /// Delayed, snoozed or waiting to retry.
    pub scheduled: u64,
    /// Leased to workers.
    pub running: u64,
    /// Dead-lettered.
    pub dead: u64,
}

pub(crate) fn millis_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}
