//! The lease keeper: one background task per worker that commits job outcomes in batches and
//! renews the leases of every job the worker holds, every `lease / 3`, in one call.
//!
//! Outcomes are handed over through a channel, so a handler's concurrency slot is free as soon
//! as it returns; under load many outcomes pile up while one commit is in flight and go out
//! together in the next script call, which is what makes the queue fast. Every outcome carries
//! the lease token of its delivery, and the ack script ignores outcomes whose token is no
//! longer current, so a worker that lost its lease cannot overwrite the new owner's result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::dead::DeadSelector;
use crate::queue::{ACK_CHUNK, Ack, AckResult, Queue};

pub(crate) enum KeeperMessage {
    Ack(Ack),
    Flush(oneshot::Sender<()>),
}

/// Jobs this worker holds, by id, with the lease token of their delivery.
type InFlight = Arc<Mutex<HashMap<String, u64>>>;

/// The way in to a worker's lease keeper. Cheap to clone.
#[derive(Clone)]
pub struct KeeperHandle {
    sender: mpsc::UnboundedSender<KeeperMessage>,
    in_flight: InFlight,
}

impl std::fmt::Debug for KeeperHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeeperHandle").finish_non_exhaustive()
    }
}

impl KeeperHandle {
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<KeeperMessage>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (
            KeeperHandle {
                sender,
                in_flight: Arc::default(),
            },
            receiver,
        )
    }

    /// Starts renewing the lease of a fetched job.
    pub(crate) fn track(&self, job_id: &str, token: u64) {
        lock(&self.in_flight).insert(job_id.to_owned(), token);
    }

    /// Queues an outcome for the next commit.
    pub(crate) fn ack(&self, ack: Ack) {
        if self.sender.send(KeeperMessage::Ack(ack)).is_err() {
            tracing::warn!(
                "the lease keeper has stopped: an outcome is lost and its job will be redelivered when its lease runs out"
            );
        }
    }

    /// Resolves once every outcome queued before this call is committed.
    pub(crate) fn flush(&self) -> oneshot::Receiver<()> {
        let (done, receiver) = oneshot::channel();
        let _ = self.sender.send(KeeperMessage::Flush(done));
        receiver
    }

    /// How many jobs this worker holds.
    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.in_flight).len()
    }
}

fn lock(in_flight: &InFlight) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
    // A panic while holding this lock cannot leave the map half-changed (single inserts and
    // removes), so a poisoned lock is still usable.
    in_flight
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn spawn<T: Send + Sync + 'static>(
    queue: Queue<T>,
    handle: KeeperHandle,
    receiver: mpsc::UnboundedReceiver<KeeperMessage>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(run(queue, handle.in_flight, receiver, stop))
}

async fn run<T>(
    queue: Queue<T>,
    in_flight: InFlight,
    mut receiver: mpsc::UnboundedReceiver<KeeperMessage>,
    stop: CancellationToken,
) {
    let renew_every = (queue.config().lease / 3).max(Duration::from_millis(30));
    let mut renew_timer = tokio::time::interval(renew_every);
    renew_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<Ack> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let mut renew_due = false;
        let mut stopping = false;
        tokio::select! {
            message = receiver.recv() => match message {
                Some(message) => take(message, &mut pending, &mut waiters),
                None => stopping = true,
            },
            _ = renew_timer.tick() => renew_due = true,
            () = stop.cancelled() => stopping = true,
        }
        while pending.len() < ACK_CHUNK * 4 {
            match receiver.try_recv() {
                Ok(message) => take(message, &mut pending, &mut waiters),
                Err(_) => break,
            }
        }
        if !pending.is_empty() {
            commit(&queue, &in_flight, &mut pending, &stop).await;
        }
        if pending.is_empty() {
            for waiter in waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
        if renew_due {
            renew(&queue, &in_flight).await;
            if let Some(age) = queue.config().dead_ttl
                && let Err(err) = queue.dead_purge(&DeadSelector::OlderThan { age }).await
            {
                tracing::warn!(queue = queue.name(), error = %err, "purging expired dead jobs failed");
            }
        }
        if stopping {
            return;
        }
    }
}

fn take(message: KeeperMessage, pending: &mut Vec<Ack>, waiters: &mut Vec<oneshot::Sender<()>>) {
    match message {
        KeeperMessage::Ack(ack) => pending.push(ack),
        KeeperMessage::Flush(waiter) => waiters.push(waiter),
    }
}

/// Commits `pending`, retrying with backoff while Redis is unreachable (until `stop`).
async fn commit<T>(
    queue: &Queue<T>,
    in_flight: &InFlight,
    pending: &mut Vec<Ack>,
    stop: &CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        match queue.commit(pending).await {
            Ok(results) => {
                let mut held = lock(in_flight);
                for (ack, result) in pending.iter().zip(results) {
                    // The same job may already be fetched again with a newer token.
                    if held.get(&ack.job_id) == Some(&ack.token) {
                        held.remove(&ack.job_id);
                    }
                    if result == AckResult::Stale {
                        tracing::warn!(
                            queue = queue.name(),
                            job_id = %ack.job_id,
                            "lease lost before the outcome was committed; the job's new owner decides"
                        );
                    }
                }
                pending.clear();
                return;
            }
            Err(err) => {
                failures += 1;
                let delay = retry_delay(failures);
                tracing::warn!(
                    queue = queue.name(),
                    error = %err,
                    outcomes = pending.len(),
                    retry_in = ?delay,
                    "committing job outcomes failed"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => {
                        // One last try on the way out; if Redis is still away, the leases run
                        // out and the jobs are redelivered.
                        if queue.commit(pending).await.is_err() {
                            tracing::warn!(queue = queue.name(), outcomes = pending.len(), "outcomes not committed before stopping");
                        }
                        pending.clear();
                        return;
                    }
                }
            }
        }
    }
}

async fn renew<T>(queue: &Queue<T>, in_flight: &InFlight) {
    let leases: Vec<(String, u64)> = lock(in_flight)
        .iter()
        .map(|(job_id, token)| (job_id.clone(), *token))
        .collect();
    if leases.is_empty() {
        return;
    }
    match queue.renew(&leases).await {
        Ok(lost) => {
            if lost.is_empty() {
                return;
            }
            let tokens: HashMap<&str, u64> = leases
                .iter()
                .map(|(job_id, token)| (job_id.as_str(), *token))
                .collect();
            let mut held = lock(in_flight);
            for job_id in lost {
                if held.get(&job_id) == tokens.get(job_id.as_str()) {
                    held.remove(&job_id);
                }
                tracing::warn!(queue = queue.name(), job_id = %job_id, "lease lost: another worker may run this job");
            }
        }
        Err(err) => {
            tracing::warn!(queue = queue.name(), error = %err, jobs = leases.len(), "renewing leases failed; retrying at the next tick");
        }
    }
}

/// Delay before the `failures`-th retry of a Redis call: 50 ms doubling up to 2 s.
pub(crate) fn retry_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    Duration::from_millis(50 * (1u64 << exponent)).min(Duration::from_secs(2))
}
