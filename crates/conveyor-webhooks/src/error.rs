//! The crate's one error type.
//!
//! Variants follow what the caller does next: a bad secret or URL is rejected when an endpoint is
//! configured (the API answers 400), and a failed verification is rejected by the receiver (401).
//! Failures of a delivery attempt are not errors of this crate: they are a
//! [`DeliveryOutcome`](crate::DeliveryOutcome), because the dispatcher must always record them and
//! decide on a retry.

/// What went wrong, grouped by what the caller does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A signing secret is not `whsec_` followed by base64 of at least one byte. Reject the
    /// configuration.
    #[error("invalid webhook secret: {reason}")]
    InvalidSecret {
        /// Why, without echoing the secret.
        reason: &'static str,
    },
    /// The URL is not a usable http(s) URL. Reject the configuration.
    #[error("invalid webhook URL: {reason}")]
    InvalidUrl {
        /// Why.
        reason: String,
    },
    /// The URL points at an address the URL policy refuses (private, loopback, link-local...).
    /// Reject the configuration, or fail the attempt at delivery time.
    #[error("webhook URL refused: {reason}")]
    UrlRefused {
        /// Which address or host, and which rule refused it.
        reason: String,
    },
    /// The HTTP client could not be built (for example the TLS backend failed to start). Fail
    /// startup.
    #[error("could not build the webhook HTTP client: {reason}")]
    HttpClient {
        /// The client library's explanation.
        reason: String,
    },
    /// A retry schedule setting is out of range (a negative or non-finite scale or jitter).
    /// Reject the configuration.
    #[error("invalid retry schedule: {reason}")]
    InvalidSchedule {
        /// Which setting and why.
        reason: &'static str,
    },
    /// A required Standard Webhooks header is missing or not valid text. The receiver rejects
    /// the request.
    #[error("missing or unreadable `{name}` header")]
    MissingHeader {
        /// The header's name.
        name: &'static str,
    },
    /// The `webhook-timestamp` is not unix seconds, or is outside the tolerance window (a replay
    /// or a badly wrong clock). The receiver rejects the request.
    #[error("webhook timestamp {reason}")]
    BadTimestamp {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No signature in `webhook-signature` matches the body under any known secret: the body
    /// was altered or the secret is wrong. The receiver rejects the request.
    #[error("no matching webhook signature")]
    NoMatchingSignature,
}
