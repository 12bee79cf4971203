//! Liveness and readiness.
//!
//! `/healthz` answers as long as the process serves HTTP (a liveness probe must not depend on
//! Redis, or a Redis outage would restart every replica). `/readyz` checks Redis, so a load
//! balancer stops sending traffic to a replica that cannot do its work.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
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
