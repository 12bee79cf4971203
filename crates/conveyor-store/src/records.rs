//! The synced records: page upserts, reads, the change feed, and full-sync deletion sweeps.
//!
//! Per (connection, entity) three keys hold the copy:
//! - `records:{entity}`: external key → the record's JSON exactly as the connector produced it
//!   (a [`UnifiedRecord`]);
//! - `records:{entity}:meta`: external key → `hash|deleted|source_ms|seen_run|change`, the small
//!   line the upsert script compares against, so it never parses record JSON;
//! - `records:{entity}:changes`: a lexicographic ZSET of change positions
//!   `synced_ms:sequence:key`, one per record, moved to the end whenever the record changes.
//!
//! **Upsert** ([`Store::upsert_records`]) costs two round trips per page with O(page) work. The
//! content hash (xxh3-128 of the record JSON, computed in Rust) is first compared with the
//! stored meta lines (one HMGET); then one MULTI writes the bodies of the records that differ
//! (a plain HSET) and runs the upsert script over keys, hashes and times only, which keeps the
//! meta lines and change positions. An identical record is counted as unchanged and not
//! rewritten. Bodies stay out of Lua because the script engine copies and hashes every byte of
//! its arguments. Change positions use the Redis server clock (never moving backwards) plus a
//! per-entity sequence, so every new position sorts after every existing one.
//!
//! **Change feed** ([`Store::list_changed`]) walks the positions from `updated_since`. A record
//! rewritten while a reader pages moves ahead of the reader's cursor; its old position is
//! skipped, so each record appears exactly once, in its newest version.
//!
//! **Deletion sweep** ([`Store::sweep_deleted`]): during a full run every upserted record gets the
//! run's sync id as its "seen" marker. After the run completes, a chunked HSCAN over the meta hash
//! marks deleted every record whose marker is another run's (the source no longer has it), a
//! thousand at a time, so a million records never sit in memory at once. The upsert script keeps
//! an exact count of the records carrying each running full sync's marker; when that count equals
//! the number of stored records, no record can be unseen and the scan is skipped.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use conveyor_core::{ConnectionId, Entity, SyncId, UnifiedRecord};
use redis::Script;
use xxhash_rust::xxh3::xxh3_128;

use crate::codec::{decode_cursor, encode_cursor, from_ms, to_ms};
use crate::{Page, Store, StoreError, keys};

/// Most records one upsert call accepts: a script runs alone on Redis, so a page must stay small
/// enough not to stall other clients.
pub const MAX_UPSERT_PAGE: usize = 5_000;
/// Meta entries examined per sweep step.
const SWEEP_CHUNK: usize = 1_000;
/// Width of the `synced_ms:sequence:` prefix of a change position.
const CHANGE_PREFIX_LEN: usize = 13 + 1 + 16 + 1;

/// Shared Lua: parse a meta line, and take the next change position.
const RECORDS_LUA: &str = r"
local function parse_meta(meta)
  return string.match(meta, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
end
local clock_field, sequence_field = ARGV[1], ARGV[2]
local counters = KEYS[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('HGET', counters, clock_field) or '0')
if now < last then now = last end
local now_text = string.format('%013d', now)
local sequence = tonumber(redis.call('HGET', counters, sequence_field) or '0')
local moved = 0
local function next_change(key)
  sequence = sequence + 1
  moved = moved + 1
  return now_text .. string.format(':%016d:', sequence) .. key
end
local function save_counters()
  if moved > 0 then
    redis.call('HSET', counters, clock_field, now, sequence_field, string.format('%d', sequence))
  end
end
";

/// KEYS: records, meta, changes, counters. ARGV: clock field, sequence field, seen marker ('' for
/// incremental runs), count, seen-count field prefix, then per record: key, `hash|deleted|`, source ms, and `1` if the
/// same transaction wrote the record's body just before the script (`0` if not). External keys
/// are unique within a page (the caller removes repeats).
///
/// Record bodies never pass through the script: Lua copies and hashes every byte of every
/// argument, which cost more than everything else the upsert does. The caller writes the
/// bodies it believes changed with a plain HSET in the same MULTI, before this script; the
/// script then only keeps the meta lines and change positions. A record whose content differs
/// from the stored copy but whose body was not sent (another writer changed it since the
/// caller looked) is left alone and returned as a conflict, for the caller to send again with
/// its body.
///
/// Reads every old meta line with one HMGET and writes with a few batched HSET/ZADD/ZREM calls:
/// a `redis.call` costs far more than the Lua around it, so per-record calls would dominate.
static UPSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{RECORDS_LUA}
        local seen = ARGV[3]
        local count = tonumber(ARGV[4])
        local seen_prefix = ARGV[5]
        local record_keys = {{}}
        for i = 0, count - 1 do record_keys[i + 1] = ARGV[6 + i * 4] end
        local olds = redis.call('HMGET', KEYS[2], unpack(record_keys))
        -- Explicit lengths: Lua's `#t` is a search, and it ran several times per record.
        local metas, added, removed, conflicts = {{}}, {{}}, {{}}, {{}}
        local metas_n, added_n, removed_n, conflicts_n = 0, 0, 0, 0
        local written, unchanged = 0, 0
        -- How many records now carry the seen marker, and how many each old marker lost.
        local gained, lost = 0, {{}}
        local function remark(old_seen)
          if seen ~= '' and old_seen ~= seen then
            gained = gained + 1
            if old_seen and old_seen ~= '' then lost[old_seen] = (lost[old_seen] or 0) + 1 end
          end
        end
        for i = 0, count - 1 do
          local base = 6 + i * 4
          local key, prefix, source_ms = ARGV[base], ARGV[base + 1], ARGV[base + 2]
          local old = olds[i + 1]
          -- The common case (same content) is decided by comparing the `hash|deleted|` prefix,
          -- without parsing the whole line.
          if old and string.sub(old, 1, #prefix) == prefix then
            unchanged = unchanged + 1
            if seen ~= '' then
              local _, _, _, old_seen, old_change = parse_meta(old)
              if old_seen ~= seen then
                remark(old_seen)
                metas[metas_n + 1] = key
                metas[metas_n + 2] = prefix .. source_ms .. '|' .. seen .. '|' .. old_change
                metas_n = metas_n + 2
              end
            end
          elseif ARGV[base + 3] ~= '1' then
            conflicts_n = conflicts_n + 1
            conflicts[conflicts_n] = i
          else
            written = written + 1
            local old_seen, old_change = '', nil
            if old then
              local _
              _, _, _, old_seen, old_change = parse_meta(old)
            end
            local change = next_change(key)
            if old_change then
              removed_n = removed_n + 1
              removed[removed_n] = old_change
            end
            added[added_n + 1] = '0'
            added[added_n + 2] = change
            added_n = added_n + 2
            local mark = seen
            if mark == '' then mark = old_seen or '' else remark(old_seen) end
            metas[metas_n + 1] = key
            metas[metas_n + 2] = prefix .. source_ms .. '|' .. mark .. '|' .. change
            metas_n = metas_n + 2
          end
        end
        -- Batches of 1000 arguments stay well inside Lua's stack limit for unpack.
        local function batched(command, key, args, n)
          for first = 1, n, 1000 do
            redis.call(command, key, unpack(args, first, math.min(first + 999, n)))
          end
        end
        batched('ZREM', KEYS[3], removed, removed_n)
        batched('ZADD', KEYS[3], added, added_n)
        batched('HSET', KEYS[2], metas, metas_n)
        save_counters()
        if gained > 0 then redis.call('HINCRBY', counters, seen_prefix .. seen, gained) end
        for old_seen, n in pairs(lost) do
          -- Only runs still counting (their sweep not done) keep a count.
          if redis.call('HEXISTS', counters, seen_prefix .. old_seen) == 1 then
            redis.call('HINCRBY', counters, seen_prefix .. old_seen, -n)
          end
        end
        return {{written, unchanged, conflicts}}
        "
    )
});

/// KEYS: records, meta, changes, counters. ARGV: clock field, sequence field, run marker, scan
/// cursor, chunk size, not-before ms ('' for none). Returns {next cursor, marked}.
static SWEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{RECORDS_LUA}
        local seen = ARGV[3]
        local not_before = tonumber(ARGV[6])
        local reply = redis.call('HSCAN', KEYS[2], ARGV[4], 'COUNT', ARGV[5])
        local entries = reply[2]
        local marked = 0
        for i = 1, #entries, 2 do
          local key = entries[i]
          local hash, deleted, source_ms, mark, change = parse_meta(entries[i + 1])
          if hash and deleted ~= '1' and mark ~= seen
             and (not not_before or tonumber(source_ms) >= not_before) then
            local moved_to = next_change(key)
            redis.call('ZREM', KEYS[3], change)
            redis.call('ZADD', KEYS[3], 0, moved_to)
            redis.call('HSET', KEYS[2], key,
              hash .. '|1|' .. source_ms .. '|' .. mark .. '|' .. moved_to)
            marked = marked + 1
          end
        end
        save_counters()
        return {{reply[1], marked}}
        "
    ))
});

/// What one page upsert did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertOutcome {
    /// Records written because they were new or their content changed.
    pub written: u64,
    /// Records whose content hash matched the stored copy (not rewritten).
    pub unchanged: u64,
}

/// One record of a page, ready for the upsert script.
struct Prepared<'a> {
    key: &'a str,
    /// `hash|deleted|`, the start of its meta line.
    prefix: String,
    source_ms: i64,
    /// The record's JSON.
    body: Vec<u8>,
    /// Whether it differed from the stored copy when the page was read.
    changed: bool,
}

impl<'a> Prepared<'a> {
    /// Serializes and hashes `record`.
    fn new(record: &'a UnifiedRecord) -> Result<Self, StoreError> {
        if record.external_key.is_empty() {
            return Err(StoreError::Invalid(
                "a record's external key must not be empty".into(),
            ));
        }
        let body = serde_json::to_vec(record)
            .map_err(|err| StoreError::Invalid(format!("record: {err}")))?;
        let prefix = format!(
            "{:032x}|{}|",
            xxh3_128(&body),
            if record.deleted { '1' } else { '0' }
        );
        Ok(Prepared {
            key: &record.external_key,
            prefix,
            source_ms: to_ms(record.source_updated_at),
            body,
            changed: true,
        })
    }
}

/// The keys and fixed arguments of one page's upsert.
struct UpsertKeys {
    records: String,
    meta: String,
    changes: String,
    counters: String,
    clock_field: String,
    sequence_field: String,
    /// The full run's sync id, or empty.
    seen: String,
    /// Prefix of the counters field counting the records a full run marked seen.
    seen_prefix: String,
}

impl UpsertKeys {
    fn new(connection_id: &ConnectionId, entity: Entity, full_run: Option<&SyncId>) -> Self {
        let (clock_field, sequence_field) = counter_fields(entity);
        UpsertKeys {
            records: keys::records(connection_id, entity),
            meta: keys::record_meta(connection_id, entity),
            changes: keys::record_changes(connection_id, entity),
            counters: keys::counters(connection_id),
            clock_field,
            sequence_field,
            seen: full_run.map(ToString::to_string).unwrap_or_default(),
            seen_prefix: seen_count_prefix(entity),
        }
    }
}

/// A record as Conveyor keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredRecord {
    /// The record; its `deleted` is true if the source flagged it or a full sync no longer found
    /// it.
    #[serde(flatten)]
    pub record: UnifiedRecord,
    /// When Conveyor's copy last changed.
    pub synced_at: DateTime<Utc>,
}

/// The counters field `{prefix}{sync_id}` holds how many records carry a full run's seen marker,
/// kept exact by the upsert script until the run's sweep drops it.
fn seen_count_prefix(entity: Entity) -> String {
    format!("records_seen:{entity}:")
}

fn counter_fields(entity: Entity) -> (String, String) {
    (
        format!("records_clock:{entity}"),
        format!("records_sequence:{entity}"),
    )
}

impl Store {
    /// Upserts one page of records of `entity`.
    ///
    /// Pass the run's sync id as `full_run` during a full sync, so [`Store::sweep_deleted`] can
    /// later tell which records the source still has; pass `None` for incremental runs.
    pub async fn upsert_records(
        &self,
        connection_id: &ConnectionId,
        entity: Entity,
        records: &[UnifiedRecord],
        full_run: Option<&SyncId>,
    ) -> Result<UpsertOutcome, StoreError> {
        if records.is_empty() {
            return Ok(UpsertOutcome::default());
        }
        if records.len() > MAX_UPSERT_PAGE {
            return Err(StoreError::Invalid(format!(
                "a page holds at most {MAX_UPSERT_PAGE} records, not {}",
                records.len()
            )));
        }
        // A source can repeat a record within a page (overlapping offsets); the last copy wins
        // and the earlier ones count as unchanged, so the script sees each key once.
        let mut last_index: HashMap<&str, usize> = HashMap::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            last_index.insert(record.external_key.as_str(), index);
        }
        let repeats = (records.len() - last_index.len()) as u64;
        let unique = records
            .iter()
            .enumerate()
            .filter(|(index, record)| last_index.get(record.external_key.as_str()) == Some(index))
            .map(|(_, record)| record);
        let mut prepared = Vec::with_capacity(last_index.len());
        for record in unique {
            if record.entity() != entity {
                return Err(StoreError::Invalid(format!(
                    "record `{}` is a {} record, not {entity}",
                    record.external_key,
                    record.entity()
                )));
            }
            prepared.push(Prepared::new(record)?);
        }
        let upsert_keys = UpsertKeys::new(connection_id, entity, full_run);
        let mut redis = self.redis();

        // Send only the bodies of records that differ from the stored copy, so unchanged
        // records are never rewritten.
        let olds: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(&upsert_keys.meta)
            .arg(prepared.iter().map(|p| p.key).collect::<Vec<_>>())
            .query_async(&mut redis)
            .await?;
        for (item, old) in prepared.iter_mut().zip(olds) {
            item.changed = old.is_none_or(|old| !old.starts_with(item.prefix.as_bytes()));
        }

        let mut outcome = UpsertOutcome {
            written: 0,
            unchanged: repeats,
        };
        let mut pending: Vec<&Prepared> = prepared.iter().collect();
        // A record sent with its body never conflicts, and the second round sends every
        // conflicting record with its body: two rounds at most.
        for round in 0..2 {
            let (written, unchanged, conflicts) = self
                .upsert_round(&mut redis, &upsert_keys, &pending, round > 0)
                .await?;
            outcome.written += written;
            outcome.unchanged += unchanged;
            if conflicts.is_empty() {
                return Ok(outcome);
            }
            tracing::debug!(
                connection_id = %connection_id,
                entity = %entity,
                conflicts = conflicts.len(),
                "records changed by another writer during the upsert; sending them again"
            );
            pending = conflicts
                .into_iter()
                .map(|index| {
                    pending.get(index).copied().ok_or_else(|| {
                        StoreError::corrupt(&upsert_keys.meta, "upsert conflict outside the page")
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        Err(StoreError::corrupt(
            &upsert_keys.meta,
            "the upsert script reported a conflict for a record sent with its body",
        ))
    }

    /// One transaction of an upsert: the bodies to send, then the script. With `all_bodies`
    /// every record's body is sent. Returns written, unchanged, and the positions in `pending`
    /// of the records that conflicted.
    async fn upsert_round(
        &self,
        redis: &mut redis::aio::ConnectionManager,
        keys: &UpsertKeys,
        pending: &[&Prepared<'_>],
        all_bodies: bool,
    ) -> Result<(u64, u64, Vec<usize>), StoreError> {
        let sends_body = |item: &Prepared<'_>| all_bodies || item.changed;
        // Bodies first, then the meta lines pointing at them, in one transaction: a client that
        // dies half way leaves nothing, and a failed script leaves at worst a body newer than
        // its meta line, which the retried page repairs.
        let mut pipe = redis::pipe();
        pipe.atomic();
        if pending.iter().any(|item| sends_body(item)) {
            let hset = pipe.cmd("HSET").arg(&keys.records);
            for item in pending.iter().filter(|item| sends_body(item)) {
                hset.arg(item.key).arg(&item.body);
            }
            hset.ignore();
        }
        let eval = pipe
            .cmd("EVAL")
            .arg(UPSERT.as_str())
            .arg(4)
            .arg(&keys.records)
            .arg(&keys.meta)
            .arg(&keys.changes)
            .arg(&keys.counters)
            .arg(&keys.clock_field)
            .arg(&keys.sequence_field)
            .arg(&keys.seen)
            .arg(pending.len())
            .arg(&keys.seen_prefix);
        for item in pending {
            eval.arg(item.key)
                .arg(&item.prefix)
                .arg(item.source_ms)
                .arg(if sends_body(item) { "1" } else { "0" });
        }
        let (reply,): ((u64, u64, Vec<usize>),) = pipe.query_async(redis).await?;
        Ok(reply)
    }

    /// The stored record with `external_key`, if any.
    pub async fn get_record(
        &self,
        connection_id: &ConnectionId,
        entity: Entity,
        external_key: &str,
    ) -> Result<Option<StoredRecord>, StoreError> {
        let records_key = keys::records(connection_id, entity);
        let meta_key = keys::record_meta(connection_id, entity);
        let (body, meta): (Option<Vec<u8>>, Option<String>) = redis::pipe()
            .hget(&records_key, external_key)
            .hget(&meta_key, external_key)
            .query_async(&mut self.redis())
            .await?;
        match (body, meta) {
            (Some(body), Some(meta)) => {
                let meta = Meta::parse(&meta_key, &meta)?;
                Ok(Some(stored_record(&records_key, &body, &meta)?))
            }
            _ => Ok(None),
        }
    }

    /// How many records of `entity` are stored (deleted ones included).
    pub async fn count_records(
        &self,
        connection_id: &ConnectionId,
        entity: Entity,
    ) -> Result<u64, StoreError> {
        let count: u64 = redis::cmd("HLEN")
            .arg(keys::record_meta(connection_id, entity))
            .query_async(&mut self.redis())
            .await?;
        Ok(count)
    }

    /// Records of `entity` whose stored copy changed at or after `updated_since`, in the order
    /// they changed, `limit` per page (at most 1000).
    ///
    /// With a cursor from a previous page, `updated_since` is ignored and the walk continues
    /// where it stopped. Records that change while a caller pages are returned once, at their
    /// newest position.
    pub async fn list_changed(
        &self,
        connection_id: &ConnectionId,
        entity: Entity,
        updated_since: DateTime<Utc>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<StoredRecord>, StoreError> {
        let limit = limit.clamp(1, crate::codec::MAX_PAGE);
        let start = match cursor {
            Some(cursor) => format!("({}", decode_cursor(cursor)?),
            None => format!("[{:013}:", to_ms(updated_since).max(0)),
        };
        let changes_key = keys::record_changes(connection_id, entity);
        let mut redis = self.redis();
        let mut positions: Vec<String> = redis::cmd("ZRANGE")
            .arg(&changes_key)
            .arg(start)
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(limit + 1)
            .query_async(&mut redis)
            .await?;
        let more = positions.len() > limit;
        positions.truncate(limit);
        if positions.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let external_keys = positions
            .iter()
            .map(|position| {
                position
                    .get(CHANGE_PREFIX_LEN..)
                    .ok_or_else(|| StoreError::corrupt(&changes_key, "short change position"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let records_key = keys::records(connection_id, entity);
        let meta_key = keys::record_meta(connection_id, entity);
        let (bodies, metas): (Vec<Option<Vec<u8>>>, Vec<Option<String>>) = redis::pipe()
            .cmd("HMGET")
            .arg(&records_key)
            .arg(&external_keys)
            .cmd("HMGET")
            .arg(&meta_key)
            .arg(&external_keys)
            .query_async(&mut redis)
            .await?;
        let mut items = Vec::with_capacity(positions.len());
        for ((position, body), meta) in positions.iter().zip(bodies).zip(metas) {
            let (Some(body), Some(meta)) = (body, meta) else {
                continue;
            };
            let meta = Meta::parse(&meta_key, &meta)?;
            // The record moved on since this position was read; it is returned at its newer one.
            if meta.change != *position {
                continue;
            }
            items.push(stored_record(&records_key, &body, &meta)?);
        }
        let next_cursor = match (more, positions.last()) {
            (true, Some(last)) => Some(encode_cursor(last)),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    /// After a complete full run `full_run`, marks deleted every record of `entity` that the run
    /// did not see, and returns how many it marked.
    ///
    /// Records whose source time is before `not_before` (outside the full sync's historical
    /// period, so the run could not have seen them) are left alone. Works in chunks of a thousand
    /// meta entries, one script call each.
    pub async fn sweep_deleted(
        &self,
        connection_id: &ConnectionId,
        entity: Entity,
        full_run: &SyncId,
        not_before: Option<DateTime<Utc>>,
    ) -> Result<u64, StoreError> {
        let (clock_field, sequence_field) = counter_fields(entity);
        let marker = full_run.to_string();
        let not_before = not_before
            .map(|at| to_ms(at).to_string())
            .unwrap_or_default();
        let mut redis = self.redis();
        let counters_key = keys::counters(connection_id);
        let seen_field = format!("{}{full_run}", seen_count_prefix(entity));
        // When every stored record carries the run's marker there is nothing to mark deleted:
        // the scan, a script call per thousand records, is skipped.
        let (seen, stored): (Option<u64>, u64) = redis::pipe()
            .hget(&counters_key, &seen_field)
            .hlen(keys::record_meta(connection_id, entity))
            .query_async(&mut redis)
            .await?;
        let mut cursor = "0".to_owned();
        let mut total = 0u64;
        while seen != Some(stored) {
            let (next, marked): (String, u64) = SWEEP
                .key(keys::records(connection_id, entity))
                .key(keys::record_meta(connection_id, entity))
                .key(keys::record_changes(connection_id, entity))
                .key(keys::counters(connection_id))
                .arg(&clock_field)
                .arg(&sequence_field)
                .arg(&marker)
                .arg(&cursor)
                .arg(SWEEP_CHUNK)
                .arg(&not_before)
                .invoke_async(&mut redis)
                .await?;
            total += marked;
            if next == "0" {
                break;
            }
            cursor = next;
        }
        // The count is only needed until the sweep; a repeated sweep finds no count and scans.
        redis::cmd("HDEL")
            .arg(&counters_key)
            .arg(&seen_field)
            .query_async::<()>(&mut redis)
            .await?;
        tracing::info!(connection_id = %connection_id, entity = %entity, sync_id = %full_run, records_deleted = total, "deletion sweep finished");
        Ok(total)
    }
}

/// A parsed meta line.
struct Meta {
    deleted: bool,
    change: String,
}

impl Meta {
    fn parse(key: &str, line: &str) -> Result<Self, StoreError> {
        let mut parts = line.splitn(5, '|');
        let (Some(_hash), Some(deleted), Some(_source), Some(_seen), Some(change)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(StoreError::corrupt(key, "malformed record meta"));
        };
        Ok(Meta {
            deleted: deleted == "1",
            change: change.to_owned(),
        })
    }

    fn synced_ms(&self, key: &str) -> Result<i64, StoreError> {
        self.change
            .get(..13)
            .and_then(|ms| ms.parse().ok())
            .ok_or_else(|| StoreError::corrupt(key, "malformed change position"))
    }
}

fn stored_record(key: &str, body: &[u8], meta: &Meta) -> Result<StoredRecord, StoreError> {
    let mut record: UnifiedRecord =
        serde_json::from_slice(body).map_err(|err| StoreError::corrupt(key, err))?;
    record.deleted = record.deleted || meta.deleted;
    Ok(StoredRecord {
        record,
        synced_at: from_ms(key, meta.synced_ms(key)?)?,
    })
}

#[cfg(test)]
mod tests {
    use conveyor_core::{RecordData, WorkOrder};
    use conveyor_testkit::RedisServer;

    use super::*;
    use crate::{EncryptionKey, StoreConfig};

    fn work_order(description: &str) -> UnifiedRecord {
        UnifiedRecord {
            external_key: "WO-1".into(),
            source_updated_at: DateTime::from_timestamp(1_763_900_000, 0).unwrap(),
            deleted: false,
            data: RecordData::WorkOrder(WorkOrder {
                description: Some(description.into()),
                ..WorkOrder::default()
            }),
            raw: serde_json::value::to_raw_value(&serde_json::json!({"d": description})).unwrap(),
        }
    }

    /// Another writer changed the record between this upsert's read and its write: the first
    /// round (no body sent) must leave the other writer's copy whole and report the conflict;
    /// the second round, with the body, writes it.
    #[tokio::test]
    async fn a_record_changed_after_the_read_is_sent_again_with_its_body() {
        let server = RedisServer::start().unwrap();
        let config = StoreConfig::new(EncryptionKey::new("test", [7; 32]).unwrap());
        let store = Store::connect(&server.url(), config).await.unwrap();
        let connection_id = ConnectionId::new();
        let entity = Entity::WorkOrders;
        let theirs = work_order("pump");
        store
            .upsert_records(&connection_id, entity, std::slice::from_ref(&theirs), None)
            .await
            .unwrap();

        let ours = work_order("valve");
        let mut item = Prepared::new(&ours).unwrap();
        // What this writer saw when it read: the same content as its own.
        item.changed = false;
        let keys = UpsertKeys::new(&connection_id, entity, None);
        let mut redis = store.redis();
        let first = store
            .upsert_round(&mut redis, &keys, &[&item], false)
            .await
            .unwrap();
        assert_eq!(first, (0, 0, vec![0]));
        let stored = store
            .get_record(&connection_id, entity, "WO-1")
            .await
            .unwrap();
        assert_eq!(stored.unwrap().record, theirs);

        let second = store
            .upsert_round(&mut redis, &keys, &[&item], true)
            .await
            .unwrap();
        assert_eq!(second, (1, 0, vec![]));
        let stored = store
            .get_record(&connection_id, entity, "WO-1")
            .await
            .unwrap();
        assert_eq!(stored.unwrap().record, ours);
    }
}
