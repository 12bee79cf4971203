//! A request rate limiter shared by every API replica: one budget per API key, kept in Redis.
//!
//! It is a GCRA (generic cell rate algorithm) limiter, which behaves like a token bucket of
//! `burst` tokens refilled at `per_minute` tokens a minute but stores a single number per key:
//! the theoretical arrival time (TAT) of the next request, in ms. A request is allowed when
//! taking it does not push the TAT more than `burst` emission intervals past now. The check and
//! the update are one Lua script, so replicas racing on one key never both spend the last token,
//! and the clock is the Redis server's (`TIME`), so replicas with skewed clocks agree.
//!
//! Key: `conveyor:rate_limit:{api_key_id}` (string, TAT ms). It expires when the bucket would be
//! full again, so idle keys leave nothing behind.

use std::sync::LazyLock;
use std::time::Duration;

use conveyor_core::ApiKeyId;
use redis::Script;

use crate::{Store, StoreError};

/// The Redis key holding `api_key_id`'s TAT. Spelled here, beside the only code that uses it.
fn rate_limit_key(api_key_id: &ApiKeyId) -> String {
    format!("conveyor:rate_limit:{api_key_id}")
}

/// How many requests one key may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitPolicy {
    /// Sustained rate, in requests per minute (at least 1).
    pub per_minute: u32,
    /// Requests that may be made at once after a quiet period (at least 1).
    pub burst: u32,
}

impl RateLimitPolicy {
    /// Milliseconds between two requests at the sustained rate (the emission interval), at
    /// least one.
    fn interval_ms(&self) -> u64 {
        (60_000 / u64::from(self.per_minute.max(1))).max(1)
    }
}

/// The answer to one request for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitDecision {
    /// Whether the request may go ahead (a token was spent).
    pub allowed: bool,
    /// Requests that could still be made right now.
    pub remaining: u32,
    /// How long until the budget is full again.
    pub reset_after: Duration,
    /// When refused: how long until one request would be allowed. Zero when allowed.
    pub retry_after: Duration,
}

/// KEYS: the key's TAT. ARGV: interval ms, burst. Returns {allowed, remaining, reset ms, retry
/// ms}.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local interval = tonumber(ARGV[1])
        local burst = tonumber(ARGV[2])
        local window = interval * burst
        local tat = tonumber(redis.call('GET', KEYS[1]) or now)
        if tat < now then tat = now end
        local new_tat = tat + interval
        local allow_at = new_tat - window
        if now < allow_at then
          local remaining = 0
          return {0, remaining, tat - now, allow_at - now}
        end
        redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
        local remaining = math.floor((now - allow_at) / interval)
        return {1, remaining, new_tat - now, 0}
        ",
    )
});

impl Store {
    /// Spends one request of `api_key_id`'s budget under `policy`, or says how long to wait.
    ///
    /// Every replica calling this for the same key shares one budget. Fails only when Redis is
    /// unavailable.
    pub async fn take_rate_limit_token(
        &self,
        api_key_id: &ApiKeyId,
        policy: RateLimitPolicy,
    ) -> Result<RateLimitDecision, StoreError> {
        let (allowed, remaining, reset_ms, retry_ms): (i64, i64, i64, i64) = TAKE
            .key(rate_limit_key(api_key_id))
            .arg(policy.interval_ms())
            .arg(policy.burst.max(1))
            .invoke_async(&mut self.redis())
            .await?;
        let millis = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        Ok(RateLimitDecision {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            reset_after: millis(reset_ms),
            retry_after: millis(retry_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_a_minute_over_the_rate_and_never_zero() {
        let policy = |per_minute| RateLimitPolicy {
            per_minute,
            burst: 1,
        };
        assert_eq!(policy(60).interval_ms(), 1_000);
        assert_eq!(policy(600).interval_ms(), 100);
        assert_eq!(policy(1_000_000).interval_ms(), 1);
        assert_eq!(policy(0).interval_ms(), 60_000);
    }

    #[test]
    fn the_key_carries_the_api_key_id_and_no_hash_tag() {
        let id = ApiKeyId::new();
        let key = rate_limit_key(&id);
        assert_eq!(key, format!("conveyor:rate_limit:{id}"));
        assert!(!key.contains('{'));
    }
}
