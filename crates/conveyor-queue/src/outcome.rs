//! What a handler decides about its job, and the layer that records it.
//!
//! A handler returns `Result<(), JobError>`. [`JobError::retry`] reschedules the job after the
//! queue's exponential backoff, [`JobError::snooze`] reschedules it after a given time without
//! using an attempt (a source's `Retry-After`), [`JobError::abort`] dead-letters it now. Any
//! other failure (a panic, a timeout from a tower layer) counts as a retry. The decision is made
//! here, in our own layer, rather than by apalis's retry layer: retries are persisted in Redis
//! and never hold a concurrency slot while they wait.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::error::{AbortError, BoxDynError};
use apalis_core::task::Task;
use apalis_core::task::from_request::FromRequest;
use conveyor_core::JobId;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service};

use crate::config::BackoffPolicy;
use crate::keeper::KeeperHandle;
use crate::queue::{Ack, AckOutcome};

/// Why a handler did not finish its job, and what the queue should do about it.
#[derive(Debug)]
pub struct JobError {
    pub(crate) decision: Decision,
    pub(crate) kind: String,
    pub(crate) source: BoxDynError,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Decision {
    Retry,
    Snooze(Duration),
    Abort,
    /// The worker is shutting down and hands the job back unfinished.
    HandBack,
}

impl JobError {
    /// Try again after the queue's backoff (dead-letter if this was the last attempt). The error
    /// kind is `error`; use [`with_kind`](Self::with_kind) to name it.
    pub fn retry(err: impl Into<BoxDynError>) -> Self {
        JobError {
            decision: Decision::Retry,
            kind: "error".to_owned(),
            source: err.into(),
        }
    }

    /// Try again after `delay` without using an attempt (e.g. the source's `Retry-After`).
    pub fn snooze(delay: Duration) -> Self {
        JobError {
            decision: Decision::Snooze(delay),
            kind: "snoozed".to_owned(),
            source: format!("snoozed for {delay:?}").into(),
        }
    }

    /// Retrying cannot help: dead-letter the job now. The kind is `aborted` unless named.
    pub fn abort(err: impl Into<BoxDynError>) -> Self {
        JobError {
            decision: Decision::Abort,
            kind: "aborted".to_owned(),
            source: err.into(),
        }
    }

    pub(crate) fn hand_back() -> Self {
        JobError {
            decision: Decision::HandBack,
            kind: "shutdown".to_owned(),
            source: "the worker shut down before the job finished".into(),
        }
    }

    /// Names the error kind recorded with the attempt (the dead-letter list filters on it),
    /// such as `auth_rejected` or `source_unreachable`.
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// The recorded error kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.source)
    }
}

impl std::error::Error for JobError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// What a handler knows about the delivery it is running.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub(crate) job_id: JobId,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) token: u64,
    pub(crate) worker_id: Arc<str>,
    pub(crate) hard_stop: CancellationToken,
}

impl JobContext {
    /// The job's id.
    pub fn job_id(&self) -> JobId {
        self.job_id
    }

    /// This delivery's number, from 1, counted in Redis: crash redeliveries included.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The job's attempt limit.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether this is the last attempt the job gets.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// The worker running the job (hostname-pid-ULID).
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Resolves when the worker's shutdown deadline has passed: a long handler may select on
    /// it to stop early; the job is then handed back without using an attempt.
    pub async fn deadline_passed(&self) {
        self.hard_stop.cancelled().await;
    }
}

/// The handler asked for a [`JobContext`] but the task did not come from this queue.
#[derive(Debug, thiserror::Error)]
#[error("the task carries no conveyor job context: it was not fetched by conveyor-queue")]
pub struct MissingJobContext;

impl<T: Sync> FromRequest<Task<T>> for JobContext {
    type Error = MissingJobContext;

    async fn from_request(task: &Task<T>) -> Result<Self, Self::Error> {
        task.ctx()
            .data()
            .get::<JobContext>()
            .cloned()
            .ok_or(MissingJobContext)
    }
}

/// Turns a handler's result into the outcome recorded in Redis.
pub(crate) fn decide(
    result: Result<(), &BoxDynError>,
    attempt: u32,
    backoff: &BackoffPolicy,
) -> AckOutcome {
    let Err(err) = result else {
        return AckOutcome::Succeeded;
    };
    if let Some(job_error) = err.downcast_ref::<JobError>() {
        let message = job_error.source.to_string();
        return match job_error.decision {
            Decision::Retry => AckOutcome::Retry {
                delay: backoff.delay(attempt),
                kind: job_error.kind.clone(),
                message,
            },
            Decision::Snooze(delay) => AckOutcome::Snooze { delay },
            Decision::Abort => AckOutcome::Abort {
                kind: job_error.kind.clone(),
                message,
            },
            Decision::HandBack => AckOutcome::Release,
        };
    }
    // Not our type: a panic caught by catch-panic (wrapped in AbortError, which we do not take
    // as "abort": a panic is a failed attempt), a panic in a spawned handler, a timeout.
    let kind = if err.downcast_ref::<AbortError>().is_some() && err.to_string().contains("Panic")
        || err
            .downcast_ref::<tokio::task::JoinError>()
            .is_some_and(tokio::task::JoinError::is_panic)
    {
        "panic"
    } else if err
        .downcast_ref::<tower::timeout::error::Elapsed>()
        .is_some()
    {
        "timeout"
    } else {
        "error"
    };
    AckOutcome::Retry {
        delay: backoff.delay(attempt),
        kind: kind.to_owned(),
        message: err.to_string(),
    }
}

/// The backend's layer: sees every task's result and hands its outcome to the lease keeper.
#[derive(Debug, Clone)]
pub struct OutcomeLayer {
    pub(crate) keeper: KeeperHandle,
    pub(crate) backoff: BackoffPolicy,
}

impl<S> Layer<S> for OutcomeLayer {
    type Service = OutcomeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OutcomeService {
            inner,
            keeper: self.keeper.clone(),
            backoff: self.backoff.clone(),
        }
    }
}

/// See [`OutcomeLayer`].
#[derive(Debug, Clone)]
pub struct OutcomeService<S> {
    inner: S,
    keeper: KeeperHandle,
    backoff: BackoffPolicy,
}

impl<S, T> Service<Task<T>> for OutcomeService<S>
where
    S: Service<Task<T>>,
    S::Error: Into<BoxDynError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<S::Response, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<T>) -> Self::Future {
        let context = task.ctx().data().get::<JobContext>().cloned();
        let keeper = self.keeper.clone();
        let backoff = self.backoff.clone();
        let future = self.inner.call(task);
        async move {
            let result = future.await.map_err(Into::into);
            if let Some(context) = context {
                let outcome = decide(result.as_ref().map(|_| ()), context.attempt, &backoff);
                match &outcome {
                    AckOutcome::Succeeded => {}
                    other => tracing::debug!(
                        job_id = %context.job_id,
                        attempt = context.attempt,
                        outcome = ?other,
                        "job did not succeed"
                    ),
                }
                keeper.ack(Ack {
                    job_id: context.job_id.to_string(),
                    token: context.token,
                    attempt: context.attempt,
                    max_attempts: context.max_attempts,
                    outcome,
                });
            }
            result
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            base: Duration::from_secs(1),
            factor: 2.0,
            cap: Duration::from_secs(60),
            jitter: false,
        }
    }

    #[test]
    fn handler_errors_map_to_outcomes() {
        let retry: BoxDynError = Box::new(JobError::retry("boom").with_kind("source_down"));
        assert_eq!(
            decide(Err(&retry), 3, &policy()),
            AckOutcome::Retry {
                delay: Duration::from_secs(4),
                kind: "source_down".to_owned(),
                message: "boom".to_owned()
            }
        );
        let snooze: BoxDynError = Box::new(JobError::snooze(Duration::from_secs(7)));
        assert_eq!(
            decide(Err(&snooze), 1, &policy()),
            AckOutcome::Snooze {
                delay: Duration::from_secs(7)
            }
        );
        let abort: BoxDynError = Box::new(JobError::abort("bad credentials"));
        assert!(matches!(
            decide(Err(&abort), 1, &policy()),
            AckOutcome::Abort { kind, .. } if kind == "aborted"
        ));
        assert_eq!(decide(Ok(()), 1, &policy()), AckOutcome::Succeeded);
    }

    #[test]
    fn foreign_errors_are_retried() {
        let panic: BoxDynError = Box::new(AbortError::new(
            apalis::layers::catch_panic::PanicError("oops".to_owned()),
        ));
        assert!(matches!(
            decide(Err(&panic), 1, &policy()),
            AckOutcome::Retry { kind, .. } if kind == "panic"
        ));
        let timeout: BoxDynError = Box::new(tower::timeout::error::Elapsed::new());
        assert!(matches!(
            decide(Err(&timeout), 1, &policy()),
            AckOutcome::Retry { kind, .. } if kind == "timeout"
        ));
    }
}
