//! One sync run: make the stored copy of one entity of one connection match the source.
//!
//! - [`engine`]: one attempt of a run, from the job to records, cursor, status and events
//!   ([`SyncEngine::run`]).
//! - [`window`]: which change times a run reads (cursor minus overlap up to a bound frozen at
//!   start; the historical period for full runs).
//! - [`progress`]: the run's position and counts as kept in its checkpoint between attempts.
//! - [`politeness`]: the fleet-wide per-connection request limit around every page request.
//! - [`enqueue`]: asking for a sync (API and scheduler): one per connection and entity.
//! - [`health`]: when a connection's next scheduled sync is due given its status (offline
//!   probes back off; auth_required waits for new credentials).
//! - [`outcome`]: what a failure means for the job (retry, snooze, abort) and for the
//!   connection's status (offline, auth_required), decided in one place.

pub mod engine;
pub mod enqueue;
pub mod health;
pub mod outcome;
pub mod politeness;
pub mod progress;
pub mod window;

pub use engine::{Attempt, EngineSettings, RunReport, SYNC_SUCCEEDED, SyncEngine};
pub use enqueue::{EnqueueError, Enqueued, enqueue_sync, ensure_run, job_id_of, sync_id_of};
pub use health::{OfflineBackoff, next_due};
pub use outcome::{Decision, Failure, StatusEffect};
pub use politeness::PermitSettings;
pub use progress::Counts;
pub use window::SyncWindow;
