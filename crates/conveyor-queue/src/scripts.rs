//! The Lua scripts that change a queue's state, each one atomic.
//!
//! Every script takes the same six keys (ready, scheduled, leases, dead, unique, signal) and the
//! key prefix as `ARGV[1]`, from which it builds job keys of the same hash slot. Scripts only
//! ever touch a bounded number of jobs per call (Lua's `unpack` fails past ~8,000 values, and a
//! long script blocks Redis), so per-job work is O(1) in the size of the backlog: no LREM or
//! LPOS over long lists, only list ends, hashes and sorted-set lookups.
//!
//! Times are Redis server time (`TIME`, in ms) so leases do not depend on worker clocks.

use std::sync::LazyLock;

use redis::Script;

/// Helpers shared by every script.
const COMMON: &str = r#"
local READY, SCHEDULED, LEASES, DEAD, UNIQUE, SIGNAL = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local PREFIX = ARGV[1]
-- Wake-up tokens are capped: each wakes one idle worker, which then fetches a whole batch.
local SIGNAL_CAP = 64
-- Only the newest errors of a job are kept.
local ERRORS_KEPT = 50

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function job_key(id) return PREFIX .. 'job:' .. id end
local function errors_key(id) return PREFIX .. 'errors:' .. id end
local function kind_key(kind) return PREFIX .. 'dead_kind:' .. kind end

local function wake(count)
  local missing = math.min(count, SIGNAL_CAP) - redis.call('LLEN', SIGNAL)
  if missing > 0 then
    local tokens = {}
    for i = 1, missing do tokens[i] = '1' end
    redis.call('LPUSH', SIGNAL, unpack(tokens))
  end
end

local function free_unique(id, unique_key)
  if unique_key and unique_key ~= '' and redis.call('HGET', UNIQUE, unique_key) == id then
    redis.call('HDEL', UNIQUE, unique_key)
  end
end

local function record_error(id, now, attempt, kind, message)
  local entry = cjson.encode({at = now, attempt = attempt, kind = kind, message = message})
  redis.call('RPUSH', errors_key(id), entry)
  redis.call('LTRIM', errors_key(id), -ERRORS_KEPT, -1)
  redis.call('HSET', job_key(id), 'last_error', message, 'last_error_kind', kind)
end

local function dead_letter(id, now, kind, unique_key)
  redis.call('HSET', job_key(id), 'state', 'dead', 'dead_at', now)
  redis.call('HDEL', job_key(id), 'run_at')
  redis.call('ZADD', DEAD, now, id)
  redis.call('ZADD', kind_key(kind), now, id)
  free_unique(id, unique_key)
end

local function select_dead(mode, chunk, argument, now)
  if mode == 'ids' then
    local ids = {}
    for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
    return ids
  elseif mode == 'kind' then
    return redis.call('ZRANGE', kind_key(argument), 0, chunk - 1)
  elseif mode == 'before' then
    return redis.call('ZRANGEBYSCORE', DEAD, '-inf', now - tonumber(argument), 'LIMIT', 0, chunk)
  else
    return redis.call('ZRANGE', DEAD, 0, chunk - 1)
  end
end
"#;

/// Push jobs. ARGV: prefix, n, then per job: id, payload, unique key ('' for none), run at
/// (ms, 0 for "now + delay"), delay (ms), max attempts. Returns per job: the id that holds the
/// job (the existing one for a duplicate unique key) and 1 if it was a duplicate, else 0.
const PUSH: &str = r#"
local n = tonumber(ARGV[2])
local now = now_ms()
local out = {}
local ready = {}
local scheduled = 0
for i = 0, n - 1 do
  local b = 3 + i * 6
  local id, payload, unique_key = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local run_at, delay, max_attempts = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), ARGV[b + 5]
  local existing = false
  if unique_key ~= '' then existing = redis.call('HGET', UNIQUE, unique_key) end
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = 1
  else
    if run_at == 0 then run_at = now + delay end
    local fields = {'payload', payload, 'attempts', 0, 'max_attempts', max_attempts,
                    'created_at', now, 'token', 0}
    if unique_key ~= '' then
      fields[#fields + 1] = 'unique_key'
      fields[#fields + 1] = unique_key
      redis.call('HSET', UNIQUE, unique_key, id)
    end
    if run_at > now then
      fields[#fields + 1] = 'state'
      fields[#fields + 1] = 'scheduled'
      fields[#fields + 1] = 'run_at'
      fields[#fields + 1] = run_at
      redis.call('ZADD', SCHEDULED, run_at, id)
      scheduled = scheduled + 1
    else
      fields[#fields + 1] = 'state'
      fields[#fields + 1] = 'queued'
      ready[#ready + 1] = id
    end
    redis.call('HSET', job_key(id), unpack(fields))
    out[#out + 1] = id
    out[#out + 1] = 0
  end
end
if #ready > 0 then
  redis.call('LPUSH', READY, unpack(ready))
  wake(#ready)
elseif scheduled > 0 then
  -- An idle worker may be sleeping past the new job's due time: let it recompute.
  wake(1)
end
return out
"#;

/// Fetch up to `count` jobs for a worker, after promoting due scheduled jobs and reclaiming
/// expired leases (both in bounded chunks). ARGV: prefix, count, lease ms, worker id, promote
/// chunk, reclaim chunk. Returns {jobs (id, payload, attempt, max attempts, token per job),
/// server now, next due time or -1, earliest lease expiry or -1, ready jobs left}.
const FETCH: &str = r#"
local count, lease_ms, worker = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local promote_chunk, reclaim_chunk = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()

local due = redis.call('ZRANGEBYSCORE', SCHEDULED, '-inf', now, 'LIMIT', 0, promote_chunk)
if #due > 0 then
  redis.call('ZREM', SCHEDULED, unpack(due))
  for _, id in ipairs(due) do redis.call('HSET', job_key(id), 'state', 'queued') end
  -- Due jobs waited already: they go to the head of the line.
  redis.call('RPUSH', READY, unpack(due))
end

local expired = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, reclaim_chunk)
for _, id in ipairs(expired) do
  redis.call('ZREM', LEASES, id)
  local job = redis.call('HMGET', job_key(id), 'attempts', 'max_attempts', 'unique_key', 'worker')
  if job[1] then
    local attempts = tonumber(job[1])
    record_error(id, now, attempts, 'lease_expired',
      'the lease ran out while the job ran on ' .. (job[4] or 'an unknown worker'))
    if attempts >= tonumber(job[2]) then
      dead_letter(id, now, 'lease_expired', job[3])
    else
      -- A new token fences the old owner out even before the job is fetched again.
      redis.call('HINCRBY', job_key(id), 'token', 1)
      redis.call('HSET', job_key(id), 'state', 'queued')
      redis.call('RPUSH', READY, id)
    end
  end
end

local out = {}
local popped = redis.call('RPOP', READY, count)
if popped then
  local expires = now + lease_ms
  local leases = {}
  for _, id in ipairs(popped) do
    local key = job_key(id)
    local job = redis.call('HMGET', key, 'payload', 'max_attempts', 'token', 'attempts')
    if job[1] then
      -- Every delivery is an attempt, counted here, so a crash cannot hide one.
      local attempt = tonumber(job[4]) + 1
      local token = tonumber(job[3]) + 1
      redis.call('HSET', key, 'state', 'running', 'worker', worker, 'started_at', now,
                 'token', token, 'attempts', attempt)
      leases[#leases + 1] = expires
      leases[#leases + 1] = id
      out[#out + 1] = id
      out[#out + 1] = job[1]
      out[#out + 1] = attempt
      out[#out + 1] = tonumber(job[2])
      out[#out + 1] = token
    end
  end
  if #leases > 0 then redis.call('ZADD', LEASES, unpack(leases)) end
end
local next_due = redis.call('ZRANGE', SCHEDULED, 0, 0, 'WITHSCORES')[2]
local next_expiry = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')[2]
return {out, now, tonumber(next_due or -1), tonumber(next_expiry or -1), redis.call('LLEN', READY)}
"#;

/// Record outcomes of jobs, checking each job's lease token first (a worker that lost its
/// lease changes nothing). ARGV: prefix, succeeded ttl (s), n, then per job: id, token,
/// outcome (ok, retry, snooze, abort, release), delay ms, error kind, error message.
/// Returns per job: 0 stale (lease lost), 1 recorded, 2 dead-lettered.
const ACK: &str = r#"
local ttl, n = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local out = {}
local finished = {}
local released = 0
local rescheduled = 0
for i = 0, n - 1 do
  local b = 4 + i * 6
  local id, token, outcome = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local delay, kind, message = tonumber(ARGV[b + 3]), ARGV[b + 4], ARGV[b + 5]
  local key = job_key(id)
  local job = redis.call('HMGET', key, 'state', 'token', 'attempts', 'max_attempts', 'unique_key',
                        'last_error_kind')
  if job[1] ~= 'running' or job[2] ~= token then
    out[#out + 1] = 0
  else
    finished[#finished + 1] = id
    local attempts = tonumber(job[3])
    if outcome == 'ok' then
      redis.call('HSET', key, 'state', 'succeeded', 'finished_at', now)
      free_unique(id, job[5])
      redis.call('EXPIRE', key, ttl)
      if job[6] then redis.call('EXPIRE', errors_key(id), ttl) end
      out[#out + 1] = 1
    elseif outcome == 'retry' or outcome == 'abort' then
      record_error(id, now, attempts, kind, message)
      if outcome == 'abort' or attempts >= tonumber(job[4]) then
        dead_letter(id, now, kind, job[5])
        out[#out + 1] = 2
      else
        redis.call('HSET', key, 'state', 'retrying', 'run_at', now + delay)
        redis.call('ZADD', SCHEDULED, now + delay, id)
        rescheduled = rescheduled + 1
        out[#out + 1] = 1
      end
    elseif outcome == 'snooze' then
      -- A snooze (e.g. the source's Retry-After) does not use an attempt.
      redis.call('HSET', key, 'state', 'scheduled', 'run_at', now + delay, 'attempts', attempts - 1)
      redis.call('ZADD', SCHEDULED, now + delay, id)
      rescheduled = rescheduled + 1
      out[#out + 1] = 1
    else
      -- Handed back unfinished (shutdown): not an attempt, and next in line.
      redis.call('HSET', key, 'state', 'queued', 'attempts', attempts - 1)
      redis.call('RPUSH', READY, id)
      released = released + 1
      out[#out + 1] = 1
    end
  end
end
if #finished > 0 then redis.call('ZREM', LEASES, unpack(finished)) end
if released > 0 then wake(released) elseif rescheduled > 0 then wake(1) end
return out
"#;

/// Renew the leases of running jobs. ARGV: prefix, lease ms, then id and token pairs.
/// Returns the ids whose lease was lost.
const RENEW: &str = r#"
local expires = now_ms() + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local job = redis.call('HMGET', job_key(id), 'state', 'token')
  if job[1] == 'running' and job[2] == token then
    redis.call('ZADD', LEASES, 'XX', expires, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
"#;

/// Send dead jobs back to the ready list with their attempts reset, keeping their ids.
/// ARGV: prefix, mode (ids, kind, before, all), chunk, then the ids, the kind or the age in ms.
/// Returns {revived, examined}. A job is revived only if this call removed it from the dead
/// set, so a concurrent purge or retry of the same job can never also act on it.
const DEAD_RETRY: &str = r#"
local mode, chunk = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local ids = select_dead(mode, chunk, ARGV[4], now)
local revived = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', DEAD, id) == 1 then
    local key = job_key(id)
    local job = redis.call('HMGET', key, 'last_error_kind', 'unique_key', 'payload')
    if job[1] then redis.call('ZREM', kind_key(job[1]), id) end
    if job[3] then
      redis.call('HSET', key, 'state', 'queued', 'attempts', 0)
      redis.call('HDEL', key, 'dead_at', 'run_at')
      redis.call('PERSIST', key)
      redis.call('PERSIST', errors_key(id))
      if job[2] and job[2] ~= '' then
        local holder = redis.call('HGET', UNIQUE, job[2])
        if not holder then
          redis.call('HSET', UNIQUE, job[2], id)
        elseif holder ~= id then
          -- Another job took the key while this one was dead; this one runs without it.
          redis.call('HDEL', key, 'unique_key')
        end
      end
      redis.call('LPUSH', READY, id)
      revived = revived + 1
    end
  elseif mode == 'kind' then
    redis.call('ZREM', kind_key(ARGV[4]), id)
  end
end
if revived > 0 then wake(revived) end
return {revived, #ids}
"#;

/// Delete dead jobs for good. Same arguments and answer as the retry script.
const DEAD_PURGE: &str = r#"
local mode, chunk = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local ids = select_dead(mode, chunk, ARGV[4], now)
local purged = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', DEAD, id) == 1 then
    local kind = redis.call('HGET', job_key(id), 'last_error_kind')
    if kind then redis.call('ZREM', kind_key(kind), id) end
    redis.call('DEL', job_key(id), errors_key(id))
    purged = purged + 1
  elseif mode == 'kind' then
    redis.call('ZREM', kind_key(ARGV[4]), id)
  end
end
return {purged, #ids}
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

pub(crate) static PUSH_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(PUSH));
pub(crate) static FETCH_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(FETCH));
pub(crate) static ACK_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(ACK));
pub(crate) static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(RENEW));
pub(crate) static DEAD_RETRY_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(DEAD_RETRY));
pub(crate) static DEAD_PURGE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(DEAD_PURGE));
