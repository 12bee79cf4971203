//! One sync run: make the stored copy of one entity of one connection match the source.
//!
//! - [`window`]: which change times a run reads (cursor minus overlap up to a bound frozen at
//!   start; the historical period for full runs).
//! - [`enqueue`]: asking for a sync (API and scheduler): one per connection and entity.
//! - [`health`]: when a connection's next scheduled sync is due given its status (offline
//!   probes back off; auth_required waits for new credentials).
//! - [`outcome`]: what a failure means for the job (retry, snooze, abort) and for the
//!   connection's status (offline, auth_required), decided in one place.

pub mod enqueue;
pub mod health;
pub mod outcome;
pub mod window;

pub use enqueue::{EnqueueError, Enqueued, enqueue_sync, ensure_run, job_id_of, sync_id_of};
pub use health::{OfflineBackoff, next_due};
pub use outcome::{Decision, Failure, StatusEffect};
pub use window::SyncWindow;
