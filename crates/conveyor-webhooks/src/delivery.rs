//! One delivery attempt: sign, POST, classify the answer, and keep a record for the log.
//!
//! The dispatcher (elsewhere) decides when to call [`Deliverer::deliver`] and what to persist;
//! this module only makes the HTTP call safely and says what happened.
//!
//! # One client, checked DNS
//! A [`Deliverer`] owns one `reqwest::Client` for the whole process, so deliveries to the same
//! endpoint reuse pooled keep-alive connections (and TLS sessions) instead of paying a handshake
//! per event. The SSRF check does not need a client per request: the client's DNS resolver is our
//! `CheckedResolver`, which resolves the host itself, refuses the whole host if any resolved
//! address is non-public, and hands the connector exactly the addresses it checked. A rebinding
//! DNS server therefore cannot answer "public" to the check and "private" to the connect: there
//! is only one answer. Pooled connections were opened to checked addresses, so reusing them is
//! safe too. URLs with a literal address skip DNS in the connector, which is why
//! [`UrlPolicy::check_delivery_url`] runs before every attempt as well. Proxies from the environment are
//! disabled (the resolver would check the proxy, not the target) and redirects are not followed
//! (a redirect could point anywhere, and receivers must answer 2xx themselves).

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use conveyor_core::Event;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::{Deserialize, Serialize};

use crate::signing::{HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP};
use crate::{SigningSecrets, UrlPolicy, WebhookError};

/// A receiver must answer within 10 seconds, body included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a response body the delivery log keeps: 1 KiB.
pub const RESPONSE_EXCERPT_LIMIT: usize = 1024;
/// The `User-Agent` of every delivery.
pub const DEFAULT_USER_AGENT: &str = concat!("Conveyor-Webhooks/", env!("CARGO_PKG_VERSION"));

/// How deliveries are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Total time for one attempt: connecting, sending, and reading the answer. Defaults to
    /// [`DEFAULT_TIMEOUT`] (10 s).
    pub timeout: Duration,
    /// Sent as `User-Agent`. Defaults to [`DEFAULT_USER_AGENT`].
    pub user_agent: String,
    /// Which addresses may be called. Defaults to public addresses only.
    pub url_policy: UrlPolicy,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            url_policy: UrlPolicy::PUBLIC_ONLY,
        }
    }
}

/// What one attempt achieved, which decides what the dispatcher does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx: done.
    Delivered,
    /// The receiver answered 410 Gone: stop delivering to this endpoint and disable it.
    Gone,
    /// The receiver answered 429 or 503 with a `Retry-After`: try again after `after` (the
    /// retry schedule bounds it).
    Retry {
        /// The delay the receiver asked for.
        after: Duration,
    },
    /// Anything else (another status, a timeout, a connection error, an address refused by the
    /// URL policy): retry on the normal schedule.
    Failed {
        /// What went wrong, for the delivery log.
        error: String,
    },
}

impl DeliveryOutcome {
    /// A short fixed name for logs and metrics: `delivered`, `gone`, `retry` or `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Gone => "gone",
            DeliveryOutcome::Retry { .. } => "retry",
            DeliveryOutcome::Failed { .. } => "failed",
        }
    }
}

/// One attempt as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// When the attempt started.
    pub attempted_at: DateTime<Utc>,
    /// The URL called.
    pub url: String,
    /// The response status, if a response arrived.
    #[serde(default)]
    pub status: Option<u16>,
    /// From the start of the attempt to the end of reading the answer, in milliseconds.
    pub duration_ms: u64,
    /// Why the attempt failed, if it did.
    #[serde(default)]
    pub error: Option<String>,
    /// The first 1 KiB of the response body (invalid UTF-8 replaced, cut on a char boundary).
    #[serde(default)]
    pub response_body: String,
}

/// The result of [`Deliverer::deliver`]: what to do next, and what to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// What to do next.
    pub outcome: DeliveryOutcome,
    /// What to append to the delivery log.
    pub record: AttemptRecord,
}

/// Makes delivery attempts over one pooled HTTP client.
///
/// Cheap to clone (the client is reference counted); create one per process.
#[derive(Debug, Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    config: DeliveryConfig,
}

impl Deliverer {
    /// A deliverer with its own pooled client whose DNS answers are checked against
    /// `config.url_policy`.
    pub fn new(config: DeliveryConfig) -> Result<Self, WebhookError> {
        let client = reqwest::Client::builder()
            .dns_resolver(CheckedResolver {
                policy: config.url_policy,
            })
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|err| WebhookError::HttpClient {
                reason: error_chain(&err),
            })?;
        Ok(Self { client, config })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &DeliveryConfig {
        &self.config
    }

    /// Delivers `event` (serialized as JSON) to `url`, signed with every active secret.
    pub async fn deliver(
        &self,
        url: &str,
        event: &Event,
        secrets: &SigningSecrets,
    ) -> DeliveryAttempt {
        match serde_json::to_vec(event) {
            Ok(body) => {
                self.deliver_body(url, &event.id.to_string(), body, secrets)
                    .await
            }
            Err(err) => {
                // Serializing an `Event` cannot fail (string keys, no custom serializers that
                // error), but a failed attempt is a better answer than a panic if it ever did.
                let record = AttemptRecord {
                    attempted_at: Utc::now(),
                    url: url.to_owned(),
                    status: None,
                    duration_ms: 0,
                    error: Some(format!("could not serialize the event: {err}")),
                    response_body: String::new(),
                };
                failed(record)
            }
        }
    }

    /// Delivers an already serialized body; `webhook_id` must be the same on every attempt of
    /// one event.
    pub async fn deliver_body(
        &self,
        url: &str,
        webhook_id: &str,
        body: Vec<u8>,
        secrets: &SigningSecrets,
    ) -> DeliveryAttempt {
        let attempted_at = Utc::now();
        let started = Instant::now();
        let mut record = AttemptRecord {
            attempted_at,
            url: url.to_owned(),
            status: None,
            duration_ms: 0,
            error: None,
            response_body: String::new(),
        };

        let checked_url = match self.config.url_policy.check_delivery_url(url) {
            Ok(checked_url) => checked_url,
            Err(err) => {
                record.error = Some(err.to_string());
                return failed(record);
            }
        };
        let signature = secrets.sign(webhook_id, attempted_at, &body);
        let headers = match signature_header_values(
            webhook_id,
            signature.webhook_timestamp,
            &signature.webhook_signature,
        ) {
            Ok(headers) => headers,
            Err(error) => {
                record.error = Some(error);
                return failed(record);
            }
        };
        let [id_value, timestamp_value, signature_value] = headers;

        let sent = self
            .client
            .post(checked_url)
            .timeout(self.config.timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(HEADER_WEBHOOK_ID, id_value)
            .header(HEADER_WEBHOOK_TIMESTAMP, timestamp_value)
            .header(HEADER_WEBHOOK_SIGNATURE, signature_value)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => {
                record.duration_ms = elapsed_ms(started);
                record.error = Some(describe_send_error(&err, self.config.timeout));
                tracing::debug!(url, webhook_id, error = ?record.error, "webhook attempt failed");
                return failed(record);
            }
        };

        let status = response.status();
        record.status = Some(status.as_u16());
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        let (excerpt, body_error) = read_excerpt(response).await;
        record.response_body = excerpt;
        record.duration_ms = elapsed_ms(started);

        let outcome = if status.is_success() {
            DeliveryOutcome::Delivered
        } else if status == reqwest::StatusCode::GONE {
            DeliveryOutcome::Gone
        } else if let (true, Some(after)) = (
            status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::SERVICE_UNAVAILABLE,
            retry_after,
        ) {
            DeliveryOutcome::Retry { after }
        } else {
            let mut error = format!("receiver answered {status}");
            if let Some(body_error) = &body_error {
                error.push_str(&format!(" (and reading its body failed: {body_error})"));
            }
            DeliveryOutcome::Failed { error }
        };
        if let DeliveryOutcome::Failed { error } = &outcome {
            record.error = Some(error.clone());
        }
        tracing::debug!(
            url,
            webhook_id,
            status = status.as_u16(),
            duration_ms = record.duration_ms,
            outcome = outcome.kind(),
            "webhook attempt finished"
        );
        DeliveryAttempt { outcome, record }
    }
}

fn failed(record: AttemptRecord) -> DeliveryAttempt {
    let error = record.error.clone().unwrap_or_default();
    DeliveryAttempt {
        outcome: DeliveryOutcome::Failed { error },
        record,
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn signature_header_values(
    webhook_id: &str,
    timestamp: i64,
    signature: &str,
) -> Result<[HeaderValue; 3], String> {
    let value = |text: &str| {
        HeaderValue::from_str(text)
            .map_err(|_| format!("`{text}` cannot be sent as a header value"))
    };
    Ok([
        value(webhook_id)?,
        HeaderValue::from(timestamp),
        value(signature)?,
    ])
}

/// Reads at most enough of the body for the excerpt, so a receiver answering with megabytes
/// costs us 1 KiB, and returns it with any read error.
async fn read_excerpt(mut response: reqwest::Response) -> (String, Option<String>) {
    // A character starting within the limit ends at most 3 bytes past it; reading that far lets
    // lossy decoding see whole characters before the cut.
    let wanted = RESPONSE_EXCERPT_LIMIT + 3;
    let mut bytes = Vec::new();
    let mut error = None;
    while bytes.len() < wanted {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = wanted - bytes.len();
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(err) => {
                error = Some(error_chain(&err.without_url()));
                break;
            }
        }
    }
    (excerpt(&bytes), error)
}

/// The first [`RESPONSE_EXCERPT_LIMIT`] bytes of `bytes` as text: invalid UTF-8 replaced, never
/// splitting a character.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if text.len() > RESPONSE_EXCERPT_LIMIT {
        let mut cut = RESPONSE_EXCERPT_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// Parses `Retry-After` as delay seconds or an HTTP date (a date in the past means "now").
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn describe_send_error(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("timed out after {} ms", timeout.as_millis());
    }
    // A refusal by the checked resolver travels inside the connect error; name it plainly.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<WebhookError>() {
            return refused.to_string();
        }
        source = current.source();
    }
    let prefix = if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{prefix}: {}", error_chain(err))
}

/// An error and its sources, joined, since reqwest's top-level message alone ("error sending
/// request") does not say what happened.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(current) = source {
        let message = current.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = current.source();
    }
    text
}

/// A DNS resolver that refuses hosts resolving to addresses the URL policy forbids.
///
/// reqwest connects only to the addresses a resolver returns, so checking here closes the gap
/// between "checked" and "connected" that DNS rebinding exploits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckedResolver {
    policy: UrlPolicy,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addresses.is_empty() {
                return Err(format!("`{host}` resolved to no address").into());
            }
            // Any forbidden answer refuses the host: mixing public and private answers is either
            // a misconfiguration or an attempt to slip a private address past the check.
            for address in &addresses {
                policy
                    .check_address(address.ip())
                    .map_err(|_| WebhookError::UrlRefused {
                        reason: format!(
                            "host `{host}` resolves to {}, which is not a public address",
                            address.ip()
                        ),
                    })?;
            }
            let addresses: Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_is_capped_on_a_char_boundary() {
        assert_eq!(excerpt(b"short"), "short");
        let ascii = vec![b'a'; 5000];
        assert_eq!(excerpt(&ascii).len(), RESPONSE_EXCERPT_LIMIT);
        // 'é' is two bytes: 1023 ASCII bytes then 'é' would straddle the limit.
        let mut text = "a".repeat(1023);
        text.push_str("ééé");
        let cut = excerpt(text.as_bytes());
        assert_eq!(cut.len(), 1023);
        assert!(cut.chars().all(|c| c == 'a'));
        // Invalid UTF-8 is replaced, not an error.
        assert_eq!(excerpt(b"ok \xff\xfe done"), "ok \u{fffd}\u{fffd} done");
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_784_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn default_config_is_ten_seconds_and_public_only() {
        let config = DeliveryConfig::default();
        assert_eq!(config.timeout, Duration::from_secs(10));
        assert_eq!(config.url_policy, UrlPolicy::PUBLIC_ONLY);
        assert!(config.user_agent.starts_with("Conveyor-Webhooks/"));
    }
}
