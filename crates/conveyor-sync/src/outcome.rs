//! What a failed sync means, decided in one place.
//!
//! | failure | job | connection status | why |
//! |---|---|---|---|
//! | source unreachable (refused, DNS, timeout) | retry with backoff | offline | the system is down |
//! | 502 / 503 / 504 from the source | retry with backoff | offline | a gateway says the system is down |
//! | other 5xx | retry with backoff | unchanged | the system answered; it may recover |
//! | 429 with Retry-After | snooze for that long (no attempt used) | unchanged | the source asked us to wait |
//! | credentials rejected (401/403 after a token refresh) | abort | auth_required | retrying cannot help |
//! | malformed page | retry with backoff | unchanged | often a truncated response; dead-lettered if it persists |
//! | configuration (404 entity path, bad filter) | abort | unchanged | retrying cannot help |
//! | Conveyor's own storage unavailable | retry with backoff | unchanged | not the source's fault |
//! | the job's connection or entity is gone | abort | unchanged | nothing to sync |
//! | credentials cannot be decrypted (key missing) | abort | unchanged | needs the key configured |
//! | stored data unreadable, or refused by the store | abort | unchanged | a bug or corruption: tell a human |

use std::time::Duration;

use conveyor_connectors::ConnectorError;
use conveyor_core::ConnectionStatus;
use conveyor_queue::JobError;
use conveyor_store::StoreError;

/// What the queue should do with the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after exponential backoff; uses an attempt.
    Retry,
    /// Try again after this long without using an attempt.
    Snooze(Duration),
    /// Dead-letter now.
    Abort,
}

/// What the failure says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusEffect {
    /// Nothing new is known.
    Unchanged,
    /// The connection moves to this status.
    Set(ConnectionStatus),
}

/// A classified failure of a sync run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The job outcome.
    pub decision: Decision,
    /// The effect on the connection's status.
    pub status: StatusEffect,
    /// A stable snake_case code for run records, events and dead-letter filters.
    pub code: &'static str,
    /// A human-readable message (never contains credentials).
    pub message: String,
}

impl Failure {
    /// Classifies a connector error.
    pub fn from_connector(err: &ConnectorError) -> Failure {
        let message = err.to_string();
        let (decision, status) = match err {
            ConnectorError::Unreachable { .. } => (
                Decision::Retry,
                StatusEffect::Set(ConnectionStatus::Offline),
            ),
            ConnectorError::ServerError {
                status: 502..=504, ..
            } => (
                Decision::Retry,
                StatusEffect::Set(ConnectionStatus::Offline),
            ),
            ConnectorError::ServerError { .. } | ConnectorError::BadData { .. } => {
                (Decision::Retry, StatusEffect::Unchanged)
            }
            ConnectorError::RateLimited { retry_after, .. } => {
                (Decision::Snooze(*retry_after), StatusEffect::Unchanged)
            }
            ConnectorError::AuthRejected { .. } => (
                Decision::Abort,
                StatusEffect::Set(ConnectionStatus::AuthRequired),
            ),
            // `ConnectorError` is non-exhaustive: an unknown class is treated like a configuration
            // problem (stop, tell a human) rather than retried blindly.
            _ => (Decision::Abort, StatusEffect::Unchanged),
        };
        Failure {
            decision,
            status,
            code: err.class(),
            message,
        }
    }

    /// A failure of Conveyor's own storage (Redis): retried, not the source's fault.
    pub fn storage(message: impl Into<String>) -> Failure {
        Failure {
            decision: Decision::Retry,
            status: StatusEffect::Unchanged,
            code: "storage_unavailable",
            message: message.into(),
        }
    }

    /// Classifies a failure of the store: Redis unavailable is retried; anything else
    /// (a missing connection, undecryptable credentials, corrupt or refused data) cannot be
    /// fixed by retrying.
    pub fn from_store(err: &StoreError) -> Failure {
        let message = err.to_string();
        match err {
            StoreError::NotFound { .. } => Failure::invalid_job(message),
            StoreError::Crypto { .. } => Failure {
                decision: Decision::Abort,
                status: StatusEffect::Unchanged,
                code: "credentials_unreadable",
                message,
            },
            err if err.is_retryable() => Failure::storage(message),
            _ => Failure {
                decision: Decision::Abort,
                status: StatusEffect::Unchanged,
                code: "storage_refused",
                message,
            },
        }
    }

    /// The queue outcome of this failure, with its code as the recorded error kind.
    pub fn to_job_error(&self) -> JobError {
        match self.decision {
            Decision::Retry => JobError::retry(self.message.clone()).with_kind(self.code),
            Decision::Snooze(delay) => JobError::snooze(delay.max(crate::engine::MIN_SNOOZE)),
            Decision::Abort => JobError::abort(self.message.clone()).with_kind(self.code),
        }
    }

    /// A problem with the job itself (its connection was deleted, its entity removed): abort.
    pub fn invalid_job(message: impl Into<String>) -> Failure {
        Failure {
            decision: Decision::Abort,
            status: StatusEffect::Unchanged,
            code: "invalid_job",
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> String {
        "http://127.0.0.1:9/x".into()
    }

    #[test]
    fn every_class_maps_to_its_decision_and_status() {
        let cases = [
            (
                ConnectorError::Unreachable {
                    url: url(),
                    reason: "refused".into(),
                },
                Decision::Retry,
                StatusEffect::Set(ConnectionStatus::Offline),
                "unreachable",
            ),
            (
                ConnectorError::ServerError {
                    url: url(),
                    status: 503,
                    message: String::new(),
                },
                Decision::Retry,
                StatusEffect::Set(ConnectionStatus::Offline),
                "server_error",
            ),
            (
                ConnectorError::ServerError {
                    url: url(),
                    status: 500,
                    message: String::new(),
                },
                Decision::Retry,
                StatusEffect::Unchanged,
                "server_error",
            ),
            (
                ConnectorError::RateLimited {
                    url: url(),
                    retry_after: Duration::from_secs(42),
                },
                Decision::Snooze(Duration::from_secs(42)),
                StatusEffect::Unchanged,
                "rate_limited",
            ),
            (
                ConnectorError::AuthRejected {
                    url: url(),
                    status: 401,
                    message: String::new(),
                },
                Decision::Abort,
                StatusEffect::Set(ConnectionStatus::AuthRequired),
                "auth_rejected",
            ),
            (
                ConnectorError::BadData {
                    url: url(),
                    position: "record 3".into(),
                    reason: "x".into(),
                },
                Decision::Retry,
                StatusEffect::Unchanged,
                "bad_data",
            ),
            (
                ConnectorError::Config {
                    url: None,
                    reason: "404 on entity path".into(),
                },
                Decision::Abort,
                StatusEffect::Unchanged,
                "config",
            ),
        ];
        for (err, decision, status, code) in cases {
            let failure = Failure::from_connector(&err);
            assert_eq!(failure.decision, decision, "{err}");
            assert_eq!(failure.status, status, "{err}");
            assert_eq!(failure.code, code);
        }
    }
}
