//! Manual syncs: ask for syncs of chosen entities, read one sync, list a connection's history.
//!
//! Asking goes through `conveyor_sync::enqueue_sync`, which keeps at most one sync per
//! connection and entity queued or running: asking again answers with the existing sync, marked
//! `existing: true`. The answer also carries the connection's status, so a client sees at once
//! that the system is offline or needs new credentials.
//!
//! A sync id alone is resolvable: the store keeps the run's owner, and until the run record is
//! written (the push comes first) the queue's job, whose id shares the sync's ULID, carries the
//! connection in its payload.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use conveyor_core::{ConnectionId, Entity, SyncId, SyncJob, SyncMode, SyncTrigger};
use conveyor_queue::{JobDetail, JobState};
use conveyor_store::{RunFilter, RunStatus, StoreError, SyncRun};
use conveyor_sync::{enqueue_sync, job_id_of};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Area, Caller};
use crate::connections::{ConnectionStatusView, owned_connection};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, cursor_error, page_limit, path_id};
use crate::openapi::ErrorBody;
use crate::schema;
use crate::state::AppState;

/// Syncs to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSyncs {
    /// Entities to sync; each must be configured on the connection, each at most once.
    #[schema(schema_with = schema::entities)]
    entities: Vec<Entity>,
    /// `incremental` (the default) or `full`.
    #[serde(default)]
    #[schema(schema_with = schema::sync_mode)]
    mode: SyncMode,
}

/// One sync the request resulted in.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AcceptedSync {
    /// The sync (new, or the one already queued or running).
    #[schema(schema_with = schema::sync_id)]
    sync_id: SyncId,
    /// Its entity.
    #[schema(schema_with = schema::entity)]
    entity: Entity,
    /// Its mode (an existing sync keeps its own).
    #[schema(schema_with = schema::sync_mode)]
    mode: SyncMode,
    /// Where it is.
    #[schema(schema_with = schema::run_status)]
    status: RunStatus,
    /// True when a sync of this entity was already queued or running and is returned instead of
    /// a new one.
    existing: bool,
}

/// The answer to a manual sync request.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SyncsAccepted {
    /// The connection.
    #[schema(schema_with = schema::connection_id)]
    connection_id: ConnectionId,
    /// Its current health (an `offline` or `auth_required` connection's syncs will wait or
    /// fail).
    connection_status: ConnectionStatusView,
    /// One sync per requested entity, in request order.
    syncs: Vec<AcceptedSync>,
}

/// Counts of a sync.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SyncCounts {
    /// Pages stored.
    pages: u64,
    /// Records read from the source.
    records_fetched: u64,
    /// Records written (new or changed).
    records_written: u64,
    /// Records whose content had not changed.
    records_unchanged: u64,
    /// Records marked deleted.
    records_deleted: u64,
}

/// Why a sync failed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SyncError {
    /// A stable code.
    code: String,
    /// A human-readable explanation.
    message: String,
}

/// One sync run.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SyncView {
    /// The sync's id.
    #[schema(schema_with = schema::sync_id)]
    sync_id: SyncId,
    /// The connection synced.
    #[schema(schema_with = schema::connection_id)]
    connection_id: ConnectionId,
    /// The entity synced.
    #[schema(schema_with = schema::entity)]
    entity: Entity,
    /// Incremental or full.
    #[schema(schema_with = schema::sync_mode)]
    mode: SyncMode,
    /// Why it ran.
    #[schema(schema_with = schema::sync_trigger)]
    trigger: SyncTrigger,
    /// Where it is.
    #[schema(schema_with = schema::run_status)]
    status: RunStatus,
    /// When it was queued.
    queued_at: DateTime<Utc>,
    /// When its first attempt started.
    started_at: Option<DateTime<Utc>>,
    /// When it finished.
    finished_at: Option<DateTime<Utc>>,
    /// Attempts started so far.
    attempts: u32,
    /// What it read and wrote.
    counts: SyncCounts,
    /// The last error, if any.
    error: Option<SyncError>,
}

impl From<SyncRun> for SyncView {
    fn from(run: SyncRun) -> Self {
        SyncView {
            sync_id: run.id,
            connection_id: run.connection_id,
            entity: run.entity,
            mode: run.mode,
            trigger: run.trigger,
            status: run.status,
            queued_at: run.queued_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            attempts: run.attempts,
            counts: SyncCounts {
                pages: run.pages,
                records_fetched: run.records_fetched,
                records_written: run.records_written,
                records_unchanged: run.records_unchanged,
                records_deleted: run.records_deleted,
            },
            error: run.error.map(|e| SyncError {
                code: e.code,
                message: e.message,
            }),
        }
    }
}

/// A page of sync runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SyncPage {
    /// The runs.
    items: Vec<SyncView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Filters and paging of a sync history.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Only syncs of this entity.
    #[param(schema_with = schema::entity)]
    entity: Option<Entity>,
    /// Only syncs in this status.
    #[param(schema_with = schema::run_status)]
    status: Option<String>,
    /// Items per page, 1 to 100; 20 when absent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Start syncs of chosen entities of a connection.
#[utoipa::path(
    post,
    path = "/v1/connections/{connection_id}/syncs",
    tag = "syncs",
    params(("connection_id" = String, Path, description = "The connection's id (`conn_...`)")),
    request_body = CreateSyncs,
    security(("api_key" = [])),
    responses(
        (status = 202, description = "One sync per entity, new or existing", body = SyncsAccepted),
        (status = 400, description = "Invalid request, or an entity the connection does not sync", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "The key's role may not start syncs", body = ErrorBody),
        (status = 404, description = "No such connection in this tenant", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(connection_id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateSyncs>,
) -> ApiResult<(StatusCode, Json<SyncsAccepted>)> {
    caller.require(Area::Syncs)?;
    let id: ConnectionId = path_id("connection_id", &connection_id)?;
    if body.entities.is_empty() {
        return Err(ApiError::invalid(
            "field `entities`: at least one entity is required",
        ));
    }
    let mut seen = HashSet::new();
    for (index, entity) in body.entities.iter().enumerate() {
        if !seen.insert(*entity) {
            return Err(ApiError::invalid(format!(
                "field `entities[{index}]`: {entity} is listed twice"
            )));
        }
    }
    let backends = state.backends().await?;
    let store = &backends.store;
    let connection = owned_connection(store, &caller, &id).await?;
    for (index, entity) in body.entities.iter().enumerate() {
        if connection.entity(*entity).is_none() {
            return Err(ApiError::invalid(format!(
                "field `entities[{index}]`: connection `{id}` does not sync {entity}"
            )));
        }
    }
    // The status read does not depend on the pushes, so it runs beside them.
    let pushes = async {
        let mut syncs = Vec::with_capacity(body.entities.len());
        for &entity in &body.entities {
            let enqueued = enqueue_sync(
                store,
                &backends.syncs,
                id,
                entity,
                body.mode,
                SyncTrigger::Manual,
            )
            .await?;
            let (mode, status) = if enqueued.existing {
                match store.get_run(&id, &enqueued.sync_id).await {
                    Ok(run) => (run.mode, run.status),
                    Err(StoreError::NotFound { .. }) => (body.mode, RunStatus::Queued),
                    Err(err) => return Err(ApiError::from(err)),
                }
            } else {
                (body.mode, RunStatus::Queued)
            };
            syncs.push(AcceptedSync {
                sync_id: enqueued.sync_id,
                entity,
                mode,
                status,
                existing: enqueued.existing,
            });
        }
        Ok::<_, ApiError>(syncs)
    };
    let (syncs, status) = tokio::join!(pushes, store.get_status(&id));
    let syncs = syncs?;
    let status = status?;
    for sync in &syncs {
        tracing::debug!(
            connection_id = %id,
            sync_id = %sync.sync_id,
            entity = %sync.entity,
            existing = sync.existing,
            "manual sync requested"
        );
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(SyncsAccepted {
            connection_id: id,
            connection_status: ConnectionStatusView::new(id, status),
            syncs,
        }),
    ))
}

/// A connection's sync history, newest first, filtered by entity and status.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/syncs",
    tag = "syncs",
    params(
        ("connection_id" = String, Path, description = "The connection's id (`conn_...`)"),
        HistoryQuery
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of syncs", body = SyncPage),
        (status = 400, description = "Bad id, filter, limit or cursor", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection in this tenant", body = ErrorBody),
    )
)]
pub(crate) async fn history(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(connection_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<SyncPage>> {
    caller.require(Area::Status)?;
    let id: ConnectionId = path_id("connection_id", &connection_id)?;
    let limit = page_limit(query.limit)?;
    let status = query
        .status
        .map(|text| {
            text.parse::<RunStatus>().map_err(|_| {
                ApiError::invalid(format!(
                    "query parameter `status`: unknown sync status `{}`; expected one of: {}",
                    text.chars().take(32).collect::<String>(),
                    RunStatus::ALL
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        })
        .transpose()?;
    let backends = state.backends().await?;
    owned_connection(&backends.store, &caller, &id).await?;
    let filter = RunFilter {
        entity: query.entity,
        status,
    };
    let page = backends
        .store
        .list_runs(&id, filter, limit, query.cursor.as_deref())
        .await
        .map_err(cursor_error)?;
    Ok(Json(SyncPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A run that exists only as a queued job so far (its record is written just after the push).
fn view_from_job(sync_id: SyncId, job: &SyncJob, detail: &JobDetail) -> SyncView {
    let status = match &detail.status.state {
        JobState::Queued | JobState::Scheduled { .. } => RunStatus::Queued,
        JobState::Running { .. } => RunStatus::Running,
        JobState::Retrying { .. } => RunStatus::Retrying,
        JobState::Succeeded { .. } => RunStatus::Succeeded,
        JobState::Dead { .. } => RunStatus::Failed,
    };
    SyncView {
        sync_id,
        connection_id: job.connection_id,
        entity: job.entity,
        mode: job.mode,
        trigger: job.trigger,
        status,
        queued_at: job.requested_at,
        started_at: None,
        finished_at: None,
        attempts: detail.status.attempts,
        counts: SyncCounts {
            pages: 0,
            records_fetched: 0,
            records_written: 0,
            records_unchanged: 0,
            records_deleted: 0,
        },
        error: detail.errors.last().map(|e| SyncError {
            code: e.kind.clone(),
            message: e.message.clone(),
        }),
    }
}

/// One sync, by its id alone.
#[utoipa::path(
    get,
    path = "/v1/syncs/{sync_id}",
    tag = "syncs",
    params(("sync_id" = String, Path, description = "The sync's id (`sync_...`)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The sync", body = SyncView),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such sync in this tenant", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(sync_id): ApiPath<String>,
) -> ApiResult<Json<SyncView>> {
    caller.require(Area::Status)?;
    let sync_id: SyncId = path_id("sync_id", &sync_id)?;
    let backends = state.backends().await?;
    let store = &backends.store;
    let not_found = || ApiError::not_found(format!("sync `{sync_id}`"));
    let view = match store.find_run(&sync_id).await {
        Ok(run) => SyncView::from(run),
        Err(StoreError::NotFound { .. }) => {
            let detail = backends
                .syncs
                .job_detail(job_id_of(sync_id))
                .await?
                .ok_or_else(not_found)?;
            let job: SyncJob =
                serde_json::from_value(detail.payload.clone()).map_err(|_| not_found())?;
            if job.sync_id != sync_id {
                return Err(not_found());
            }
            view_from_job(sync_id, &job, &detail)
        }
        Err(err) => return Err(err.into()),
    };
    // Another tenant's sync is as missing as a sync that never was.
    match owned_connection(store, &caller, &view.connection_id).await {
        Ok(_) => Ok(Json(view)),
        Err(err) if err.code() == conveyor_core::ErrorCode::NotFound => Err(not_found()),
        Err(err) => Err(err),
    }
}
