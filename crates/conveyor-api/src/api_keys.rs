//! `/v1/api_keys`: an admin lists, creates and revokes its tenant's API keys.
//!
//! A new key's secret is in the creation answer and nowhere else, ever: Redis keeps its SHA-256
//! only, and lists show a short prefix to tell keys apart. The first admin key of a tenant comes
//! from `conveyorctl bootstrap`, which talks to Redis directly.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use conveyor_core::{ApiKeyId, TenantId};
use conveyor_store::{ApiKey, ApiRole, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Area, Caller};
use crate::connections::ListQuery;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, cursor_error, page_limit, path_id};
use crate::openapi::ErrorBody;
use crate::schema;
use crate::state::AppState;

/// Longest key name accepted.
const MAX_NAME_LEN: usize = 200;

/// An API key as it may be shown: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeyView {
    /// Its id.
    #[schema(schema_with = schema::api_key_id)]
    id: ApiKeyId,
    /// The tenant it acts for.
    #[schema(schema_with = schema::tenant_id)]
    tenant_id: TenantId,
    /// What it may do.
    #[schema(schema_with = schema::role)]
    role: ApiRole,
    /// A human label.
    name: String,
    /// The first characters of the secret, to tell keys apart.
    prefix: String,
    /// When it was created.
    created_at: DateTime<Utc>,
    /// When it was revoked; a revoked key authenticates nothing.
    revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(key: ApiKey) -> Self {
        ApiKeyView {
            id: key.id,
            tenant_id: key.tenant_id,
            role: key.role,
            name: key.name,
            prefix: key.prefix,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// A page of API keys, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeyPage {
    /// The keys (revoked ones included).
    items: Vec<ApiKeyView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateApiKey {
    /// A human label (1 to 200 characters).
    name: String,
    /// What it may do.
    #[schema(schema_with = schema::role)]
    role: ApiRole,
}

/// A key just created, with its secret: the only time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedApiKeyView {
    /// The key.
    key: ApiKeyView,
    /// The secret, for `Authorization: Bearer ...`; store it now, it is never shown again.
    secret: String,
}

/// The tenant's API keys.
#[utoipa::path(
    get,
    path = "/v1/api_keys",
    tag = "api_keys",
    params(ListQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of keys", body = ApiKeyPage),
        (status = 400, description = "Bad limit or cursor", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Only admin keys manage keys", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<ApiKeyPage>> {
    caller.require(Area::ApiKeys)?;
    let limit = page_limit(query.limit)?;
    let backends = state.backends().await?;
    let page = backends
        .store
        .list_api_keys(&caller.tenant_id, limit, query.cursor.as_deref())
        .await
        .map_err(cursor_error)?;
    Ok(Json(ApiKeyPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Create a key for the caller's tenant; the answer holds its secret, once.
#[utoipa::path(
    post,
    path = "/v1/api_keys",
    tag = "api_keys",
    request_body = CreateApiKey,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Created; the secret is shown only now", body = CreatedApiKeyView),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Only admin keys manage keys", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKeyView>)> {
    caller.require(Area::ApiKeys)?;
    if body.name.trim().is_empty() || body.name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::invalid(format!(
            "field `name`: must be 1 to {MAX_NAME_LEN} characters"
        )));
    }
    let backends = state.backends().await?;
    let created = backends
        .store
        .create_api_key(&caller.tenant_id, body.role, &body.name)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKeyView {
            key: created.key.into(),
            secret: created.secret.expose().to_owned(),
        }),
    ))
}

/// Revoke a key of the caller's tenant; it stops authenticating.
#[utoipa::path(
    delete,
    path = "/v1/api_keys/{api_key_id}",
    tag = "api_keys",
    params(("api_key_id" = String, Path, description = "The key's id (`key_...`)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The revoked key", body = ApiKeyView),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Only admin keys manage keys", body = ErrorBody),
        (status = 404, description = "No such key in this tenant", body = ErrorBody),
    )
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(api_key_id): ApiPath<String>,
) -> ApiResult<Json<ApiKeyView>> {
    caller.require(Area::ApiKeys)?;
    let id: ApiKeyId = path_id("api_key_id", &api_key_id)?;
    let backends = state.backends().await?;
    let key = match backends.store.revoke_api_key(&caller.tenant_id, &id).await {
        Ok(key) => key,
        Err(StoreError::NotFound { .. }) => {
            return Err(ApiError::not_found(format!("api key `{id}`")));
        }
        Err(err) => return Err(err.into()),
    };
    state.key_cache().forget(&id);
    Ok(Json(key.into()))
}
