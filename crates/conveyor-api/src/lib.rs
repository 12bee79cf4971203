//! The Conveyor HTTP API.
//!
//! It stays thin: it validates, authenticates, reads and writes Redis, and pushes jobs. It never
//! calls a customer's system, so any number of replicas can run side by side. The binary only
//! reads [`Config`] and calls [`serve`]; tests build [`router`] and call it directly, or start
//! the real server on port 0.

mod api_keys;
pub mod auth;
pub mod config;
mod connections;
pub mod error;
pub mod extract;
mod health;
pub mod metrics;
pub mod openapi;
mod operations;
mod records;
pub mod request_id;
mod schema;
mod state;
mod syncs;
mod webhooks;

use std::net::SocketAddr;

use anyhow::Context;
use axum::{Extension, Router};
use conveyor_runtime::Shutdown;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use config::Config;
pub use state::{AppState, Backends};

/// Every route with its OpenAPI description. Routes are only ever added here, through
/// `routes!`, so none can be undocumented. Everything under `/v1` except the document itself
/// sits behind the auth middleware (authentication, rate limit).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    let protected = OpenApiRouter::new()
        .routes(routes!(connections::create, connections::list))
        .routes(routes!(
            connections::get,
            connections::update,
            connections::delete
        ))
        .routes(routes!(connections::status))
        .routes(routes!(syncs::create, syncs::history))
        .routes(routes!(syncs::get))
        .routes(routes!(records::list))
        .routes(routes!(records::get))
        .routes(routes!(operations::stats))
        .routes(routes!(operations::dead_list))
        .routes(routes!(operations::dead_show))
        .routes(routes!(operations::dead_retry))
        .routes(routes!(operations::dead_purge))
        .routes(routes!(api_keys::list, api_keys::create))
        .routes(routes!(api_keys::revoke))
        .routes(routes!(webhooks::create_endpoint, webhooks::list_endpoints))
        .routes(routes!(
            webhooks::get_endpoint,
            webhooks::update_endpoint,
            webhooks::delete_endpoint
        ))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::test_delivery))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::get_delivery))
        .routes(routes!(webhooks::redeliver_delivery))
        .routes(routes!(webhooks::redeliver_many))
        .route_layer(axum::middleware::from_fn(auth::middleware));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::render))
        .routes(routes!(openapi::openapi_json))
        .merge(protected)
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
        // The auth middleware reads the state from here: it is built with the routes, before
        // there is a state to hand it.
        .layer(Extension(state.clone()))
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
    let upkeep = tokio::spawn(metrics::upkeep(shutdown.clone()));
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serving HTTP");
    upkeep.abort();
    served?;
    tracing::info!("conveyor-api stopped");
    Ok(())
}
