//! A real HTTP webhook receiver on 127.0.0.1:0 for the integration tests.
//!
//! Each path answers in one fixed way (2xx, 500, 410, 429 with `Retry-After`, a slow answer...),
//! and every request that arrives is recorded with its headers and raw body so tests can check
//! exactly what was sent on the wire.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the receiver"
)]
#![allow(unreachable_pub, reason = "a test helper module, not an API")]

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::mpsc;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("missing header {name}"))
            .to_str()
            .unwrap()
    }
}

/// A running receiver; the server stops when the test's runtime ends.
pub struct Receiver {
    pub address: SocketAddr,
    requests: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    pub async fn start() -> Self {
        let (sender, requests) = mpsc::unbounded_channel();
        let app = Router::new()
            .route("/{kind}", post(answer))
            .with_state(sender);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { address, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.address)
    }

    /// The same receiver reached by the name `localhost`, which resolves to loopback.
    pub fn localhost_url(&self, path: &str) -> String {
        format!("http://localhost:{}/{path}", self.address.port())
    }

    /// The next recorded request (waits up to 5 s for it).
    pub async fn next_request(&mut self) -> Received {
        tokio::time::timeout(std::time::Duration::from_secs(5), self.requests.recv())
            .await
            .expect("a request arrives within 5 s")
            .expect("the receiver is running")
    }

    /// Whether no request has arrived (that was not already taken).
    pub fn nothing_received(&mut self) -> bool {
        self.requests.try_recv().is_err()
    }
}

/// The body of `/big`: an ASCII byte then two-byte characters, so the 1 KiB cut falls inside a
/// character.
pub fn big_body() -> String {
    format!("x{}", "é".repeat(2000))
}

async fn answer(
    State(sender): State<mpsc::UnboundedSender<Received>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _ = sender.send(Received {
        path: kind.clone(),
        headers,
        body,
    });
    match kind.as_str() {
        "ok" => StatusCode::NO_CONTENT.into_response(),
        "accepted" => (StatusCode::ACCEPTED, "queued").into_response(),
        "big" => (StatusCode::OK, big_body()).into_response(),
        "error" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        "gone" => (StatusCode::GONE, "endpoint removed").into_response(),
        "busy" => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, HeaderValue::from_static("7"))],
            "slow down",
        )
            .into_response(),
        "busy-without-retry-after" => StatusCode::TOO_MANY_REQUESTS.into_response(),
        "unavailable-until" => {
            let at = std::time::SystemTime::now() + std::time::Duration::from_secs(120);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, httpdate::fmt_http_date(at))],
            )
                .into_response()
        }
        "redirect" => (
            StatusCode::FOUND,
            [(header::LOCATION, HeaderValue::from_static("/ok"))],
        )
            .into_response(),
        // Never answers: the client's timeout must end the attempt.
        "hang" => std::future::pending().await,
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
