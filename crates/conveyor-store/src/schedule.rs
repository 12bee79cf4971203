//! Scheduled syncs: when each entity of each connection is due next, claimed atomically so that
//! any number of schedulers (one per worker process) enqueue each due sync exactly once.
//!
//! # Keys
//!
//! - `conveyor:{conn}:schedule` (hash): `due:{entity}` and `interval:{entity}` (ms) for every
//!   scheduled entity; `revision`, the configuration the entries were built from; `probe_at`,
//!   `probe_failures` and `probes`, the next probe of an offline connection, the failure count it
//!   was computed for, and the probes claimed since it went offline; `blocked_credentials`, a
//!   digest of the credentials a connection needing new credentials was blocked with.
//! - `conveyor:schedule:due` (zset): connection id → the earliest time its schedule needs a look
//!   (a due entity, a probe, a credentials re-check). Schedulers poll only this index, so a tick
//!   costs one call plus one script per connection that is actually due.
//!
//! # Status changes
//!
//! A connection's index entry is computed for its status: the next entity slot while online (up
//! to a day ahead), the next probe while offline (up to an hour), the next re-check while its
//! credentials are rejected. Every status change therefore moves the entry to now
//! ([`Store::transition`]), and the next tick of any scheduler decides again:
//!
//! - to `offline`: the first probe is set one backoff step after the failure, not at the next
//!   entity slot;
//! - back to `online` (a successful probe, or a manual sync, which is an immediate probe): the
//!   normal schedule resumes at once, the probed entity one interval after its probe, the other
//!   entities at once if their slots passed during the outage, instead of at the next probe
//!   time.
//!
//! (A scheduler that read the old status just before can still write its old next look back;
//! the connection is then looked at that much later, as it would have been without the move.)
//!
//! # Time
//!
//! Every comparison with "now" happens inside a script, against the Redis server's `TIME`. Worker
//! clocks never decide whether something is due, so machines whose clocks disagree by seconds
//! neither miss nor double a sync; the only host-side times are durations (intervals, backoff
//! delays) and `last_error_at`, which Redis stamped too.
//!
//! # Claims
//!
//! [`Store::claim_schedule`] is one script over the connection's keys (one hash slot): it reads
//! the status and decides, with the caller's backoff numbers, what is due:
//!
//! - `online` / `unknown`: every entity whose due time has passed is claimed and its due time
//!   moves forward on its grid (`due + k × interval`, the first one in the future), so slots
//!   missed while every scheduler was down collapse into one sync and the grid never drifts.
//! - `offline`: the entity schedule is suspended; one probe (the most overdue entity) is claimed
//!   when `probe_at` passes. `probe_at` is `last_error_at + backoff(probes claimed so far + 1)`,
//!   set once per failure count so every scheduler agrees on one jittered time; after a claim it
//!   is re-armed in case the probe never runs (its job was merged into one still queued). The
//!   backoff counts probes, not failures: the queue's quick retries of the sync that first hit
//!   the outage are failures too, and counting them would start the probes far up the curve.
//! - `auth_required`: nothing is claimed until the credentials change (their ciphertext nonce
//!   differs from the one recorded when the block began); then one probe is claimed.
//!
//! A probe is a sync of its entity, so that entity's grid restarts at the probe: its next slot is
//! one interval after it. Advancing it on the old grid instead would put a second sync of the
//! same entity anywhere from a millisecond to an interval after a successful probe.
//!
//! Two schedulers racing for the same connection run the script one after the other; the second
//! finds the due times already moved and claims nothing. The index is written after the script
//! (another slot, so not in the same step): a stale index entry can only make a scheduler look
//! at a connection too early (it claims nothing) or, when a configuration change races a claim,
//! too late by at most one interval.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor_core::{ConnectionId, ConnectionStatus, Entity};
use redis::{AsyncCommands, Script};

use crate::codec::{from_ms, to_ms};
use crate::{Store, StoreError, keys};

/// Connections returned by one call of [`Store::due_schedules`] at most.
pub const MAX_DUE_BATCH: usize = 1_000;

/// Shared Lua: the server clock in milliseconds, and the due fields of a schedule hash.
const SCHEDULE_LUA: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function entries(key)
  local list = {}
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local entity = string.match(fields[i], '^due:(.+)$')
    if entity then
      table.insert(list, {entity = entity, due = tonumber(fields[i + 1]),
        interval = tonumber(redis.call('HGET', key, 'interval:' .. entity))})
    end
  end
  table.sort(list, function(a, b)
    if a.due == b.due then return a.entity < b.entity end
    return a.due < b.due
  end)
  return list
end
local function earliest(list)
  local first = nil
  for _, e in ipairs(list) do
    if first == nil or e.due < first then first = e.due end
  end
  return first
end
local function rephase(key, e, now)
  e.due = now + e.interval
  redis.call('HSET', key, 'due:' .. e.entity, string.format('%d', e.due))
end
local function advance(key, e, now)
  local steps = math.floor((now - e.due) / e.interval) + 1
  if steps < 1 then steps = 1 end
  e.due = e.due + steps * e.interval
  redis.call('HSET', key, 'due:' .. e.entity, string.format('%d', e.due))
end
";

/// KEYS: schedule, connection. ARGV: revision, then entity and interval ms pairs.
/// Returns {1, earliest due ms or -1} or {-1, 0} when the connection is gone.
static RECONCILE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{SCHEDULE_LUA}
        if redis.call('EXISTS', KEYS[2]) == 0 then
          redis.call('DEL', KEYS[1])
          return {{-1, 0}}
        end
        local now = now_ms()
        local wanted = {{}}
        for i = 2, #ARGV, 2 do wanted[ARGV[i]] = tonumber(ARGV[i + 1]) end
        for _, e in ipairs(entries(KEYS[1])) do
          if wanted[e.entity] == nil then
            redis.call('HDEL', KEYS[1], 'due:' .. e.entity, 'interval:' .. e.entity)
          end
        end
        local first = nil
        for entity, interval in pairs(wanted) do
          local due = tonumber(redis.call('HGET', KEYS[1], 'due:' .. entity))
          local old = tonumber(redis.call('HGET', KEYS[1], 'interval:' .. entity))
          if due == nil then
            due = now + interval
          elseif old ~= interval and due > now + interval then
            due = now + interval
          end
          redis.call('HSET', KEYS[1], 'due:' .. entity, string.format('%d', due),
            'interval:' .. entity, string.format('%d', interval))
          if first == nil or due < first then first = due end
        end
        redis.call('HSET', KEYS[1], 'revision', ARGV[1])
        return {{1, first or -1}}
        "
    ))
});

/// KEYS: schedule, status, credentials, connection. ARGV: expected status, expected consecutive
/// failures, probe time ms (offline), re-arm delay ms, re-check delay ms, expected probes.
/// Returns {outcome, next look ms or -1, server now ms, claimed entities...}.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{SCHEDULE_LUA}
        local now = now_ms()
        if redis.call('EXISTS', KEYS[4]) == 0 then
          redis.call('DEL', KEYS[1])
          return {{'gone', -1, now}}
        end
        local status = redis.call('HGET', KEYS[2], 'status') or 'unknown'
        local failures = redis.call('HGET', KEYS[2], 'consecutive_failures') or '0'
        local probes = redis.call('HGET', KEYS[1], 'probes') or '0'
        if status ~= ARGV[1] or tonumber(failures) ~= tonumber(ARGV[2])
          or (status == 'offline' and tonumber(probes) ~= tonumber(ARGV[6])) then
          return {{'stale', now, now}}
        end
        local list = entries(KEYS[1])
        if #list == 0 then return {{'unscheduled', -1, now}} end
        if status == 'offline' then
          redis.call('HDEL', KEYS[1], 'blocked_credentials')
          if redis.call('HGET', KEYS[1], 'probe_failures') ~= ARGV[2] then
            redis.call('HSET', KEYS[1], 'probe_at', ARGV[3], 'probe_failures', ARGV[2])
          end
          local probe = tonumber(redis.call('HGET', KEYS[1], 'probe_at'))
          if probe > now then
            redis.call('HSET', KEYS[2], 'next_attempt_at', string.format('%d', probe))
            return {{'waiting', probe, now}}
          end
          local next = now + tonumber(ARGV[4])
          redis.call('HSET', KEYS[1], 'probe_at', string.format('%d', next))
          redis.call('HINCRBY', KEYS[1], 'probes', 1)
          redis.call('HSET', KEYS[2], 'next_attempt_at', string.format('%d', next))
          rephase(KEYS[1], list[1], now)
          return {{'probe', next, now, list[1].entity}}
        end
        redis.call('HDEL', KEYS[1], 'probe_at', 'probe_failures', 'probes')
        if status == 'auth_required' then
          redis.call('HDEL', KEYS[2], 'next_attempt_at')
          local next = now + tonumber(ARGV[5])
          -- The nonce is binary and changes with every write of the credentials: keep its
          -- digest, which fits a text field.
          local nonce = redis.sha1hex(redis.call('HGET', KEYS[3], 'nonce') or '')
          local blocked = redis.call('HGET', KEYS[1], 'blocked_credentials')
          if blocked == false then
            redis.call('HSET', KEYS[1], 'blocked_credentials', nonce)
            return {{'blocked', next, now}}
          end
          if blocked == nonce then return {{'blocked', next, now}} end
          redis.call('HSET', KEYS[1], 'blocked_credentials', nonce)
          rephase(KEYS[1], list[1], now)
          return {{'probe', next, now, list[1].entity}}
        end
        redis.call('HDEL', KEYS[1], 'blocked_credentials')
        local claimed = {{'due', 0, now}}
        for _, e in ipairs(list) do
          if e.due <= now then
            advance(KEYS[1], e, now)
            table.insert(claimed, e.entity)
          end
        end
        claimed[2] = earliest(list)
        return claimed
        "
    ))
});

/// KEYS: the due index. ARGV: limit. Returns {server now ms, ids...}.
static DUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{SCHEDULE_LUA}
        local now = now_ms()
        local ids = redis.call('ZRANGE', KEYS[1], '-inf', string.format('%d', now), 'BYSCORE',
          'LIMIT', 0, ARGV[1])
        table.insert(ids, 1, string.format('%d', now))
        return ids
        "
    ))
});

/// An entity to schedule and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledEntity {
    /// The entity.
    pub entity: Entity,
    /// Time between its scheduled syncs (whole milliseconds; at least one).
    pub interval: Duration,
}

/// One entity's place in the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntitySchedule {
    /// Time between its scheduled syncs.
    pub interval: Duration,
    /// When its next scheduled sync is due (while the connection is online).
    pub next_due: DateTime<Utc>,
}

/// A connection's schedule as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    /// The configuration revision the entries were built from (`None`: never reconciled).
    pub revision: Option<String>,
    /// The scheduled entities.
    pub entities: BTreeMap<Entity, EntitySchedule>,
    /// When the next probe of an offline connection is due.
    pub probe_at: Option<DateTime<Utc>>,
    /// Probes claimed since the connection went offline.
    pub probes: u32,
}

/// What the scheduler knew about a connection's health when it asked for a claim; the claim is
/// refused as [`ClaimKind::Stale`] if the status changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimContext {
    /// The status read.
    pub status: ConnectionStatus,
    /// The consecutive failures read.
    pub consecutive_failures: u64,
    /// For an offline connection: the probes claimed since it went offline, as read from
    /// [`Schedule::probes`].
    pub probes: u32,
    /// For an offline connection: when its next probe is due for this failure count (the last
    /// error's time plus the backoff delay for `probes + 1`). Used only if no probe was set for
    /// this count yet.
    pub probe_at: DateTime<Utc>,
    /// For an offline connection: how long after a claimed probe to probe again if the failure
    /// count has not moved by then (the probe's job may never have run).
    pub probe_rearm: Duration,
    /// For a connection needing credentials: how often to look whether they changed.
    pub recheck: Duration,
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    /// Online or unknown: the entities (maybe none) whose scheduled syncs were due.
    Due,
    /// Offline and the probe was due, or new credentials arrived: one probe entity.
    Probe,
    /// Offline, backing off until the next probe.
    Waiting,
    /// Credentials rejected and unchanged: nothing runs.
    Blocked,
    /// The status changed since it was read: read it again and retry.
    Stale,
    /// Nothing is scheduled (not reconciled yet, or no enabled entity).
    Unscheduled,
    /// The connection no longer exists; its schedule was removed.
    Gone,
}

/// The result of [`Store::claim_schedule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// What was found.
    pub kind: ClaimKind,
    /// The entities to enqueue now, each claimed by this caller alone.
    pub entities: Vec<Entity>,
    /// When the connection needs a look next (`None`: only after a reconcile).
    pub next_look: Option<DateTime<Utc>>,
    /// The Redis server's clock at the claim.
    pub server_now: DateTime<Utc>,
}

impl Store {
    /// Makes a connection's schedule match its configuration: entities not listed are dropped,
    /// new ones are first due one interval from now (a connection's first sync is asked for
    /// when it is set up; the schedule keeps it fresh from then on), a changed interval takes
    /// effect from now at the latest, and `revision` is recorded. Returns when the schedule is
    /// next due (`None`: nothing scheduled). The connection's index entry only ever moves
    /// earlier here.
    ///
    /// Fails with `NotFound` (and removes the schedule) if the connection no longer exists.
    pub async fn reconcile_schedule(
        &self,
        connection_id: &ConnectionId,
        revision: &str,
        entities: &[ScheduledEntity],
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let key = keys::schedule(connection_id);
        let mut invocation = RECONCILE.prepare_invoke();
        invocation
            .key(&key)
            .key(keys::connection(connection_id))
            .arg(revision);
        for scheduled in entities {
            let interval_ms = u64::try_from(scheduled.interval.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            invocation.arg(scheduled.entity.as_str()).arg(interval_ms);
        }
        let (outcome, first): (i64, i64) = invocation.invoke_async(&mut self.redis()).await?;
        if outcome < 0 {
            self.unindex_schedule(connection_id).await?;
            return Err(StoreError::not_found("connection", connection_id));
        }
        if first < 0 {
            self.unindex_schedule(connection_id).await?;
            return Ok(None);
        }
        // Only ever earlier: the entry may already point at a sooner look that the entity slots
        // do not show, such as the next probe of an offline connection or the credentials
        // re-check of a blocked one (a PATCH with new credentials changes the configuration
        // too). A look too early claims nothing and moves the entry where it belongs.
        redis::cmd("ZADD")
            .arg(keys::SCHEDULE_DUE)
            .arg("LT")
            .arg(first)
            .arg(connection_id.to_string())
            .exec_async(&mut self.redis())
            .await?;
        Ok(Some(from_ms(&key, first)?))
    }

    /// The configuration revision each connection's schedule was built from, beside the
    /// connection's own version (`None` where the connection or schedule is missing), in the
    /// order of `ids`. One round trip: what a scheduler calls to find schedules to reconcile.
    pub async fn schedule_revisions(
        &self,
        ids: &[ConnectionId],
    ) -> Result<Vec<(Option<u64>, Option<String>)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hget(keys::connection(id), "version")
                .hget(keys::schedule(id), "revision");
        }
        let replies: Vec<Option<String>> = pipe.query_async(&mut self.redis()).await?;
        let mut pairs = Vec::with_capacity(ids.len());
        for (id, pair) in ids.iter().zip(replies.chunks(2)) {
            let version = match pair.first().cloned().flatten() {
                Some(text) => Some(text.parse::<u64>().map_err(|err| {
                    StoreError::corrupt(keys::connection(id), format!("version: {err}"))
                })?),
                None => None,
            };
            pairs.push((version, pair.get(1).cloned().flatten()));
        }
        Ok(pairs)
    }

    /// Connections whose schedule needs a look now (by the Redis server's clock), at most
    /// `limit` (up to [`MAX_DUE_BATCH`]), with the server's time.
    pub async fn due_schedules(
        &self,
        limit: usize,
    ) -> Result<(Vec<ConnectionId>, DateTime<Utc>), StoreError> {
        let limit = limit.clamp(1, MAX_DUE_BATCH);
        let reply: Vec<String> = DUE
            .key(keys::SCHEDULE_DUE)
            .arg(limit)
            .invoke_async(&mut self.redis())
            .await?;
        let mut reply = reply.into_iter();
        let now = reply
            .next()
            .and_then(|ms| ms.parse::<i64>().ok())
            .ok_or_else(|| StoreError::corrupt(keys::SCHEDULE_DUE, "no server time in reply"))?;
        let now = from_ms(keys::SCHEDULE_DUE, now)?;
        let mut ids = Vec::new();
        for member in reply {
            match member.parse::<ConnectionId>() {
                Ok(id) => ids.push(id),
                Err(err) => {
                    // A member this code never wrote: drop it so it cannot come back every tick.
                    tracing::warn!(member = %member, error = %err, "dropping a malformed schedule index entry");
                    self.redis()
                        .zrem::<_, _, ()>(keys::SCHEDULE_DUE, &member)
                        .await?;
                }
            }
        }
        Ok((ids, now))
    }

    /// Claims what is due on one connection given its health (see the module docs), and moves
    /// the connection's index entry to its next look.
    pub async fn claim_schedule(
        &self,
        connection_id: &ConnectionId,
        context: &ClaimContext,
    ) -> Result<Claim, StoreError> {
        let key = keys::schedule(connection_id);
        let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let reply: Vec<String> = CLAIM
            .key(&key)
            .key(keys::status(connection_id))
            .key(keys::credentials(connection_id))
            .key(keys::connection(connection_id))
            .arg(context.status.as_str())
            .arg(context.consecutive_failures)
            .arg(to_ms(context.probe_at))
            .arg(millis(context.probe_rearm).max(1))
            .arg(millis(context.recheck).max(1))
            .arg(context.probes)
            .invoke_async(&mut self.redis())
            .await?;
        let mut reply = reply.into_iter();
        let kind = match reply.next().as_deref() {
            Some("due") => ClaimKind::Due,
            Some("probe") => ClaimKind::Probe,
            Some("waiting") => ClaimKind::Waiting,
            Some("blocked") => ClaimKind::Blocked,
            Some("stale") => ClaimKind::Stale,
            Some("unscheduled") => ClaimKind::Unscheduled,
            Some("gone") => ClaimKind::Gone,
            other => {
                return Err(StoreError::corrupt(
                    &key,
                    format!("unexpected claim outcome {other:?}"),
                ));
            }
        };
        let mut number = |what: &str| -> Result<i64, StoreError> {
            reply
                .next()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| StoreError::corrupt(&key, format!("claim reply without {what}")))
        };
        let next_ms = number("next look")?;
        let server_now = from_ms(&key, number("server time")?)?;
        let entities = reply
            .map(|entity| {
                entity
                    .parse::<Entity>()
                    .map_err(|err| StoreError::corrupt(&key, err))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next_look = match kind {
            ClaimKind::Gone => {
                self.unindex_schedule(connection_id).await?;
                None
            }
            // Leave the entry due: the next tick reads the status again.
            ClaimKind::Stale => Some(server_now),
            _ => self.index_schedule(connection_id, &key, next_ms).await?,
        };
        Ok(Claim {
            kind,
            entities,
            next_look,
            server_now,
        })
    }

    /// A connection's stored schedule (empty if it has none).
    pub async fn get_schedule(&self, connection_id: &ConnectionId) -> Result<Schedule, StoreError> {
        let key = keys::schedule(connection_id);
        let fields: HashMap<String, String> = self.redis().hgetall(&key).await?;
        let ms = |field: &str, text: &str| -> Result<i64, StoreError> {
            text.parse()
                .map_err(|err| StoreError::corrupt(&key, format!("{field}: {err}")))
        };
        let mut schedule = Schedule {
            revision: fields.get("revision").cloned(),
            ..Schedule::default()
        };
        if let Some(text) = fields.get("probe_at") {
            schedule.probe_at = Some(from_ms(&key, ms("probe_at", text)?)?);
        }
        if let Some(text) = fields.get("probes") {
            schedule.probes = u32::try_from(ms("probes", text)?).unwrap_or(u32::MAX);
        }
        for (field, text) in &fields {
            let Some(name) = field.strip_prefix("due:") else {
                continue;
            };
            let entity: Entity = name.parse().map_err(|err| StoreError::corrupt(&key, err))?;
            let interval_field = format!("interval:{name}");
            let interval = fields
                .get(&interval_field)
                .map(|text| ms(&interval_field, text))
                .transpose()?
                .ok_or_else(|| StoreError::corrupt(&key, format!("{interval_field} is missing")))?;
            schedule.entities.insert(
                entity,
                EntitySchedule {
                    interval: Duration::from_millis(u64::try_from(interval).unwrap_or(0)),
                    next_due: from_ms(&key, ms(field, text)?)?,
                },
            );
        }
        Ok(schedule)
    }

    /// Removes a connection's schedule and its index entry (the scheduler also does this by
    /// itself when it finds the connection gone).
    pub async fn remove_schedule(&self, connection_id: &ConnectionId) -> Result<(), StoreError> {
        self.unindex_schedule(connection_id).await?;
        self.redis()
            .del::<_, ()>(keys::schedule(connection_id))
            .await?;
        Ok(())
    }

    /// Every connection id in the schedule index, with its next look (for tools and tests).
    pub async fn list_schedule_index(
        &self,
    ) -> Result<Vec<(ConnectionId, DateTime<Utc>)>, StoreError> {
        let entries: Vec<(String, i64)> = self
            .redis()
            .zrange_withscores(keys::SCHEDULE_DUE, 0, -1)
            .await?;
        entries
            .into_iter()
            .map(|(id, ms)| {
                Ok((
                    id.parse()
                        .map_err(|err| StoreError::corrupt(keys::SCHEDULE_DUE, err))?,
                    from_ms(keys::SCHEDULE_DUE, ms)?,
                ))
            })
            .collect()
    }

    /// Puts the connection in the due index at `next_ms`, or takes it out if `next_ms` is
    /// negative (nothing scheduled).
    async fn index_schedule(
        &self,
        connection_id: &ConnectionId,
        key: &str,
        next_ms: i64,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        if next_ms < 0 {
            self.unindex_schedule(connection_id).await?;
            return Ok(None);
        }
        self.redis()
            .zadd::<_, _, _, ()>(keys::SCHEDULE_DUE, connection_id.to_string(), next_ms)
            .await?;
        Ok(Some(from_ms(key, next_ms)?))
    }

    async fn unindex_schedule(&self, connection_id: &ConnectionId) -> Result<(), StoreError> {
        self.redis()
            .zrem::<_, _, ()>(keys::SCHEDULE_DUE, connection_id.to_string())
            .await?;
        Ok(())
    }
}
