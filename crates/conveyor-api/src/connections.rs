//! `/v1/connections`: create, read, list, change and delete connections, and read their status.
//!
//! Credentials are write-only: they are accepted on create and update, validated, and handed to
//! the store (which encrypts them); no response type has a field that could carry them, and no
//! log line prints a request body. A connection of another tenant answers 404 exactly as a
//! missing one does.

use std::collections::{BTreeMap, HashSet};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use conveyor_core::connection::{MAX_SYNC_INTERVAL_SECS, MIN_SYNC_INTERVAL_SECS};
use conveyor_core::{
    Connection, ConnectionId, ConnectionStatus, Credentials, Entity, EntityConfig, ProfileKind,
    Secret, SourceSettings,
};
use conveyor_store::{StatusRecord, Store, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Area, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, cursor_error, page_limit, path_id};
use crate::openapi::ErrorBody;
use crate::schema;
use crate::state::AppState;

/// Longest connection name accepted.
const MAX_NAME_LEN: usize = 200;
/// Longest historical period of a full sync, in days.
const MAX_HISTORICAL_DAYS: u32 = 3_650;
/// Longest overlap of an incremental sync, in seconds.
const MAX_OVERLAP_SECS: u64 = 86_400;

/// How to authenticate to the system. Write-only: never returned.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum CredentialsInput {
    /// No authentication (test systems only).
    None,
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        #[schema(format = Password, write_only)]
        password: String,
    },
    /// An API key sent in a header.
    ApiKey {
        /// Header name; defaults to `apikey`.
        #[serde(default)]
        header: Option<String>,
        /// The key.
        #[schema(format = Password, write_only)]
        key: String,
    },
    /// A static bearer token.
    Bearer {
        /// The token.
        #[schema(format = Password, write_only)]
        token: String,
    },
    /// OAuth2 client credentials.
    #[serde(rename = "oauth2_client_credentials")]
    #[schema(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials {
        /// The token endpoint.
        token_url: String,
        /// Client id.
        client_id: String,
        /// Client secret.
        #[schema(format = Password, write_only)]
        client_secret: String,
        /// Requested scope.
        #[serde(default)]
        scope: Option<String>,
    },
}

impl CredentialsInput {
    fn into_core(self) -> Credentials {
        match self {
            CredentialsInput::None => Credentials::None,
            CredentialsInput::Basic { username, password } => Credentials::Basic {
                username,
                password: Secret::new(password),
            },
            CredentialsInput::ApiKey { header, key } => Credentials::ApiKey {
                header: header.unwrap_or_else(|| "apikey".to_owned()),
                key: Secret::new(key),
            },
            CredentialsInput::Bearer { token } => Credentials::Bearer {
                token: Secret::new(token),
            },
            CredentialsInput::OAuth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => Credentials::OAuth2ClientCredentials {
                token_url,
                client_id,
                client_secret: Secret::new(client_secret),
                scope,
            },
        }
    }
}

/// How to read pages from the system.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// Records per page asked of the source; the profile's usual size when absent.
    #[serde(default)]
    pub(crate) page_size: Option<u32>,
    /// The source server's UTC offset, such as `-04:00` (Maximo).
    #[serde(default)]
    pub(crate) utc_offset: Option<String>,
    /// Per-request timeout in seconds; 30 when absent.
    #[serde(default)]
    pub(crate) request_timeout_secs: Option<u64>,
}

/// One entity synced from a connection, and its schedule.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntitySettings {
    /// Which entity.
    #[schema(schema_with = schema::entity)]
    pub(crate) entity: Entity,
    /// Path of the entity's resource relative to the base URL; the profile's usual path when
    /// absent.
    #[serde(default)]
    pub(crate) path: Option<String>,
    /// Seconds between scheduled syncs: 900 to 86400; 3600 when absent.
    #[serde(default)]
    pub(crate) interval_secs: Option<u64>,
    /// Whether scheduled syncs run; true when absent.
    #[serde(default)]
    pub(crate) enabled: Option<bool>,
    /// Source field names that differ from the profile's mapping, by unified field name.
    #[serde(default)]
    pub(crate) field_overrides: BTreeMap<String, String>,
}

/// A new connection.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateConnection {
    /// A human name (1 to 200 characters).
    name: String,
    /// The API family the system speaks.
    #[schema(schema_with = schema::profile)]
    profile: ProfileKind,
    /// Base URL of the source API (http or https).
    base_url: String,
    /// How to authenticate; write-only.
    credentials: CredentialsInput,
    /// How to read pages.
    #[serde(default)]
    settings: Option<Settings>,
    /// The entities to sync (at least one, each at most once).
    entities: Vec<EntitySettings>,
    /// How far back a full sync reaches, in days (1 to 3650); 90 when absent.
    #[serde(default)]
    historical_days: Option<u32>,
    /// Overlap subtracted from the incremental cursor, in seconds (0 to 86400); 120 when absent.
    #[serde(default)]
    overlap_secs: Option<u64>,
}

/// Changes to a connection; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateConnection {
    /// A human name.
    #[serde(default)]
    name: Option<String>,
    /// The API family.
    #[serde(default)]
    #[schema(schema_with = schema::profile)]
    profile: Option<ProfileKind>,
    /// Base URL of the source API.
    #[serde(default)]
    base_url: Option<String>,
    /// New credentials, replacing the stored ones; write-only.
    #[serde(default)]
    credentials: Option<CredentialsInput>,
    /// How to read pages (replaces the settings as a whole).
    #[serde(default)]
    settings: Option<Settings>,
    /// The entities to sync (replaces the list as a whole).
    #[serde(default)]
    entities: Option<Vec<EntitySettings>>,
    /// How far back a full sync reaches, in days.
    #[serde(default)]
    historical_days: Option<u32>,
    /// Overlap of incremental syncs, in seconds.
    #[serde(default)]
    overlap_secs: Option<u64>,
    /// The version the change is based on; when given and stale, the answer is 409 CONFLICT.
    #[serde(default)]
    version: Option<u64>,
}

/// A connection as the API shows it: everything but its credentials.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConnectionView {
    /// Its id.
    #[schema(schema_with = schema::connection_id)]
    id: ConnectionId,
    /// Its name.
    name: String,
    /// The API family.
    #[schema(schema_with = schema::profile)]
    profile: ProfileKind,
    /// Base URL of the source API.
    base_url: String,
    /// How pages are read.
    settings: Settings,
    /// The entities synced.
    entities: Vec<EntitySettings>,
    /// Historical period of full syncs, in days.
    historical_days: u32,
    /// Overlap of incremental syncs, in seconds.
    overlap_secs: u64,
    /// When it was created.
    created_at: DateTime<Utc>,
    /// When it last changed.
    updated_at: DateTime<Utc>,
    /// Bumped on every change.
    version: u64,
}

impl From<Connection> for ConnectionView {
    fn from(connection: Connection) -> Self {
        ConnectionView {
            id: connection.id,
            name: connection.name,
            profile: connection.profile,
            base_url: connection.base_url,
            settings: Settings {
                page_size: connection.settings.page_size,
                utc_offset: connection.settings.utc_offset,
                request_timeout_secs: connection.settings.request_timeout_secs,
            },
            entities: connection
                .entities
                .into_iter()
                .map(|e| EntitySettings {
                    entity: e.entity,
                    path: e.path,
                    interval_secs: Some(e.interval_secs),
                    enabled: Some(e.enabled),
                    field_overrides: e.field_overrides,
                })
                .collect(),
            historical_days: connection.historical_days,
            overlap_secs: connection.overlap_secs,
            created_at: connection.created_at,
            updated_at: connection.updated_at,
            version: connection.version,
        }
    }
}

/// One page of connections, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConnectionPage {
    /// The connections.
    items: Vec<ConnectionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Paging of a list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Items per page, 1 to 100; 20 when absent.
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// The last error reported for a connection.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LastErrorView {
    /// A stable code (`SOURCE_UNREACHABLE`, `AUTH_REJECTED`, ...).
    code: String,
    /// A human-readable explanation.
    message: String,
    /// When it was reported.
    at: DateTime<Utc>,
}

/// A connection's health.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConnectionStatusView {
    /// The connection.
    #[schema(schema_with = schema::connection_id)]
    connection_id: ConnectionId,
    /// `unknown` (never reached), `online`, `offline` (unreachable), `auth_required`
    /// (credentials rejected).
    #[schema(schema_with = schema::connection_status)]
    status: ConnectionStatus,
    /// Since when it has had this status.
    since: Option<DateTime<Utc>>,
    /// The last time a sync reached the system successfully.
    last_success_at: Option<DateTime<Utc>>,
    /// The last error.
    last_error: Option<LastErrorView>,
    /// Failures since the last success.
    consecutive_failures: u64,
    /// When Conveyor will try the system again, if it is backing off.
    next_attempt_at: Option<DateTime<Utc>>,
    /// Per entity, the source time up to which the stored copy is complete.
    data_as_of: BTreeMap<String, DateTime<Utc>>,
    /// Per enabled entity that has synced, how far its copy is behind its schedule: the time
    /// since `data_as_of` beyond one sync interval, in whole seconds (0: on schedule).
    lag_secs: BTreeMap<String, u64>,
}

impl ConnectionStatusView {
    /// Adds each enabled entity's lag against its configured interval, as of `now`.
    pub(crate) fn with_lag(mut self, connection: &Connection, now: DateTime<Utc>) -> Self {
        for entity in connection.entities.iter().filter(|entity| entity.enabled) {
            let name = entity.entity.to_string();
            let data_as_of = self.data_as_of.get(&name).copied();
            let interval = std::time::Duration::from_secs(entity.interval_secs);
            if let Some(lag) = conveyor_sync::health::lag(now, data_as_of, interval) {
                self.lag_secs.insert(name, lag.as_secs());
            }
        }
        self
    }

    pub(crate) fn new(connection_id: ConnectionId, record: StatusRecord) -> Self {
        ConnectionStatusView {
            connection_id,
            status: record.status,
            since: record.since,
            last_success_at: record.last_success_at,
            last_error: record.last_error.map(|e| LastErrorView {
                code: e.code,
                message: e.message,
                at: e.at,
            }),
            consecutive_failures: record.consecutive_failures,
            next_attempt_at: record.next_attempt_at,
            data_as_of: record
                .data_as_of
                .into_iter()
                .map(|(entity, at)| (entity.to_string(), at))
                .collect(),
            lag_secs: BTreeMap::new(),
        }
    }
}

/// The connection with `id` if it belongs to `caller`'s tenant; 404 otherwise, with the same
/// answer for another tenant's connection as for a missing one.
pub(crate) async fn owned_connection(
    store: &Store,
    caller: &Caller,
    id: &ConnectionId,
) -> ApiResult<Connection> {
    match store.get_connection(id).await {
        Ok(connection) if connection.tenant_id == caller.tenant_id => Ok(connection),
        Ok(_) | Err(StoreError::NotFound { .. }) => {
            Err(ApiError::not_found(format!("connection `{id}`")))
        }
        Err(err) => Err(err.into()),
    }
}

fn entity_configs(entities: Vec<EntitySettings>) -> ApiResult<Vec<EntityConfig>> {
    if entities.is_empty() {
        return Err(ApiError::invalid(
            "field `entities`: at least one entity is required",
        ));
    }
    let mut seen = HashSet::new();
    let mut configs = Vec::with_capacity(entities.len());
    for (index, e) in entities.into_iter().enumerate() {
        if !seen.insert(e.entity) {
            return Err(ApiError::invalid(format!(
                "field `entities[{index}].entity`: {} is listed twice",
                e.entity
            )));
        }
        let interval_secs = e
            .interval_secs
            .unwrap_or(conveyor_core::connection::DEFAULT_SYNC_INTERVAL_SECS);
        if !(MIN_SYNC_INTERVAL_SECS..=MAX_SYNC_INTERVAL_SECS).contains(&interval_secs) {
            return Err(ApiError::invalid(format!(
                "field `entities[{index}].interval_secs`: must be between \
                 {MIN_SYNC_INTERVAL_SECS} and {MAX_SYNC_INTERVAL_SECS}"
            )));
        }
        configs.push(EntityConfig {
            entity: e.entity,
            path: e.path,
            interval_secs,
            enabled: e.enabled.unwrap_or(true),
            field_overrides: e.field_overrides,
        });
    }
    Ok(configs)
}

fn source_settings(settings: Settings) -> SourceSettings {
    SourceSettings {
        page_size: settings.page_size,
        utc_offset: settings.utc_offset,
        request_timeout_secs: settings.request_timeout_secs,
    }
}

/// Checks what the connectors cannot (name, history, overlap) and then the connector rules;
/// every problem is named in one 400.
fn validate(connection: &Connection, credentials: &Credentials) -> ApiResult<()> {
    let mut problems = Vec::new();
    let name_len = connection.name.chars().count();
    if connection.name.trim().is_empty() || name_len > MAX_NAME_LEN {
        problems.push(format!("name: must be 1 to {MAX_NAME_LEN} characters"));
    }
    if !(1..=MAX_HISTORICAL_DAYS).contains(&connection.historical_days) {
        problems.push(format!(
            "historical_days: must be between 1 and {MAX_HISTORICAL_DAYS}"
        ));
    }
    if connection.overlap_secs > MAX_OVERLAP_SECS {
        problems.push(format!("overlap_secs: must be at most {MAX_OVERLAP_SECS}"));
    }
    if let Err(found) = conveyor_connectors::validate(connection, credentials) {
        problems.extend(
            found
                .into_iter()
                .map(|p| format!("{}: {}", p.field, p.message)),
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "invalid connection: {}",
            problems.join("; ")
        )))
    }
}

/// Create a connection.
#[utoipa::path(
    post,
    path = "/v1/connections",
    tag = "connections",
    request_body = CreateConnection,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = ConnectionView),
        (status = 400, description = "Invalid request; the message names each bad field", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "The key's role may not manage connections", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateConnection>,
) -> ApiResult<(StatusCode, Json<ConnectionView>)> {
    caller.require(Area::Connections)?;
    let now = Utc::now();
    let connection = Connection {
        id: ConnectionId::new(),
        tenant_id: caller.tenant_id,
        name: body.name,
        profile: body.profile,
        base_url: body.base_url,
        settings: source_settings(body.settings.unwrap_or_default()),
        entities: entity_configs(body.entities)?,
        historical_days: body
            .historical_days
            .unwrap_or(conveyor_core::connection::DEFAULT_HISTORICAL_DAYS),
        overlap_secs: body
            .overlap_secs
            .unwrap_or(conveyor_core::connection::DEFAULT_OVERLAP_SECS),
        created_at: now,
        updated_at: now,
        version: 0,
    };
    let credentials = body.credentials.into_core();
    validate(&connection, &credentials)?;
    let backends = state.backends().await?;
    let stored = backends
        .store
        .create_connection(&connection, &credentials)
        .await?;
    tracing::info!(connection_id = %stored.id, profile = %stored.profile, "connection created");
    Ok((StatusCode::CREATED, Json(stored.into())))
}

/// List the tenant's connections, newest first.
#[utoipa::path(
    get,
    path = "/v1/connections",
    tag = "connections",
    params(ListQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of connections", body = ConnectionPage),
        (status = 400, description = "Bad limit or cursor", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "The key's role may not manage connections", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<ConnectionPage>> {
    caller.require(Area::Connections)?;
    let limit = page_limit(query.limit)?;
    let backends = state.backends().await?;
    let page = backends
        .store
        .list_connections(&caller.tenant_id, limit, query.cursor.as_deref())
        .await
        .map_err(cursor_error)?;
    Ok(Json(ConnectionPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Read a connection (never its credentials).
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}",
    tag = "connections",
    params(("connection_id" = String, Path, description = "The connection's id (`conn_...`)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The connection", body = ConnectionView),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection in this tenant", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(connection_id): ApiPath<String>,
) -> ApiResult<Json<ConnectionView>> {
    caller.require(Area::Connections)?;
    let id: ConnectionId = path_id("connection_id", &connection_id)?;
    let backends = state.backends().await?;
    let connection = owned_connection(&backends.store, &caller, &id).await?;
    Ok(Json(connection.into()))
}

/// Change a connection; credentials, when given, replace the stored ones.
#[utoipa::path(
    patch,
    path = "/v1/connections/{connection_id}",
    tag = "connections",
    params(("connection_id" = String, Path, description = "The connection's id (`conn_...`)")),
    request_body = UpdateConnection,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The changed connection", body = ConnectionView),
        (status = 400, description = "Invalid request; the message names each bad field", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection in this tenant", body = ErrorBody),
        (status = 409, description = "Stale version", body = ErrorBody),
    )
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(connection_id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateConnection>,
) -> ApiResult<Json<ConnectionView>> {
    caller.require(Area::Connections)?;
    let id: ConnectionId = path_id("connection_id", &connection_id)?;
    let backends = state.backends().await?;
    let store = &backends.store;
    let mut connection = owned_connection(store, &caller, &id).await?;
    if let Some(version) = body.version
        && version != connection.version
    {
        return Err(ApiError::new(
            conveyor_core::ErrorCode::Conflict,
            format!(
                "version {version} is stale; the current version is {}",
                connection.version
            ),
        ));
    }
    if let Some(name) = body.name {
        connection.name = name;
    }
    if let Some(profile) = body.profile {
        connection.profile = profile;
    }
    if let Some(base_url) = body.base_url {
        connection.base_url = base_url;
    }
    if let Some(settings) = body.settings {
        connection.settings = source_settings(settings);
    }
    if let Some(entities) = body.entities {
        connection.entities = entity_configs(entities)?;
    }
    if let Some(days) = body.historical_days {
        connection.historical_days = days;
    }
    if let Some(overlap) = body.overlap_secs {
        connection.overlap_secs = overlap;
    }
    let new_credentials = body.credentials.map(CredentialsInput::into_core);
    // The whole result is validated, with the credentials it will have.
    let credentials = match &new_credentials {
        Some(credentials) => credentials.clone(),
        None => store.get_credentials(&id).await?,
    };
    validate(&connection, &credentials)?;
    let stored = store.update_connection(&connection).await?;
    if let Some(credentials) = &new_credentials {
        store.set_credentials(&id, credentials).await?;
    }
    tracing::info!(
        connection_id = %id,
        version = stored.version,
        credentials_replaced = new_credentials.is_some(),
        "connection updated"
    );
    Ok(Json(stored.into()))
}

/// Delete a connection and everything kept for it.
#[utoipa::path(
    delete,
    path = "/v1/connections/{connection_id}",
    tag = "connections",
    params(("connection_id" = String, Path, description = "The connection's id (`conn_...`)")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection in this tenant", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(connection_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require(Area::Connections)?;
    let id: ConnectionId = path_id("connection_id", &connection_id)?;
    let backends = state.backends().await?;
    owned_connection(&backends.store, &caller, &id).await?;
    match backends.store.delete_connection(&id).await {
        Ok(()) | Err(StoreError::NotFound { .. }) => Ok(StatusCode::NO_CONTENT),
        Err(err) => Err(err.into()),
    }
}

/// A connection's health: status, last success and error, backoff, data freshness per entity.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/status",
    tag = "connections",
    params(("connection_id" = String, Path, description = "The connection's id (`conn_...`)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The connection's status", body = ConnectionStatusView),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection in this tenant", body = ErrorBody),
    )
)]
pub(crate) async fn status(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(connection_id): ApiPath<String>,
) -> ApiResult<Json<ConnectionStatusView>> {
    caller.require(Area::Status)?;
    let id: ConnectionId = path_id("connection_id", &connection_id)?;
    let backends = state.backends().await?;
    let connection = owned_connection(&backends.store, &caller, &id).await?;
    let record = backends.store.get_status(&id).await?;
    Ok(Json(
        ConnectionStatusView::new(id, record).with_lag(&connection, Utc::now()),
    ))
}
