//! Authentication to a source: the header each request carries, and the OAuth2 token cache.
//!
//! Every header value built here is marked sensitive, so `Debug` output of a request (and
//! therefore any log line printing one) shows `Sensitive` instead of the secret. Errors from the
//! token endpoint carry its URL and status, never the client secret.

use std::time::{Duration, Instant};

use base64_encode::encode as base64;
use conveyor_core::Credentials;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::error::{ConnectorError, shorten};

/// An OAuth2 token is refreshed this long before the server says it expires, so a request does
/// not leave with a token that expires on the way.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// Builds the authentication header of requests and keeps the OAuth2 token.
#[derive(Debug)]
pub(crate) struct Authenticator {
    credentials: Credentials,
    /// The cached OAuth2 token. A mutex rather than a lock-free cell because a refresh must
    /// happen once even when several requests find the token expired at the same time.
    token: Mutex<Option<CachedToken>>,
}

#[derive(Debug, Clone)]
struct CachedToken {
    header: HeaderValue,
    expires_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<ExpiresIn>,
}

/// Some servers send `expires_in` as a number, others as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum ExpiresIn {
    Number(u64),
    Text(String),
}

impl Authenticator {
    pub(crate) fn new(credentials: Credentials) -> Self {
        Authenticator {
            credentials,
            token: Mutex::new(None),
        }
    }

    /// Whether a 401 may be cured by fetching a new token.
    pub(crate) fn can_refresh(&self) -> bool {
        matches!(
            self.credentials,
            Credentials::OAuth2ClientCredentials { .. }
        )
    }

    /// The header to send, fetching an OAuth2 token if none is cached or it expired.
    pub(crate) async fn header(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<Option<(HeaderName, HeaderValue)>, ConnectorError> {
        let value = match &self.credentials {
            Credentials::None => return Ok(None),
            Credentials::Basic { username, password } => {
                let encoded = base64(format!("{username}:{}", password.expose()).as_bytes());
                sensitive(&format!("Basic {encoded}"))?
            }
            Credentials::Bearer { token } => sensitive(&format!("Bearer {}", token.expose()))?,
            Credentials::ApiKey { header, key } => {
                let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                    ConnectorError::config(format!("`{header}` is not a valid header name"))
                })?;
                return Ok(Some((name, sensitive(key.expose())?)));
            }
            Credentials::OAuth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => {
                let mut cached = self.token.lock().await;
                match cached.as_ref() {
                    Some(token) if token.expires_at > Instant::now() => token.header.clone(),
                    _ => {
                        let token = fetch_token(
                            client,
                            timeout,
                            token_url,
                            client_id,
                            client_secret.expose(),
                            scope.as_deref(),
                        )
                        .await?;
                        let header = token.header.clone();
                        *cached = Some(token);
                        header
                    }
                }
            }
            _ => return Err(ConnectorError::config("unsupported credential kind")),
        };
        Ok(Some((AUTHORIZATION, value)))
    }

    /// Forgets the cached token if it is still the one that was rejected (another request may
    /// have refreshed it meanwhile).
    pub(crate) async fn invalidate(&self, rejected: &HeaderValue) {
        let mut cached = self.token.lock().await;
        if cached
            .as_ref()
            .is_some_and(|token| token.header == rejected)
        {
            *cached = None;
        }
    }
}

fn sensitive(text: &str) -> Result<HeaderValue, ConnectorError> {
    let mut value = HeaderValue::from_str(text).map_err(|_| {
        ConnectorError::config("credentials contain characters a header cannot carry")
    })?;
    value.set_sensitive(true);
    Ok(value)
}

async fn fetch_token(
    client: &reqwest::Client,
    timeout: Duration,
    token_url: &str,
    client_id: &str,
    client_secret: &str,
    scope: Option<&str>,
) -> Result<CachedToken, ConnectorError> {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", client_secret),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let response = client
        .post(token_url)
        .timeout(timeout)
        .header("accept", "application/json")
        .form(&form)
        .send()
        .await
        .map_err(|error| crate::http::transport_error(token_url, &error))?;
    let status = response.status();
    let retry_after = crate::http::retry_after(response.headers());
    let body = response
        .bytes()
        .await
        .map_err(|error| crate::http::transport_error(token_url, &error))?;
    if !status.is_success() {
        return Err(crate::http::status_error(
            token_url,
            status.as_u16(),
            retry_after,
            &body,
            // A token endpoint answers bad client credentials with 400 or 401.
            true,
        ));
    }
    let token: TokenResponse =
        serde_json::from_slice(&body).map_err(|error| ConnectorError::BadData {
            url: token_url.to_owned(),
            position: format!("line {} column {}", error.line(), error.column()),
            reason: format!("token response is not an OAuth2 token: {error}"),
        })?;
    let lifetime = match token.expires_in {
        Some(ExpiresIn::Number(seconds)) => Duration::from_secs(seconds),
        Some(ExpiresIn::Text(text)) => text
            .trim()
            .parse()
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(300)),
        // No lifetime given: keep it a while; a 401 refreshes it anyway.
        None => Duration::from_secs(300),
    };
    let usable_for = lifetime.saturating_sub(EXPIRY_MARGIN.min(lifetime / 10));
    Ok(CachedToken {
        header: sensitive(&format!("Bearer {}", token.access_token)).map_err(|_| {
            ConnectorError::AuthRejected {
                url: token_url.to_owned(),
                status: status.as_u16(),
                message: shorten("the token endpoint returned a token that cannot be sent"),
            }
        })?,
        expires_at: Instant::now() + usable_for,
    })
}

mod base64_encode {
    //! Standard base64 (RFC 4648 with padding), for basic authentication: small enough to keep
    //! here rather than add a dependency.

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(crate) fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let symbols = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
            for (i, symbol) in symbols.iter().enumerate() {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[*symbol as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn rfc4648_vectors() {
            let cases = [
                ("", ""),
                ("f", "Zg=="),
                ("fo", "Zm8="),
                ("foo", "Zm9v"),
                ("foob", "Zm9vYg=="),
                ("fooba", "Zm9vYmE="),
                ("foobar", "Zm9vYmFy"),
            ];
            for (input, expected) in cases {
                assert_eq!(super::encode(input.as_bytes()), expected);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn headers_are_sensitive_and_debug_hides_secrets() {
        let client = reqwest::Client::new();
        let timeout = Duration::from_secs(1);
        let basic = Authenticator::new(Credentials::Basic {
            username: "svc".into(),
            password: "hunter2".into(),
        });
        let (name, value) = basic.header(&client, timeout).await.unwrap().unwrap();
        assert_eq!(name, AUTHORIZATION);
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().unwrap(), "Basic c3ZjOmh1bnRlcjI=");
        assert!(!format!("{value:?}").contains("c3Zj"));
        assert!(!format!("{basic:?}").contains("hunter2"));

        let key = Authenticator::new(Credentials::ApiKey {
            header: "apikey".into(),
            key: "k-123".into(),
        });
        let (name, value) = key.header(&client, timeout).await.unwrap().unwrap();
        assert_eq!(name.as_str(), "apikey");
        assert!(value.is_sensitive());
        assert!(!key.can_refresh());
        assert!(
            Authenticator::new(Credentials::None)
                .header(&client, timeout)
                .await
                .unwrap()
                .is_none()
        );
    }
}
