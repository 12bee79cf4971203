//! One page request: authentication, a timeout, classification of the answer, and a few quick
//! in-process retries.
//!
//! A blip (a refused connection while a load balancer restarts, a 503, a 429 asking for two
//! seconds) should not fail a sync that has read half a million records, so each request is
//! retried here a few times with short exponential backoff and jitter. Anything longer is the
//! queue's business: the error is returned, classified, and the job is retried or snoozed there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes_limit::read_limited;
use chrono::Utc;
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};

use crate::auth::Authenticator;
use crate::error::{ConnectorError, shorten};
use crate::profile::{display_url, error_message};

/// How a single request is retried in-process before its error is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt. Defaults to 3.
    pub max_retries: usize,
    /// First backoff delay. Defaults to 200 ms.
    pub min_delay: Duration,
    /// Longest backoff delay. Defaults to 2 s.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured by waiting in-process; a longer one is returned as
    /// `RateLimited` for the queue to snooze the job. Defaults to 5 s.
    pub max_in_process_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            max_in_process_wait: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No in-process retries: every failure is returned at once.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }
}

/// The default wait when a 429 carries no `Retry-After`.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// The largest page body accepted. Pages are bounded by the page size; this only protects the
/// worker from a source that streams without end.
const MAX_BODY_BYTES: usize = 512 * 1024 * 1024;

/// What a page request needs.
#[derive(Debug)]
pub(crate) struct PageRequest<'a> {
    pub(crate) client: &'a reqwest::Client,
    pub(crate) auth: &'a Authenticator,
    pub(crate) url: &'a Url,
    pub(crate) headers: &'a [(&'static str, String)],
    pub(crate) timeout: Duration,
    pub(crate) policy: RetryPolicy,
}

/// Fetches a page body, retrying transient failures in-process.
pub(crate) async fn fetch(request: PageRequest<'_>) -> Result<Vec<u8>, ConnectorError> {
    let policy = request.policy;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.max_retries)
        .with_jitter();
    // A 401 is answered by one token refresh per page, not one per retry.
    let refreshed = AtomicBool::new(false);
    (|| attempt(&request, &refreshed))
        .retry(backoff)
        .when(|error| retry_in_process(error, policy))
        .adjust(|error, delay| match (error, delay) {
            // Honour the source's own short wait instead of our backoff.
            (ConnectorError::RateLimited { retry_after, .. }, Some(_)) => Some(*retry_after),
            (_, delay) => delay,
        })
        .notify(|error, delay| {
            tracing::debug!(
                url = %display_url(request.url),
                error_class = error.class(),
                error = %error,
                delay_ms = delay.as_millis() as u64,
                "retrying source request"
            );
        })
        .await
}

fn retry_in_process(error: &ConnectorError, policy: RetryPolicy) -> bool {
    match error {
        ConnectorError::RateLimited { retry_after, .. } => {
            *retry_after <= policy.max_in_process_wait
        }
        other => other.is_retryable(),
    }
}

async fn attempt(
    request: &PageRequest<'_>,
    refreshed: &AtomicBool,
) -> Result<Vec<u8>, ConnectorError> {
    let url_text = display_url(request.url);
    loop {
        let auth_header = request.auth.header(request.client, request.timeout).await?;
        let mut builder = request
            .client
            .get(request.url.clone())
            .timeout(request.timeout);
        for (name, value) in request.headers {
            builder = builder.header(*name, value);
        }
        if let Some((name, value)) = &auth_header {
            builder = builder.header(name.clone(), value.clone());
        }
        let response = builder
            .send()
            .await
            .map_err(|error| transport_error(&url_text, &error))?;
        let status = response.status();
        if status.is_success() {
            return read_limited(response, MAX_BODY_BYTES)
                .await
                .map_err(|reason| match reason {
                    BodyError::Transport(error) => transport_error(&url_text, &error),
                    BodyError::TooLarge => ConnectorError::BadData {
                        url: url_text.clone(),
                        position: format!("byte {MAX_BODY_BYTES}"),
                        reason: "the page is larger than any page should be".into(),
                    },
                });
        }
        if status == StatusCode::UNAUTHORIZED
            && request.auth.can_refresh()
            && !refreshed.swap(true, Ordering::SeqCst)
        {
            if let Some((_, rejected)) = &auth_header {
                request.auth.invalidate(rejected).await;
            }
            tracing::debug!(url = %url_text, "source answered 401; refreshing the token once");
            continue;
        }
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await.unwrap_or_default();
        return Err(status_error(
            &url_text,
            status.as_u16(),
            retry_after,
            &body,
            false,
        ));
    }
}

/// Classifies an error status. `token_endpoint` makes a 400 mean rejected credentials (OAuth2
/// answers a bad client secret with 400 `invalid_client`).
pub(crate) fn status_error(
    url: &str,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    token_endpoint: bool,
) -> ConnectorError {
    let message = shorten(&error_message(body));
    match status {
        401 | 403 => ConnectorError::AuthRejected {
            url: url.to_owned(),
            status,
            message,
        },
        400 if token_endpoint => ConnectorError::AuthRejected {
            url: url.to_owned(),
            status,
            message,
        },
        429 => ConnectorError::RateLimited {
            url: url.to_owned(),
            retry_after: retry_after.unwrap_or(DEFAULT_RATE_LIMIT_WAIT),
        },
        408 => ConnectorError::Unreachable {
            url: url.to_owned(),
            reason: "the source timed out the request (408)".into(),
        },
        500..=599 => ConnectorError::ServerError {
            url: url.to_owned(),
            status,
            message,
        },
        404 => ConnectorError::Config {
            url: Some(url.to_owned()),
            reason: format!("the source has no such resource (404): {message}"),
        },
        _ => ConnectorError::Config {
            url: Some(url.to_owned()),
            reason: format!("the source refused the request ({status}): {message}"),
        },
    }
}

/// Classifies a failure to get an answer at all. The reason is built from the error kind and
/// its sources without the URL reqwest would add (ours is already sanitized).
pub(crate) fn transport_error(url: &str, error: &reqwest::Error) -> ConnectorError {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the connection broke while reading the answer"
    } else {
        "the request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    let reason = if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", shorten(&detail))
    };
    ConnectorError::Unreachable {
        url: url.to_owned(),
        reason,
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = at.with_timezone(&Utc) - Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

pub(crate) enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

mod bytes_limit {
    //! Reading a body with a ceiling, so a source that never stops sending cannot exhaust memory.

    use super::BodyError;

    /// Reads a body chunk by chunk, stopping at `limit` bytes.
    pub(crate) async fn read_limited(
        mut response: reqwest::Response,
        limit: usize,
    ) -> Result<Vec<u8>, BodyError> {
        let hint = response.content_length().unwrap_or(0) as usize;
        if hint > limit {
            return Err(BodyError::TooLarge);
        }
        let mut body = Vec::with_capacity(hint);
        while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
            if body.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_classes() {
        let class = |status: u16| status_error("u", status, None, b"", false).class();
        assert_eq!(class(401), "auth_rejected");
        assert_eq!(class(403), "auth_rejected");
        assert_eq!(class(429), "rate_limited");
        assert_eq!(class(500), "server_error");
        assert_eq!(class(503), "server_error");
        assert_eq!(class(404), "config");
        assert_eq!(class(400), "config");
        assert_eq!(class(408), "unreachable");
        assert_eq!(
            status_error("u", 400, None, b"", true).class(),
            "auth_rejected"
        );
        assert_eq!(
            status_error("u", 429, None, b"", false).retry_after(),
            Some(DEFAULT_RATE_LIMIT_WAIT)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn only_short_rate_limits_wait_in_process() {
        let policy = RetryPolicy::default();
        let limited = |secs| ConnectorError::RateLimited {
            url: "u".into(),
            retry_after: Duration::from_secs(secs),
        };
        assert!(retry_in_process(&limited(1), policy));
        assert!(!retry_in_process(&limited(120), policy));
        assert!(!retry_in_process(&ConnectorError::config("x"), policy));
    }
}
