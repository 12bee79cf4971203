//! The change-time window a sync run reads.
//!
//! The upper bound is frozen when the run first starts and kept across retries (it is part of the
//! checkpoint), so records changing while the run pages do not shift pages under it; they are
//! picked up by the next run because the cursor only moves to this bound. The lower bound is the
//! stored cursor minus the overlap (records changed in the same second as the cursor, or stamped
//! late by the source, are read again; upserts make the duplicates harmless). A full run, or an
//! incremental run with no cursor yet, reads the whole historical period.

use chrono::{DateTime, Duration, Utc};
use conveyor_core::{Connection, SyncMode};
use serde::{Deserialize, Serialize};

/// The change times one run reads: `changed_after < t <= changed_until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncWindow {
    /// Exclusive lower bound.
    pub changed_after: DateTime<Utc>,
    /// Inclusive upper bound, frozen at the run's first start; the cursor moves here on success.
    pub changed_until: DateTime<Utc>,
}

impl SyncWindow {
    /// The window of a run of `mode` on `connection`, started at `now`, with the stored `cursor`.
    pub fn compute(
        connection: &Connection,
        mode: SyncMode,
        cursor: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> SyncWindow {
        let historical_start = now - Duration::days(i64::from(connection.historical_days));
        let overlap =
            Duration::seconds(i64::try_from(connection.overlap_secs).unwrap_or(i64::MAX / 1_000));
        let changed_after = match (mode, cursor) {
            (SyncMode::Incremental, Some(cursor)) => cursor - overlap,
            // No cursor yet (first run), or a full run: the whole historical period.
            _ => historical_start,
        };
        SyncWindow {
            changed_after,
            changed_until: now,
        }
    }

    /// Whether this window reads the whole historical period (deletions can then be detected).
    pub fn is_full(mode: SyncMode, cursor: Option<DateTime<Utc>>) -> bool {
        mode == SyncMode::Full || cursor.is_none()
    }
}

#[cfg(test)]
mod tests {
    use conveyor_core::{ConnectionId, ProfileKind, TenantId};

    use super::*;

    fn connection() -> Connection {
        Connection {
            id: ConnectionId::new(),
            tenant_id: TenantId::new(),
            name: "plant".into(),
            profile: ProfileKind::ODataV4,
            base_url: "http://127.0.0.1:1".into(),
            settings: Default::default(),
            entities: vec![],
            historical_days: 90,
            overlap_secs: 120,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 1,
        }
    }

    #[test]
    fn incremental_reads_from_cursor_minus_overlap_to_now() {
        let now: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let cursor: DateTime<Utc> = "2026-11-23T09:00:00Z".parse().unwrap();
        let window = SyncWindow::compute(&connection(), SyncMode::Incremental, Some(cursor), now);
        assert_eq!(
            window.changed_after,
            "2026-11-23T08:58:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(window.changed_until, now);
        assert!(!SyncWindow::is_full(SyncMode::Incremental, Some(cursor)));
    }

    #[test]
    fn full_and_first_runs_read_the_historical_period() {
        let now: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let start: DateTime<Utc> = "2026-08-25T10:00:00Z".parse().unwrap();
        let cursor = Some("2026-11-23T09:00:00Z".parse().unwrap());
        for (mode, cursor) in [
            (SyncMode::Full, cursor),
            (SyncMode::Incremental, None),
            (SyncMode::Full, None),
        ] {
            let window = SyncWindow::compute(&connection(), mode, cursor, now);
            assert_eq!(window.changed_after, start, "{mode} {cursor:?}");
            assert!(SyncWindow::is_full(mode, cursor));
        }
    }
}
