//! How far a sync has got: the per-entity cursor and the per-run checkpoint.
//!
//! The **cursor** of (connection, entity) is the source time up to which the stored copy is
//! complete. It moves only when a run completes ([`Store::complete_cursor`], which also drops
//! that run's checkpoint in the same transaction), so a crash or failure never moves it past
//! data that was not stored.
//!
//! The **checkpoint** of (connection, entity, sync id) is written after each stored page: an
//! opaque resume token from the connector plus the counts so far. A retried job of the same run
//! reads it and resumes instead of restarting.

use chrono::{DateTime, Utc};
use conveyor_core::{ConnectionId, Entity, SyncId};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::codec::{from_ms, to_ms};
use crate::{Store, StoreError, keys};

/// Where a run stopped, and what it had done by then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The connector's token for the next page (a URL, an offset, a skip token...); opaque here.
    pub resume_token: serde_json::Value,
    /// Pages stored so far.
    #[serde(default)]
    pub pages: u64,
    /// Records read from the source so far.
    #[serde(default)]
    pub records_fetched: u64,
    /// Records written (new or changed) so far.
    #[serde(default)]
    pub records_written: u64,
    /// Records whose content was unchanged so far.
    #[serde(default)]
    pub records_unchanged: u64,
    /// When the checkpoint was written.
    pub saved_at: DateTime<Utc>,
}

fn checkpoint_field(entity: Entity, sync_id: &SyncId) -> String {
    format!("{entity}:{sync_id}")
}

impl Store {
    /// The cursor of `entity`, or `None` if no run of it has completed.
    pub async fn get_cursor(
        &self,
        connection_id: &ConnectionId,
        entity: Entity,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let key = keys::cursors(connection_id);
        let ms: Option<i64> = self.redis().hget(&key, entity.as_str()).await?;
        ms.map(|ms| from_ms(&key, ms)).transpose()
    }

    /// Completes a run's progress: sets the cursor of `entity` to `up_to` and clears the run's
    /// checkpoint, atomically.
    pub async fn complete_cursor(
        &self,
        connection_id: &ConnectionId,
        entity: Entity,
        sync_id: &SyncId,
        up_to: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        redis::pipe()
            .atomic()
            .hset(keys::cursors(connection_id), entity.as_str(), to_ms(up_to))
            .ignore()
            .hdel(
                keys::checkpoints(connection_id),
                checkpoint_field(entity, sync_id),
            )
            .ignore()
            .query_async::<()>(&mut self.redis())
            .await?;
        Ok(())
    }

    /// Forgets the cursor of `entity`, so the next incremental run reads the whole historical
    /// period (an operator's "start over").
    pub async fn clear_cursor(
        &self,
        connection_id: &ConnectionId,
        entity: Entity,
    ) -> Result<(), StoreError> {
        self.redis()
            .hdel::<_, _, ()>(keys::cursors(connection_id), entity.as_str())
            .await?;
        Ok(())
    }

    /// Saves the checkpoint of a run after a page is stored (replacing the previous one).
    pub async fn save_checkpoint(
        &self,
        connection_id: &ConnectionId,
        entity: Entity,
        sync_id: &SyncId,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(checkpoint)
            .map_err(|err| StoreError::Invalid(format!("checkpoint: {err}")))?;
        self.redis()
            .hset::<_, _, _, ()>(
                keys::checkpoints(connection_id),
                checkpoint_field(entity, sync_id),
                json,
            )
            .await?;
        Ok(())
    }

    /// The checkpoint of a run, if one was saved and not cleared.
    pub async fn get_checkpoint(
        &self,
        connection_id: &ConnectionId,
        entity: Entity,
        sync_id: &SyncId,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let key = keys::checkpoints(connection_id);
        let json: Option<String> = self
            .redis()
            .hget(&key, checkpoint_field(entity, sync_id))
            .await?;
        json.map(|json| serde_json::from_str(&json).map_err(|err| StoreError::corrupt(&key, err)))
            .transpose()
    }

    /// Drops a run's checkpoint without moving the cursor (a run that failed for good).
    pub async fn clear_checkpoint(
        &self,
        connection_id: &ConnectionId,
        entity: Entity,
        sync_id: &SyncId,
    ) -> Result<(), StoreError> {
        self.redis()
            .hdel::<_, _, ()>(
                keys::checkpoints(connection_id),
                checkpoint_field(entity, sync_id),
            )
            .await?;
        Ok(())
    }
}
