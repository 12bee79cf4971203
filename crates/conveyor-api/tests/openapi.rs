//! The OpenAPI document covers every route, and every documented route exists.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use conveyor_api::{AppState, router};
use http_body_util::BodyExt;
use tower::ServiceExt;

mod support;

fn state() -> AppState {
    support::offline_state()
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

/// A valid value for a documented path parameter, by its name.
fn placeholder(name: &str) -> &'static str {
    match name {
        "connection_id" => "conn_01JD0000000000000000000000",
        "sync_id" => "sync_01JD0000000000000000000000",
        "job_id" => "job_01JD0000000000000000000000",
        "api_key_id" => "key_01JD0000000000000000000000",
        "entity" => "assets",
        "queue" => "syncs",
        "key" => "A-1",
        "endpoint_id" => "whe_01JD0000000000000000000000",
        "delivery_id" => "dlv_01JD0000000000000000000000",
        other => panic!("path parameter `{other}` has no placeholder; add one"),
    }
}

/// Every documented operation is routed, documents each of its path parameters, and answers
/// an admin with valid parameters without a server error and without the unknown-route 404.
#[tokio::test]
async fn every_documented_route_is_served() {
    let doc = fetch_document().await;
    let h = support::Harness::start().await;
    let (_, admin) = h.tenant(conveyor_store::ApiRole::Admin).await;
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let documented: Vec<&str> = operation["parameters"]
                .as_array()
                .map(|params| {
                    params
                        .iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let mut concrete = path.clone();
            for segment in path.split('/') {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    assert!(
                        documented.contains(&name),
                        "{method} {path}: path parameter `{name}` undocumented"
                    );
                    concrete = concrete.replace(segment, placeholder(name));
                }
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body =
                matches!(method, Method::POST | Method::PATCH).then(|| serde_json::json!({}));
            let answer = h.call(method.clone(), &concrete, &admin, body).await;
            assert!(
                !answer.text.contains("route `"),
                "{method} {path} is documented but not routed: {answer:?}"
            );
            assert!(
                !answer.status.is_server_error(),
                "{method} {concrete}: {answer:?}"
            );
            operations += 1;
        }
    }
    assert!(operations >= 20, "only {operations} operations documented");
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

#[tokio::test]
async fn every_operation_documents_the_answers_it_can_give() {
    let doc = fetch_document().await;
    let mut operation_ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().unwrap();
                if parameter["in"] == "path" && name.ends_with("_id") {
                    assert!(
                        parameter["schema"]["pattern"].is_string(),
                        "{method} {path}: path parameter {name} has no pattern"
                    );
                }
            }
            if operation.get("security").is_some() {
                // The auth middleware, the rate limit, Redis and the unforeseen.
                for status in ["401", "403", "429", "500", "503"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} does not document {status}"
                    );
                }
                if path.contains('{') {
                    for status in ["400", "404"] {
                        assert!(responses.contains_key(status), "{method} {path}: {status}");
                    }
                }
                for status in ["429", "503"] {
                    assert!(
                        responses[status]["headers"]["Retry-After"].is_object(),
                        "{method} {path} {status}"
                    );
                }
            }
            for (status, response) in responses {
                assert!(
                    response["headers"]["X-Request-Id"].is_object(),
                    "{method} {path} {status} lacks X-Request-Id"
                );
            }
            if let Some(id) = operation["operationId"].as_str() {
                assert!(
                    operation_ids.insert(id.to_owned()),
                    "operationId {id} is used twice"
                );
            }
        }
    }
}
