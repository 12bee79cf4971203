//! `/v1/connections/{id}/records/{entity}`: the synced copies, as unified records with the raw
//! source record beside them.
//!
//! Lists walk the store's change feed: records whose copy changed at or after `updated_since`,
//! in the order they changed, so a client polling with the last page's cursor sees every change
//! once.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use conveyor_core::{ConnectionId, Entity};
use conveyor_store::StoredRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Area, Caller};
use crate::connections::owned_connection;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery, cursor_error, page_limit, path_id};
use crate::openapi::ErrorBody;
use crate::schema;
use crate::state::AppState;

/// One synced record.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RecordView {
    /// The source's own key of the record.
    external_key: String,
    /// Its entity.
    #[schema(schema_with = schema::entity)]
    entity: Entity,
    /// When the source last changed it.
    source_updated_at: DateTime<Utc>,
    /// Whether the source flags it deleted, or a full sync no longer found it.
    deleted: bool,
    /// When Conveyor's copy last changed.
    synced_at: DateTime<Utc>,
    /// The unified model of the record (its fields depend on `entity`).
    data: serde_json::Value,
    /// The record exactly as the source sent it (its JSON text, passed through unparsed).
    #[schema(value_type = serde_json::Value)]
    raw: Box<serde_json::value::RawValue>,
}

impl RecordView {
    fn new(stored: StoredRecord) -> ApiResult<Self> {
        let record = stored.record;
        Ok(RecordView {
            entity: record.entity(),
            external_key: record.external_key,
            source_updated_at: record.source_updated_at,
            deleted: record.deleted,
            synced_at: stored.synced_at,
            data: serde_json::to_value(&record.data).map_err(ApiError::internal)?,
            raw: record.raw,
        })
    }
}

/// A page of records, in the order their copies changed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RecordPage {
    /// The records.
    items: Vec<RecordView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Which records to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RecordQuery {
    /// Only records whose copy changed at or after this time (RFC 3339); all when absent.
    /// Ignored when `cursor` is given.
    updated_since: Option<DateTime<Utc>>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Items per page, 1 to 100; 20 when absent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// The path parameters naming a connection's entity (documentation only: handlers parse them
/// themselves to name the bad one).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "exists only to describe the path parameters")]
pub(crate) struct EntityPath {
    /// The connection's id (`conn_...`).
    connection_id: String,
    /// The entity.
    #[param(schema_with = schema::entity)]
    entity: String,
}

fn entity_param(value: &str) -> ApiResult<Entity> {
    value
        .parse()
        .map_err(|err| ApiError::invalid(format!("path parameter `entity`: {err}")))
}

/// List records of one entity of a connection.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/records/{entity}",
    tag = "records",
    params(
        EntityPath,
        RecordQuery
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of records", body = RecordPage),
        (status = 400, description = "Bad id, entity, time, limit or cursor", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection in this tenant", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((connection_id, entity)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<RecordQuery>,
) -> ApiResult<Json<RecordPage>> {
    caller.require(Area::Records)?;
    let id: ConnectionId = path_id("connection_id", &connection_id)?;
    let entity = entity_param(&entity)?;
    let limit = page_limit(query.limit)?;
    let backends = state.backends().await?;
    owned_connection(&backends.store, &caller, &id).await?;
    let since = query.updated_since.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let page = backends
        .store
        .list_changed(&id, entity, since, limit, query.cursor.as_deref())
        .await
        .map_err(cursor_error)?;
    Ok(Json(RecordPage {
        items: page
            .items
            .into_iter()
            .map(RecordView::new)
            .collect::<ApiResult<_>>()?,
        next_cursor: page.next_cursor,
    }))
}

/// One record by its source key.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/records/{entity}/{key}",
    tag = "records",
    params(
        EntityPath,
        ("key" = String, Path, description = "The record's source key"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The record", body = RecordView),
        (status = 400, description = "Bad id or entity", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection in this tenant, or no such record", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((connection_id, entity, key)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<RecordView>> {
    caller.require(Area::Records)?;
    let id: ConnectionId = path_id("connection_id", &connection_id)?;
    let entity = entity_param(&entity)?;
    let backends = state.backends().await?;
    owned_connection(&backends.store, &caller, &id).await?;
    let record = backends
        .store
        .get_record(&id, entity, &key)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "{entity} record `{}`",
                key.chars().take(200).collect::<String>()
            ))
        })?;
    Ok(Json(RecordView::new(record)?))
}
