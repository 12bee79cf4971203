//! The webhook delivery log: one delivery per (event, endpoint), every attempt of it, and the
//! indexes that list them by connection, endpoint and event.
//!
//! A delivery is created by the dispatcher before it pushes the delivery job, with an id derived
//! from the event and the endpoint ([`delivery_id_for`]), so a dispatcher that crashed after
//! creating it and re-dispatches the same outbox entry finds the same delivery instead of making a
//! second one. Its `state` tells the dispatcher whether a job may still need pushing: only a
//! `pending` delivery (no attempt recorded) does, and the job's unique key turns a push for a job
//! still queued or running into a no-op.
//!
//! Attempts are counted here rather than by the queue, because the webhook retry schedule (30 s,
//! 5 min, ... 24 h) is a table the queue's exponential backoff cannot express: the delivery job
//! reschedules itself by the table and this count says where in the table it is.
//! `round_attempts` restarts at 0 when a delivery is redelivered by hand, so a redelivered event
//! gets the whole schedule again.
//!
//! Deliveries and their attempts expire [`DELIVERY_RETENTION`] after their last write; the list
//! indexes drop older ids on each new delivery and readers skip ids whose data expired.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor_core::{ConnectionId, DeliveryId, EndpointId, Event, EventId, EventType, JobId};
use conveyor_webhooks::AttemptRecord;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ulid::Ulid;

use crate::codec::{HashFields, MAX_PAGE, decode_cursor, encode_cursor, to_ms};
use crate::{Page, Store, StoreError};

/// How long a delivery and its attempts are kept after their last write: 30 days.
pub const DELIVERY_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Attempts kept per delivery (the newest); the attempt count keeps counting past it.
pub const ATTEMPT_LOG_LEN: usize = 50;
/// The most deliveries one list call reads while filtering, so a filter matching little never
/// turns one request into a scan of the whole log.
const SCAN_BUDGET: usize = 5_000;

fn delivery_key(connection_id: &ConnectionId, delivery_id: &DeliveryId) -> String {
    format!("conveyor:{{{connection_id}}}:delivery:{delivery_id}")
}

fn attempts_key(connection_id: &ConnectionId, delivery_id: &DeliveryId) -> String {
    format!("conveyor:{{{connection_id}}}:delivery:{delivery_id}:attempts")
}

fn index_key(connection_id: &ConnectionId) -> String {
    format!("conveyor:{{{connection_id}}}:deliveries")
}

fn endpoint_index_key(connection_id: &ConnectionId, endpoint_id: &EndpointId) -> String {
    format!("conveyor:{{{connection_id}}}:deliveries:endpoint:{endpoint_id}")
}

fn event_index_key(connection_id: &ConnectionId, event_id: &EventId) -> String {
    format!("conveyor:{{{connection_id}}}:deliveries:event:{event_id}")
}

/// The delivery id of `event_id` to `endpoint_id`: the event's ULID time and 80 bits of a hash
/// of both ids, so every dispatcher derives the same id and ids still sort by event time.
pub fn delivery_id_for(event_id: &EventId, endpoint_id: &EndpointId) -> DeliveryId {
    let digest = Sha256::new()
        .chain_update(event_id.to_string())
        .chain_update(b"/")
        .chain_update(endpoint_id.to_string())
        .finalize();
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    DeliveryId::from_ulid(Ulid::from_parts(
        event_id.ulid().timestamp_ms(),
        u128::from_be_bytes(random),
    ))
}

/// The payload of a job on the webhook queue: deliver one delivery (its event is in the log).
///
/// A wire format: new fields get `#[serde(default)]`, none is renamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryJob {
    /// The delivery to make.
    pub delivery_id: DeliveryId,
    /// The connection whose event it is.
    pub connection_id: ConnectionId,
    /// The endpoint to deliver to.
    pub endpoint_id: EndpointId,
}

impl DeliveryJob {
    /// The queue's unique key: at most one job per delivery is queued, scheduled or running.
    pub fn unique_key(&self) -> String {
        format!("webhook:{}", self.delivery_id)
    }
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Created; its job is queued and no attempt has finished.
    Pending,
    /// An attempt failed; the next one is scheduled (`next_attempt_at`).
    Retrying,
    /// The receiver answered 2xx.
    Delivered,
    /// Out of attempts, or the receiver answered 410 Gone: its job is dead-lettered and it can
    /// be redelivered.
    Failed,
    /// Not attempted because the endpoint was disabled or deleted when its turn came.
    Cancelled,
}

impl DeliveryState {
    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            DeliveryState::Pending,
            DeliveryState::Retrying,
            DeliveryState::Delivered,
            DeliveryState::Failed,
            DeliveryState::Cancelled,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }

    /// Whether nothing more will happen unless someone redelivers it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeliveryState::Delivered | DeliveryState::Failed | DeliveryState::Cancelled
        )
    }
}

/// One delivery of one event to one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its id (derived from the event and the endpoint; fresh for test deliveries).
    pub id: DeliveryId,
    /// The connection.
    pub connection_id: ConnectionId,
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// The event, exactly as delivered.
    pub event: Event,
    /// Where it is.
    pub state: DeliveryState,
    /// Attempts made in all.
    pub attempts: u32,
    /// Attempts since it was created or last redelivered by hand: the position in the retry
    /// schedule.
    pub round_attempts: u32,
    /// The job currently carrying it.
    pub job_id: JobId,
    /// A test delivery asked for through the API (one attempt, never retried).
    pub test: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When the last attempt started.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When the next attempt is due, while retrying.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last attempt's response status.
    pub last_status: Option<u16>,
    /// The last attempt's error.
    pub last_error: Option<String>,
}

/// One attempt in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedAttempt {
    /// The attempt's number among all attempts of the delivery, from 1.
    pub attempt: u32,
    /// What it achieved: `delivered`, `gone`, `retry` or `failed`.
    pub outcome: String,
    /// Time, URL, status, duration, error, body excerpt.
    #[serde(flatten)]
    pub record: AttemptRecord,
}

/// What to write after an attempt.
#[derive(Debug, Clone)]
pub struct AttemptUpdate {
    /// The attempt.
    pub attempt: LoggedAttempt,
    /// The delivery's state after it.
    pub state: DeliveryState,
    /// When the next attempt is due, if one is scheduled.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Which deliveries to list. Every field narrows the list; the default lists all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryFilter {
    /// Only this endpoint's deliveries.
    pub endpoint_id: Option<EndpointId>,
    /// Only this event's deliveries.
    pub event_id: Option<EventId>,
    /// Only deliveries in one of these states (empty: any).
    pub states: Vec<DeliveryState>,
    /// Only events of this type.
    pub event_type: Option<EventType>,
    /// Only deliveries created at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// Creates a delivery unless it exists; returns the state of the one that now exists.
static ENSURE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local existing = redis.call('HGET', KEYS[1], 'state')
        if existing then return existing end
        local retention = tonumber(ARGV[1])
        local floor = ARGV[2]
        local member = ARGV[3]
        redis.call('HSET', KEYS[1], unpack(ARGV, 4))
        redis.call('PEXPIRE', KEYS[1], retention)
        for i = 2, #KEYS do
          redis.call('ZADD', KEYS[i], 0, member)
          redis.call('ZREMRANGEBYLEX', KEYS[i], '-', '(' .. floor)
          redis.call('PEXPIRE', KEYS[i], retention)
        end
        return 'new'
        ",
    )
});

/// Appends an attempt and updates the delivery's summary in one step.
static RECORD_ATTEMPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
        local retention = tonumber(ARGV[1])
        redis.call('RPUSH', KEYS[2], ARGV[2])
        redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
        local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
        redis.call('HINCRBY', KEYS[1], 'round_attempts', 1)
        redis.call('HSET', KEYS[1], 'state', ARGV[4], 'last_attempt_at', ARGV[5],
          'last_status', ARGV[6], 'last_error', ARGV[7], 'next_attempt_at', ARGV[8])
        redis.call('PEXPIRE', KEYS[1], retention)
        redis.call('PEXPIRE', KEYS[2], retention)
        return attempts
        ",
    )
});

/// Puts a delivery back to `pending` for a new round of attempts under a new job.
static REQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        redis.call('HSET', KEYS[1], 'state', 'pending', 'round_attempts', '0',
          'next_attempt_at', '', 'job_id', ARGV[1])
        redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
        return 1
        ",
    )
});

static SET_STATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        redis.call('HSET', KEYS[1], 'state', ARGV[1], 'last_error', ARGV[2], 'next_attempt_at', '')
        return 1
        ",
    )
});

impl Store {
    /// Creates the delivery of `event` to `endpoint_id` carried by `job_id` unless it exists,
    /// and returns the state of the delivery that now exists: `Pending` when it was just created
    /// (or exists but has had no attempt yet), so the caller pushes its job.
    pub async fn ensure_delivery(
        &self,
        delivery_id: &DeliveryId,
        endpoint_id: &EndpointId,
        event: &Event,
        job_id: &JobId,
        test: bool,
    ) -> Result<DeliveryState, StoreError> {
        let connection_id = &event.connection_id;
        let now = Utc::now();
        let event_json = serde_json::to_string(event)
            .map_err(|err| StoreError::Invalid(format!("event: {err}")))?;
        let retention_ms = retention_ms();
        let floor_ms = to_ms(now).saturating_sub(i64::try_from(retention_ms).unwrap_or(i64::MAX));
        let floor =
            DeliveryId::from_ulid(Ulid::from_parts(u64::try_from(floor_ms).unwrap_or(0), 0));
        let key = delivery_key(connection_id, delivery_id);
        let state: String = ENSURE
            .key(&key)
            .key(index_key(connection_id))
            .key(endpoint_index_key(connection_id, endpoint_id))
            .key(event_index_key(connection_id, &event.id))
            .arg(retention_ms)
            .arg(floor.to_string())
            .arg(delivery_id.to_string())
            .arg("endpoint_id")
            .arg(endpoint_id.to_string())
            .arg("event")
            .arg(event_json)
            .arg("state")
            .arg(DeliveryState::Pending.as_str())
            .arg("attempts")
            .arg(0)
            .arg("round_attempts")
            .arg(0)
            .arg("job_id")
            .arg(job_id.to_string())
            .arg("test")
            .arg(if test { "1" } else { "0" })
            .arg("created_at")
            .arg(to_ms(now))
            .invoke_async(&mut self.redis())
            .await?;
        if state == "new" {
            return Ok(DeliveryState::Pending);
        }
        DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::corrupt(key, format!("unknown delivery state `{state}`")))
    }

    /// One delivery.
    pub async fn get_delivery(
        &self,
        connection_id: &ConnectionId,
        delivery_id: &DeliveryId,
    ) -> Result<Delivery, StoreError> {
        let key = delivery_key(connection_id, delivery_id);
        let fields: HashMap<String, String> = self.redis().hgetall(&key).await?;
        if fields.is_empty() {
            return Err(StoreError::not_found("delivery", delivery_id));
        }
        parse_delivery(connection_id, delivery_id, &key, fields)
    }

    /// A delivery's logged attempts, oldest first (the newest [`ATTEMPT_LOG_LEN`]).
    pub async fn delivery_attempts(
        &self,
        connection_id: &ConnectionId,
        delivery_id: &DeliveryId,
    ) -> Result<Vec<LoggedAttempt>, StoreError> {
        let key = attempts_key(connection_id, delivery_id);
        let entries: Vec<String> = self.redis().lrange(&key, 0, -1).await?;
        entries
            .iter()
            .map(|json| serde_json::from_str(json).map_err(|err| StoreError::corrupt(&key, err)))
            .collect()
    }

    /// Logs an attempt and updates the delivery; returns the number of attempts in all.
    ///
    /// Fails with `NotFound` if the delivery expired meanwhile.
    pub async fn record_delivery_attempt(
        &self,
        connection_id: &ConnectionId,
        delivery_id: &DeliveryId,
        update: &AttemptUpdate,
    ) -> Result<u32, StoreError> {
        let record = &update.attempt.record;
        let attempt_json = serde_json::to_string(&update.attempt)
            .map_err(|err| StoreError::Invalid(format!("attempt: {err}")))?;
        let attempts: i64 = RECORD_ATTEMPT
            .key(delivery_key(connection_id, delivery_id))
            .key(attempts_key(connection_id, delivery_id))
            .arg(retention_ms())
            .arg(attempt_json)
            .arg(ATTEMPT_LOG_LEN)
            .arg(update.state.as_str())
            .arg(to_ms(record.attempted_at))
            .arg(
                record
                    .status
                    .map(|status| status.to_string())
                    .unwrap_or_default(),
            )
            .arg(record.error.as_deref().unwrap_or(""))
            .arg(
                update
                    .next_attempt_at
                    .map(|at| to_ms(at).to_string())
                    .unwrap_or_default(),
            )
            .invoke_async(&mut self.redis())
            .await?;
        u32::try_from(attempts).map_err(|_| StoreError::not_found("delivery", delivery_id))
    }

    /// Marks a delivery `Cancelled` (its endpoint was disabled or deleted) with the reason.
    pub async fn cancel_delivery(
        &self,
        connection_id: &ConnectionId,
        delivery_id: &DeliveryId,
        reason: &str,
    ) -> Result<(), StoreError> {
        let updated: i64 = SET_STATE
            .key(delivery_key(connection_id, delivery_id))
            .arg(DeliveryState::Cancelled.as_str())
            .arg(reason)
            .invoke_async(&mut self.redis())
            .await?;
        if updated == 0 {
            return Err(StoreError::not_found("delivery", delivery_id));
        }
        Ok(())
    }

    /// Puts a delivery back to `Pending` under `job_id` with a fresh round of attempts (the
    /// caller then pushes the job). Returns the delivery as it now is.
    pub async fn requeue_delivery(
        &self,
        connection_id: &ConnectionId,
        delivery_id: &DeliveryId,
        job_id: &JobId,
    ) -> Result<Delivery, StoreError> {
        let updated: i64 = REQUEUE
            .key(delivery_key(connection_id, delivery_id))
            .arg(job_id.to_string())
            .arg(retention_ms())
            .invoke_async(&mut self.redis())
            .await?;
        if updated == 0 {
            return Err(StoreError::not_found("delivery", delivery_id));
        }
        self.get_delivery(connection_id, delivery_id).await
    }

    /// A connection's deliveries, newest first, matching `filter`, `limit` per page (at most
    /// 1000).
    ///
    /// One call reads at most 5000 deliveries while filtering; a page may therefore hold fewer
    /// than `limit` items and still carry a `next_cursor`.
    pub async fn list_deliveries(
        &self,
        connection_id: &ConnectionId,
        filter: &DeliveryFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Delivery>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let index = match (&filter.event_id, &filter.endpoint_id) {
            (Some(event_id), _) => event_index_key(connection_id, event_id),
            (None, Some(endpoint_id)) => endpoint_index_key(connection_id, endpoint_id),
            (None, None) => index_key(connection_id),
        };
        // Newest first: from the cursor (exclusive) or the top, down to `since` (inclusive).
        let mut upper = match cursor {
            Some(cursor) => format!("({}", decode_cursor(cursor)?),
            None => "+".to_owned(),
        };
        let lower = match filter.since {
            Some(since) => format!(
                "[{}",
                DeliveryId::from_ulid(Ulid::from_parts(
                    u64::try_from(to_ms(since)).unwrap_or(0),
                    0
                ))
            ),
            None => "-".to_owned(),
        };
        let mut redis = self.redis();
        let mut items = Vec::new();
        let mut scanned = 0usize;
        let mut last_seen: Option<String> = None;
        let chunk = limit.max(100);
        loop {
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(&index)
                .arg(&upper)
                .arg(&lower)
                .arg("BYLEX")
                .arg("REV")
                .arg("LIMIT")
                .arg(0)
                .arg(chunk)
                .query_async(&mut redis)
                .await?;
            let exhausted = ids.len() < chunk;
            let delivery_ids = ids
                .iter()
                .map(|id| {
                    id.parse::<DeliveryId>()
                        .map_err(|err| StoreError::corrupt(&index, err))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut pipe = redis::pipe();
            for delivery_id in &delivery_ids {
                pipe.hgetall(delivery_key(connection_id, delivery_id));
            }
            let all: Vec<HashMap<String, String>> = if delivery_ids.is_empty() {
                Vec::new()
            } else {
                pipe.query_async(&mut redis).await?
            };
            for (delivery_id, fields) in delivery_ids.iter().zip(all) {
                scanned += 1;
                last_seen = Some(delivery_id.to_string());
                // An id whose data expired: the index is trimmed lazily.
                if fields.is_empty() {
                    continue;
                }
                let key = delivery_key(connection_id, delivery_id);
                let delivery = parse_delivery(connection_id, delivery_id, &key, fields)?;
                if filter.matches(&delivery) {
                    items.push(delivery);
                    if items.len() == limit {
                        break;
                    }
                }
            }
            if items.len() == limit {
                // More may follow (at worst the next page is empty): it starts after the last
                // delivery returned.
                let next_cursor = items
                    .last()
                    .map(|delivery| encode_cursor(&delivery.id.to_string()));
                return Ok(Page { items, next_cursor });
            }
            if exhausted {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
            if scanned >= SCAN_BUDGET {
                return Ok(Page {
                    items,
                    next_cursor: last_seen.as_deref().map(encode_cursor),
                });
            }
            match &last_seen {
                Some(last) => upper = format!("({last}"),
                None => {
                    return Ok(Page {
                        items,
                        next_cursor: None,
                    });
                }
            }
        }
    }
}

impl DeliveryFilter {
    fn matches(&self, delivery: &Delivery) -> bool {
        self.endpoint_id.is_none_or(|id| id == delivery.endpoint_id)
            && self.event_id.is_none_or(|id| id == delivery.event.id)
            && self
                .event_type
                .is_none_or(|t| t == delivery.event.event_type)
            && (self.states.is_empty() || self.states.contains(&delivery.state))
            && self.since.is_none_or(|since| delivery.created_at >= since)
    }
}

fn retention_ms() -> u64 {
    u64::try_from(DELIVERY_RETENTION.as_millis()).unwrap_or(u64::MAX)
}

fn parse_delivery(
    connection_id: &ConnectionId,
    delivery_id: &DeliveryId,
    key: &str,
    fields: HashMap<String, String>,
) -> Result<Delivery, StoreError> {
    let fields = HashFields::new(key, fields);
    let event: Event = serde_json::from_str(fields.str("event")?)
        .map_err(|err| StoreError::corrupt(key, format!("event: {err}")))?;
    let state = fields.str("state")?;
    let state = DeliveryState::parse(state)
        .ok_or_else(|| StoreError::corrupt(key, format!("unknown delivery state `{state}`")))?;
    let count = |field: &str| -> Result<u32, StoreError> {
        u32::try_from(fields.count(field)?)
            .map_err(|_| StoreError::corrupt(key, format!("`{field}` is out of range")))
    };
    Ok(Delivery {
        id: *delivery_id,
        connection_id: *connection_id,
        endpoint_id: fields.parse("endpoint_id")?,
        state,
        attempts: count("attempts")?,
        round_attempts: count("round_attempts")?,
        job_id: fields.parse("job_id")?,
        test: fields.opt_str("test") == Some("1"),
        created_at: fields.time("created_at")?,
        last_attempt_at: fields.opt_time("last_attempt_at")?,
        next_attempt_at: fields.opt_time("next_attempt_at")?,
        last_status: fields.opt_parse("last_status")?,
        last_error: fields.opt_str("last_error").map(str::to_owned),
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_deterministic_and_sort_by_event_time() {
        let event = EventId::new();
        let endpoint = EndpointId::new();
        let id = delivery_id_for(&event, &endpoint);
        assert_eq!(id, delivery_id_for(&event, &endpoint));
        assert_ne!(id, delivery_id_for(&event, &EndpointId::new()));
        assert_eq!(id.ulid().timestamp_ms(), event.ulid().timestamp_ms());
    }

    #[test]
    fn filters_match_every_given_field() {
        let filter = DeliveryFilter {
            states: vec![DeliveryState::Failed, DeliveryState::Cancelled],
            ..DeliveryFilter::default()
        };
        assert!(filter.states.contains(&DeliveryState::Failed));
        assert!(DeliveryState::Failed.is_final());
        assert!(!DeliveryState::Retrying.is_final());
        assert_eq!(
            DeliveryState::parse("retrying"),
            Some(DeliveryState::Retrying)
        );
        assert_eq!(DeliveryState::parse("nope"), None);
    }
}
