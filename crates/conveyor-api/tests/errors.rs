//! Every error response has one shape, a request id that matches its header, and no internals.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use conveyor_api::error::ApiError;
use conveyor_api::{AppState, router};
use http_body_util::BodyExt;
use tower::ServiceExt;

mod support;

fn state() -> AppState {
    // No Redis is needed for routing errors; the link connects lazily.
    support::offline_state()
}

async fn body_json(response: axum::response::Response) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn unknown_route_is_a_404_in_the_error_shape_with_matching_request_id() {
    let response = router(state())
        .oneshot(
            Request::get("/v1/nothing-here")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let header = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(header.starts_with("req_"));
    let body = body_json(response).await;
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    assert_eq!(body["error"]["type"], "not_found_error");
    assert_eq!(body["error"]["request_id"], header);
}

#[tokio::test]
async fn every_response_has_a_fresh_request_id() {
    let app = router(state());
    let a = app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let b = app
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_ne!(a.headers()["x-request-id"], b.headers()["x-request-id"]);
}

#[tokio::test]
async fn wrong_method_is_an_invalid_request() {
    let response = router(state())
        .oneshot(Request::post("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = body_json(response).await;
    assert_eq!(body["error"]["code"], "INVALID_REQUEST");
}

#[tokio::test]
async fn internal_errors_hide_their_cause() {
    let response =
        ApiError::internal(anyhow::anyhow!("redis at 10.0.0.7 said WRONGTYPE")).into_response();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = body_json(response).await;
    assert_eq!(body["error"]["code"], "INTERNAL_ERROR");
    let text = body.to_string();
    assert!(
        !text.contains("10.0.0.7") && !text.contains("WRONGTYPE"),
        "{text}"
    );
}

#[tokio::test]
async fn unavailable_carries_retry_after() {
    let response = ApiError::unavailable(anyhow::anyhow!("connection refused")).into_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body = body_json(response).await;
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
}

#[tokio::test]
async fn metrics_count_requests_by_route_pattern_and_status() {
    let app = router(state());
    for _ in 0..3 {
        app.clone()
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
    }
    app.clone()
        .oneshot(Request::get("/no/such/route").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let response = app
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let healthz = text
        .lines()
        .find(|l| l.starts_with("conveyor_api_requests_total") && l.contains("route=\"/healthz\""))
        .unwrap_or_else(|| panic!("no healthz counter in:\n{text}"));
    let count: f64 = healthz.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{healthz}");
    assert!(
        text.contains("route=\"unmatched\""),
        "raw paths never become labels:\n{text}"
    );
    assert!(!text.contains("/no/such/route"));
    assert!(text.contains("conveyor_api_request_duration_seconds_bucket"));
}
