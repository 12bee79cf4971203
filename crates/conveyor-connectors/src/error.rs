//! The connector's error, classified by what the sync engine will do about it.
//!
//! The engine does not care which library failed; it cares whether to retry with backoff
//! (`Unreachable`, `ServerError`), snooze until a given time (`RateLimited`), or stop retrying
//! and tell someone (`AuthRejected`, `BadData`, `Config`). Messages carry the URL (never with
//! credentials: connectors send secrets only in headers and strip user info from URLs) and never a
//! header value.

use std::time::Duration;

/// Why talking to a source system failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// The system could not be reached: connection refused or reset, DNS failure, timeout.
    /// Retry with backoff; the connection is `offline` meanwhile.
    #[error("source unreachable at {url}: {reason}")]
    Unreachable {
        /// The URL asked for.
        url: String,
        /// What went wrong, without secrets.
        reason: String,
    },
    /// The system asked us to slow down (429). Snooze the job for `retry_after`.
    #[error("source rate limited the request to {url}; retry after {}s", retry_after.as_secs())]
    RateLimited {
        /// The URL asked for.
        url: String,
        /// How long the source asked us to wait (its `Retry-After`, or a default).
        retry_after: Duration,
    },
    /// The system rejected the credentials (401/403), after one token refresh where the
    /// credentials allow one. Retrying cannot help: the connection needs new credentials.
    #[error("source rejected the credentials with status {status} at {url}: {message}")]
    AuthRejected {
        /// The URL asked for (or the token endpoint).
        url: String,
        /// The HTTP status, 401 or 403 (400 from a token endpoint).
        status: u16,
        /// The source's own explanation, shortened.
        message: String,
    },
    /// The system failed (5xx). Retry with backoff.
    #[error("source failed with status {status} at {url}: {message}")]
    ServerError {
        /// The URL asked for.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The source's own explanation, shortened.
        message: String,
    },
    /// A page could not be understood: not JSON, the wrong shape, a record without its key or
    /// change time. Retrying the same page gives the same answer, so the job stops and says
    /// where.
    #[error("malformed data from {url} at {position}: {reason}")]
    BadData {
        /// The URL of the page.
        url: String,
        /// Where in the page (`line 3 column 17`, `record 12, field LastChangeDateTime`).
        position: String,
        /// What was wrong.
        reason: String,
    },
    /// The connection's configuration is wrong: unknown entity path (404), a filter the
    /// source refuses (400), invalid settings. Retrying cannot help until someone fixes it.
    #[error("configuration problem{}: {reason}", url.as_deref().map(|u| format!(" at {u}")).unwrap_or_default())]
    Config {
        /// The URL asked for, when a request revealed the problem.
        url: Option<String>,
        /// What is wrong.
        reason: String,
    },
}

impl ConnectorError {
    /// Whether the sync engine should try the job again later (with backoff, or after
    /// [`ConnectorError::retry_after`]). `BadData`, `AuthRejected` and `Config` are not: the same
    /// request would fail the same way.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ConnectorError::Unreachable { .. }
                | ConnectorError::RateLimited { .. }
                | ConnectorError::ServerError { .. }
        )
    }

    /// How long the source asked us to wait, for `RateLimited`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ConnectorError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// A short stable name of the class, for logs and metrics labels.
    pub fn class(&self) -> &'static str {
        match self {
            ConnectorError::Unreachable { .. } => "unreachable",
            ConnectorError::RateLimited { .. } => "rate_limited",
            ConnectorError::AuthRejected { .. } => "auth_rejected",
            ConnectorError::ServerError { .. } => "server_error",
            ConnectorError::BadData { .. } => "bad_data",
            ConnectorError::Config { .. } => "config",
        }
    }

    pub(crate) fn config(reason: impl Into<String>) -> Self {
        ConnectorError::Config {
            url: None,
            reason: reason.into(),
        }
    }
}

/// Shortens a source's explanation so an error (and the log line carrying it) stays readable.
pub(crate) fn shorten(text: &str) -> String {
    const LIMIT: usize = 300;
    let trimmed = text.trim();
    if trimmed.chars().count() <= LIMIT {
        trimmed.to_owned()
    } else {
        let mut short: String = trimmed.chars().take(LIMIT).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_classes_are_the_transient_ones() {
        let url = "http://127.0.0.1:1/x".to_owned();
        let cases = [
            (
                ConnectorError::Unreachable {
                    url: url.clone(),
                    reason: "refused".into(),
                },
                true,
            ),
            (
                ConnectorError::RateLimited {
                    url: url.clone(),
                    retry_after: Duration::from_secs(60),
                },
                true,
            ),
            (
                ConnectorError::ServerError {
                    url: url.clone(),
                    status: 503,
                    message: String::new(),
                },
                true,
            ),
            (
                ConnectorError::AuthRejected {
                    url: url.clone(),
                    status: 401,
                    message: String::new(),
                },
                false,
            ),
            (
                ConnectorError::BadData {
                    url: url.clone(),
                    position: "line 1 column 2".into(),
                    reason: "eof".into(),
                },
                false,
            ),
            (ConnectorError::config("bad"), false),
        ];
        for (error, retryable) in cases {
            assert_eq!(error.is_retryable(), retryable, "{error}");
        }
    }

    #[test]
    fn messages_name_url_and_position() {
        let error = ConnectorError::BadData {
            url: "http://h/p?page=2".into(),
            position: "record 3, field changedate".into(),
            reason: "not a timestamp".into(),
        };
        assert_eq!(
            error.to_string(),
            "malformed data from http://h/p?page=2 at record 3, field changedate: not a timestamp"
        );
        assert_eq!(
            ConnectorError::config("no such entity").to_string(),
            "configuration problem: no such entity"
        );
        assert_eq!(shorten(&"x".repeat(400)).chars().count(), 301);
    }
}
