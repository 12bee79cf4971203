//! Sync run history: one record per run, bounded per connection.
//!
//! A run is created when its job is queued and updated as it runs (started, counts, outcome).
//! Each run is a Redis hash of flat fields, so an update touches only the fields it sets and two
//! writers updating different fields never overwrite each other. The per-connection index is a
//! lexicographic ZSET of sync ids (ULIDs sort by creation time), which gives "newest first" for
//! free; when it grows past [`StoreConfig::run_history_len`](crate::StoreConfig) the oldest runs
//! are dropped.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use conveyor_core::{ConnectionId, Entity, SyncId, SyncMode, SyncTrigger};
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};

use crate::codec::{HashFields, decode_cursor, encode_cursor, from_ms, lex_page, to_ms};
use crate::{Page, Store, StoreError, keys};

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunStatus {
    /// Its job is waiting in the queue.
    Queued,
    /// A worker is running it.
    Running,
    /// An attempt failed; the job will run again after a backoff.
    Retrying,
    /// It finished and the cursor moved.
    Succeeded,
    /// It failed for good (attempts exhausted, or retrying cannot help).
    Failed,
    /// It was cancelled before it finished.
    Cancelled,
}

impl RunStatus {
    /// Every status, in declaration order.
    pub const ALL: &'static [RunStatus] = &[
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Retrying,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Retrying => "retrying",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the run is over (succeeded, failed or cancelled).
    pub const fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .iter()
            .copied()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown run status `{s}`"))
    }
}

/// Why a run (or an attempt of it) failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// A stable machine-readable code (`SOURCE_UNREACHABLE`, `AUTH_REJECTED`...).
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

/// One sync run, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRun {
    /// The run's id (also its job's `sync_id`).
    pub id: SyncId,
    /// The connection synced.
    pub connection_id: ConnectionId,
    /// The entity synced.
    pub entity: Entity,
    /// Incremental or full.
    pub mode: SyncMode,
    /// Why it ran.
    pub trigger: SyncTrigger,
    /// Where it is.
    pub status: RunStatus,
    /// When its job was queued.
    pub queued_at: DateTime<Utc>,
    /// When its first attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished (succeeded, failed or was cancelled).
    pub finished_at: Option<DateTime<Utc>>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Pages stored.
    pub pages: u64,
    /// Records read from the source.
    pub records_fetched: u64,
    /// Records written because they were new or changed.
    pub records_written: u64,
    /// Records read whose content had not changed.
    pub records_unchanged: u64,
    /// Records marked deleted.
    pub records_deleted: u64,
    /// The last error, if any.
    pub error: Option<RunError>,
}

/// What is known when a run is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// The run's id (the job's `sync_id`).
    pub id: SyncId,
    /// The connection to sync.
    pub connection_id: ConnectionId,
    /// The entity to sync.
    pub entity: Entity,
    /// Incremental or full.
    pub mode: SyncMode,
    /// Why it runs.
    pub trigger: SyncTrigger,
    /// When its job was queued.
    pub queued_at: DateTime<Utc>,
}

/// Fields to set on a run; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunUpdate {
    /// New status.
    pub status: Option<RunStatus>,
    /// Start time.
    pub started_at: Option<DateTime<Utc>>,
    /// Finish time.
    pub finished_at: Option<DateTime<Utc>>,
    /// Attempts so far.
    pub attempts: Option<u32>,
    /// Pages stored so far.
    pub pages: Option<u64>,
    /// Records fetched so far.
    pub records_fetched: Option<u64>,
    /// Records written so far.
    pub records_written: Option<u64>,
    /// Records unchanged so far.
    pub records_unchanged: Option<u64>,
    /// Records marked deleted.
    pub records_deleted: Option<u64>,
    /// `Some(Some(e))` records an error, `Some(None)` clears it.
    pub error: Option<Option<RunError>>,
}

/// Which runs a list returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs of this entity.
    pub entity: Option<Entity>,
    /// Only runs in this status.
    pub status: Option<RunStatus>,
}

impl RunFilter {
    fn matches(&self, run: &SyncRun) -> bool {
        self.entity.is_none_or(|entity| run.entity == entity)
            && self.status.is_none_or(|status| run.status == status)
    }
}

static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
        redis.call('HSET', KEYS[1], unpack(ARGV, 2))
        redis.call('ZADD', KEYS[2], 0, ARGV[1])
        return redis.call('ZCARD', KEYS[2])
        ",
    )
});

/// ARGV: number of fields to set, then field/value pairs, then fields to delete.
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
        local sets = tonumber(ARGV[1])
        if sets > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 2, 1 + 2 * sets)) end
        if #ARGV > 1 + 2 * sets then redis.call('HDEL', KEYS[1], unpack(ARGV, 2 + 2 * sets)) end
        return redis.call('HGETALL', KEYS[1])
        ",
    )
});

/// Runs examined per step when a filtered list skips non-matching runs.
const LIST_BATCH: usize = 100;

impl Store {
    /// Records a new run with status `queued`; drops the oldest runs of the connection beyond
    /// the configured history length.
    ///
    /// Fails with `Conflict` if a run with this id exists.
    pub async fn create_run(&self, new: &NewRun) -> Result<SyncRun, StoreError> {
        let run = SyncRun {
            id: new.id,
            connection_id: new.connection_id,
            entity: new.entity,
            mode: new.mode,
            trigger: new.trigger,
            status: RunStatus::Queued,
            // Redis keeps milliseconds; answer with what a later read returns.
            queued_at: from_ms("queued_at", to_ms(new.queued_at))?,
            started_at: None,
            finished_at: None,
            attempts: 0,
            pages: 0,
            records_fetched: 0,
            records_written: 0,
            records_unchanged: 0,
            records_deleted: 0,
            error: None,
        };
        let fields: Vec<(&str, String)> = vec![
            ("id", run.id.to_string()),
            ("connection_id", run.connection_id.to_string()),
            ("entity", run.entity.to_string()),
            ("mode", run.mode.to_string()),
            ("trigger", run.trigger.to_string()),
            ("status", run.status.to_string()),
            ("queued_at", to_ms(run.queued_at).to_string()),
        ];
        let mut redis = self.redis();
        let index = keys::runs(&run.connection_id);
        let mut invocation = CREATE.key(keys::run(&run.connection_id, &run.id));
        invocation.key(&index).arg(run.id.to_string());
        for (field, value) in &fields {
            invocation.arg(*field).arg(value);
        }
        let count: i64 = invocation.invoke_async(&mut redis).await?;
        if count < 0 {
            return Err(StoreError::Conflict {
                what: "sync run",
                id: run.id.to_string(),
                detail: "a run with this id already exists".into(),
            });
        }
        // The owner lookup is another slot, so it is a command of its own, written after the
        // run: a crash in between leaves a run findable only through its connection.
        redis
            .set::<_, _, ()>(keys::run_owner(&run.id), run.connection_id.to_string())
            .await?;
        let overflow = usize::try_from(count)
            .unwrap_or(0)
            .saturating_sub(self.config.run_history_len);
        if overflow > 0 {
            self.trim_runs(&run.connection_id, overflow).await?;
        }
        Ok(run)
    }

    /// Drops the `overflow` oldest runs of a connection. Two trims racing drop the same runs,
    /// which is harmless.
    async fn trim_runs(
        &self,
        connection_id: &ConnectionId,
        overflow: usize,
    ) -> Result<(), StoreError> {
        let mut redis = self.redis();
        let index = keys::runs(connection_id);
        let oldest: Vec<String> = redis
            .zrange(
                &index,
                0,
                isize::try_from(overflow).unwrap_or(isize::MAX) - 1,
            )
            .await?;
        let mut pipe = redis::pipe();
        for sync_id in &oldest {
            let sync_id: SyncId = sync_id
                .parse()
                .map_err(|err| StoreError::corrupt(&index, err))?;
            pipe.unlink(keys::run(connection_id, &sync_id))
                .ignore()
                .unlink(keys::run_owner(&sync_id))
                .ignore();
        }
        pipe.zrem(&index, &oldest).ignore();
        pipe.query_async::<()>(&mut redis).await?;
        Ok(())
    }

    /// The run `sync_id` of a connection.
    pub async fn get_run(
        &self,
        connection_id: &ConnectionId,
        sync_id: &SyncId,
    ) -> Result<SyncRun, StoreError> {
        let key = keys::run(connection_id, sync_id);
        let fields: HashMap<String, String> = self.redis().hgetall(&key).await?;
        if fields.is_empty() {
            return Err(StoreError::not_found("sync run", sync_id));
        }
        run_from_fields(&HashFields::new(&key, fields))
    }

    /// The run `sync_id`, whichever connection it belongs to.
    pub async fn find_run(&self, sync_id: &SyncId) -> Result<SyncRun, StoreError> {
        let key = keys::run_owner(sync_id);
        let owner: Option<String> = self.redis().get(&key).await?;
        let owner = owner.ok_or_else(|| StoreError::not_found("sync run", sync_id))?;
        let connection_id: ConnectionId = owner
            .parse()
            .map_err(|err| StoreError::corrupt(&key, err))?;
        self.get_run(&connection_id, sync_id).await
    }

    /// Sets the fields of `update` on a run and returns the run as it now is.
    pub async fn update_run(
        &self,
        connection_id: &ConnectionId,
        sync_id: &SyncId,
        update: &RunUpdate,
    ) -> Result<SyncRun, StoreError> {
        let mut sets: Vec<(&str, String)> = Vec::new();
        let mut deletes: Vec<&str> = Vec::new();
        if let Some(status) = update.status {
            sets.push(("status", status.to_string()));
        }
        let times = [
            ("started_at", update.started_at),
            ("finished_at", update.finished_at),
        ];
        for (field, value) in times {
            if let Some(at) = value {
                sets.push((field, to_ms(at).to_string()));
            }
        }
        if let Some(attempts) = update.attempts {
            sets.push(("attempts", attempts.to_string()));
        }
        let counts = [
            ("pages", update.pages),
            ("records_fetched", update.records_fetched),
            ("records_written", update.records_written),
            ("records_unchanged", update.records_unchanged),
            ("records_deleted", update.records_deleted),
        ];
        for (field, value) in counts {
            if let Some(value) = value {
                sets.push((field, value.to_string()));
            }
        }
        match &update.error {
            Some(Some(error)) => {
                sets.push(("error_code", error.code.clone()));
                sets.push(("error_message", error.message.clone()));
            }
            Some(None) => deletes.extend(["error_code", "error_message"]),
            None => {}
        }
        let key = keys::run(connection_id, sync_id);
        let mut invocation = UPDATE.key(&key);
        invocation.arg(sets.len());
        for (field, value) in &sets {
            invocation.arg(*field).arg(value);
        }
        for field in &deletes {
            invocation.arg(*field);
        }
        let fields: HashMap<String, String> = invocation.invoke_async(&mut self.redis()).await?;
        if fields.is_empty() {
            return Err(StoreError::not_found("sync run", sync_id));
        }
        run_from_fields(&HashFields::new(&key, fields))
    }

    /// A connection's runs, newest first, `limit` per page (at most 1000), optionally only those
    /// of one entity or status.
    pub async fn list_runs(
        &self,
        connection_id: &ConnectionId,
        filter: RunFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<SyncRun>, StoreError> {
        let limit = limit.clamp(1, crate::codec::MAX_PAGE);
        let mut after = cursor.map(decode_cursor).transpose()?;
        let index = keys::runs(connection_id);
        let mut redis = self.redis();
        let mut items = Vec::new();
        loop {
            let (ids, more) = lex_page(
                &mut redis,
                &index,
                true,
                after.as_deref(),
                limit.max(LIST_BATCH),
            )
            .await?;
            let mut parsed = Vec::with_capacity(ids.len());
            let mut pipe = redis::pipe();
            for id in &ids {
                let sync_id: SyncId = id.parse().map_err(|err| StoreError::corrupt(&index, err))?;
                let key = keys::run(connection_id, &sync_id);
                pipe.hgetall(&key);
                parsed.push(key);
            }
            let all: Vec<HashMap<String, String>> = if ids.is_empty() {
                Vec::new()
            } else {
                pipe.query_async(&mut redis).await?
            };
            let examined = all.len();
            for (position, (key, fields)) in parsed.iter().zip(all).enumerate() {
                after = Some(ids[position].clone());
                if fields.is_empty() {
                    continue; // trimmed or deleted between the index read and now
                }
                let run = run_from_fields(&HashFields::new(key, fields))?;
                if !filter.matches(&run) {
                    continue;
                }
                items.push(run);
                if items.len() == limit {
                    let has_more = more || position + 1 < examined;
                    return Ok(Page {
                        items,
                        next_cursor: has_more.then(|| encode_cursor(&ids[position])),
                    });
                }
            }
            if !more {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
        }
    }
}

fn run_from_fields(fields: &HashFields<'_>) -> Result<SyncRun, StoreError> {
    let error = match (
        fields.opt_str("error_code"),
        fields.opt_str("error_message"),
    ) {
        (Some(code), message) => Some(RunError {
            code: code.to_owned(),
            message: message.unwrap_or_default().to_owned(),
        }),
        _ => None,
    };
    Ok(SyncRun {
        id: fields.parse("id")?,
        connection_id: fields.parse("connection_id")?,
        entity: fields.parse("entity")?,
        mode: fields.parse("mode")?,
        trigger: fields.parse("trigger")?,
        status: fields.parse("status")?,
        queued_at: fields.time("queued_at")?,
        started_at: fields.opt_time("started_at")?,
        finished_at: fields.opt_time("finished_at")?,
        attempts: fields.opt_parse("attempts")?.unwrap_or(0),
        pages: fields.count("pages")?,
        records_fetched: fields.count("records_fetched")?,
        records_written: fields.count("records_written")?,
        records_unchanged: fields.count("records_unchanged")?,
        records_deleted: fields.count("records_deleted")?,
        error,
    })
}
