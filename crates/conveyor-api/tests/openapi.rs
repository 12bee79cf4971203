//! The OpenAPI document covers every route, and every documented route exists.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use conveyor_api::{AppState, Config, router};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn state() -> AppState {
    AppState::new(&Config::from_lookup(|_| None).unwrap()).unwrap()
}

async fn fetch_document() -> serde_json::Value {
    let response = router(state())
        .oneshot(
            Request::get("/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn document_is_openapi_3_1_and_lists_the_routes() {
    let doc = fetch_document().await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for path in ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"] {
        assert!(paths.contains_key(path), "{path} undocumented");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let doc = fetch_document().await;
    let app = router(state());
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            // Fill path parameters with a syntactically valid placeholder.
            let concrete = path.replace(['{', '}'], "");
            let request = Request::builder()
                .method(method.clone())
                .uri(&concrete)
                .body(Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("route `"),
                "{method} {path} is documented but not routed: {text}"
            );
        }
    }
}

/// Routes can only be added through `routes!` (which documents them): no plain `.route(` call
/// exists in the crate's sources.
#[test]
fn no_route_bypasses_the_documented_router() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                assert!(
                    !code.contains(".route(") && !code.contains(".route_service("),
                    "{}:{}: register routes with routes!() so they are documented",
                    path.display(),
                    n + 1
                );
            }
        }
    }
}
