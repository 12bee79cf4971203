//! The Conveyor HTTP API.
//!
//! It stays thin: it validates, authenticates, reads and writes Redis, and pushes jobs. It never
//! calls a customer's system, so any number of replicas can run side by side. The binary only
//! reads [`Config`] and calls [`serve`]; tests build [`router`] and call it directly, or start
//! the real server on port 0.

pub mod config;
pub mod error;
pub mod extract;
mod health;
pub mod metrics;
pub mod openapi;
pub mod request_id;

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use conveyor_runtime::{RedisLink, Shutdown};
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use config::Config;

/// What every request handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The Redis server holding queues, configuration and records.
    pub redis: RedisLink,
}

impl AppState {
    /// State for `config`. Makes no connection yet: the API starts while Redis is down.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let redis = RedisLink::new(&config.common.redis_url).context("opening the Redis URL")?;
        Ok(AppState { redis })
    }
}

/// Every route with its OpenAPI description. Routes are only ever added here, through
/// `routes!`, so none can be undocumented.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::render))
        .routes(routes!(openapi::openapi_json))
}

/// The full router.
pub fn router(state: AppState) -> Router {
    // Install the metrics recorder before the first request is counted.
    metrics::handle();
    let (router, _) = routes().split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(
            extract::MAX_BODY_BYTES,
        ))
        .layer(axum::middleware::from_fn(request_id::middleware))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::not_found(format!("route `{}`", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::invalid(format!(
        "method {method} is not allowed on `{}`",
        uri.path()
    ))
}

/// Serves the API on `listener` until `shutdown` trips, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let addr: SocketAddr = listener
        .local_addr()
        .context("reading the listener's address")?;
    tracing::info!(%addr, "conveyor-api listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serving HTTP")?;
    tracing::info!("conveyor-api stopped");
    Ok(())
}
