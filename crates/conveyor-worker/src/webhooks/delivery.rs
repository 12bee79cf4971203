//! The delivery job: one attempt of one delivery, logged, and what happens next decided.
//!
//! Outcomes, in one place:
//! - **delivered** (2xx): logged, the job succeeds.
//! - **retry** (429/503 with `Retry-After`) and **failed** (anything else, timeouts included):
//!   logged, then the job is snoozed until the next attempt the webhook schedule allows (the
//!   receiver's `Retry-After` replaces the table's delay). conveyor-queue's own retry follows
//!   the queue's exponential backoff, which cannot express the webhook table (30 s, 5 min, ...,
//!   24 h), so the attempt is counted in the delivery log instead and the job snoozes by the
//!   table. When the table is exhausted the job is aborted: it goes to the dead letters, and
//!   the delivery is `failed` until someone redelivers it.
//! - **gone** (410): logged, the endpoint disabled, the job aborted.
//!
//! Test deliveries get one attempt and never go to the dead letters: the caller is waiting for
//! the outcome, not for a retry hours later.
//!
//! A slow endpoint must not hold back the others: a delivery that finds every permit of its
//! endpoint taken in this process does not wait in a worker slot but snoozes briefly, freeing
//! the slot for another endpoint's delivery.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use conveyor_core::EndpointId;
use conveyor_queue::{JobContext, JobError};
use conveyor_store::{
    AttemptUpdate, Delivery, DeliveryJob, DeliveryState, LoggedAttempt, Store, StoreError,
};
use conveyor_webhooks::{Deliverer, DeliveryOutcome, EndpointLimiter, RetrySchedule};
use rand::Rng;

/// How long a delivery whose endpoint is at its concurrency limit waits before it is fetched
/// again, before jitter.
const BUSY_ENDPOINT_DELAY: Duration = Duration::from_millis(200);

/// Everything a delivery needs; one per process, shared by every delivery.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryHandler {
    pub(crate) store: Store,
    pub(crate) deliverer: Deliverer,
    pub(crate) schedule: Arc<RetrySchedule>,
    pub(crate) limiter: EndpointLimiter<EndpointId>,
}

/// A store failure as a job outcome: Redis being away is worth a retry, anything else is not.
fn store_failure(err: StoreError) -> JobError {
    if err.is_retryable() {
        JobError::retry(err).with_kind("store_unavailable")
    } else {
        JobError::abort(err).with_kind("store_error")
    }
}

impl DeliveryHandler {
    /// Runs one attempt of `job`.
    pub(crate) async fn handle(
        &self,
        job: DeliveryJob,
        context: JobContext,
    ) -> Result<(), JobError> {
        let connection_id = job.connection_id;
        let delivery_id = job.delivery_id;
        let mut delivery = match self.store.get_delivery(&connection_id, &delivery_id).await {
            Ok(delivery) => delivery,
            Err(StoreError::NotFound { .. }) => {
                // Expired from the log (or its connection deleted): nothing left to deliver.
                tracing::warn!(delivery_id = %delivery_id, connection_id = %connection_id, "delivery not found; dropping its job");
                return Ok(());
            }
            Err(err) => return Err(store_failure(err)),
        };
        match delivery.state {
            // A second job for a delivery already made (a redelivery raced its original).
            DeliveryState::Delivered => return Ok(()),
            // Dead-lettered before and now retried from the dead letters: a new round.
            DeliveryState::Failed | DeliveryState::Cancelled => {
                delivery = self
                    .store
                    .requeue_delivery(&connection_id, &delivery_id, &context.job_id())
                    .await
                    .map_err(store_failure)?;
            }
            DeliveryState::Pending | DeliveryState::Retrying => {}
        }

        let endpoint = match self
            .store
            .get_webhook_endpoint(&connection_id, &job.endpoint_id)
            .await
        {
            Ok(endpoint) => endpoint,
            Err(StoreError::NotFound { .. }) => {
                return self.cancel(&delivery, "the endpoint was deleted").await;
            }
            Err(err) => return Err(store_failure(err)),
        };
        if !endpoint.enabled && !delivery.test {
            return self.cancel(&delivery, "the endpoint is disabled").await;
        }
        let secrets = self
            .store
            .webhook_secrets(&connection_id, &endpoint.id)
            .await
            .map_err(store_failure)?;

        let Some(permit) = self.limiter.try_acquire(endpoint.id) else {
            let jitter = rand::rng().random_range(0..=BUSY_ENDPOINT_DELAY.as_millis() as u64);
            return Err(JobError::snooze(
                BUSY_ENDPOINT_DELAY + Duration::from_millis(jitter),
            ));
        };
        let attempt = self
            .deliverer
            .deliver(&endpoint.url, &delivery.event, &secrets)
            .await;
        drop(permit);

        let round_attempt = delivery.round_attempts + 1;
        let delay = if delivery.test {
            None
        } else {
            self.schedule.delay_after(round_attempt, &attempt.outcome)
        };
        let state = match (&attempt.outcome, delay) {
            (DeliveryOutcome::Delivered, _) => DeliveryState::Delivered,
            (DeliveryOutcome::Gone, _) => DeliveryState::Failed,
            (_, Some(_)) => DeliveryState::Retrying,
            (_, None) => DeliveryState::Failed,
        };
        let next_attempt_at =
            delay.map(|delay| Utc::now() + TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX));
        let update = AttemptUpdate {
            attempt: LoggedAttempt {
                attempt: delivery.attempts + 1,
                outcome: attempt.outcome.kind().to_owned(),
                record: attempt.record,
            },
            state,
            next_attempt_at,
        };
        self.store
            .record_delivery_attempt(&connection_id, &delivery_id, &update)
            .await
            .map_err(store_failure)?;
        tracing::info!(
            delivery_id = %delivery_id,
            endpoint_id = %endpoint.id,
            event_id = %delivery.event.id,
            attempt = update.attempt.attempt,
            status = update.attempt.record.status,
            outcome = attempt.outcome.kind(),
            "webhook attempt"
        );

        match attempt.outcome {
            DeliveryOutcome::Delivered => Ok(()),
            DeliveryOutcome::Gone => {
                self.store
                    .disable_webhook_endpoint(
                        &connection_id,
                        &endpoint.id,
                        "the receiver answered 410 Gone",
                    )
                    .await
                    .map_err(store_failure)?;
                tracing::warn!(endpoint_id = %endpoint.id, connection_id = %connection_id, "endpoint disabled: the receiver answered 410 Gone");
                if delivery.test {
                    return Ok(());
                }
                Err(
                    JobError::abort("the receiver answered 410 Gone; endpoint disabled")
                        .with_kind("endpoint_gone"),
                )
            }
            DeliveryOutcome::Retry { .. } | DeliveryOutcome::Failed { .. } => match delay {
                Some(delay) => Err(JobError::snooze(delay)),
                None if delivery.test => Ok(()),
                None => Err(JobError::abort(format!(
                    "no 2xx after {round_attempt} attempts; last: {}",
                    update
                        .attempt
                        .record
                        .error
                        .as_deref()
                        .unwrap_or("unknown error")
                ))
                .with_kind("webhook_exhausted")),
            },
        }
    }

    async fn cancel(&self, delivery: &Delivery, reason: &str) -> Result<(), JobError> {
        self.store
            .cancel_delivery(&delivery.connection_id, &delivery.id, reason)
            .await
            .map_err(store_failure)?;
        tracing::info!(delivery_id = %delivery.id, endpoint_id = %delivery.endpoint_id, reason, "delivery cancelled");
        Ok(())
    }
}
