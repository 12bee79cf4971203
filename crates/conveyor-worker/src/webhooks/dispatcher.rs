//! The dispatcher: turns outbox events into delivery jobs, one per subscribed endpoint.
//!
//! Every worker runs one. They share each connection's outbox through the store's consumer
//! group, so an event is handed to one dispatcher at a time. For each event the dispatcher
//! creates the delivery of every endpoint that wants it (ids derived from event and endpoint),
//! pushes a job for each delivery that has no attempt yet (the job's unique key makes a second
//! push of a queued or running job a no-op), and only then acknowledges the event. A dispatcher
//! that dies between the pushes and the acknowledgement leaves the event pending in the group;
//! another dispatcher claims it once it has been idle for `claim_idle` and dispatches it again,
//! which finds the same deliveries and pushes nothing twice.
//!
//! Which outboxes to read comes from the store's ready set. The set is best effort (an append
//! and its ready mark are two steps, and a drained connection is settled even if a crashed
//! dispatcher still holds some of its events), so every `sweep_interval` the dispatcher also
//! reads every connection's outbox.

use std::time::Instant;

use conveyor_core::{ConnectionId, JobId};
use conveyor_queue::{JobSpec, Queue};
use conveyor_runtime::Shutdown;
use conveyor_store::{
    DeliveryJob, DeliveryState, OutboxEntry, Store, WebhookEndpoint, delivery_id_for,
};

use super::WebhookSettings;

/// Events read per outbox call.
const READ_BATCH: usize = 100;
/// Ready connections taken per round.
const READY_BATCH: usize = 100;
/// Connection ids read per page of a sweep.
const SWEEP_PAGE: usize = 500;

/// One dispatcher loop.
#[derive(Debug)]
pub(crate) struct Dispatcher {
    pub(crate) store: Store,
    pub(crate) queue: Queue<DeliveryJob>,
    pub(crate) settings: WebhookSettings,
    /// This dispatcher's consumer name in the outbox group: unique per process start.
    pub(crate) consumer: String,
    /// Attempts a delivery job gets from the queue's point of view: only crash redeliveries use
    /// them (the schedule's attempts are counted in the delivery log).
    pub(crate) job_attempts: u32,
}

impl Dispatcher {
    /// Dispatches until `shutdown` trips. Store and queue errors are logged and the loop goes
    /// on after a pause: Redis coming back is the usual cure.
    pub(crate) async fn run(self, shutdown: Shutdown) {
        // Sweep once at start: a restarted fleet picks up what the previous one held.
        let mut last_sweep: Option<Instant> = None;
        while !shutdown.is_triggered() {
            let sweep_due =
                last_sweep.is_none_or(|at| at.elapsed() >= self.settings.sweep_interval);
            let round = if sweep_due {
                last_sweep = Some(Instant::now());
                self.sweep().await
            } else {
                self.dispatch_ready().await
            };
            let dispatched = match round {
                Ok(dispatched) => dispatched,
                Err(err) => {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        "webhook dispatch round failed; retrying"
                    );
                    0
                }
            };
            if dispatched == 0 {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(self.settings.poll_interval) => {}
                }
            }
        }
        tracing::info!(consumer = %self.consumer, "webhook dispatcher stopped");
    }

    /// Drains the connections marked ready; returns the number of events dispatched.
    async fn dispatch_ready(&self) -> anyhow::Result<usize> {
        let ready = self.store.outbox_ready_connections(READY_BATCH).await?;
        let mut dispatched = 0;
        for (connection_id, score) in ready {
            dispatched += self.drain(&connection_id).await?;
            self.store.settle_outbox(&connection_id, &score).await?;
        }
        Ok(dispatched)
    }

    /// Drains every connection's outbox.
    async fn sweep(&self) -> anyhow::Result<usize> {
        let mut dispatched = 0;
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .store
                .list_connection_ids(SWEEP_PAGE, cursor.as_deref())
                .await?;
            for connection_id in &page.items {
                dispatched += self.drain(connection_id).await?;
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(dispatched),
            }
        }
    }

    /// Dispatches a connection's events until none is left for this dispatcher: stale ones a
    /// crashed dispatcher held first, then new ones.
    pub(crate) async fn drain(&self, connection_id: &ConnectionId) -> anyhow::Result<usize> {
        let mut endpoints: Option<Vec<WebhookEndpoint>> = None;
        let mut dispatched = 0;
        loop {
            let mut entries = self
                .store
                .claim_stale_events(
                    connection_id,
                    &self.consumer,
                    self.settings.claim_idle,
                    READ_BATCH,
                )
                .await?;
            if !entries.is_empty() {
                tracing::info!(connection_id = %connection_id, events = entries.len(), "took over events a dispatcher left unacknowledged");
            }
            entries.extend(
                self.store
                    .read_events(connection_id, &self.consumer, READ_BATCH)
                    .await?,
            );
            if entries.is_empty() {
                return Ok(dispatched);
            }
            // Endpoints are read once per drain: an endpoint added mid-drain gets events from
            // the next one on, like one added a moment later.
            if endpoints.is_none() {
                endpoints = Some(self.store.list_webhook_endpoints(connection_id).await?);
            }
            let endpoints = endpoints.as_deref().unwrap_or_default();
            self.dispatch(connection_id, &entries, endpoints).await?;
            dispatched += entries.len();
        }
    }

    /// Creates the deliveries of `entries`, pushes their jobs, then acknowledges the entries.
    async fn dispatch(
        &self,
        connection_id: &ConnectionId,
        entries: &[OutboxEntry],
        endpoints: &[WebhookEndpoint],
    ) -> anyhow::Result<()> {
        let mut specs = Vec::new();
        for entry in entries {
            let event = &entry.event;
            for endpoint in endpoints
                .iter()
                .filter(|endpoint| endpoint.wants(event.event_type))
            {
                let delivery_id = delivery_id_for(&event.id, &endpoint.id);
                // The job shares the delivery's ULID, so logs of either lead to the other.
                let job_id = JobId::from_ulid(delivery_id.ulid());
                let state = self
                    .store
                    .ensure_delivery(&delivery_id, &endpoint.id, event, &job_id, false)
                    .await?;
                if state != DeliveryState::Pending {
                    continue;
                }
                let job = DeliveryJob {
                    delivery_id,
                    connection_id: *connection_id,
                    endpoint_id: endpoint.id,
                };
                let unique_key = job.unique_key();
                specs.push(
                    JobSpec::new(job)
                        .job_id(job_id)
                        .unique_key(unique_key)
                        .max_attempts(self.job_attempts),
                );
            }
        }
        if !specs.is_empty() {
            let pushed = self.queue.push_bulk(specs).await?;
            let duplicates = pushed.iter().filter(|pushed| pushed.duplicate).count();
            tracing::debug!(
                connection_id = %connection_id,
                jobs = pushed.len(),
                duplicates,
                "delivery jobs pushed"
            );
        }
        let entry_ids: Vec<String> = entries.iter().map(|entry| entry.entry_id.clone()).collect();
        self.store.ack_events(connection_id, &entry_ids).await?;
        tracing::debug!(connection_id = %connection_id, events = entries.len(), "events dispatched");
        Ok(())
    }
}
