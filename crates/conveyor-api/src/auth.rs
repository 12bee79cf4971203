//! Authentication, roles and the per-key rate limit.
//!
//! Every `/v1` route except the OpenAPI document sits behind [`middleware`]: it reads
//! `Authorization: Bearer cvk_...`, finds the key (the store keeps only SHA-256 hashes of
//! secrets), spends one request of the key's budget in Redis (shared by every replica), and
//! puts the [`Caller`] in the request for the handler. Every answer to an authenticated request
//! carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; a refusal is 429
//! RATE_LIMIT_EXCEEDED with `Retry-After`.
//!
//! Handlers check the caller's role with [`Caller::require`]: admin may do everything,
//! developer works with its tenant's connections, syncs and records, operator with queues, dead
//! letters and status.
//!
//! A replica remembers an authenticated key for `CONVEYOR_API_KEY_CACHE` (5 s by default), so
//! the hot path (manual syncs) does not pay two Redis round trips per request to authenticate.
//! Revoking through a replica forgets the key there at once; other replicas stop accepting it
//! within the cache period.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use conveyor_core::{ApiKeyId, ErrorCode, TenantId};
use conveyor_store::{ApiKey, ApiRole, RateLimitDecision, StoreError};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// Entries the key cache holds before it starts over (bounds memory against key churn).
const KEY_CACHE_CAPACITY: usize = 10_000;

/// Who is calling: the API key, its tenant and its role.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's id (never its secret).
    pub api_key_id: ApiKeyId,
    /// The tenant the key acts for; it sees only this tenant's connections.
    pub tenant_id: TenantId,
    /// What the key may do.
    pub role: ApiRole,
}

/// What a route works on, for role checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Creating, reading, changing and deleting connections.
    Connections,
    /// Asking for syncs.
    Syncs,
    /// Reading sync runs and connection status (what operators watch too).
    Status,
    /// Reading synced records.
    Records,
    /// Queue statistics and dead letters (fleet-wide).
    Operations,
    /// Managing API keys.
    ApiKeys,
}

impl Area {
    fn allows(self, role: ApiRole) -> bool {
        match role {
            ApiRole::Admin => true,
            ApiRole::Developer => matches!(
                self,
                Area::Connections | Area::Syncs | Area::Status | Area::Records
            ),
            ApiRole::Operator => matches!(self, Area::Operations | Area::Status),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Area::Connections => "manage connections",
            Area::Syncs => "start syncs",
            Area::Status => "read sync and connection status",
            Area::Records => "read records",
            Area::Operations => "operate queues and dead letters",
            Area::ApiKeys => "manage API keys",
        }
    }
}

impl Caller {
    /// 403 PERMISSION_DENIED unless the caller's role may work on `area`.
    pub fn require(&self, area: Area) -> Result<(), ApiError> {
        if area.allows(self.role) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "an API key with role `{}` may not {}",
                    self.role,
                    area.describe()
                ),
            ))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            // Only reachable if a handler that needs a caller is mounted outside the middleware.
            ApiError::internal(anyhow::anyhow!("route is not behind the auth middleware"))
        })
    }
}

/// Authenticated keys by secret hash, remembered for a short time.
#[derive(Debug)]
pub(crate) struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (ApiKey, Instant)>>,
}

impl KeyCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        KeyCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, hash: &[u8; 32]) -> Option<ApiKey> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(key, _)| key.clone())
    }

    fn put(&self, hash: [u8; 32], key: ApiKey) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= KEY_CACHE_CAPACITY {
            entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if entries.len() >= KEY_CACHE_CAPACITY {
                entries.clear();
            }
        }
        entries.insert(hash, (key, Instant::now()));
    }

    /// Forgets a key (after revoking it).
    pub(crate) fn forget(&self, api_key_id: &ApiKeyId) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (key, _)| key.id != *api_key_id);
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let missing = || {
        ApiError::new(
            ErrorCode::AuthenticationFailed,
            "missing API key: send `Authorization: Bearer cvk_...`",
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    let (scheme, secret) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || secret.trim().is_empty() {
        return Err(missing());
    }
    Ok(secret.trim())
}

async fn authenticate(state: &AppState, secret: &str) -> Result<ApiKey, ApiError> {
    let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    if let Some(key) = state.key_cache().get(&hash) {
        return Ok(key);
    }
    let backends = state.backends().await?;
    match backends.store.authenticate_api_key(secret).await {
        Ok(key) => {
            state.key_cache().put(hash, key.clone());
            Ok(key)
        }
        Err(StoreError::NotFound { .. }) => Err(ApiError::new(
            ErrorCode::AuthenticationFailed,
            "unknown or revoked API key",
        )),
        Err(err) => Err(err.into()),
    }
}

/// Adds the `RateLimit-*` headers (seconds, rounded up) describing `decision`.
fn rate_limit_headers(headers: &mut HeaderMap, limit: u32, decision: &RateLimitDecision) {
    let reset = decision.reset_after.as_millis().div_ceil(1_000);
    for (name, value) in [
        ("ratelimit-limit", u128::from(limit)),
        ("ratelimit-remaining", u128::from(decision.remaining)),
        ("ratelimit-reset", reset),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
            headers.insert(name, value);
        }
    }
}

/// Middleware on every protected route: authenticate, rate-limit, hand the [`Caller`] on.
pub(crate) async fn middleware(mut request: Request, next: Next) -> Response {
    let Some(state) = request.extensions().get::<AppState>().cloned() else {
        return ApiError::internal(anyhow::anyhow!("AppState extension missing")).into_response();
    };
    let secret = match bearer(request.headers()) {
        Ok(secret) => secret.to_owned(),
        Err(err) => return err.into_response(),
    };
    let key = match authenticate(&state, &secret).await {
        Ok(key) => key,
        Err(err) => return err.into_response(),
    };
    drop(secret);
    let policy = state.rate_limit();
    let decision = match state.backends().await {
        Ok(backends) => backends.store.take_rate_limit_token(&key.id, policy).await,
        Err(err) => return err.into_response(),
    };
    let decision = match decision {
        Ok(decision) => decision,
        Err(err) => return ApiError::from(err).into_response(),
    };
    tracing::Span::current().record("api_key_id", tracing::field::display(&key.id));
    let mut response = if decision.allowed {
        request.extensions_mut().insert(Caller {
            api_key_id: key.id,
            tenant_id: key.tenant_id,
            role: key.role,
        });
        next.run(request).await
    } else {
        tracing::info!(api_key_id = %key.id, "rate limit exceeded");
        ApiError::new(
            ErrorCode::RateLimitExceeded,
            format!(
                "this API key may make {} requests a minute (bursts of {}); retry after the \
                 Retry-After delay",
                policy.per_minute, policy.burst
            ),
        )
        .with_retry_after(decision.retry_after)
        .into_response()
    };
    rate_limit_headers(response.headers_mut(), policy.per_minute, &decision);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_reach_their_areas_only() {
        use Area::*;
        let all = [Connections, Syncs, Status, Records, Operations, ApiKeys];
        for area in all {
            assert!(area.allows(ApiRole::Admin));
        }
        let developer: Vec<_> = all
            .into_iter()
            .filter(|a| a.allows(ApiRole::Developer))
            .collect();
        assert_eq!(developer, [Connections, Syncs, Status, Records]);
        let operator: Vec<_> = all
            .into_iter()
            .filter(|a| a.allows(ApiRole::Operator))
            .collect();
        assert_eq!(operator, [Status, Operations]);
    }

    #[test]
    fn bearer_tokens_are_read_strictly() {
        let mut headers = HeaderMap::new();
        assert!(bearer(&headers).is_err());
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(bearer(&headers).is_err());
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(bearer(&headers).is_err());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer cvk_abc"),
        );
        assert_eq!(bearer(&headers).unwrap(), "cvk_abc");
    }
}
