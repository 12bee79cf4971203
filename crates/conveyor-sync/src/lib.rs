//! One sync run: make the stored copy of one entity of one connection match the source.
//!
//! - [`window`]: which change times a run reads (cursor minus overlap up to a bound frozen at
//!   start; the historical period for full runs).
//! - [`outcome`]: what a failure means for the job (retry, snooze, abort) and for the
//!   connection's status (offline, auth_required), decided in one place.

pub mod outcome;
pub mod window;

pub use outcome::{Decision, Failure, StatusEffect};
pub use window::SyncWindow;
