//! Measures what reusing one pooled client saves over building a client per delivery (which is
//! what pinning DNS with `ClientBuilder::resolve` per request would need).
//!
//! Starts a receiver on 127.0.0.1:0 and makes `N` sequential deliveries each way, then prints
//! the mean time per delivery. Plain HTTP on loopback, so a real endpoint's TCP and TLS
//! handshakes (which the pool also saves) come on top of the difference shown here.
//!
//! Run: `cargo run -p conveyor-webhooks --example client_reuse [N]`

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use conveyor_core::{ConnectionId, EventType};
use conveyor_webhooks::{
    Deliverer, DeliveryConfig, DeliveryOutcome, SigningSecrets, UrlPolicy, sample_event,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: u32 = std::env::args()
        .nth(1)
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(300);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = Router::new().route("/hook", post(|| async { StatusCode::NO_CONTENT }));
    tokio::spawn(async move { axum::serve(listener, app).await });

    // `localhost` so both ways go through the checked resolver, as a real host name would.
    let url = format!("http://localhost:{}/hook", address.port());
    let config = DeliveryConfig {
        url_policy: UrlPolicy::ALLOW_PRIVATE,
        ..DeliveryConfig::default()
    };
    let secrets = SigningSecrets::generate();
    let event = sample_event(EventType::SyncCompleted, ConnectionId::new());

    let shared = Deliverer::new(config.clone())?;
    // Warm up both paths once.
    check(shared.deliver(&url, &event, &secrets).await.outcome)?;

    let started = Instant::now();
    for _ in 0..count {
        check(shared.deliver(&url, &event, &secrets).await.outcome)?;
    }
    let pooled = started.elapsed() / count;

    let started = Instant::now();
    for _ in 0..count {
        let fresh = Deliverer::new(config.clone())?;
        check(fresh.deliver(&url, &event, &secrets).await.outcome)?;
    }
    let per_delivery = started.elapsed() / count;

    println!("{count} sequential deliveries to {url}");
    println!("one shared client:       {}", micros(pooled));
    println!("a client per delivery:   {}", micros(per_delivery));
    println!(
        "ratio:                   {:.1}x",
        per_delivery.as_secs_f64() / pooled.as_secs_f64()
    );
    Ok(())
}

fn check(outcome: DeliveryOutcome) -> anyhow::Result<()> {
    match outcome {
        DeliveryOutcome::Delivered => Ok(()),
        other => anyhow::bail!("delivery failed: {other:?}"),
    }
}

fn micros(duration: Duration) -> String {
    format!("{} µs per delivery", duration.as_micros())
}
