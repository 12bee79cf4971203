//! The event outbox: events appended durably, in order, per connection, and read by the webhook
//! dispatcher with crash recovery.
//!
//! Each connection's events go to its own Redis stream (`conveyor:{conn}:events`), appended by a
//! script that assigns the connection's next `sequence` with HINCRBY in the same step, so
//! sequences have no gaps or duplicates whichever worker appends. Status transitions append their
//! event inside the transition script itself (see [`crate::status`]).
//!
//! Readers use the consumer group `dispatchers`: [`Store::read_events`] hands each new entry to
//! one consumer, [`Store::ack_events`] removes delivered entries, and
//! [`Store::claim_stale_events`] takes over entries a crashed dispatcher read but never
//! acknowledged. An entry leaves the stream only when acknowledged, so every event is delivered
//! at least once.
//!
//! To find which streams to read without scanning every connection, each append also bumps the
//! connection's score in the global `conveyor:outbox:ready` set (a separate command, since it is
//! another slot). The dispatcher lists that set, drains each stream, and calls
//! [`Store::settle_outbox`], which removes the connection only if nothing was appended since.
//! Should a worker crash between the append and the bump, the event waits in its stream until a
//! sweep over [`Store::list_connection_ids`] finds it.

use std::sync::LazyLock;
use std::time::Duration;

use conveyor_core::{ConnectionId, Event, EventId, EventType};
use redis::{AsyncCommands, Script};

use crate::codec::from_ms;
use crate::{Store, StoreError, keys};

/// The consumer group every dispatcher reads through.
pub const CONSUMER_GROUP: &str = "dispatchers";

/// Lua that appends one event: assigns the sequence and adds the stream entry. Prepended to every
/// script that emits events, so the sequence and the append are one atomic step.
pub(crate) const APPEND_EVENT_LUA: &str = r"
local function append_event(counters, stream, event_id, event_type, at, data)
  local sequence = redis.call('HINCRBY', counters, 'event_sequence', 1)
  redis.call('XADD', stream, '*', 'id', event_id, 'type', event_type, 'at', at,
    'sequence', sequence, 'data', data)
  return sequence
end
local function now_ms()
  local t = redis.call('TIME')
  return string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
";

static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{APPEND_EVENT_LUA}
        local at = now_ms()
        local sequence = append_event(KEYS[1], KEYS[2], ARGV[1], ARGV[2], at, ARGV[3])
        return {{sequence, at}}
        "
    ))
});

/// Creates the group on first use (from the stream's start, so nothing appended before is
/// skipped), then reads new entries for one consumer.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
        local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
          'STREAMS', KEYS[1], '>')
        if not reply then return {} end
        return reply[1][2]
        ",
    )
});

static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
        local reply = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0',
          'COUNT', ARGV[4])
        return reply[2]
        ",
    )
});

static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then
          redis.call('ZREM', KEYS[1], ARGV[1])
          return 1
        end
        return 0
        ",
    )
});

/// One event waiting in a connection's outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// The stream entry id; pass it to [`Store::ack_events`] once delivered.
    pub entry_id: String,
    /// The event.
    pub event: Event,
}

impl Store {
    /// Appends an event to a connection's outbox, with the connection's next sequence number.
    pub async fn append_event(
        &self,
        connection_id: &ConnectionId,
        event_type: EventType,
        data: serde_json::Value,
    ) -> Result<Event, StoreError> {
        let id = EventId::new();
        let mut redis = self.redis();
        let (sequence, at): (u64, i64) = APPEND
            .key(keys::counters(connection_id))
            .key(keys::events(connection_id))
            .arg(id.to_string())
            .arg(event_type.as_str())
            .arg(data.to_string())
            .invoke_async(&mut redis)
            .await?;
        self.mark_outbox_ready(connection_id).await;
        Ok(Event {
            id,
            event_type,
            timestamp: from_ms(&keys::events(connection_id), at)?,
            connection_id: *connection_id,
            sequence,
            data,
        })
    }

    /// Bumps the connection in the ready set. Best effort: the event is already durable, and a
    /// missed bump only delays delivery until the dispatcher's sweep.
    pub(crate) async fn mark_outbox_ready(&self, connection_id: &ConnectionId) {
        let bumped: Result<f64, _> = self
            .redis()
            .zincr(keys::OUTBOX_READY, connection_id.to_string(), 1)
            .await;
        if let Err(err) = bumped {
            tracing::warn!(connection_id = %connection_id, error = %err, "outbox ready mark failed; the sweep will find the event");
        }
    }

    /// Connections with events appended since they were last settled, up to `limit`, each with
    /// the score to pass to [`Store::settle_outbox`].
    pub async fn outbox_ready_connections(
        &self,
        limit: usize,
    ) -> Result<Vec<(ConnectionId, String)>, StoreError> {
        let limit = isize::try_from(limit.clamp(1, crate::codec::MAX_PAGE)).unwrap_or(1);
        let pairs: Vec<(String, String)> = redis::cmd("ZRANGE")
            .arg(keys::OUTBOX_READY)
            .arg(0)
            .arg(limit - 1)
            .arg("WITHSCORES")
            .query_async(&mut self.redis())
            .await?;
        pairs
            .into_iter()
            .map(|(id, score)| {
                id.parse()
                    .map(|id| (id, score))
                    .map_err(|err| StoreError::corrupt(keys::OUTBOX_READY, err))
            })
            .collect()
    }

    /// Removes a drained connection from the ready set, unless an event was appended since its
    /// score was read (then it stays, and the new event is read on the next round). Returns
    /// whether it was removed.
    pub async fn settle_outbox(
        &self,
        connection_id: &ConnectionId,
        score: &str,
    ) -> Result<bool, StoreError> {
        let removed: i64 = SETTLE
            .key(keys::OUTBOX_READY)
            .arg(connection_id.to_string())
            .arg(score)
            .invoke_async(&mut self.redis())
            .await?;
        Ok(removed == 1)
    }

    /// Reads up to `count` events of a connection never handed to any consumer, for `consumer`
    /// (a name unique to the dispatcher process). They stay pending until acknowledged.
    pub async fn read_events(
        &self,
        connection_id: &ConnectionId,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let entries: Vec<(String, Vec<String>)> = READ
            .key(keys::events(connection_id))
            .arg(CONSUMER_GROUP)
            .arg(consumer)
            .arg(count.clamp(1, crate::codec::MAX_PAGE))
            .invoke_async(&mut self.redis())
            .await?;
        parse_entries(connection_id, entries)
    }

    /// Takes over events that another consumer read but has not acknowledged for at least
    /// `min_idle` (it probably crashed), up to `count`.
    pub async fn claim_stale_events(
        &self,
        connection_id: &ConnectionId,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let entries: Vec<(String, Vec<String>)> = CLAIM
            .key(keys::events(connection_id))
            .arg(CONSUMER_GROUP)
            .arg(consumer)
            .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX))
            .arg(count.clamp(1, crate::codec::MAX_PAGE))
            .invoke_async(&mut self.redis())
            .await?;
        parse_entries(connection_id, entries)
    }

    /// Acknowledges delivered events and removes them from the outbox.
    pub async fn ack_events(
        &self,
        connection_id: &ConnectionId,
        entry_ids: &[String],
    ) -> Result<(), StoreError> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        let key = keys::events(connection_id);
        redis::pipe()
            .atomic()
            .xack(&key, CONSUMER_GROUP, entry_ids)
            .ignore()
            .xdel(&key, entry_ids)
            .ignore()
            .query_async::<()>(&mut self.redis())
            .await?;
        Ok(())
    }

    /// Events still in a connection's outbox (not yet acknowledged), oldest first, up to
    /// `count`: for operators and tests.
    pub async fn pending_events(
        &self,
        connection_id: &ConnectionId,
        count: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(keys::events(connection_id))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(count.clamp(1, crate::codec::MAX_PAGE))
            .query_async(&mut self.redis())
            .await?;
        parse_entries(connection_id, entries)
    }
}

/// Rebuilds events from stream entries (`[id, [field, value, ...]]`).
pub(crate) fn parse_entries(
    connection_id: &ConnectionId,
    entries: Vec<(String, Vec<String>)>,
) -> Result<Vec<OutboxEntry>, StoreError> {
    let key = keys::events(connection_id);
    entries
        .into_iter()
        .map(|(entry_id, flat)| {
            let mut id = None;
            let mut event_type = None;
            let mut at = None;
            let mut sequence = None;
            let mut data = None;
            for pair in flat.chunks_exact(2) {
                match pair[0].as_str() {
                    "id" => id = Some(pair[1].as_str()),
                    "type" => event_type = Some(pair[1].as_str()),
                    "at" => at = Some(pair[1].as_str()),
                    "sequence" => sequence = Some(pair[1].as_str()),
                    "data" => data = Some(pair[1].as_str()),
                    _ => {}
                }
            }
            let bad = |what: &str| StoreError::corrupt(format!("{key} {entry_id}"), what);
            let event = Event {
                id: id
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad("bad or missing id"))?,
                event_type: event_type
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad("bad or missing type"))?,
                timestamp: at
                    .and_then(|v| v.parse::<i64>().ok())
                    .ok_or_else(|| bad("bad or missing time"))
                    .and_then(|ms| from_ms(&key, ms))?,
                connection_id: *connection_id,
                sequence: sequence
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad("bad or missing sequence"))?,
                data: data
                    .and_then(|v| serde_json::from_str(v).ok())
                    .ok_or_else(|| bad("bad or missing data"))?,
            };
            Ok(OutboxEntry { entry_id, event })
        })
        .collect()
}
