//! The Lua scripts that change a queue's state, each one atomic.
//!
//! Every script takes the same six keys (ready, scheduled, leases, dead, unique, signal) and the
//! key prefix as `ARGV[1]`, from which it builds the other keys of the same hash slot (the
//! queue-wide hashes and the per-job keys, named as in `keys.rs`). Scripts only
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
-- Queue-wide hashes keyed by job id (see keys.rs): batches touch them with one command each.
local PAYLOADS = PREFIX .. 'payloads'
local ATTEMPTS = PREFIX .. 'attempts'
local RUNNING = PREFIX .. 'running'
local DONE = PREFIX .. 'done'
local DONE_INDEX = PREFIX .. 'done_index'
local UNIQUE_OF = PREFIX .. 'unique_of'
local TOKEN_SEQ = PREFIX .. 'token_seq'
-- Wake-up tokens are capped: each wakes one idle worker, which then fetches a whole batch.
local SIGNAL_CAP = 64
-- Only the newest errors of a job are kept.
local ERRORS_KEPT = 50
-- Succeeded records trimmed per call once older than the retention time.
local TRIM_CHUNK = 500

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function job_key(id) return PREFIX .. 'job:' .. id end
local function errors_key(id) return PREFIX .. 'errors:' .. id end
local function kind_key(kind) return PREFIX .. 'dead_kind:' .. kind end

-- `attempts/max` as two numbers.
local function split_attempts(value)
  local attempts, max = string.match(value or '', '^(%d+)/(%d+)$')
  return tonumber(attempts), tonumber(max)
end
-- The token of a `token|started|worker` lease record.
local function lease_token(value)
  if not value then return nil end
  local bar = string.find(value, '|', 1, true)
  return bar and string.sub(value, 1, bar - 1)
end

local function wake(count)
  local missing = math.min(count, SIGNAL_CAP) - redis.call('LLEN', SIGNAL)
  if missing > 0 then
    local tokens = {}
    for i = 1, missing do tokens[i] = '1' end
    redis.call('LPUSH', SIGNAL, unpack(tokens))
  end
end

local function free_unique(id)
  local unique_key = redis.call('HGET', UNIQUE_OF, id)
  if unique_key and redis.call('HGET', UNIQUE, unique_key) == id then
    redis.call('HDEL', UNIQUE, unique_key)
  end
end

local function record_error(id, now, attempt, kind, message)
  local entry = cjson.encode({at = now, attempt = attempt, kind = kind, message = message})
  redis.call('RPUSH', errors_key(id), entry)
  redis.call('LTRIM', errors_key(id), -ERRORS_KEPT, -1)
  redis.call('HSET', job_key(id), 'last_error', message, 'last_error_kind', kind)
end

local function dead_letter(id, now, kind)
  redis.call('HSET', job_key(id), 'state', 'dead', 'dead_at', now)
  redis.call('HDEL', job_key(id), 'run_at')
  redis.call('ZADD', DEAD, now, id)
  redis.call('ZADD', kind_key(kind), now, id)
  free_unique(id)
end

-- Forgets succeeded records older than `ttl_ms`, a bounded chunk per call.
local function trim_done(now, ttl_ms)
  local old = redis.call('ZRANGEBYSCORE', DONE_INDEX, '-inf', now - ttl_ms, 'LIMIT', 0, TRIM_CHUNK)
  if #old > 0 then
    redis.call('ZREM', DONE_INDEX, unpack(old))
    redis.call('HDEL', DONE, unpack(old))
  end
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
local payloads = {}
local attempts = {}
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
    -- A plain ready job needs no hash of its own (its creation time is in its ULID id); the
    -- per-job hash appears only for unique keys, delays, errors and deaths.
    local fields = {}
    if unique_key ~= '' then
      fields[#fields + 1] = 'unique_key'
      fields[#fields + 1] = unique_key
      redis.call('HSET', UNIQUE, unique_key, id)
      redis.call('HSET', UNIQUE_OF, id, unique_key)
    end
    if run_at > now then
      fields[#fields + 1] = 'state'
      fields[#fields + 1] = 'scheduled'
      fields[#fields + 1] = 'run_at'
      fields[#fields + 1] = run_at
      redis.call('ZADD', SCHEDULED, run_at, id)
      scheduled = scheduled + 1
    else
      ready[#ready + 1] = id
    end
    if #fields > 0 then redis.call('HSET', job_key(id), unpack(fields)) end
    payloads[#payloads + 1] = id
    payloads[#payloads + 1] = payload
    attempts[#attempts + 1] = id
    attempts[#attempts + 1] = '0/' .. max_attempts
    out[#out + 1] = id
    out[#out + 1] = 0
  end
end
if #payloads > 0 then
  redis.call('HSET', PAYLOADS, unpack(payloads))
  redis.call('HSET', ATTEMPTS, unpack(attempts))
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
/// chunk, reclaim chunk, succeeded ttl ms. Returns {jobs (id, payload, attempt, max attempts,
/// token per job), server now, next due time or -1, earliest lease expiry or -1, ready left}.
const FETCH: &str = r#"
local count, lease_ms, worker = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local promote_chunk, reclaim_chunk = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
trim_done(now, tonumber(ARGV[7]))

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
  local held = redis.call('HGET', RUNNING, id)
  -- Dropping the lease record fences the old owner out: its token no longer matches.
  redis.call('HDEL', RUNNING, id)
  local attempts, max = split_attempts(redis.call('HGET', ATTEMPTS, id))
  if attempts then
    local worker_of = held and string.match(held, '^%d+|%d+|(.*)$') or 'an unknown worker'
    record_error(id, now, attempts, 'lease_expired',
      'the lease ran out while the job ran on ' .. worker_of)
    if attempts >= max then
      dead_letter(id, now, 'lease_expired')
    else
      redis.call('HSET', job_key(id), 'state', 'queued')
      redis.call('RPUSH', READY, id)
    end
  end
end

-- The loop below runs once per job: it avoids Lua's costly number-to-string conversions and
-- `#table` lookups, which dominate a script's time at these batch sizes.
local out = {}
local popped = redis.call('RPOP', READY, count)
if popped then
  local payloads = redis.call('HMGET', PAYLOADS, unpack(popped))
  local attempts = redis.call('HMGET', ATTEMPTS, unpack(popped))
  local first_token = redis.call('INCRBY', TOKEN_SEQ, #popped) - #popped
  local expires = tostring(now + lease_ms)
  local stamp = '|' .. tostring(now) .. '|' .. worker
  local leases, held, counts = {}, {}, {}
  local k, o = 0, 0
  for i, id in ipairs(popped) do
    local count, payload = attempts[i], payloads[i]
    local slash = count and string.find(count, '/', 1, true)
    if payload and slash then
      -- Every delivery is an attempt, counted here, so a crash cannot hide one.
      local attempt = tonumber(string.sub(count, 1, slash - 1)) + 1
      local max = string.sub(count, slash + 1)
      local token = first_token + i
      leases[k + 1] = expires
      leases[k + 2] = id
      held[k + 1] = id
      held[k + 2] = token .. stamp
      counts[k + 1] = id
      counts[k + 2] = attempt .. '/' .. max
      k = k + 2
      out[o + 1] = id
      out[o + 2] = payload
      out[o + 3] = attempt
      out[o + 4] = tonumber(max)
      out[o + 5] = token
      o = o + 5
    end
  end
  if k > 0 then
    redis.call('ZADD', LEASES, unpack(leases))
    redis.call('HSET', RUNNING, unpack(held))
    redis.call('HSET', ATTEMPTS, unpack(counts))
  end
end
local next_due = redis.call('ZRANGE', SCHEDULED, 0, 0, 'WITHSCORES')[2]
local next_expiry = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')[2]
return {out, now, tonumber(next_due or -1), tonumber(next_expiry or -1), redis.call('LLEN', READY)}
"#;

/// Record outcomes of jobs, checking each job's lease token first (a worker that lost its
/// lease changes nothing). ARGV: prefix, succeeded ttl (ms), n, then per job: id, token,
/// outcome (ok, retry, snooze, abort, release), delay ms, error kind, error message.
/// Returns per job: 0 stale (lease lost), 1 recorded, 2 dead-lettered.
///
/// A succeeded job's data is deleted at once and replaced by a small record in the `done`
/// hash, kept for the retention time; the common path costs a handful of commands per batch.
const ACK: &str = r#"
local ttl_ms, n = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local now_text = tostring(now)
local ids = {}
for i = 0, n - 1 do ids[i + 1] = ARGV[4 + i * 7] end
local held = redis.call('HMGET', RUNNING, unpack(ids))
local out = {}
local finished, f = {}, 0
local succeeded, done_records, done_index, doomed_keys = {}, {}, {}, {}
local s, d = 0, 0
local released, rescheduled = 0, 0
for i = 1, n do
  local b = 4 + (i - 1) * 7
  local id, token, outcome = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  -- The worker's `attempts/max` for this delivery: exact while its token is current.
  local count = ARGV[b + 6]
  if lease_token(held[i]) ~= token then
    out[i] = 0
  else
    -- Later outcomes in this batch for the same id are stale.
    held[i] = false
    f = f + 1
    finished[f] = id
    if outcome == 'ok' then
      s = s + 1
      succeeded[s] = id
      -- `finished_ms|attempts/max`: the stored count string is reused as it is.
      done_records[2 * s - 1] = id
      done_records[2 * s] = now_text .. '|' .. count
      done_index[2 * s - 1] = now_text
      done_index[2 * s] = id
      d = d + 1
      doomed_keys[d] = job_key(id)
      local attempts = split_attempts(count)
      if attempts and attempts > 1 then
        -- It failed before: keep its errors as long as its record (a rare, per-job call).
        redis.call('PEXPIRE', errors_key(id), ttl_ms)
      else
        d = d + 1
        doomed_keys[d] = errors_key(id)
      end
      out[i] = 1
    else
      local attempts, max = split_attempts(count)
      attempts = attempts or 0
      max = max or 1
      local delay, kind, message = tonumber(ARGV[b + 3]), ARGV[b + 4], ARGV[b + 5]
      if outcome == 'retry' or outcome == 'abort' then
        record_error(id, now, attempts, kind, message)
        if outcome == 'abort' or attempts >= max then
          dead_letter(id, now, kind)
          out[i] = 2
        else
          redis.call('HSET', job_key(id), 'state', 'retrying', 'run_at', now + delay)
          redis.call('ZADD', SCHEDULED, now + delay, id)
          rescheduled = rescheduled + 1
          out[i] = 1
        end
      elseif outcome == 'snooze' then
        -- A snooze (e.g. the source's Retry-After) does not use an attempt.
        redis.call('HSET', ATTEMPTS, id, (attempts - 1) .. '/' .. max)
        redis.call('HSET', job_key(id), 'state', 'scheduled', 'run_at', now + delay)
        redis.call('ZADD', SCHEDULED, now + delay, id)
        rescheduled = rescheduled + 1
        out[i] = 1
      else
        -- Handed back unfinished (shutdown): not an attempt, and next in line.
        redis.call('HSET', ATTEMPTS, id, (attempts - 1) .. '/' .. max)
        redis.call('HSET', job_key(id), 'state', 'queued')
        redis.call('RPUSH', READY, id)
        released = released + 1
        out[i] = 1
      end
    end
  end
end
if #finished > 0 then
  redis.call('ZREM', LEASES, unpack(finished))
  redis.call('HDEL', RUNNING, unpack(finished))
end
if #succeeded > 0 then
  local unique_keys = redis.call('HMGET', UNIQUE_OF, unpack(succeeded))
  for i, id in ipairs(succeeded) do
    if unique_keys[i] and redis.call('HGET', UNIQUE, unique_keys[i]) == id then
      redis.call('HDEL', UNIQUE, unique_keys[i])
    end
  end
  redis.call('HSET', DONE, unpack(done_records))
  redis.call('ZADD', DONE_INDEX, unpack(done_index))
  redis.call('DEL', unpack(doomed_keys))
  redis.call('HDEL', PAYLOADS, unpack(succeeded))
  redis.call('HDEL', ATTEMPTS, unpack(succeeded))
  redis.call('HDEL', UNIQUE_OF, unpack(succeeded))
end
trim_done(now, ttl_ms)
if released > 0 then wake(released) elseif rescheduled > 0 then wake(1) end
return out
"#;

/// Renew the leases of running jobs. ARGV: prefix, lease ms, then id and token pairs.
/// Returns the ids whose lease was lost.
const RENEW: &str = r#"
local expires = now_ms() + tonumber(ARGV[2])
local ids = {}
for i = 3, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then return {} end
local held = redis.call('HMGET', RUNNING, unpack(ids))
local lost = {}
local leases = {}
for i, id in ipairs(ids) do
  if lease_token(held[i]) == ARGV[2 + 2 * i] then
    leases[#leases + 1] = expires
    leases[#leases + 1] = id
  else
    lost[#lost + 1] = id
  end
end
if #leases > 0 then redis.call('ZADD', LEASES, 'XX', unpack(leases)) end
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
    local kind = redis.call('HGET', key, 'last_error_kind')
    if kind then redis.call('ZREM', kind_key(kind), id) end
    local _, max = split_attempts(redis.call('HGET', ATTEMPTS, id))
    if max and redis.call('HEXISTS', PAYLOADS, id) == 1 then
      redis.call('HSET', ATTEMPTS, id, '0/' .. max)
      redis.call('HSET', key, 'state', 'queued')
      redis.call('HDEL', key, 'dead_at', 'run_at')
      local unique_key = redis.call('HGET', UNIQUE_OF, id)
      if unique_key then
        local holder = redis.call('HGET', UNIQUE, unique_key)
        if not holder then
          redis.call('HSET', UNIQUE, unique_key, id)
        elseif holder ~= id then
          -- Another job took the key while this one was dead; this one runs without it.
          redis.call('HDEL', UNIQUE_OF, id)
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
    redis.call('HDEL', PAYLOADS, id)
    redis.call('HDEL', ATTEMPTS, id)
    redis.call('HDEL', UNIQUE_OF, id)
    purged = purged + 1
  elseif mode == 'kind' then
    redis.call('ZREM', kind_key(ARGV[4]), id)
  end
end
return {purged, #ids}
"#;

/// Run a delayed or retrying job now: move it from the scheduled set to the head of the ready
/// list. Its attempts are untouched (a retry brought forward is still that attempt). ARGV:
/// prefix, id. Returns 1 if the job was waiting and now is ready, 0 if it was not waiting
/// (already ready, running, dead or gone).
const RUN_NOW: &str = r#"
local id = ARGV[2]
if redis.call('ZREM', SCHEDULED, id) == 0 then return 0 end
redis.call('HSET', job_key(id), 'state', 'queued')
redis.call('HDEL', job_key(id), 'run_at')
redis.call('RPUSH', READY, id)
wake(1)
return 1
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
pub(crate) static RUN_NOW_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(RUN_NOW));
