//! Connection status, its transitions, and the events they emit.
//!
//! [`Store::transition`] is one Lua script: it records the attempt's outcome (last success or
//! last error, consecutive failures), and only if the status actually changes it records the
//! transition and appends the matching event to the outbox, with its sequence number, in the
//! same atomic step. When several workers race to report the same change, exactly one of them
//! sees the old status, so the transition is recorded and emitted exactly once.
//!
//! Which changes emit an event:
//! - to `auth_required`: `connection.auth_required`;
//! - to `online` or `offline`: `connection.status_changed`, except `unknown` → `online` (a new
//!   connection's first success is not news);
//! - to `unknown`: nothing.
//!
//! A change also makes the connection's schedule due for a look now, so the scheduler applies
//! the new status at its next tick (see `schedule`, Status changes).

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use conveyor_core::{ConnectionId, ConnectionStatus, Entity, Event, EventId};
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};

use crate::codec::{HashFields, from_ms, to_ms};
use crate::outbox::APPEND_EVENT_LUA;
use crate::{Store, StoreError, keys};

/// Why a status was reported: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReason {
    /// A stable machine-readable code (`SOURCE_UNREACHABLE`, `AUTH_REJECTED`, `SYNC_SUCCEEDED`).
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

impl StatusReason {
    /// A reason from its code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        StatusReason {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The last error reported for a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// Its code.
    pub code: String,
    /// Its message.
    pub message: String,
    /// When it was reported.
    pub at: DateTime<Utc>,
}

/// A connection's current status and health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// The status.
    pub status: ConnectionStatus,
    /// Since when it has had this status (`None` while never reported).
    pub since: Option<DateTime<Utc>>,
    /// The last time a sync reached the source successfully.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last error.
    pub last_error: Option<LastError>,
    /// Failures reported since the last success.
    pub consecutive_failures: u64,
    /// When the scheduler will try the connection again, if it is backing off.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Per entity, the source time up to which the stored copy is complete.
    pub data_as_of: BTreeMap<Entity, DateTime<Utc>>,
}

/// One recorded status change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The status before.
    pub from: ConnectionStatus,
    /// The status after.
    pub to: ConnectionStatus,
    /// Why.
    pub reason: StatusReason,
}

/// What [`Store::transition`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionOutcome {
    /// Whether the status changed (and the transition was recorded).
    pub changed: bool,
    /// The status before the call.
    pub from: ConnectionStatus,
    /// The status after the call.
    pub to: ConnectionStatus,
    /// The event appended to the outbox, if the change emits one.
    pub event: Option<Event>,
}

/// KEYS: status, transitions, counters, events. ARGV: to, code, message, event id, history
/// length. Returns {changed, from, at, sequence, event type, event data}.
static TRANSITION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{APPEND_EVENT_LUA}
        local now = now_ms()
        local to = ARGV[1]
        local from = redis.call('HGET', KEYS[1], 'status') or 'unknown'
        if to == 'online' then
          redis.call('HSET', KEYS[1], 'last_success_at', now, 'consecutive_failures', 0)
          redis.call('HDEL', KEYS[1], 'next_attempt_at')
        elseif to == 'offline' or to == 'auth_required' then
          redis.call('HSET', KEYS[1], 'last_error_code', ARGV[2], 'last_error_message', ARGV[3],
            'last_error_at', now)
          redis.call('HINCRBY', KEYS[1], 'consecutive_failures', 1)
        end
        if from == to then
          return {{0, from, now, 0, '', ''}}
        end
        redis.call('HSET', KEYS[1], 'status', to, 'since', now)
        local transition = cjson.encode({{at = now, from = from, to = to,
          reason = {{code = ARGV[2], message = ARGV[3]}}}})
        redis.call('LPUSH', KEYS[2], transition)
        redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
        local event_type = ''
        if to == 'auth_required' then
          event_type = 'connection.auth_required'
        elseif (to == 'online' or to == 'offline') and not (from == 'unknown' and to == 'online') then
          event_type = 'connection.status_changed'
        end
        if event_type == '' then
          return {{1, from, now, 0, '', ''}}
        end
        local data = cjson.encode({{from = from, to = to,
          reason = {{code = ARGV[2], message = ARGV[3]}}}})
        local sequence = append_event(KEYS[3], KEYS[4], ARGV[4], event_type, now, data)
        return {{1, from, now, sequence, event_type, data}}
        "
    ))
});

/// The transition JSON as the script writes it (times in milliseconds, as text).
#[derive(Deserialize)]
struct StoredTransition {
    at: String,
    from: ConnectionStatus,
    to: ConnectionStatus,
    reason: StatusReason,
}

impl Store {
    /// Reports a connection's status after an attempt: `online` after a success, `offline`
    /// when unreachable, `auth_required` when credentials were rejected.
    ///
    /// Always updates the health fields (last success or last error, consecutive failures);
    /// records a transition and appends its event only if the status changes.
    pub async fn transition(
        &self,
        connection_id: &ConnectionId,
        to: ConnectionStatus,
        reason: &StatusReason,
    ) -> Result<TransitionOutcome, StoreError> {
        let event_id = EventId::new();
        let status_key = keys::status(connection_id);
        let (changed, from, at, sequence, event_type, data): (
            i64,
            String,
            i64,
            u64,
            String,
            String,
        ) = TRANSITION
            .key(&status_key)
            .key(keys::transitions(connection_id))
            .key(keys::counters(connection_id))
            .key(keys::events(connection_id))
            .arg(to.as_str())
            .arg(&reason.code)
            .arg(&reason.message)
            .arg(event_id.to_string())
            .arg(self.config.transition_history_len)
            .invoke_async(&mut self.redis())
            .await?;
        let from: ConnectionStatus = from
            .parse()
            .map_err(|err| StoreError::corrupt(&status_key, err))?;
        let event = if event_type.is_empty() {
            None
        } else {
            self.mark_outbox_ready(connection_id).await;
            Some(Event {
                id: event_id,
                event_type: event_type
                    .parse()
                    .map_err(|err| StoreError::corrupt(&status_key, err))?,
                timestamp: from_ms(&status_key, at)?,
                connection_id: *connection_id,
                sequence,
                data: serde_json::from_str(&data)
                    .map_err(|err| StoreError::corrupt(&status_key, err))?,
            })
        };
        if changed == 1 {
            // The schedule's next look was computed for the old status: an online connection's
            // next slot (up to a day ahead) or an offline one's next probe (up to an hour). Let
            // the next scheduler tick decide again under the new one (`schedule`, Status
            // changes). The index is another slot than the status: a step of its own.
            self.redis()
                .zadd::<_, _, _, ()>(keys::SCHEDULE_DUE, connection_id.to_string(), at)
                .await?;
        }
        if changed == 1 {
            tracing::info!(
                connection_id = %connection_id,
                from = %from,
                to = %to,
                reason = %reason.code,
                "connection status changed"
            );
        }
        Ok(TransitionOutcome {
            changed: changed == 1,
            from,
            to,
            event,
        })
    }

    /// A connection's status; `unknown` with empty fields if nothing was ever reported.
    pub async fn get_status(
        &self,
        connection_id: &ConnectionId,
    ) -> Result<StatusRecord, StoreError> {
        let key = keys::status(connection_id);
        let raw: HashMap<String, String> = self.redis().hgetall(&key).await?;
        let fields = HashFields::new(&key, raw);
        let last_error = match fields.opt_str("last_error_code") {
            Some(code) => Some(LastError {
                code: code.to_owned(),
                message: fields
                    .opt_str("last_error_message")
                    .unwrap_or("")
                    .to_owned(),
                at: fields.time("last_error_at")?,
            }),
            None => None,
        };
        let mut data_as_of = BTreeMap::new();
        for (field, value) in &fields.fields {
            if let Some(entity) = field.strip_prefix("data_as_of:") {
                let entity: Entity = entity
                    .parse()
                    .map_err(|err| StoreError::corrupt(&key, err))?;
                let ms: i64 = value
                    .parse()
                    .map_err(|err| StoreError::corrupt(&key, format!("{field}: {err}")))?;
                data_as_of.insert(entity, from_ms(&key, ms)?);
            }
        }
        Ok(StatusRecord {
            status: fields
                .opt_parse("status")?
                .unwrap_or(ConnectionStatus::Unknown),
            since: fields.opt_time("since")?,
            last_success_at: fields.opt_time("last_success_at")?,
            last_error,
            consecutive_failures: fields.count("consecutive_failures")?,
            next_attempt_at: fields.opt_time("next_attempt_at")?,
            data_as_of,
        })
    }

    /// Sets (or with `None` clears) when the scheduler will next try the connection.
    pub async fn set_next_attempt_at(
        &self,
        connection_id: &ConnectionId,
        at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let key = keys::status(connection_id);
        let mut redis = self.redis();
        match at {
            Some(at) => {
                redis
                    .hset::<_, _, _, ()>(&key, "next_attempt_at", to_ms(at))
                    .await?
            }
            None => redis.hdel::<_, _, ()>(&key, "next_attempt_at").await?,
        }
        Ok(())
    }

    /// Records that the stored copy of `entity` is complete up to `as_of` (source time).
    pub async fn set_data_as_of(
        &self,
        connection_id: &ConnectionId,
        entity: Entity,
        as_of: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.redis()
            .hset::<_, _, _, ()>(
                keys::status(connection_id),
                format!("data_as_of:{entity}"),
                to_ms(as_of),
            )
            .await?;
        Ok(())
    }

    /// The latest status transitions of a connection, newest first (at most the configured
    /// history length are kept).
    pub async fn list_transitions(
        &self,
        connection_id: &ConnectionId,
        limit: usize,
    ) -> Result<Vec<Transition>, StoreError> {
        let key = keys::transitions(connection_id);
        let limit = isize::try_from(limit.clamp(1, crate::codec::MAX_PAGE)).unwrap_or(1);
        let items: Vec<String> = self.redis().lrange(&key, 0, limit - 1).await?;
        items
            .iter()
            .map(|json| {
                let stored: StoredTransition =
                    serde_json::from_str(json).map_err(|err| StoreError::corrupt(&key, err))?;
                let ms: i64 = stored
                    .at
                    .parse()
                    .map_err(|err| StoreError::corrupt(&key, format!("at: {err}")))?;
                Ok(Transition {
                    at: from_ms(&key, ms)?,
                    from: stored.from,
                    to: stored.to,
                    reason: stored.reason,
                })
            })
            .collect()
    }
}
