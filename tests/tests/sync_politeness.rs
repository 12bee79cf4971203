//! The fleet-wide per-connection request limit holds across worker processes: three workers
//! syncing three entities of one connection never have more than two requests in flight to its
//! source. The simulator does not count concurrent requests, so the connection points at a small
//! loopback proxy in front of it that does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

#[path = "sync_support.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use conveyor_core::{Entity, SyncMode};
use conveyor_sim::{FaultKind, FaultSpec};
use conveyor_store::RunStatus;
use conveyor_testkit::Spawned;
use support::{Harness, Setup, worker_env};

/// Requests in flight through the proxy now, and the most ever seen.
#[derive(Debug, Default)]
struct InFlight {
    now: AtomicU64,
    max: AtomicU64,
    total: AtomicU64,
}

#[derive(Debug, Clone)]
struct Proxy {
    upstream: Arc<std::sync::OnceLock<String>>,
    client: reqwest::Client,
    in_flight: Arc<InFlight>,
}

/// Forwards a request to the simulator, counting it while it is in flight.
async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let in_flight = &proxy.in_flight;
    let now = in_flight.now.fetch_add(1, Ordering::SeqCst) + 1;
    in_flight.max.fetch_max(now, Ordering::SeqCst);
    in_flight.total.fetch_add(1, Ordering::SeqCst);
    let upstream = proxy.upstream.get().cloned().unwrap_or_default();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut forwarded = proxy
        .client
        .request(request.method().clone(), format!("{upstream}{path}"));
    for (name, value) in request.headers() {
        if name != "host" {
            forwarded = forwarded.header(name, value);
        }
    }
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let answer = forwarded.body(body).send().await;
    let response = match answer {
        Ok(answer) => {
            let mut response = Response::builder().status(answer.status().as_u16());
            for (name, value) in answer.headers() {
                if name != "transfer-encoding" && name != "content-length" {
                    response = response.header(HeaderName::from(name), value);
                }
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            response.body(Body::from(bytes)).unwrap()
        }
        Err(_) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::empty())
            .unwrap(),
    };
    in_flight.now.fetch_sub(1, Ordering::SeqCst);
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_never_exceed_two_requests_per_connection() {
    // The proxy first, so the connection can point at it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let proxy = Proxy {
        upstream: Arc::default(),
        client: reqwest::Client::new(),
        in_flight: Arc::default(),
    };
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let harness = Harness::start(Setup {
        records: 60,
        page_size: 10,
        base_url: Some(proxy_url),
        ..Setup::default()
    })
    .await;
    proxy.upstream.set(harness.sim.base_url()).unwrap();
    // Slow answers, so requests of different syncs overlap.
    harness.sim.sim().set_fault(
        harness.profile,
        FaultSpec {
            delay_ms: Some(100),
            ..FaultSpec::new(FaultKind::Slow)
        },
    );

    let env = worker_env(
        &harness.redis.url(),
        &[
            ("CONVEYOR_WORKER_CONCURRENCY", "1"),
            ("CONVEYOR_SOURCE_CONCURRENCY", "2"),
        ],
    );
    let mut workers: Vec<Spawned> = (0..3)
        .map(|_| Spawned::start("conveyor-worker", &env).unwrap())
        .collect();
    for worker in &mut workers {
        worker.wait_for_output("conveyor-worker ready", Duration::from_secs(30));
    }
    let entities = [Entity::PurchaseOrders, Entity::WorkOrders, Entity::Assets];
    let mut syncs = Vec::new();
    for entity in entities {
        syncs.push(harness.enqueue(entity, SyncMode::Full).await);
    }
    for sync_id in syncs {
        let run = harness.wait_finished(sync_id).await;
        assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
        assert_eq!(run.records_fetched, 60);
    }
    for entity in entities {
        harness.assert_store_matches_source(entity).await;
    }
    let max = proxy.in_flight.max.load(Ordering::SeqCst);
    let total = proxy.in_flight.total.load(Ordering::SeqCst);
    assert!(total >= 18, "every page went through the proxy: {total}");
    assert_eq!(
        max, 2,
        "at most two requests in flight, and the syncs did run side by side"
    );
    for worker in &mut workers {
        worker.process().kill();
    }
    server.abort();
}
