//! `/healthz` and `/readyz` against a real Redis that goes away and comes back.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use conveyor_api::{AppState, router};

mod support;
use conveyor_testkit::RedisServer;
use http_body_util::BodyExt;
use tower::ServiceExt;

fn state_for(server: &RedisServer) -> AppState {
    AppState::new(&support::config(&server.url(), &[])).unwrap()
}

async fn get(state: &AppState, path: &str) -> (StatusCode, serde_json::Value) {
    let response = router(state.clone())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn readyz_follows_redis_and_healthz_does_not() {
    let mut server = RedisServer::start().unwrap();
    let state = state_for(&server);

    let (status, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["redis"], "ok");

    server.stop();
    let (status, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "not_ready");
    let (status, _) = get(&state, "/healthz").await;
    assert_eq!(status, StatusCode::OK, "liveness does not depend on Redis");

    server.start_again().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, _) = get(&state, "/readyz").await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the API never recovered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
