//! The fleet-wide per-connection request semaphore: at most N requests to one connection's
//! source system at a time, whichever workers make them.
//!
//! Holders live in a ZSET scored by the time their permit expires. Acquiring first drops expired
//! holders, so a worker that crashed while holding a permit frees it by itself after the TTL;
//! long requests renew their permit. Times come from the Redis server clock, so workers with
//! skewed clocks still agree on expiry.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor_core::ConnectionId;
use redis::{AsyncCommands, Script};

use crate::codec::from_ms;
use crate::{Store, StoreError, keys};

/// Longest a caller of [`Store::acquire_permit`] sleeps between tries.
const MAX_POLL: Duration = Duration::from_millis(100);

const NOW_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- The key vanishes with its last holder, so idle connections leave nothing behind.
local function expire_with_last_holder()
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
end
";

/// KEYS: permits. ARGV: holder, limit, ttl ms. Returns {1, expires ms} or {0, earliest expiry}.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW_LUA}
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
        local ttl = tonumber(ARGV[3])
        if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false
           and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
          local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
          return {{0, tonumber(first[2])}}
        end
        redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
        expire_with_last_holder()
        return {{1, now + ttl}}
        "
    ))
});

/// KEYS: permits. ARGV: holder, ttl ms. Returns the new expiry, or 0 if the permit was lost.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW_LUA}
        local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
        if expires == false or tonumber(expires) <= now then
          redis.call('ZREM', KEYS[1], ARGV[1])
          return 0
        end
        local ttl = tonumber(ARGV[2])
        redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[1])
        expire_with_last_holder()
        return now + ttl
        "
    ))
});

/// KEYS: permits. Counts holders not yet expired by the server clock.
static IN_USE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW_LUA}
        return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', now), '+inf')
        "
    ))
});

/// A held permit; release it when the request is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    /// The connection it is for.
    pub connection_id: ConnectionId,
    /// This holder's unique id.
    pub holder: String,
    /// When it frees itself unless renewed.
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Takes a permit for `connection_id` if fewer than `limit` are held (the configured default
    /// when `None`); it expires after `ttl` unless renewed. Returns `None` when all are taken.
    pub async fn try_acquire_permit(
        &self,
        connection_id: &ConnectionId,
        limit: Option<u32>,
        ttl: Duration,
    ) -> Result<Option<Permit>, StoreError> {
        let holder = ulid::Ulid::new().to_string();
        let (acquired, at) = self
            .acquire_once(connection_id, &holder, limit, ttl)
            .await?;
        if !acquired {
            return Ok(None);
        }
        Ok(Some(Permit {
            connection_id: *connection_id,
            holder,
            expires_at: from_ms(&keys::permits(connection_id), at)?,
        }))
    }

    /// Takes a permit, waiting up to `wait` for one to free; `None` if none did.
    pub async fn acquire_permit(
        &self,
        connection_id: &ConnectionId,
        limit: Option<u32>,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<Permit>, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(permit) = self.try_acquire_permit(connection_id, limit, ttl).await? {
                return Ok(Some(permit));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            // Polling with a growing pause: permits are held for one HTTP request, so one frees
            // soon, and a blocking primitive would not survive a crashed holder.
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    async fn acquire_once(
        &self,
        connection_id: &ConnectionId,
        holder: &str,
        limit: Option<u32>,
        ttl: Duration,
    ) -> Result<(bool, i64), StoreError> {
        let limit = limit.unwrap_or(self.config.permits_per_connection).max(1);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let (acquired, at): (i64, i64) = ACQUIRE
            .key(keys::permits(connection_id))
            .arg(holder)
            .arg(limit)
            .arg(ttl_ms)
            .invoke_async(&mut self.redis())
            .await?;
        Ok((acquired == 1, at))
    }

    /// Extends a permit by `ttl` from now. Returns false if it had already expired (and may be
    /// held by someone else now): the caller no longer holds it.
    pub async fn renew_permit(
        &self,
        permit: &mut Permit,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let key = keys::permits(&permit.connection_id);
        let expires: i64 = RENEW
            .key(&key)
            .arg(&permit.holder)
            .arg(ttl_ms)
            .invoke_async(&mut self.redis())
            .await?;
        if expires == 0 {
            return Ok(false);
        }
        permit.expires_at = from_ms(&key, expires)?;
        Ok(true)
    }

    /// Gives a permit back.
    pub async fn release_permit(&self, permit: &Permit) -> Result<(), StoreError> {
        self.redis()
            .zrem::<_, _, ()>(keys::permits(&permit.connection_id), &permit.holder)
            .await?;
        Ok(())
    }

    /// Permits currently held for a connection (expired ones not counted).
    pub async fn permits_in_use(&self, connection_id: &ConnectionId) -> Result<u64, StoreError> {
        let count: u64 = IN_USE
            .key(keys::permits(connection_id))
            .invoke_async(&mut self.redis())
            .await?;
        Ok(count)
    }
}
