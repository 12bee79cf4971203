//! The one error type of the store, shaped by what the caller does next.
//!
//! Callers branch on the variant: `NotFound` becomes a 404 or "skip this connection",
//! `Conflict` a 409 or "reload and try again", `Unavailable` a retry with backoff (Redis is down
//! or slow), `Corrupt` and `Crypto` an alert (retrying cannot fix bad bytes or a missing key), and
//! `Invalid` a bug report or a 400 (the caller passed something the store refuses).

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The thing does not exist (or no longer exists).
    #[error("{what} `{id}` not found")]
    NotFound {
        /// What was looked up ("connection", "sync run", ...).
        what: &'static str,
        /// Its id or key.
        id: String,
    },
    /// The write conflicts with the current state: a stale `version`, an id that already exists.
    #[error("{what} `{id}`: {detail}")]
    Conflict {
        /// What was written.
        what: &'static str,
        /// Its id.
        id: String,
        /// What conflicted.
        detail: String,
    },
    /// Redis could not be reached or answered with a transient error; retry later.
    #[error("redis is unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
    /// Data read from Redis does not have the shape this version writes.
    #[error("corrupt data at `{key}`: {detail}")]
    Corrupt {
        /// The Redis key (or key and field) holding the bad data.
        key: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Credentials could not be decrypted: unknown key id, or ciphertext that fails
    /// authentication (tampered, or encrypted under a different key).
    #[error("credentials of connection `{connection_id}` cannot be decrypted: {detail}")]
    Crypto {
        /// The connection whose credentials failed.
        connection_id: String,
        /// Why, without any key material.
        detail: String,
    },
    /// The caller passed something the store refuses (a bad cursor, a record of the wrong
    /// entity, a malformed encryption key).
    #[error("invalid input: {0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether the same call may succeed later without any change: only when Redis itself was
    /// unavailable.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    pub(crate) fn not_found(what: &'static str, id: impl ToString) -> Self {
        StoreError::NotFound {
            what,
            id: id.to_string(),
        }
    }

    pub(crate) fn corrupt(key: impl Into<String>, detail: impl ToString) -> Self {
        StoreError::Corrupt {
            key: key.into(),
            detail: detail.to_string(),
        }
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(err: redis::RedisError) -> Self {
        use redis::{ErrorKind, ServerErrorKind};
        // Transport failures and the server's "not now" answers are worth retrying; anything
        // else (WRONGTYPE, a script error on unexpected data) means the stored bytes are not what
        // this code wrote, and retrying would fail the same way.
        let transient = err.is_io_error()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_timeout()
            || err.is_cluster_error()
            || matches!(
                err.kind(),
                ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
            )
            || err.code() == Some("OOM")
            || err.code() == Some("BUSY");
        if transient {
            StoreError::Unavailable(err)
        } else {
            StoreError::Corrupt {
                key: "(redis reply)".to_owned(),
                detail: err.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_is_retryable() {
        let io = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert!(StoreError::from(io).is_retryable());
        assert!(!StoreError::not_found("connection", "conn_x").is_retryable());
        assert!(!StoreError::corrupt("k", "bad").is_retryable());
        assert!(!StoreError::Invalid("x".into()).is_retryable());
    }
}
