//! Operations on the fleet's queues: statistics and dead letters (list, show, retry, purge).
//!
//! Queues are shared by every tenant, so these routes are fleet-wide and open to operator and
//! admin keys only. Retry and purge take a selection: one job, every job with an error kind,
//! every job older than an age (purge), or all.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use conveyor_core::JobId;
use conveyor_core::job::{SYNC_QUEUE, WEBHOOK_QUEUE};
use conveyor_queue::{DeadFilter, DeadSelector, JobDetail, JobState, Page, QueueStats};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Area, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, path_id};
use crate::openapi::ErrorBody;
use crate::schema;
use crate::state::{AppState, Backends};

/// Largest page of dead jobs.
const MAX_DEAD_LIMIT: u64 = 1_000;
/// Largest `offset` a dead job list accepts (Redis ranks are signed 64-bit; no dead set is near this).
const MAX_DEAD_OFFSET: u64 = 1_000_000_000;

/// Job counts of one queue.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueStatsView {
    /// The queue (`syncs` or `webhooks`).
    name: String,
    /// Ready to run.
    ready: u64,
    /// Delayed, snoozed or waiting to retry.
    scheduled: u64,
    /// Leased to workers.
    running: u64,
    /// Dead-lettered.
    dead: u64,
}

impl QueueStatsView {
    fn new(name: &str, stats: QueueStats) -> Self {
        QueueStatsView {
            name: name.to_owned(),
            ready: stats.ready,
            scheduled: stats.scheduled,
            running: stats.running,
            dead: stats.dead,
        }
    }
}

/// Every queue's counts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueuesView {
    /// One entry per queue.
    queues: Vec<QueueStatsView>,
}

/// One dead job in a list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadJobView {
    /// The job.
    #[schema(schema_with = schema::job_id)]
    job_id: JobId,
    /// When it died.
    dead_at: DateTime<Utc>,
    /// Attempts it used.
    attempts: u32,
    /// Kind of its last error (`timeout`, `panic`, `lease_expired`, or a handler's own).
    error_kind: String,
    /// Its last error.
    last_error: String,
    /// Its unique key, if any.
    unique_key: Option<String>,
}

/// A page of dead jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadPageView {
    /// The jobs.
    jobs: Vec<DeadJobView>,
    /// How many dead jobs match the filter in all.
    total: u64,
}

/// One failed attempt.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobErrorView {
    /// When it was recorded.
    at: DateTime<Utc>,
    /// Which attempt.
    attempt: u32,
    /// Its kind.
    kind: String,
    /// Its message.
    message: String,
}

/// Everything the queue knows about one job.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobView {
    /// The job.
    #[schema(schema_with = schema::job_id)]
    job_id: JobId,
    /// `queued`, `scheduled`, `running`, `retrying`, `succeeded` or `dead`.
    state: String,
    /// Deliveries so far.
    attempts: u32,
    /// Its attempt limit.
    max_attempts: u32,
    /// The payload.
    payload: serde_json::Value,
    /// Its unique key, if any.
    unique_key: Option<String>,
    /// When it was pushed.
    created_at: DateTime<Utc>,
    /// Its failed attempts, oldest first.
    errors: Vec<JobErrorView>,
}

impl From<JobDetail> for JobView {
    fn from(detail: JobDetail) -> Self {
        let state = match detail.status.state {
            JobState::Queued => "queued",
            JobState::Scheduled { .. } => "scheduled",
            JobState::Running { .. } => "running",
            JobState::Retrying { .. } => "retrying",
            JobState::Succeeded { .. } => "succeeded",
            JobState::Dead { .. } => "dead",
        };
        JobView {
            job_id: detail.status.job_id,
            state: state.to_owned(),
            attempts: detail.status.attempts,
            max_attempts: detail.status.max_attempts,
            payload: detail.payload,
            unique_key: detail.unique_key,
            created_at: detail.created_at,
            errors: detail
                .errors
                .into_iter()
                .map(|e| JobErrorView {
                    at: e.at,
                    attempt: e.attempt,
                    kind: e.kind,
                    message: e.message,
                })
                .collect(),
        }
    }
}

/// Which dead jobs to retry or purge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "select", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum DeadSelection {
    /// One job.
    One {
        /// The job.
        #[schema(schema_with = schema::job_id)]
        job_id: String,
    },
    /// Every dead job whose last error has this kind.
    ErrorKind {
        /// The kind.
        error_kind: String,
    },
    /// Every dead job that died more than this many seconds ago.
    OlderThan {
        /// The age in seconds.
        older_than_secs: u64,
    },
    /// Every dead job of the queue.
    All,
}

impl DeadSelection {
    fn into_selector(self) -> ApiResult<DeadSelector> {
        Ok(match self {
            DeadSelection::One { job_id } => DeadSelector::One {
                job_id: job_id
                    .parse()
                    .map_err(|err| ApiError::invalid(format!("field `job_id`: {err}")))?,
            },
            DeadSelection::ErrorKind { error_kind } => DeadSelector::ErrorKind { error_kind },
            DeadSelection::OlderThan { older_than_secs } => DeadSelector::OlderThan {
                age: Duration::from_secs(older_than_secs),
            },
            DeadSelection::All => DeadSelector::All,
        })
    }
}

/// How many dead jobs a retry or purge acted on.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadActionResult {
    /// Jobs moved back to the queue (retry) or deleted (purge).
    count: u64,
}

/// Dead job filter and paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeadQuery {
    /// Only jobs whose last error has this kind.
    error_kind: Option<String>,
    /// Entries to skip, at most 1,000,000,000; 0 when absent.
    #[param(minimum = 0, maximum = 1_000_000_000)]
    offset: Option<u64>,
    /// Entries to return, 1 to 1000; 50 when absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// What a queue operation acts on, resolved from the `{queue}` path parameter.
enum QueueRef<'a> {
    Syncs(&'a conveyor_queue::Queue<conveyor_core::SyncJob>),
    Webhooks(&'a conveyor_queue::Queue<serde_json::Value>),
}

macro_rules! on_queue {
    ($queue:expr, |$q:ident| $body:expr) => {
        match $queue {
            QueueRef::Syncs($q) => $body,
            QueueRef::Webhooks($q) => $body,
        }
    };
}

fn queue<'a>(backends: &'a Backends, name: &str) -> ApiResult<QueueRef<'a>> {
    match name {
        SYNC_QUEUE => Ok(QueueRef::Syncs(&backends.syncs)),
        WEBHOOK_QUEUE => Ok(QueueRef::Webhooks(&backends.webhooks)),
        other => Err(ApiError::not_found(format!(
            "queue `{}`",
            other.chars().take(64).collect::<String>()
        ))),
    }
}

/// Counts of every queue.
#[utoipa::path(
    get,
    path = "/v1/queues",
    tag = "operations",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Counts of every queue", body = QueuesView),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "The key's role may not operate queues", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn stats(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<QueuesView>> {
    caller.require(Area::Operations)?;
    let backends = state.backends().await?;
    let (syncs, webhooks) = tokio::join!(backends.syncs.stats(), backends.webhooks.stats());
    Ok(Json(QueuesView {
        queues: vec![
            QueueStatsView::new(SYNC_QUEUE, syncs?),
            QueueStatsView::new(WEBHOOK_QUEUE, webhooks?),
        ],
    }))
}

const QUEUE_PARAM: &str = "The queue: `syncs` or `webhooks`";

/// Dead jobs of a queue, newest first.
#[utoipa::path(
    get,
    path = "/v1/queues/{queue}/dead",
    tag = "operations",
    params(("queue" = String, Path, description = QUEUE_PARAM), DeadQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of dead jobs", body = DeadPageView),
        (status = 400, description = "Bad limit", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "The key's role may not operate queues", body = ErrorBody),
        (status = 404, description = "No such queue", body = ErrorBody),
    )
)]
pub(crate) async fn dead_list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(queue_name): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeadQuery>,
) -> ApiResult<Json<DeadPageView>> {
    caller.require(Area::Operations)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_DEAD_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "query parameter `limit`: must be between 1 and {MAX_DEAD_LIMIT}"
        )));
    }
    // Redis indexes sorted sets with signed 64-bit numbers: an offset past that range would be
    // refused by Redis (a 503 for a client mistake), and no dead set comes near this one.
    let offset = query.offset.unwrap_or(0);
    if offset > MAX_DEAD_OFFSET {
        return Err(ApiError::invalid(format!(
            "query parameter `offset`: must be at most {MAX_DEAD_OFFSET}"
        )));
    }
    let backends = state.backends().await?;
    let queue = queue(backends, &queue_name)?;
    let filter = DeadFilter {
        error_kind: query.error_kind,
    };
    let page = Page { offset, limit };
    let dead = on_queue!(queue, |q| q.dead_list(&filter, page).await)?;
    Ok(Json(DeadPageView {
        jobs: dead
            .jobs
            .into_iter()
            .map(|job| DeadJobView {
                job_id: job.job_id,
                dead_at: job.dead_at,
                attempts: job.attempts,
                error_kind: job.error_kind,
                last_error: job.last_error,
                unique_key: job.unique_key,
            })
            .collect(),
        total: dead.total,
    }))
}

/// One dead job with its payload and errors.
#[utoipa::path(
    get,
    path = "/v1/queues/{queue}/dead/{job_id}",
    tag = "operations",
    params(
        ("queue" = String, Path, description = QUEUE_PARAM),
        ("job_id" = String, Path, description = "The job's id (`job_...`)"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The dead job", body = JobView),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "The key's role may not operate queues", body = ErrorBody),
        (status = 404, description = "No such queue, or no such dead job", body = ErrorBody),
    )
)]
pub(crate) async fn dead_show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((queue_name, job_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<JobView>> {
    caller.require(Area::Operations)?;
    let job_id: JobId = path_id("job_id", &job_id)?;
    let backends = state.backends().await?;
    let queue = queue(backends, &queue_name)?;
    let detail = on_queue!(queue, |q| q.dead_show(job_id).await)?
        .ok_or_else(|| ApiError::not_found(format!("dead job `{job_id}`")))?;
    Ok(Json(detail.into()))
}

/// Move dead jobs back to the queue: one, by error kind, older than an age, or all.
#[utoipa::path(
    post,
    path = "/v1/queues/{queue}/dead/retry",
    tag = "operations",
    params(("queue" = String, Path, description = QUEUE_PARAM)),
    request_body = DeadSelection,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "How many jobs were retried", body = DeadActionResult),
        (status = 400, description = "Invalid selection", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "The key's role may not operate queues", body = ErrorBody),
        (status = 404, description = "No such queue", body = ErrorBody),
    )
)]
pub(crate) async fn dead_retry(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(queue_name): ApiPath<String>,
    ApiJson(selection): ApiJson<DeadSelection>,
) -> ApiResult<Json<DeadActionResult>> {
    caller.require(Area::Operations)?;
    let selector = selection.into_selector()?;
    let backends = state.backends().await?;
    let queue = queue(backends, &queue_name)?;
    let count = on_queue!(queue, |q| q.dead_retry(&selector).await)?;
    tracing::info!(queue = %queue_name, ?selector, count, "dead jobs retried");
    Ok(Json(DeadActionResult { count }))
}

/// Delete dead jobs for good: one, by error kind, older than an age, or all.
#[utoipa::path(
    post,
    path = "/v1/queues/{queue}/dead/purge",
    tag = "operations",
    params(("queue" = String, Path, description = QUEUE_PARAM)),
    request_body = DeadSelection,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "How many jobs were purged", body = DeadActionResult),
        (status = 400, description = "Invalid selection", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "The key's role may not operate queues", body = ErrorBody),
        (status = 404, description = "No such queue", body = ErrorBody),
    )
)]
pub(crate) async fn dead_purge(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(queue_name): ApiPath<String>,
    ApiJson(selection): ApiJson<DeadSelection>,
) -> ApiResult<Json<DeadActionResult>> {
    caller.require(Area::Operations)?;
    let selector = selection.into_selector()?;
    let backends = state.backends().await?;
    let queue = queue(backends, &queue_name)?;
    let count = on_queue!(queue, |q| q.dead_purge(&selector).await)?;
    tracing::info!(queue = %queue_name, ?selector, count, "dead jobs purged");
    Ok(Json(DeadActionResult { count }))
}
