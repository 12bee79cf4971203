//! [`Queue`]: pushing jobs, reading their status and the queue's counts, and the fetch, ack
//! and renew calls the worker side uses.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use conveyor_core::JobId;
use redis::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::QueueConfig;
use crate::connection::{SharedConnection, Target, cluster_client};
use crate::error::QueueError;
use crate::job::{
    JobDetail, JobErrorRecord, JobSpec, JobState, JobStatus, Pushed, QueueStats, RunAt,
    millis_to_time,
};
use crate::keys::Keys;
use crate::scripts::{ACK_SCRIPT, FETCH_SCRIPT, PUSH_SCRIPT, RENEW_SCRIPT};

/// Jobs per push script call: bounded so one call never blocks Redis for long.
const PUSH_CHUNK: usize = 1_000;
/// Due scheduled jobs promoted per fetch call.
const PROMOTE_CHUNK: usize = 1_000;
/// Expired leases reclaimed per fetch call.
const RECLAIM_CHUNK: usize = 100;
/// Outcomes or renewals per script call.
pub(crate) const ACK_CHUNK: usize = 1_000;

/// A handle on one Redis job queue whose payloads are `T` (stored as JSON).
///
/// Cheap to clone: clones share one self-reconnecting Redis connection.
pub struct Queue<T> {
    pub(crate) inner: Arc<QueueInner>,
    _payload: PhantomData<fn() -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            inner: self.inner.clone(),
            _payload: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.inner.config.name)
            .field("target", &self.inner.target)
            .finish()
    }
}

#[derive(Debug)]
pub(crate) struct QueueInner {
    pub(crate) config: QueueConfig,
    pub(crate) keys: Keys,
    pub(crate) target: Target,
    pub(crate) conn: SharedConnection,
}

/// One job handed to a worker by a fetch.
#[derive(Debug, Clone)]
pub(crate) struct FetchedJob {
    pub(crate) job_id: String,
    pub(crate) payload: String,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) token: u64,
}

/// The answer to a fetch.
#[derive(Debug, Default)]
pub(crate) struct FetchResult {
    pub(crate) jobs: Vec<FetchedJob>,
    pub(crate) now_ms: i64,
    pub(crate) next_due_ms: Option<i64>,
    pub(crate) next_lease_expiry_ms: Option<i64>,
}

/// What to record about a finished (or handed back) job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AckOutcome {
    Succeeded,
    Retry {
        delay: Duration,
        kind: String,
        message: String,
    },
    Snooze {
        delay: Duration,
    },
    Abort {
        kind: String,
        message: String,
    },
    Release,
}

/// One outcome to commit, fenced by the lease token of the delivery it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct Ack {
    pub(crate) job_id: String,
    pub(crate) token: u64,
    /// The delivery's attempt number and limit, as the fetch reported them; they cannot change
    /// while the token is current, so the ack script need not read them again.
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) outcome: AckOutcome,
}

impl Ack {
    pub(crate) fn for_job(job: &FetchedJob, outcome: AckOutcome) -> Self {
        Ack {
            job_id: job.job_id.clone(),
            token: job.token,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            outcome,
        }
    }
}

/// What the ack script did with one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckResult {
    /// The worker no longer held the lease: nothing was changed.
    Stale,
    Recorded,
    DeadLettered,
}

impl<T> Queue<T> {
    /// Connects to a single Redis at `redis_url` (`redis://host:port/db`).
    pub async fn connect(redis_url: &str, config: QueueConfig) -> Result<Self, QueueError> {
        validate(&config)?;
        let client = redis::Client::open(redis_url)?;
        Self::with_target(Target::Single(client), config).await
    }

    /// Connects to a Redis Cluster through any of its `nodes` (`redis://host:port`).
    pub async fn connect_cluster(
        nodes: &[String],
        config: QueueConfig,
    ) -> Result<Self, QueueError> {
        validate(&config)?;
        let client = cluster_client(nodes, config.idle_wait)?;
        Self::with_target(Target::Cluster(Box::new(client)), config).await
    }

    async fn with_target(target: Target, config: QueueConfig) -> Result<Self, QueueError> {
        let conn = target.shared().await?;
        Ok(Queue {
            inner: Arc::new(QueueInner {
                keys: Keys::new(&config.name),
                config,
                target,
                conn,
            }),
            _payload: PhantomData,
        })
    }

    /// The queue's configuration.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    pub(crate) fn conn(&self) -> SharedConnection {
        self.inner.conn.clone()
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub(crate) fn invocation<'a>(
        &'a self,
        script: &'a redis::Script,
    ) -> redis::ScriptInvocation<'a> {
        let keys = self.keys();
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&keys.ready)
            .key(&keys.scheduled)
            .key(&keys.leases)
            .key(&keys.dead)
            .key(&keys.unique)
            .key(&keys.signal)
            .arg(&keys.prefix);
        invocation
    }

    /// Runs a delayed, snoozed or retrying job now instead of at its time: it goes to the head
    /// of the ready list with its attempts unchanged. Returns false (and changes nothing) if the
    /// job was not waiting: already ready, running, dead, or unknown. A manual sync request
    /// uses it, so asking for a sync that waits in its retry backoff runs it at once.
    pub async fn run_now(&self, job_id: JobId) -> Result<bool, QueueError> {
        let mut invocation = self.invocation(&crate::scripts::RUN_NOW_SCRIPT);
        invocation.arg(job_id.to_string());
        let moved: i64 = invocation.invoke_async(&mut self.conn()).await?;
        Ok(moved == 1)
    }

    /// A job's state and attempts; `None` if the queue has no record of it (never pushed,
    /// purged, or a succeeded job whose record expired).
    pub async fn status(&self, job_id: JobId) -> Result<Option<JobStatus>, QueueError> {
        Ok(self.records(job_id).await?.status)
    }

    /// Everything known about a job, errors included; `None` if there is no record of it.
    /// A succeeded job's payload and errors are deleted when it succeeds, so its detail shows
    /// a `null` payload and no errors.
    pub async fn job_detail(&self, job_id: JobId) -> Result<Option<JobDetail>, QueueError> {
        let records = self.records(job_id).await?;
        let Some(status) = records.status else {
            return Ok(None);
        };
        let payload = match &records.payload {
            Some(text) => serde_json::from_str(text)?,
            None => serde_json::Value::Null,
        };
        let errors = records
            .errors
            .iter()
            .map(|entry| parse_error_record(entry))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(JobDetail {
            status,
            payload,
            unique_key: records.fields.get("unique_key").cloned(),
            created_at: millis_to_time(job_id.ulid().timestamp_ms() as i64),
            errors,
        }))
    }

    /// Reads every structure that may hold something about `job_id`, in one round trip.
    async fn records(&self, job_id: JobId) -> Result<JobRecords, QueueError> {
        let id = job_id.to_string();
        let keys = self.keys();
        type Answer = (
            HashMap<String, String>,
            Vec<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let (fields, errors, payload, attempts, running, done): Answer = redis::pipe()
            .cmd("HGETALL")
            .arg(keys.job(&id))
            .cmd("LRANGE")
            .arg(keys.errors(&id))
            .arg(0)
            .arg(-1)
            .cmd("HGET")
            .arg(&keys.payloads)
            .arg(&id)
            .cmd("HGET")
            .arg(&keys.attempts)
            .arg(&id)
            .cmd("HGET")
            .arg(&keys.running)
            .arg(&id)
            .cmd("HGET")
            .arg(&keys.done)
            .arg(&id)
            .query_async(&mut self.conn())
            .await?;
        let status = job_status(
            job_id,
            &fields,
            attempts.as_deref(),
            running.as_deref(),
            done.as_deref(),
        )?;
        Ok(JobRecords {
            status,
            fields,
            errors,
            payload,
        })
    }

    /// Ready, scheduled, running and dead counts, each O(1).
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let keys = self.keys();
        let (ready, scheduled, running, dead): (u64, u64, u64, u64) = redis::pipe()
            .cmd("LLEN")
            .arg(&keys.ready)
            .cmd("ZCARD")
            .arg(&keys.scheduled)
            .cmd("ZCARD")
            .arg(&keys.leases)
            .cmd("ZCARD")
            .arg(&keys.dead)
            .query_async(&mut self.conn())
            .await?;
        Ok(QueueStats {
            ready,
            scheduled,
            running,
            dead,
        })
    }

    fn succeeded_ttl_ms(&self) -> u64 {
        (self.inner.config.succeeded_ttl.as_millis() as u64).max(1)
    }

    /// Takes up to `count` jobs, leased to `worker` for the queue's lease time.
    pub(crate) async fn fetch(
        &self,
        count: usize,
        worker: &str,
    ) -> Result<FetchResult, QueueError> {
        let lease_ms = self.inner.config.lease.as_millis() as u64;
        let mut invocation = self.invocation(&FETCH_SCRIPT);
        invocation
            .arg(count.max(1))
            .arg(lease_ms)
            .arg(worker)
            .arg(PROMOTE_CHUNK)
            .arg(RECLAIM_CHUNK)
            .arg(self.succeeded_ttl_ms());
        let value: Value = invocation.invoke_async(&mut self.conn()).await?;
        parse_fetch(value)
    }

    /// Commits outcomes (at most [`ACK_CHUNK`] per call), returning what happened to each.
    pub(crate) async fn commit(&self, acks: &[Ack]) -> Result<Vec<AckResult>, QueueError> {
        let mut results = Vec::with_capacity(acks.len());
        for chunk in acks.chunks(ACK_CHUNK) {
            let mut invocation = self.invocation(&ACK_SCRIPT);
            invocation.arg(self.succeeded_ttl_ms()).arg(chunk.len());
            for ack in chunk {
                let (name, delay, kind, message) = match &ack.outcome {
                    AckOutcome::Succeeded => ("ok", Duration::ZERO, "", ""),
                    AckOutcome::Retry {
                        delay,
                        kind,
                        message,
                    } => ("retry", *delay, kind.as_str(), message.as_str()),
                    AckOutcome::Snooze { delay } => ("snooze", *delay, "", ""),
                    AckOutcome::Abort { kind, message } => {
                        ("abort", Duration::ZERO, kind.as_str(), message.as_str())
                    }
                    AckOutcome::Release => ("release", Duration::ZERO, "", ""),
                };
                invocation
                    .arg(&ack.job_id)
                    .arg(ack.token)
                    .arg(name)
                    .arg(delay.as_millis() as u64)
                    .arg(kind)
                    .arg(message)
                    .arg(format!("{}/{}", ack.attempt, ack.max_attempts));
            }
            let answers: Vec<i64> = invocation.invoke_async(&mut self.conn()).await?;
            results.extend(answers.into_iter().map(|answer| match answer {
                0 => AckResult::Stale,
                2 => AckResult::DeadLettered,
                _ => AckResult::Recorded,
            }));
        }
        Ok(results)
    }

    /// Extends the leases of `(job id, token)` pairs; returns the ids whose lease was lost.
    pub(crate) async fn renew(&self, leases: &[(String, u64)]) -> Result<Vec<String>, QueueError> {
        let lease_ms = self.inner.config.lease.as_millis() as u64;
        let mut lost = Vec::new();
        for chunk in leases.chunks(ACK_CHUNK) {
            let mut invocation = self.invocation(&RENEW_SCRIPT);
            invocation.arg(lease_ms);
            for (job_id, token) in chunk {
                invocation.arg(job_id).arg(*token);
            }
            let chunk_lost: Vec<String> = invocation.invoke_async(&mut self.conn()).await?;
            lost.extend(chunk_lost);
        }
        Ok(lost)
    }
}

impl<T: Serialize> Queue<T> {
    /// Pushes one job.
    pub async fn push(&self, spec: JobSpec<T>) -> Result<Pushed, QueueError> {
        let mut pushed = self.push_bulk(vec![spec]).await?;
        pushed
            .pop()
            .ok_or_else(|| QueueError::Corrupt("the push script answered nothing".to_owned()))
    }

    /// Pushes many jobs, in script calls of 1,000; answers in the same order.
    pub async fn push_bulk(
        &self,
        specs: impl IntoIterator<Item = JobSpec<T>>,
    ) -> Result<Vec<Pushed>, QueueError> {
        let specs: Vec<JobSpec<T>> = specs.into_iter().collect();
        let mut pushed = Vec::with_capacity(specs.len());
        for chunk in specs.chunks(PUSH_CHUNK) {
            let mut invocation = self.invocation(&PUSH_SCRIPT);
            invocation.arg(chunk.len());
            for spec in chunk {
                let (run_at_ms, delay_ms) = match spec.run_at {
                    RunAt::Now => (0, 0),
                    RunAt::At(at) => (at.timestamp_millis().max(1), 0),
                    RunAt::In(delay) => (0, delay.as_millis() as i64),
                };
                invocation
                    .arg(spec.job_id.to_string())
                    .arg(serde_json::to_string(&spec.payload)?)
                    .arg(spec.unique_key.as_deref().unwrap_or(""))
                    .arg(run_at_ms)
                    .arg(delay_ms)
                    .arg(spec.max_attempts.unwrap_or(self.inner.config.max_attempts));
            }
            let answer: Vec<(String, i64)> = invocation.invoke_async(&mut self.conn()).await?;
            for (job_id, duplicate) in answer {
                let job_id = job_id
                    .parse()
                    .map_err(|err| QueueError::Corrupt(format!("job id {job_id:?}: {err}")))?;
                pushed.push(Pushed {
                    job_id,
                    duplicate: duplicate == 1,
                });
            }
        }
        Ok(pushed)
    }
}

impl<T: DeserializeOwned> Queue<T> {
    /// The payload of a job, if it has a record.
    pub async fn payload(&self, job_id: JobId) -> Result<Option<T>, QueueError> {
        let payload: Option<String> = redis::cmd("HGET")
            .arg(&self.keys().payloads)
            .arg(job_id.to_string())
            .query_async(&mut self.conn())
            .await?;
        payload
            .map(|text| serde_json::from_str(&text).map_err(QueueError::from))
            .transpose()
    }
}

fn validate(config: &QueueConfig) -> Result<(), QueueError> {
    if config.name.is_empty() || config.name.contains(['{', '}']) {
        return Err(QueueError::InvalidConfig(format!(
            "queue name {:?} must be non-empty and free of braces",
            config.name
        )));
    }
    if config.lease < Duration::from_millis(100) {
        return Err(QueueError::InvalidConfig(
            "lease must be at least 100 ms".to_owned(),
        ));
    }
    if config.max_attempts == 0 || config.fetch_batch == 0 {
        return Err(QueueError::InvalidConfig(
            "max_attempts and fetch_batch must be at least 1".to_owned(),
        ));
    }
    Ok(())
}

fn field_i64(fields: &HashMap<String, String>, name: &str) -> i64 {
    fields
        .get(name)
        .and_then(|value| value.parse().ok())
        .unwrap_or_default()
}

/// Everything stored about one job.
struct JobRecords {
    status: Option<JobStatus>,
    fields: HashMap<String, String>,
    errors: Vec<String>,
    payload: Option<String>,
}

/// `attempts/max` as two numbers.
pub(crate) fn split_attempts(value: &str) -> Option<(u32, u32)> {
    let (attempts, max) = value.split_once('/')?;
    Some((attempts.parse().ok()?, max.parse().ok()?))
}

/// A job's status from its records: a succeeded record wins, then a lease, then the job hash.
fn job_status(
    job_id: JobId,
    fields: &HashMap<String, String>,
    attempts: Option<&str>,
    running: Option<&str>,
    done: Option<&str>,
) -> Result<Option<JobStatus>, QueueError> {
    if let Some(done) = done {
        // `finished_ms|attempts/max`
        let (finished, counts) = done.split_once('|').unwrap_or((done, ""));
        let finished_at = millis_to_time(finished.parse().unwrap_or_default());
        let (attempts, max_attempts) = split_attempts(counts).unwrap_or_default();
        return Ok(Some(JobStatus {
            job_id,
            state: JobState::Succeeded { finished_at },
            attempts,
            max_attempts,
        }));
    }
    // Every live or dead job has an attempts entry; a plain ready job has nothing else.
    let Some((attempts, max_attempts)) = attempts.and_then(split_attempts) else {
        return Ok(None);
    };
    let text = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let time = |name: &str| millis_to_time(field_i64(fields, name));
    let state = if let Some(running) = running {
        // `token|started_ms|worker`
        let mut parts = running.splitn(3, '|');
        let _token = parts.next();
        let since = millis_to_time(
            parts
                .next()
                .and_then(|ms| ms.parse().ok())
                .unwrap_or_default(),
        );
        JobState::Running {
            worker: parts.next().unwrap_or_default().to_owned(),
            since,
        }
    } else {
        match fields.get("state").map(String::as_str) {
            None | Some("queued") => JobState::Queued,
            Some("scheduled") => JobState::Scheduled {
                run_at: time("run_at"),
            },
            Some("retrying") => JobState::Retrying {
                next_attempt_at: time("run_at"),
                last_error: text("last_error"),
            },
            Some("dead") => JobState::Dead {
                dead_at: time("dead_at"),
                last_error: text("last_error"),
            },
            other => {
                return Err(QueueError::Corrupt(format!(
                    "job {job_id} has state {other:?}"
                )));
            }
        }
    };
    Ok(Some(JobStatus {
        job_id,
        state,
        attempts,
        max_attempts,
    }))
}

fn parse_error_record(entry: &str) -> Result<JobErrorRecord, QueueError> {
    #[derive(serde::Deserialize)]
    struct Stored {
        at: i64,
        attempt: u32,
        kind: String,
        message: String,
    }
    let stored: Stored = serde_json::from_str(entry)
        .map_err(|err| QueueError::Corrupt(format!("error record {entry:?}: {err}")))?;
    Ok(JobErrorRecord {
        at: millis_to_time(stored.at),
        attempt: stored.attempt,
        kind: stored.kind,
        message: stored.message,
    })
}

fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Int(number) => Some(*number),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        Value::SimpleString(text) => text.parse().ok(),
        _ => None,
    }
}

fn as_string(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(number) => Some(number.to_string()),
        _ => None,
    }
}

fn parse_fetch(value: Value) -> Result<FetchResult, QueueError> {
    let corrupt = || QueueError::Corrupt("unexpected answer from the fetch script".to_owned());
    let Value::Array(parts) = value else {
        return Err(corrupt());
    };
    let [jobs, now, next_due, next_expiry, _ready_left] = parts.as_slice() else {
        return Err(corrupt());
    };
    let jobs = match jobs {
        Value::Array(flat) => flat
            .chunks(5)
            .map(|job| match job {
                [id, payload, attempt, max_attempts, token] => Some(FetchedJob {
                    job_id: as_string(id)?,
                    payload: as_string(payload)?,
                    attempt: as_i64(attempt)?.max(0) as u32,
                    max_attempts: as_i64(max_attempts)?.max(1) as u32,
                    token: as_i64(token)?.max(0) as u64,
                }),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(corrupt)?,
        // An empty Lua table comes back as an empty array, but be lenient with nil.
        Value::Nil => Vec::new(),
        _ => return Err(corrupt()),
    };
    let optional = |value: &Value| as_i64(value).filter(|ms| *ms >= 0);
    Ok(FetchResult {
        jobs,
        now_ms: as_i64(now).ok_or_else(corrupt)?,
        next_due_ms: optional(next_due),
        next_lease_expiry_ms: optional(next_expiry),
    })
}
