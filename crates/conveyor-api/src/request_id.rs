//! Request ids and request accounting: one id per request, in the `X-Request-Id` header of every response, in every error
//! body, and on every log line of the request.
//!
//! The middleware makes a fresh [`RequestId`], opens a tracing span carrying it, and keeps it in a
//! task-local so [`ApiError`](crate::error::ApiError) can put it in the body without every handler
//! threading it through. A client-supplied `X-Request-Id` is logged as `client_request_id` but
//! never trusted as ours.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use conveyor_core::RequestId;
use tracing::Instrument;

/// The response header carrying the request id.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The id of the request being served, or a fresh one outside a request (never fails).
pub fn current() -> RequestId {
    CURRENT.try_with(|id| *id).unwrap_or_default()
}

/// Middleware: assigns the id, logs and counts the request, and sets the header on the response.
pub async fn middleware(request: Request, next: Next) -> Response {
    let request_id = RequestId::new();
    let method = request.method().clone();
    // The matched pattern keeps metric labels bounded; unmatched paths share one label.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let client_request_id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(128).collect::<String>());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
        client_request_id = client_request_id.as_deref(),
        api_key_id = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let mut response = CURRENT
        .scope(
            request_id,
            async move { next.run(request).await }.instrument(span.clone()),
        )
        .await;
    crate::metrics::record_request(
        method.as_str(),
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            "request served"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&request_id.to_string()) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
