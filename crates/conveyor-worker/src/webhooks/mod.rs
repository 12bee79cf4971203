//! Webhooks in the worker: the dispatcher (outbox → delivery jobs) and the delivery job handler
//! on the `webhooks` queue, served side by side by [`serve`].
//!
//! - [`dispatcher`]: claims outbox events through the consumer group, creates one delivery per
//!   subscribed endpoint, pushes their jobs, acknowledges; takes over events of crashed
//!   dispatchers; sweeps every connection now and then.
//! - [`delivery`]: one attempt of one delivery, logged; retries by the webhook schedule; 410
//!   disables the endpoint; exhausted deliveries go to the dead letters.
//! - [`settings`]: the `CONVEYOR_WEBHOOK*` variables.
//!
//! Concurrency per endpoint is bounded per process (an [`EndpointLimiter`]); a fleet of N
//! workers may therefore have up to N times that many requests in flight to one endpoint.

mod delivery;
mod dispatcher;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use conveyor_core::job::WEBHOOK_QUEUE;
use conveyor_queue::{JobContext, Queue, QueueConfig, WorkerOptions, run_worker, worker_identity};
use conveyor_runtime::Shutdown;
use conveyor_store::{DeliveryJob, Store};
use conveyor_webhooks::{Deliverer, EndpointLimiter};

pub use settings::WebhookSettings;

/// The webhook queue's settings for a fleet whose jobs are leased for `lease`.
///
/// A delivery job's attempts in the queue's sense are only used up by crashes (the schedule's
/// attempts are counted in the delivery log and rescheduled as snoozes), so the queue's backoff
/// applies only when Redis itself failed during an attempt.
pub fn queue_config(settings: &WebhookSettings, lease: Duration) -> QueueConfig {
    QueueConfig {
        lease,
        max_attempts: settings.schedule().max_attempts(),
        // Deliveries are short: fetch what the process can start, no more.
        fetch_batch: settings.concurrency,
        ..QueueConfig::new(WEBHOOK_QUEUE)
    }
}

/// The supervisor's entry: connects the webhook queue with the worker's settings, then
/// [`serve`]s it.
pub(crate) fn run(
    store: Store,
    config: &crate::Config,
    shutdown: Shutdown,
) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
    let redis_url = config.common.redis_url.clone();
    let queue_config = queue_config(&config.webhooks, config.lease);
    let settings = config.webhooks.clone();
    let shutdown_deadline = config.shutdown_deadline;
    async move {
        let queue = Queue::<DeliveryJob>::connect(&redis_url, queue_config)
            .await
            .context("connecting the webhook queue")?;
        serve(store, queue, settings, shutdown_deadline, shutdown).await
    }
}

/// Runs the dispatcher and the delivery workers until `shutdown` trips; running deliveries then
/// get `shutdown_deadline` to finish before they are handed back.
pub async fn serve(
    store: Store,
    queue: Queue<DeliveryJob>,
    settings: WebhookSettings,
    shutdown_deadline: Duration,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let deliverer =
        Deliverer::new(settings.delivery_config()).context("building the webhook HTTP client")?;
    let handler = delivery::DeliveryHandler {
        store: store.clone(),
        deliverer,
        schedule: Arc::new(settings.schedule()),
        limiter: EndpointLimiter::new(settings.permits_per_endpoint),
    };
    let dispatcher = dispatcher::Dispatcher {
        store,
        queue: queue.clone(),
        settings: settings.clone(),
        consumer: worker_identity(),
        job_attempts: queue.config().max_attempts,
    };
    let dispatching = tokio::spawn(dispatcher.run(shutdown.clone()));
    let options = WorkerOptions {
        concurrency: settings.concurrency,
        shutdown_deadline,
    };
    let served = run_worker(
        queue,
        options,
        move |job: DeliveryJob, context: JobContext| {
            let handler = handler.clone();
            async move { handler.handle(job, context).await }
        },
        {
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        },
    )
    .await;
    // The dispatcher stops on the same signal; if the worker failed, stop it too.
    shutdown.trigger();
    dispatching
        .await
        .context("the webhook dispatcher task failed")?;
    served.context("serving the webhook queue")
}
