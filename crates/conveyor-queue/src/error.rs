//! The queue's error type: each variant says what the caller can do about it.

/// What can go wrong talking to the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis could not be reached or answered with an error; retry later.
    #[error("redis is unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
    /// A payload could not be turned into JSON (or back); the input must be fixed.
    #[error("job payload is not valid for this queue: {0}")]
    BadPayload(#[from] serde_json::Error),
    /// The configuration cannot work (e.g. a zero lease); fix it before starting.
    #[error("invalid queue configuration: {0}")]
    InvalidConfig(String),
    /// The apalis worker runtime stopped with an error.
    #[error("the worker stopped with an error: {0}")]
    Worker(String),
    /// Redis returned data the queue did not write; someone else wrote to our keys.
    #[error("unexpected data in redis: {0}")]
    Corrupt(String),
}

impl QueueError {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Unavailable(_))
    }
}
