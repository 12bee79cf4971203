//! Job payloads: what the API and the scheduler push, and workers run.
//!
//! Payloads outlive deploys (a job pushed by an old API may run on a new worker), so new fields
//! carry `#[serde(default)]` and none is renamed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ConnectionId, Entity, SyncId, SyncMode, SyncTrigger};

/// Queue name of sync jobs.
pub const SYNC_QUEUE: &str = "syncs";
/// Queue name of webhook deliveries.
pub const WEBHOOK_QUEUE: &str = "webhooks";

/// Run one sync of one entity of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncJob {
    /// The run this job carries out; its record is kept in the store under this id.
    pub sync_id: SyncId,
    /// The connection to sync.
    pub connection_id: ConnectionId,
    /// The entity to sync.
    pub entity: Entity,
    /// Incremental or full.
    #[serde(default)]
    pub mode: SyncMode,
    /// Why it runs.
    pub trigger: SyncTrigger,
    /// When it was asked for.
    pub requested_at: DateTime<Utc>,
}

impl SyncJob {
    /// The queue's unique key: at most one sync per connection and entity is queued or running.
    pub fn unique_key(&self) -> String {
        format!("sync:{}:{}", self.connection_id, self.entity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_job_round_trips_and_defaults_mode() {
        let job = SyncJob {
            sync_id: SyncId::new(),
            connection_id: ConnectionId::new(),
            entity: Entity::WorkOrders,
            mode: SyncMode::Full,
            trigger: SyncTrigger::Manual,
            requested_at: Utc::now(),
        };
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!(json["entity"], "work_orders");
        assert_eq!(json["mode"], "full");
        assert_eq!(
            serde_json::from_value::<SyncJob>(json.clone()).unwrap(),
            job
        );

        // A payload from an older producer without `mode` still runs, incrementally.
        let mut old = json;
        old.as_object_mut().unwrap().remove("mode");
        assert_eq!(
            serde_json::from_value::<SyncJob>(old).unwrap().mode,
            SyncMode::Incremental
        );
    }

    #[test]
    fn unique_key_names_connection_and_entity() {
        let job = SyncJob {
            sync_id: SyncId::new(),
            connection_id: ConnectionId::new(),
            entity: Entity::Assets,
            mode: SyncMode::Incremental,
            trigger: SyncTrigger::Scheduled,
            requested_at: Utc::now(),
        };
        assert_eq!(
            job.unique_key(),
            format!("sync:{}:assets", job.connection_id)
        );
    }
}
