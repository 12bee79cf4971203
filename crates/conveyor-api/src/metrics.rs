//! Prometheus metrics: request counts and latencies by route and status, and queue depths,
//! served at `/metrics`.
//!
//! Queue depths (`conveyor_queue_jobs{queue, state}`) are read from Redis when Prometheus
//! scrapes, so they are exact at scrape time and cost nothing between scrapes; if Redis is down
//! the scrape still answers, with the request metrics and the last depths seen.
//!
//! The `metrics` facade has one global recorder per process; [`handle`] installs it on first use
//! so several routers in one test process share it. Routes are labelled by their matched pattern
//! (`/v1/connections/{id}`), never the raw path, so label cardinality stays bounded.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use conveyor_core::job::{SYNC_QUEUE, WEBHOOK_QUEUE};
use conveyor_queue::QueueStats;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;

/// Name of the request counter.
pub const REQUESTS_TOTAL: &str = "conveyor_api_requests_total";
/// Name of the queue depth gauge.
pub const QUEUE_JOBS: &str = "conveyor_queue_jobs";
/// Name of the request latency histogram.
pub const REQUEST_DURATION: &str = "conveyor_api_request_duration_seconds";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first call.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), &buckets)
            .expect("the bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); then ours only renders
        // what is recorded through it, which is nothing, and /metrics is empty but valid.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        handle
    })
}

/// Sets the queue depth gauges from Redis; leaves them as they were if Redis does not answer.
async fn record_queue_depths(state: &AppState) {
    let Ok(backends) = state.backends().await else {
        return;
    };
    let (syncs, webhooks) = tokio::join!(backends.syncs.stats(), backends.webhooks.stats());
    for (queue, stats) in [(SYNC_QUEUE, syncs), (WEBHOOK_QUEUE, webhooks)] {
        match stats {
            Ok(stats) => set_depths(queue, stats),
            Err(err) => tracing::warn!(queue, error = %err, "queue depths not read for /metrics"),
        }
    }
}

fn set_depths(queue: &'static str, stats: QueueStats) {
    for (state, count) in [
        ("ready", stats.ready),
        ("scheduled", stats.scheduled),
        ("running", stats.running),
        ("dead", stats.dead),
    ] {
        // Depths are far below 2^53, so the float is exact.
        metrics::gauge!(QUEUE_JOBS, "queue" => queue, "state" => state).set(count as f64);
    }
}

/// How often [`upkeep`] drains the latency histograms.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Drains the recorded latencies into their buckets every few seconds until `shutdown`.
///
/// The recorder keeps every histogram sample until something drains it; without this, an API
/// that nobody scrapes would grow by one sample per request for ever.
pub async fn upkeep(shutdown: conveyor_runtime::Shutdown) {
    let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => handle().run_upkeep(),
            () = shutdown.cancelled() => return,
        }
    }
}

/// Records one served request.
pub fn record_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!(REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(REQUEST_DURATION, &labels).record(elapsed.as_secs_f64());
}

/// `GET /metrics` in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain"))
)]
pub(crate) async fn render(State(state): State<AppState>) -> impl IntoResponse {
    record_queue_depths(&state).await;
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        handle().render(),
    )
}
