//! conveyor-queue: Conveyor's Redis job queue, as an apalis 1.0 backend of our own.
//!
//! - [`Queue`] pushes jobs (single, bulk, delayed, with unique keys), reports a job's
//!   [`JobStatus`] and the queue's [`QueueStats`], and manages dead letters
//!   ([`Queue::dead_list`], [`Queue::dead_show`], [`Queue::dead_retry`], [`Queue::dead_purge`]).
//! - [`RedisBackend`] feeds an apalis worker. Fetched jobs are leased (renewed while they run,
//!   redelivered after a crash once the lease runs out), every delivery counts as an attempt,
//!   and outcomes are fenced by a lease token so a worker that lost its lease changes nothing.
//! - Handlers return `Result<(), JobError>`: [`JobError::retry`] (exponential backoff with
//!   jitter, persisted in Redis), [`JobError::snooze`] (later, without using an attempt) or
//!   [`JobError::abort`] (dead-letter now). A panic is a failed attempt.
//! - [`run_worker`] runs a handler with concurrency, caught panics and graceful shutdown.
//!
//! Data layout (every key shares the queue's hash tag, e.g. `conveyor:{q:syncs}:`): a ready
//! list of ids, sorted sets for scheduled jobs, leases and dead jobs, queue-wide hashes keyed by
//! job id for payloads (stored once), attempts, running leases and succeeded records, and a
//! small per-job hash for the slow paths (delays, errors, deaths). All state changes run in Lua
//! scripts on bounded chunks, a batch of jobs costing a few commands, so per-job work stays O(1)
//! however large the backlog. See docs/job-states.md for a job's life.
//!
//! Throughput comes from batching: a worker fetches up to `fetch_batch` jobs per script call,
//! and its lease keeper commits outcomes of many jobs per call while renewing all its leases
//! every `lease / 3`. `cargo run -p conveyor-queue --example drain --release` gives a quick
//! number.
//!
//! **Architecture invariant:** Redis key names of the queue are spelled only in the `keys` module and in
//! the scripts' use of its prefix; nothing outside this crate writes them.

mod backend;
mod config;
mod connection;
mod dead;
mod error;
mod identity;
mod job;
mod keeper;
mod keys;
mod outcome;
mod queue;
mod scripts;
mod worker;

#[cfg(test)]
mod tests;

pub use backend::RedisBackend;
pub use config::{BackoffPolicy, QueueConfig};
pub use dead::{DeadFilter, DeadJob, DeadPage, DeadSelector, Page};
pub use error::QueueError;
pub use identity::worker_identity;
pub use job::{JobDetail, JobErrorRecord, JobSpec, JobState, JobStatus, Pushed, QueueStats};
pub use keeper::KeeperHandle;
pub use outcome::{JobContext, JobError, MissingJobContext, OutcomeLayer, OutcomeService};
pub use queue::Queue;
pub use worker::{WorkerOptions, run_worker};

impl<T> Queue<T> {
    /// A new apalis backend (one consumer) for this queue.
    pub fn backend(&self) -> RedisBackend<T> {
        RedisBackend::new(self.clone())
    }
}
