//! Liveness and readiness.
//!
//! `/healthz` answers as long as the process serves HTTP (a liveness probe must not depend on
//! Redis, or a Redis outage would restart every replica). `/readyz` checks Redis, so a load
//! balancer stops sending traffic to a replica that cannot do its work.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;

/// Liveness.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    responses((status = 200, description = "The process serves HTTP", content_type = "application/json"))
)]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: Redis answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    responses(
        (status = 200, description = "Ready: Redis answers", content_type = "application/json"),
        (status = 503, description = "Not ready: Redis is unavailable", content_type = "application/json")
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.redis.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "redis": "ok"})),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed: Redis unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not_ready", "redis": "unavailable"})),
            )
        }
    }
}
