//! Webhooks of a connection: endpoints (URL, event types, signing secret shown once, rotation),
//! the delivery log, redelivery, and test deliveries.
//!
//! Routes live under `/v1/connections/{connection_id}/`, so tenant isolation is the
//! connection's: another tenant's connection answers 404, and so do its endpoints and
//! deliveries. Configuring endpoints needs the `connections` area (admins and developers);
//! reading the log needs `status` (operators too); redelivering needs `connections` or
//! `operations`.
//!
//! The API never calls a receiver itself, not even for a test delivery: it pushes a delivery
//! job like any other and waits (up to 15 seconds) for a worker to log the attempt. Receivers
//! are integrators' systems reached from the worker fleet's network and under its URL policy,
//! which is the only place that checks resolved addresses; the API replicas stay free of
//! outbound HTTP.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use conveyor_core::{ConnectionId, DeliveryId, EndpointId, Event, EventId, EventType, JobId};
use conveyor_queue::{JobSpec, Queue};
use conveyor_store::{
    Delivery, DeliveryFilter, DeliveryJob, DeliveryState, LoggedAttempt, Store, StoreError,
    WebhookEndpoint,
};
use conveyor_webhooks::{RetrySchedule, SigningSecrets, UrlPolicy, sample_event};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Area, Caller};
use crate::connections::owned_connection;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, cursor_error, page_limit, path_id};
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// How long a test delivery request waits for the worker's attempt.
pub(crate) const TEST_DELIVERY_WAIT: Duration = Duration::from_secs(15);
/// How often the wait looks at the delivery log.
const TEST_DELIVERY_POLL: Duration = Duration::from_millis(100);
/// The most deliveries one bulk redelivery requeues.
pub(crate) const MAX_BULK_REDELIVERIES: usize = 1_000;
/// Longest URL accepted.
const MAX_URL_LEN: usize = 2_048;
/// Longest description accepted.
const MAX_DESCRIPTION_LEN: usize = 500;

fn event_type_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(EventType::ALL.iter().map(|t| t.as_str().to_owned())))
        .description(Some("An event type."))
        .build()
}

fn event_types_schema() -> utoipa::openapi::schema::Array {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(
                    EventType::SUBSCRIBABLE
                        .iter()
                        .map(|t| t.as_str().to_owned()),
                ))
                .build(),
        )
        .min_items(Some(1))
        .description(Some(
            "Event types the endpoint receives, each at most once.",
        ))
        .build()
}

fn delivery_state_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(
            ["pending", "retrying", "delivered", "failed", "cancelled"].map(str::to_owned),
        ))
        .description(Some("Where a delivery is."))
        .build()
}

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateEndpoint {
    /// Where events are POSTed: `https://` (or `http://`), a public address.
    url: String,
    /// The event types it receives.
    #[schema(schema_with = event_types_schema)]
    event_types: Vec<EventType>,
    /// Whether it receives events now; true when absent.
    #[serde(default)]
    enabled: Option<bool>,
    /// A note for humans.
    #[serde(default)]
    description: Option<String>,
}

/// Changes to an endpoint; absent fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateEndpoint {
    /// The version read; the change is refused with 409 if the endpoint changed since. Absent:
    /// the change applies to whatever is stored.
    #[serde(default)]
    version: Option<u64>,
    /// New URL.
    #[serde(default)]
    url: Option<String>,
    /// New event types.
    #[serde(default)]
    #[schema(schema_with = event_types_schema)]
    event_types: Option<Vec<EventType>>,
    /// Enable or disable; enabling clears the reason of an automatic disable.
    #[serde(default)]
    enabled: Option<bool>,
    /// New note.
    #[serde(default)]
    description: Option<String>,
}

/// An endpoint (its secret is shown only when created or rotated).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EndpointView {
    /// `whe_...`
    id: String,
    /// `conn_...`
    connection_id: String,
    /// Where events are POSTed.
    url: String,
    /// Whether it receives events.
    enabled: bool,
    /// The event types it receives.
    #[schema(schema_with = event_types_schema)]
    event_types: Vec<EventType>,
    /// A note for humans.
    description: String,
    /// Why it was disabled automatically (a 410 Gone from the receiver).
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<String>,
    /// When it was created.
    created_at: DateTime<Utc>,
    /// When it last changed.
    updated_at: DateTime<Utc>,
    /// When its secret was last rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_rotated_at: Option<DateTime<Utc>>,
    /// Send it back with a change.
    version: u64,
}

impl From<WebhookEndpoint> for EndpointView {
    fn from(endpoint: WebhookEndpoint) -> Self {
        EndpointView {
            id: endpoint.id.to_string(),
            connection_id: endpoint.connection_id.to_string(),
            url: endpoint.url,
            enabled: endpoint.enabled,
            event_types: endpoint.event_types,
            description: endpoint.description,
            disabled_reason: endpoint.disabled_reason,
            created_at: endpoint.created_at,
            updated_at: endpoint.updated_at,
            secret_rotated_at: endpoint.secret_rotated_at,
            version: endpoint.version,
        }
    }
}

/// A created endpoint with its signing secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedEndpoint {
    /// The endpoint.
    #[serde(flatten)]
    endpoint: EndpointView,
    /// `whsec_...`: verify deliveries with it (Standard Webhooks). Not shown again.
    #[schema(format = Password)]
    secret: String,
}

/// A connection's endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EndpointList {
    /// Oldest first.
    items: Vec<EndpointView>,
}

/// A rotated secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RotatedSecret {
    /// The new `whsec_...` secret; deliveries are signed with it from now on.
    #[schema(format = Password)]
    secret: String,
    /// Until then deliveries are signed with the previous secret too (the signature header
    /// carries both).
    previous_secret_expires_at: DateTime<Utc>,
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AttemptView {
    /// Its number among the delivery's attempts, from 1.
    attempt: u32,
    /// `delivered`, `gone`, `retry` or `failed`.
    outcome: String,
    /// When it started.
    attempted_at: DateTime<Utc>,
    /// The URL called.
    url: String,
    /// The response status, if one arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    /// Milliseconds until the answer was read.
    duration_ms: u64,
    /// What went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The first 1 KiB of the response body.
    response_body: String,
}

impl From<LoggedAttempt> for AttemptView {
    fn from(attempt: LoggedAttempt) -> Self {
        AttemptView {
            attempt: attempt.attempt,
            outcome: attempt.outcome,
            attempted_at: attempt.record.attempted_at,
            url: attempt.record.url,
            status: attempt.record.status,
            duration_ms: attempt.record.duration_ms,
            error: attempt.record.error,
            response_body: attempt.record.response_body,
        }
    }
}

/// One delivery of one event to one endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryView {
    /// `dlv_...`
    id: String,
    /// `conn_...`
    connection_id: String,
    /// `whe_...`
    endpoint_id: String,
    /// `evt_...`: the `webhook-id` of every attempt.
    event_id: String,
    /// The event's type.
    #[schema(schema_with = event_type_schema)]
    event_type: EventType,
    /// Where it is.
    #[schema(schema_with = delivery_state_schema)]
    state: DeliveryState,
    /// Attempts made.
    attempts: u32,
    /// A test delivery.
    test: bool,
    /// When it was created.
    created_at: DateTime<Utc>,
    /// When the last attempt started.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_attempt_at: Option<DateTime<Utc>>,
    /// When the next attempt is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<DateTime<Utc>>,
    /// The last response status.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_status: Option<u16>,
    /// The last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    /// The event as delivered.
    #[schema(value_type = Object)]
    event: serde_json::Value,
}

impl From<Delivery> for DeliveryView {
    fn from(delivery: Delivery) -> Self {
        DeliveryView {
            id: delivery.id.to_string(),
            connection_id: delivery.connection_id.to_string(),
            endpoint_id: delivery.endpoint_id.to_string(),
            event_id: delivery.event.id.to_string(),
            event_type: delivery.event.event_type,
            state: delivery.state,
            attempts: delivery.attempts,
            test: delivery.test,
            created_at: delivery.created_at,
            last_attempt_at: delivery.last_attempt_at,
            next_attempt_at: delivery.next_attempt_at,
            last_status: delivery.last_status,
            last_error: delivery.last_error,
            event: serde_json::to_value(&delivery.event).unwrap_or_default(),
        }
    }
}

/// A delivery with its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryDetail {
    /// The delivery.
    #[serde(flatten)]
    delivery: DeliveryView,
    /// Its attempts, oldest first (the newest 50).
    attempts_log: Vec<AttemptView>,
}

/// One page of deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryPage {
    /// The deliveries.
    items: Vec<DeliveryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Filters and paging of the delivery log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveryQuery {
    /// Only this endpoint's deliveries (`whe_...`).
    endpoint_id: Option<String>,
    /// Only this event's deliveries (`evt_...`).
    event_id: Option<String>,
    /// Only deliveries in this state: pending, retrying, delivered, failed, cancelled.
    state: Option<String>,
    /// Only events of this type.
    event_type: Option<String>,
    /// Only deliveries of events at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Items per page, 1 to 100; 20 when absent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// What to redeliver: one event's deliveries, or every failed delivery since a time.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedeliverRequest {
    /// Redeliver this event (`evt_...`) to every endpoint it went to.
    #[serde(default)]
    event_id: Option<String>,
    /// Redeliver every failed or cancelled delivery of events at or after this time.
    #[serde(default)]
    since: Option<DateTime<Utc>>,
    /// Only deliveries to this endpoint (`whe_...`).
    #[serde(default)]
    endpoint_id: Option<String>,
}

/// What a redelivery requeued.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RedeliverResult {
    /// Deliveries put back in the queue.
    requeued: usize,
    /// Their ids.
    delivery_ids: Vec<String>,
    /// True when more matched than one request requeues (1000): call again.
    truncated: bool,
}

/// A test delivery: what to send.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestDeliveryRequest {
    /// Send a sample event of this type; `webhook.test` when absent.
    #[serde(default)]
    #[schema(schema_with = event_type_schema)]
    event_type: Option<EventType>,
}

/// A test delivery's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TestDeliveryResult {
    /// True when a worker made the attempt within 15 seconds; otherwise the delivery is still
    /// queued and its outcome will show in the log.
    completed: bool,
    /// The delivery (state `delivered` or `failed` when completed).
    delivery: DeliveryDetail,
}

/// The URL policy configuration allows (`CONVEYOR_WEBHOOKS_ALLOW_PRIVATE`).
fn url_policy(state: &AppState) -> UrlPolicy {
    UrlPolicy {
        allow_private_networks: state.webhooks_allow_private(),
    }
}

fn check_url(policy: UrlPolicy, url: &str) -> ApiResult<String> {
    if url.len() > MAX_URL_LEN {
        return Err(ApiError::invalid(format!(
            "field `url`: longer than {MAX_URL_LEN} characters"
        )));
    }
    policy
        .check_url(url)
        .map(|checked| checked.to_string())
        .map_err(|err| ApiError::invalid(format!("field `url`: {err}")))
}

fn check_event_types(event_types: Vec<EventType>) -> ApiResult<Vec<EventType>> {
    if event_types.is_empty() {
        return Err(ApiError::invalid(
            "field `event_types`: at least one event type is required",
        ));
    }
    let mut seen = Vec::with_capacity(event_types.len());
    for event_type in event_types {
        if !EventType::SUBSCRIBABLE.contains(&event_type) {
            return Err(ApiError::invalid(format!(
                "field `event_types`: `{event_type}` is sent only on request and cannot be subscribed to"
            )));
        }
        if seen.contains(&event_type) {
            return Err(ApiError::invalid(format!(
                "field `event_types`: `{event_type}` is listed twice"
            )));
        }
        seen.push(event_type);
    }
    Ok(seen)
}

fn check_description(description: Option<String>) -> ApiResult<Option<String>> {
    match description {
        Some(text) if text.chars().count() > MAX_DESCRIPTION_LEN => Err(ApiError::invalid(
            format!("field `description`: longer than {MAX_DESCRIPTION_LEN} characters"),
        )),
        other => Ok(other),
    }
}

async fn owned_endpoint(
    store: &Store,
    caller: &Caller,
    connection_id: &ConnectionId,
    endpoint_id: &EndpointId,
) -> ApiResult<WebhookEndpoint> {
    owned_connection(store, caller, connection_id).await?;
    match store.get_webhook_endpoint(connection_id, endpoint_id).await {
        Ok(endpoint) => Ok(endpoint),
        Err(StoreError::NotFound { .. }) => Err(ApiError::not_found(format!(
            "webhook endpoint `{endpoint_id}`"
        ))),
        Err(err) => Err(err.into()),
    }
}

fn ids(connection_id: &str, endpoint_id: &str) -> ApiResult<(ConnectionId, EndpointId)> {
    Ok((
        path_id("connection_id", connection_id)?,
        path_id("endpoint_id", endpoint_id)?,
    ))
}

/// Add a webhook endpoint to a connection; its signing secret is in the answer, this once.
#[utoipa::path(
    post,
    path = "/v1/connections/{connection_id}/webhooks",
    tag = "webhooks",
    params(("connection_id" = String, Path, description = "The connection's id (`conn_...`)")),
    request_body = CreateEndpoint,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Created, with its secret", body = CreatedEndpoint),
        (status = 400, description = "Invalid request; a URL that is not http(s) or not public", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "The key's role may not manage connections", body = ErrorBody),
        (status = 404, description = "No such connection in this tenant", body = ErrorBody),
        (status = 409, description = "The connection has 20 endpoints already", body = ErrorBody),
    )
)]
pub(crate) async fn create_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(connection_id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateEndpoint>,
) -> ApiResult<(StatusCode, Json<CreatedEndpoint>)> {
    caller.require(Area::Connections)?;
    let connection_id: ConnectionId = path_id("connection_id", &connection_id)?;
    let url = check_url(url_policy(&state), &body.url)?;
    let event_types = check_event_types(body.event_types)?;
    let description = check_description(body.description)?;
    let backends = state.backends().await?;
    owned_connection(&backends.store, &caller, &connection_id).await?;
    let mut endpoint = WebhookEndpoint::new(connection_id, url, event_types);
    endpoint.enabled = body.enabled.unwrap_or(true);
    endpoint.description = description.unwrap_or_default();
    let secrets = SigningSecrets::generate();
    let stored = backends
        .store
        .create_webhook_endpoint(&endpoint, &secrets)
        .await?;
    tracing::info!(connection_id = %connection_id, endpoint_id = %stored.id, "webhook endpoint created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedEndpoint {
            endpoint: stored.into(),
            secret: secrets.current.expose(),
        }),
    ))
}

/// List a connection's webhook endpoints.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/webhooks",
    tag = "webhooks",
    params(("connection_id" = String, Path, description = "The connection's id (`conn_...`)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The endpoints", body = EndpointList),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "The key's role may not manage connections", body = ErrorBody),
        (status = 404, description = "No such connection in this tenant", body = ErrorBody),
    )
)]
pub(crate) async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(connection_id): ApiPath<String>,
) -> ApiResult<Json<EndpointList>> {
    caller.require(Area::Connections)?;
    let connection_id: ConnectionId = path_id("connection_id", &connection_id)?;
    let backends = state.backends().await?;
    owned_connection(&backends.store, &caller, &connection_id).await?;
    let endpoints = backends
        .store
        .list_webhook_endpoints(&connection_id)
        .await?;
    Ok(Json(EndpointList {
        items: endpoints.into_iter().map(EndpointView::from).collect(),
    }))
}

/// Show one webhook endpoint.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/webhooks/{endpoint_id}",
    tag = "webhooks",
    params(
        ("connection_id" = String, Path, description = "The connection's id (`conn_...`)"),
        ("endpoint_id" = String, Path, description = "The endpoint's id (`whe_...`)"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection or endpoint", body = ErrorBody),
    )
)]
pub(crate) async fn get_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((connection_id, endpoint_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<EndpointView>> {
    caller.require(Area::Connections)?;
    let (connection_id, endpoint_id) = ids(&connection_id, &endpoint_id)?;
    let backends = state.backends().await?;
    let endpoint = owned_endpoint(&backends.store, &caller, &connection_id, &endpoint_id).await?;
    Ok(Json(endpoint.into()))
}

/// Change a webhook endpoint: URL, event types, enabled, description.
#[utoipa::path(
    patch,
    path = "/v1/connections/{connection_id}/webhooks/{endpoint_id}",
    tag = "webhooks",
    params(
        ("connection_id" = String, Path, description = "The connection's id (`conn_...`)"),
        ("endpoint_id" = String, Path, description = "The endpoint's id (`whe_...`)"),
    ),
    request_body = UpdateEndpoint,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The changed endpoint", body = EndpointView),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection or endpoint", body = ErrorBody),
        (status = 409, description = "Stale version", body = ErrorBody),
    )
)]
pub(crate) async fn update_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((connection_id, endpoint_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<UpdateEndpoint>,
) -> ApiResult<Json<EndpointView>> {
    caller.require(Area::Connections)?;
    let (connection_id, endpoint_id) = ids(&connection_id, &endpoint_id)?;
    let url = body
        .url
        .as_deref()
        .map(|url| check_url(url_policy(&state), url))
        .transpose()?;
    let event_types = body.event_types.map(check_event_types).transpose()?;
    let description = check_description(body.description)?;
    let backends = state.backends().await?;
    let mut endpoint =
        owned_endpoint(&backends.store, &caller, &connection_id, &endpoint_id).await?;
    if let Some(version) = body.version {
        endpoint.version = version;
    }
    if let Some(url) = url {
        endpoint.url = url;
    }
    if let Some(event_types) = event_types {
        endpoint.event_types = event_types;
    }
    if let Some(enabled) = body.enabled {
        endpoint.enabled = enabled;
        if enabled {
            endpoint.disabled_reason = None;
        }
    }
    if let Some(description) = description {
        endpoint.description = description;
    }
    let stored = backends.store.update_webhook_endpoint(&endpoint).await?;
    Ok(Json(stored.into()))
}

/// Delete a webhook endpoint; its delivery log stays readable until it expires.
#[utoipa::path(
    delete,
    path = "/v1/connections/{connection_id}/webhooks/{endpoint_id}",
    tag = "webhooks",
    params(
        ("connection_id" = String, Path, description = "The connection's id (`conn_...`)"),
        ("endpoint_id" = String, Path, description = "The endpoint's id (`whe_...`)"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection or endpoint", body = ErrorBody),
    )
)]
pub(crate) async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((connection_id, endpoint_id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require(Area::Connections)?;
    let (connection_id, endpoint_id) = ids(&connection_id, &endpoint_id)?;
    let backends = state.backends().await?;
    owned_endpoint(&backends.store, &caller, &connection_id, &endpoint_id).await?;
    match backends
        .store
        .delete_webhook_endpoint(&connection_id, &endpoint_id)
        .await
    {
        Ok(()) | Err(StoreError::NotFound { .. }) => Ok(StatusCode::NO_CONTENT),
        Err(err) => Err(err.into()),
    }
}

/// Rotate an endpoint's signing secret. The new secret is in the answer, this once; the old
/// one keeps signing too for 24 hours.
#[utoipa::path(
    post,
    path = "/v1/connections/{connection_id}/webhooks/{endpoint_id}/rotate-secret",
    tag = "webhooks",
    params(
        ("connection_id" = String, Path, description = "The connection's id (`conn_...`)"),
        ("endpoint_id" = String, Path, description = "The endpoint's id (`whe_...`)"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The new secret", body = RotatedSecret),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection or endpoint", body = ErrorBody),
        (status = 409, description = "Rotated concurrently; try again", body = ErrorBody),
    )
)]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((connection_id, endpoint_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<RotatedSecret>> {
    caller.require(Area::Connections)?;
    let (connection_id, endpoint_id) = ids(&connection_id, &endpoint_id)?;
    let backends = state.backends().await?;
    owned_endpoint(&backends.store, &caller, &connection_id, &endpoint_id).await?;
    let now = Utc::now();
    let secret = backends
        .store
        .rotate_webhook_secret(&connection_id, &endpoint_id, now)
        .await?;
    tracing::info!(connection_id = %connection_id, endpoint_id = %endpoint_id, "webhook secret rotated");
    Ok(Json(RotatedSecret {
        secret: secret.expose(),
        previous_secret_expires_at: now + conveyor_webhooks::secrets::ROTATION_OVERLAP,
    }))
}

/// Send a test delivery (`webhook.test`, or a sample event of a chosen type) to an endpoint and
/// wait up to 15 seconds for its outcome. Works on disabled endpoints too, to check a fix
/// before enabling.
#[utoipa::path(
    post,
    path = "/v1/connections/{connection_id}/webhooks/{endpoint_id}/test",
    tag = "webhooks",
    params(
        ("connection_id" = String, Path, description = "The connection's id (`conn_...`)"),
        ("endpoint_id" = String, Path, description = "The endpoint's id (`whe_...`)"),
    ),
    request_body = TestDeliveryRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The attempt's outcome, or the queued delivery after 15 s", body = TestDeliveryResult),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection or endpoint", body = ErrorBody),
    )
)]
pub(crate) async fn test_delivery(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((connection_id, endpoint_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<TestDeliveryRequest>,
) -> ApiResult<Json<TestDeliveryResult>> {
    caller.require(Area::Connections)?;
    let (connection_id, endpoint_id) = ids(&connection_id, &endpoint_id)?;
    let backends = state.backends().await?;
    let store = &backends.store;
    owned_endpoint(store, &caller, &connection_id, &endpoint_id).await?;
    let event: Event = sample_event(
        body.event_type.unwrap_or(EventType::WebhookTest),
        connection_id,
    );
    let delivery_id = DeliveryId::new();
    let job_id = JobId::from_ulid(delivery_id.ulid());
    store
        .ensure_delivery(&delivery_id, &endpoint_id, &event, &job_id, true)
        .await?;
    let job = DeliveryJob {
        delivery_id,
        connection_id,
        endpoint_id,
    };
    push(&backends.webhooks, job, job_id, 1).await?;

    let deadline = tokio::time::Instant::now() + TEST_DELIVERY_WAIT;
    loop {
        let delivery = store.get_delivery(&connection_id, &delivery_id).await?;
        let completed = delivery.attempts > 0 || delivery.state.is_final();
        if completed || tokio::time::Instant::now() >= deadline {
            let detail = detail(store, delivery).await?;
            return Ok(Json(TestDeliveryResult {
                completed,
                delivery: detail,
            }));
        }
        tokio::time::sleep(TEST_DELIVERY_POLL).await;
    }
}

/// Pushes a delivery job onto the webhook queue.
async fn push(
    queue: &Queue<serde_json::Value>,
    job: DeliveryJob,
    job_id: JobId,
    max_attempts: u32,
) -> ApiResult<()> {
    let unique_key = job.unique_key();
    let payload = serde_json::to_value(&job).map_err(ApiError::internal)?;
    queue
        .push(
            JobSpec::new(payload)
                .job_id(job_id)
                .unique_key(unique_key)
                .max_attempts(max_attempts),
        )
        .await
        .map_err(ApiError::unavailable)?;
    Ok(())
}

async fn detail(store: &Store, delivery: Delivery) -> ApiResult<DeliveryDetail> {
    let attempts = store
        .delivery_attempts(&delivery.connection_id, &delivery.id)
        .await?;
    Ok(DeliveryDetail {
        delivery: delivery.into(),
        attempts_log: attempts.into_iter().map(AttemptView::from).collect(),
    })
}

fn parse_state(text: &str) -> ApiResult<DeliveryState> {
    [
        DeliveryState::Pending,
        DeliveryState::Retrying,
        DeliveryState::Delivered,
        DeliveryState::Failed,
        DeliveryState::Cancelled,
    ]
    .into_iter()
    .find(|state| state.as_str() == text)
    .ok_or_else(|| {
        ApiError::invalid(format!(
            "query parameter `state`: `{text}` is not one of pending, retrying, delivered, failed, cancelled"
        ))
    })
}

fn query_id<T>(name: &str, value: Option<&str>) -> ApiResult<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    value
        .map(|value| {
            value
                .parse()
                .map_err(|err| ApiError::invalid(format!("parameter `{name}`: {err}")))
        })
        .transpose()
}

/// The delivery log of a connection, newest first, with filters.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/webhook-deliveries",
    tag = "webhooks",
    params(
        ("connection_id" = String, Path, description = "The connection's id (`conn_...`)"),
        DeliveryQuery,
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 400, description = "Bad filter, limit or cursor", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection in this tenant", body = ErrorBody),
    )
)]
pub(crate) async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(connection_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<DeliveryPage>> {
    caller.require(Area::Status)?;
    let connection_id: ConnectionId = path_id("connection_id", &connection_id)?;
    let limit = page_limit(query.limit)?;
    let filter = DeliveryFilter {
        endpoint_id: query_id::<EndpointId>("endpoint_id", query.endpoint_id.as_deref())?,
        event_id: query_id::<EventId>("event_id", query.event_id.as_deref())?,
        states: query
            .state
            .as_deref()
            .map(parse_state)
            .transpose()?
            .into_iter()
            .collect(),
        event_type: query_id::<EventType>("event_type", query.event_type.as_deref())?,
        since: query.since,
    };
    let backends = state.backends().await?;
    owned_connection(&backends.store, &caller, &connection_id).await?;
    let page = backends
        .store
        .list_deliveries(&connection_id, &filter, limit, query.cursor.as_deref())
        .await
        .map_err(cursor_error)?;
    Ok(Json(DeliveryPage {
        items: page.items.into_iter().map(DeliveryView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One delivery with every logged attempt.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/webhook-deliveries/{delivery_id}",
    tag = "webhooks",
    params(
        ("connection_id" = String, Path, description = "The connection's id (`conn_...`)"),
        ("delivery_id" = String, Path, description = "The delivery's id (`dlv_...`)"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The delivery and its attempts", body = DeliveryDetail),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection or delivery", body = ErrorBody),
    )
)]
pub(crate) async fn get_delivery(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((connection_id, delivery_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<DeliveryDetail>> {
    caller.require(Area::Status)?;
    let connection_id: ConnectionId = path_id("connection_id", &connection_id)?;
    let delivery_id: DeliveryId = path_id("delivery_id", &delivery_id)?;
    let backends = state.backends().await?;
    owned_connection(&backends.store, &caller, &connection_id).await?;
    let delivery = match backends
        .store
        .get_delivery(&connection_id, &delivery_id)
        .await
    {
        Ok(delivery) => delivery,
        Err(StoreError::NotFound { .. }) => {
            return Err(ApiError::not_found(format!("delivery `{delivery_id}`")));
        }
        Err(err) => return Err(err.into()),
    };
    Ok(Json(detail(&backends.store, delivery).await?))
}

fn require_redeliver(caller: &Caller) -> ApiResult<()> {
    caller
        .require(Area::Connections)
        .or_else(|_| caller.require(Area::Operations))
}

/// Requeues one delivery for a fresh round of attempts; false if it is already queued.
async fn redeliver_one(
    store: &Store,
    queue: &Queue<serde_json::Value>,
    delivery: &Delivery,
) -> ApiResult<bool> {
    if matches!(
        delivery.state,
        DeliveryState::Pending | DeliveryState::Retrying
    ) {
        return Ok(false);
    }
    let job_id = JobId::new();
    store
        .requeue_delivery(&delivery.connection_id, &delivery.id, &job_id)
        .await?;
    let job = DeliveryJob {
        delivery_id: delivery.id,
        connection_id: delivery.connection_id,
        endpoint_id: delivery.endpoint_id,
    };
    push(queue, job, job_id, RetrySchedule::default().max_attempts()).await?;
    Ok(true)
}

/// Redeliver one delivery (whatever its state, unless it is still queued).
#[utoipa::path(
    post,
    path = "/v1/connections/{connection_id}/webhook-deliveries/{delivery_id}/redeliver",
    tag = "webhooks",
    params(
        ("connection_id" = String, Path, description = "The connection's id (`conn_...`)"),
        ("delivery_id" = String, Path, description = "The delivery's id (`dlv_...`)"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Requeued", body = DeliveryView),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection or delivery", body = ErrorBody),
        (status = 409, description = "The delivery is still queued or retrying", body = ErrorBody),
    )
)]
pub(crate) async fn redeliver_delivery(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((connection_id, delivery_id)): ApiPath<(String, String)>,
) -> ApiResult<(StatusCode, Json<DeliveryView>)> {
    require_redeliver(&caller)?;
    let connection_id: ConnectionId = path_id("connection_id", &connection_id)?;
    let delivery_id: DeliveryId = path_id("delivery_id", &delivery_id)?;
    let backends = state.backends().await?;
    let store = &backends.store;
    owned_connection(store, &caller, &connection_id).await?;
    let delivery = match store.get_delivery(&connection_id, &delivery_id).await {
        Ok(delivery) => delivery,
        Err(StoreError::NotFound { .. }) => {
            return Err(ApiError::not_found(format!("delivery `{delivery_id}`")));
        }
        Err(err) => return Err(err.into()),
    };
    if !redeliver_one(store, &backends.webhooks, &delivery).await? {
        return Err(ApiError::new(
            conveyor_core::ErrorCode::Conflict,
            format!(
                "delivery `{delivery_id}` is {} and will be attempted again by itself",
                delivery.state.as_str()
            ),
        ));
    }
    let delivery = store.get_delivery(&connection_id, &delivery_id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery.into())))
}

/// Redeliver one event's deliveries, or every failed delivery since a time.
#[utoipa::path(
    post,
    path = "/v1/connections/{connection_id}/webhook-deliveries/redeliver",
    tag = "webhooks",
    params(("connection_id" = String, Path, description = "The connection's id (`conn_...`)")),
    request_body = RedeliverRequest,
    security(("api_key" = [])),
    responses(
        (status = 202, description = "What was requeued", body = RedeliverResult),
        (status = 400, description = "Neither `event_id` nor `since` given", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 404, description = "No such connection in this tenant", body = ErrorBody),
    )
)]
pub(crate) async fn redeliver_many(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(connection_id): ApiPath<String>,
    ApiJson(body): ApiJson<RedeliverRequest>,
) -> ApiResult<(StatusCode, Json<RedeliverResult>)> {
    require_redeliver(&caller)?;
    let connection_id: ConnectionId = path_id("connection_id", &connection_id)?;
    let event_id = query_id::<EventId>("event_id", body.event_id.as_deref())?;
    let endpoint_id = query_id::<EndpointId>("endpoint_id", body.endpoint_id.as_deref())?;
    let filter = match (event_id, body.since) {
        (Some(event_id), _) => DeliveryFilter {
            event_id: Some(event_id),
            endpoint_id,
            since: body.since,
            ..DeliveryFilter::default()
        },
        (None, Some(since)) => DeliveryFilter {
            endpoint_id,
            since: Some(since),
            states: vec![DeliveryState::Failed, DeliveryState::Cancelled],
            ..DeliveryFilter::default()
        },
        (None, None) => {
            return Err(ApiError::invalid(
                "give `event_id` (one event) or `since` (every failed delivery since then)",
            ));
        }
    };
    let backends = state.backends().await?;
    let store = &backends.store;
    owned_connection(store, &caller, &connection_id).await?;
    let mut requeued = Vec::new();
    let mut cursor: Option<String> = None;
    let mut truncated = false;
    'pages: loop {
        let page = store
            .list_deliveries(&connection_id, &filter, 100, cursor.as_deref())
            .await?;
        for delivery in &page.items {
            // Test deliveries are one-offs; redelivering them would surprise nobody usefully.
            if delivery.test {
                continue;
            }
            if requeued.len() == MAX_BULK_REDELIVERIES {
                truncated = true;
                break 'pages;
            }
            if redeliver_one(store, &backends.webhooks, delivery).await? {
                requeued.push(delivery.id.to_string());
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    tracing::info!(connection_id = %connection_id, requeued = requeued.len(), "webhook deliveries requeued");
    Ok((
        StatusCode::ACCEPTED,
        Json(RedeliverResult {
            requeued: requeued.len(),
            delivery_ids: requeued,
            truncated,
        }),
    ))
}
