//! Webhooks: signing, one delivery attempt, the retry schedule, per-endpoint limits.
//!
//! **Architecture invariant:** this crate signs, checks and delivers; it knows nothing of Redis or
//! apalis. Where endpoints, secrets, outboxes and delivery logs are stored, and when an attempt
//! runs, is decided by the dispatcher in the worker; it calls in here with plain values and gets
//! plain values back ([`DeliveryAttempt`]: an outcome plus a record for the log).
//!
//! - [`signing`]: Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature`) and a verifier.
//! - [`secrets`]: an endpoint's current secret and, for 24 hours after a rotation, the previous one.
//! - [`url_policy`]: which URLs may be called (no private, loopback or metadata addresses).
//! - [`delivery`]: one POST with a checked DNS resolver, classified as delivered, gone, retry or
//!   failed.
//! - [`retry_schedule`]: when to try again, with jitter, until the event is dead-lettered.
//! - [`limiter`]: bounded concurrency per endpoint.
//! - [`samples`]: sample events for test deliveries.

pub mod delivery;
mod error;
pub mod limiter;
pub mod retry_schedule;
pub mod samples;
pub mod secrets;
pub mod signing;
pub mod url_policy;

pub use delivery::{AttemptRecord, Deliverer, DeliveryAttempt, DeliveryConfig, DeliveryOutcome};
pub use error::WebhookError;
pub use limiter::{EndpointLimiter, EndpointPermit};
pub use retry_schedule::RetrySchedule;
pub use samples::{sample_data, sample_event, test_event};
pub use secrets::{PreviousSecret, SigningSecrets};
pub use signing::{SignatureHeaders, SigningSecret, Verifier};
pub use url_policy::UrlPolicy;
