//! The scheduler: every worker process runs one, and together they enqueue each due scheduled
//! sync exactly once.
//!
//! A tick does two things:
//!
//! 1. **Rescan** (every [`SchedulerConfig::rescan`]): pages through every connection id and, in
//!    one round trip per page, compares each connection's version with the revision its schedule
//!    was built from; only connections that are new or changed are read and reconciled (entities
//!    added, removed, re-timed). Deleted connections lose their schedule with their other keys,
//!    and their index entry the next time a scheduler looks at it. Nothing needs a restart.
//! 2. **Claim**: asks Redis which connections need a look now by the *Redis server's* clock and,
//!    for each, claims atomically whatever is due given the connection's health (see
//!    `conveyor_store::schedule`): due entities while online, one probe at a time with
//!    exponential backoff while offline, nothing while the credentials are rejected and
//!    unchanged. Whatever this process claimed it enqueues; every other scheduler found it
//!    claimed already.
//!
//! Clock skew: no worker clock decides whether something is due; the scripts compare against
//! Redis `TIME`, so workers whose clocks disagree neither miss nor double a sync.
//!
//! A claim and its push are two steps: a process that dies between them loses that one slot (the
//! next slot comes one interval later). The queue's unique key (connection + entity) means a
//! claimed sync whose previous run is still queued or running is merged into it, never run twice
//! at once.
//!
//! Probes of an offline connection are single-attempt jobs: the scheduler, not the queue's retry
//! policy, spaces attempts at a system that is down, so they follow the offline backoff (1 min,
//! 2, 4 … capped at 1 h by default).

use std::time::Duration;

use conveyor_core::connection::{MAX_SYNC_INTERVAL_SECS, MIN_SYNC_INTERVAL_SECS};
use conveyor_core::{
    ConnectionId, ConnectionStatus, Entity, SyncId, SyncJob, SyncMode, SyncTrigger,
};
use conveyor_queue::{JobSpec, Queue};
use conveyor_runtime::{ConfigReader, Shutdown};
use conveyor_store::{ClaimContext, ClaimKind, ScheduledEntity, Store, StoreError};
use conveyor_sync::{EnqueueError, Enqueued, OfflineBackoff, enqueue_sync, ensure_run, job_id_of};

/// Connection ids read per step of a rescan.
const RESCAN_PAGE: usize = 500;
/// Connections looked at per tick at most; more wait for the next tick.
const CLAIM_BATCH: usize = 1_000;

/// How the scheduler runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// `CONVEYOR_SCHEDULER_ENABLED`: whether this process schedules syncs. Defaults to true;
    /// any number of processes may, since claims are fleet-wide.
    pub enabled: bool,
    /// `CONVEYOR_SCHEDULER_TICK`: time between looks at the due index; a due sync is enqueued at
    /// most this late. Defaults to 5 seconds.
    pub tick: Duration,
    /// `CONVEYOR_SCHEDULER_RESCAN`: how often connections are re-read for added, changed or
    /// deleted schedules, and how often a connection whose credentials were rejected is checked
    /// for new ones. Defaults to 30 seconds.
    pub rescan: Duration,
    /// `CONVEYOR_SCHEDULER_MIN_INTERVAL`: shorter entity intervals are raised to this. Defaults
    /// to 15 minutes, the shortest the API accepts; lower it only in tests.
    pub min_interval: Duration,
    /// `CONVEYOR_OFFLINE_BACKOFF_BASE` (default 1 minute) and `CONVEYOR_OFFLINE_BACKOFF_CAP`
    /// (default 1 hour): probes of an offline connection, doubling from the base up to the cap,
    /// with ±20 % jitter.
    pub offline_backoff: OfflineBackoff,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            enabled: true,
            tick: Duration::from_secs(5),
            rescan: Duration::from_secs(30),
            min_interval: Duration::from_secs(MIN_SYNC_INTERVAL_SECS),
            offline_backoff: OfflineBackoff::default(),
        }
    }
}

impl SchedulerConfig {
    /// Reads the scheduler's variables (see the field docs), recording problems in `reader`.
    pub fn read<F: Fn(&str) -> Option<String>>(reader: &mut ConfigReader<F>) -> Self {
        let defaults = SchedulerConfig::default();
        let enabled = reader.flag("CONVEYOR_SCHEDULER_ENABLED", defaults.enabled);
        let mut positive = |key: &str, default: Duration| {
            let value = reader.duration(key, default);
            if value.is_zero() {
                reader.problem(key, "must be longer than zero");
                return default;
            }
            value
        };
        let tick = positive("CONVEYOR_SCHEDULER_TICK", defaults.tick);
        let rescan = positive("CONVEYOR_SCHEDULER_RESCAN", defaults.rescan);
        let min_interval = positive("CONVEYOR_SCHEDULER_MIN_INTERVAL", defaults.min_interval);
        let base = positive(
            "CONVEYOR_OFFLINE_BACKOFF_BASE",
            defaults.offline_backoff.base,
        );
        let cap = positive("CONVEYOR_OFFLINE_BACKOFF_CAP", defaults.offline_backoff.cap);
        if cap < base {
            reader.problem(
                "CONVEYOR_OFFLINE_BACKOFF_CAP",
                "must not be shorter than CONVEYOR_OFFLINE_BACKOFF_BASE",
            );
        }
        if min_interval > Duration::from_secs(MAX_SYNC_INTERVAL_SECS) {
            reader.problem(
                "CONVEYOR_SCHEDULER_MIN_INTERVAL",
                "must not be longer than 24h",
            );
        }
        SchedulerConfig {
            enabled,
            tick,
            rescan,
            min_interval,
            offline_backoff: OfflineBackoff {
                base,
                cap: cap.max(base),
                ..defaults.offline_backoff
            },
        }
    }

    /// The interval an entity configured with `interval_secs` is scheduled at.
    pub fn effective_interval(&self, interval_secs: u64) -> Duration {
        let max = Duration::from_secs(MAX_SYNC_INTERVAL_SECS);
        Duration::from_secs(interval_secs).clamp(self.min_interval.min(max), max)
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Schedules built or rebuilt from changed configuration.
    pub reconciled: usize,
    /// Connections looked at.
    pub looked_at: usize,
    /// Scheduled syncs this process enqueued (new jobs).
    pub enqueued: usize,
    /// Claimed syncs merged into a sync already queued or running.
    pub merged: usize,
    /// Probes of offline or re-credentialed connections enqueued.
    pub probes: usize,
}

/// One process's scheduler.
#[derive(Debug)]
pub struct Scheduler {
    store: Store,
    queue: Queue<SyncJob>,
    config: SchedulerConfig,
    last_rescan: Option<tokio::time::Instant>,
}

impl Scheduler {
    /// A scheduler pushing to `queue`, reading and claiming through `store`.
    pub fn new(store: Store, queue: Queue<SyncJob>, config: SchedulerConfig) -> Self {
        Scheduler {
            store,
            queue,
            config,
            last_rescan: None,
        }
    }

    /// Runs one tick: a rescan if one is due, then claims.
    pub async fn tick(&mut self) -> anyhow::Result<TickReport> {
        let mut report = TickReport::default();
        let rescan_due = self
            .last_rescan
            .is_none_or(|at| at.elapsed() >= self.config.rescan);
        if rescan_due {
            report.reconciled = self.rescan().await?;
            self.last_rescan = Some(tokio::time::Instant::now());
        }
        let (due, _) = self.store.due_schedules(CLAIM_BATCH).await?;
        for connection_id in due {
            report.looked_at += 1;
            self.look_at(&connection_id, &mut report).await?;
        }
        Ok(report)
    }

    /// Reconciles every schedule whose connection changed; returns how many.
    pub async fn rescan(&self) -> Result<usize, StoreError> {
        let mut reconciled = 0;
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .store
                .list_connection_ids(RESCAN_PAGE, cursor.as_deref())
                .await?;
            let revisions = self.store.schedule_revisions(&page.items).await?;
            for (connection_id, (version, revision)) in page.items.iter().zip(revisions) {
                let Some(version) = version else {
                    continue; // deleted since it was listed
                };
                if revision.as_deref() == Some(self.revision(version).as_str()) {
                    continue;
                }
                if self.reconcile(connection_id).await? {
                    reconciled += 1;
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(reconciled),
            }
        }
    }

    /// The revision a schedule built from connection `version` carries: the scheduler's own
    /// setting that shapes it is part of it, so changing it rebuilds every schedule.
    fn revision(&self, version: u64) -> String {
        format!("{version}/{}", self.config.min_interval.as_millis())
    }

    /// Rebuilds one connection's schedule from its configuration; false if it is gone.
    async fn reconcile(&self, connection_id: &ConnectionId) -> Result<bool, StoreError> {
        let connection = match self.store.get_connection(connection_id).await {
            Ok(connection) => connection,
            Err(StoreError::NotFound { .. }) => return Ok(false),
            Err(err) => return Err(err),
        };
        let entities: Vec<ScheduledEntity> = connection
            .entities
            .iter()
            .filter(|entity| entity.enabled)
            .map(|entity| ScheduledEntity {
                entity: entity.entity,
                interval: self.config.effective_interval(entity.interval_secs),
            })
            .collect();
        match self
            .store
            .reconcile_schedule(connection_id, &self.revision(connection.version), &entities)
            .await
        {
            Ok(next_due) => {
                tracing::info!(
                    connection_id = %connection_id,
                    version = connection.version,
                    entities = entities.len(),
                    next_due = ?next_due,
                    "schedule reconciled"
                );
                Ok(true)
            }
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Claims and enqueues what is due on one connection.
    async fn look_at(
        &self,
        connection_id: &ConnectionId,
        report: &mut TickReport,
    ) -> anyhow::Result<()> {
        let status = self.store.get_status(connection_id).await?;
        let backoff = &self.config.offline_backoff;
        let probes = if status.status == ConnectionStatus::Offline {
            self.store.get_schedule(connection_id).await?.probes
        } else {
            0
        };
        // The n-th probe of an outage waits backoff(n) after the last failure, which Redis
        // stamped: no local clock decides.
        let step = probes.saturating_add(1);
        let probe_delay = backoff.delay(step);
        let probe_at = status
            .last_error
            .as_ref()
            .map(|error| error.at)
            .unwrap_or_else(chrono::Utc::now)
            + chrono::Duration::from_std(probe_delay).unwrap_or(chrono::TimeDelta::MAX);
        let context = ClaimContext {
            status: status.status,
            consecutive_failures: status.consecutive_failures,
            probes,
            probe_at,
            probe_rearm: backoff.delay(step),
            recheck: self.config.rescan,
        };
        let claim = self.store.claim_schedule(connection_id, &context).await?;
        match claim.kind {
            ClaimKind::Gone => {
                tracing::info!(connection_id = %connection_id, "schedule of a deleted connection removed");
            }
            ClaimKind::Waiting if status.status == ConnectionStatus::Offline => {
                tracing::debug!(connection_id = %connection_id, next_attempt_at = ?claim.next_look, "offline; backing off");
            }
            _ => {}
        }
        for entity in claim.entities {
            let probe = claim.kind == ClaimKind::Probe;
            let enqueued = if probe {
                self.enqueue_probe(*connection_id, entity).await?
            } else {
                enqueue_sync(
                    &self.store,
                    &self.queue,
                    *connection_id,
                    entity,
                    SyncMode::Incremental,
                    SyncTrigger::Scheduled,
                )
                .await?
            };
            match (enqueued.existing, probe) {
                (true, _) => report.merged += 1,
                (false, true) => report.probes += 1,
                (false, false) => report.enqueued += 1,
            }
            tracing::info!(
                connection_id = %connection_id,
                entity = %entity,
                sync_id = %enqueued.sync_id,
                existing = enqueued.existing,
                probe,
                status = %status.status,
                consecutive_failures = status.consecutive_failures,
                "scheduled sync enqueued"
            );
        }
        Ok(())
    }

    /// Pushes a probe: a scheduled sync with a single attempt, so the next attempt at a system
    /// that is down is the scheduler's next probe, spaced by the offline backoff.
    async fn enqueue_probe(
        &self,
        connection_id: ConnectionId,
        entity: Entity,
    ) -> Result<Enqueued, EnqueueError> {
        let sync_id = SyncId::new();
        let job = SyncJob {
            sync_id,
            connection_id,
            entity,
            mode: SyncMode::Incremental,
            trigger: SyncTrigger::Scheduled,
            requested_at: chrono::Utc::now(),
        };
        let spec = JobSpec::new(job.clone())
            .unique_key(job.unique_key())
            .job_id(job_id_of(sync_id))
            .max_attempts(1);
        let pushed = self.queue.push(spec).await?;
        if pushed.duplicate {
            return Ok(Enqueued {
                sync_id: conveyor_sync::sync_id_of(pushed.job_id),
                job_id: pushed.job_id,
                existing: true,
            });
        }
        ensure_run(&self.store, &job).await?;
        Ok(Enqueued {
            sync_id,
            job_id: pushed.job_id,
            existing: false,
        })
    }
}

/// Runs `scheduler` every tick until `shutdown` trips. A failed tick (Redis unavailable) is
/// logged and the next tick tries again; the scheduler never stops the worker.
pub async fn run(mut scheduler: Scheduler, shutdown: Shutdown) -> anyhow::Result<()> {
    if !scheduler.config.enabled {
        tracing::info!("scheduler disabled in this process");
        return Ok(());
    }
    tracing::info!(
        tick_ms = scheduler.config.tick.as_millis() as u64,
        rescan_ms = scheduler.config.rescan.as_millis() as u64,
        min_interval_secs = scheduler.config.min_interval.as_secs(),
        "scheduler started"
    );
    loop {
        match scheduler.tick().await {
            Ok(report) if report.enqueued + report.probes + report.reconciled > 0 => {
                tracing::debug!(?report, "scheduler tick");
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "scheduler tick failed; trying again next tick")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(scheduler.config.tick) => {}
        }
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &'static [(&'static str, &'static str)]) -> (SchedulerConfig, Vec<String>) {
        let mut reader = ConfigReader::new(|key: &str| {
            pairs
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| (*value).to_owned())
        });
        let config = SchedulerConfig::read(&mut reader);
        let problems = match reader.finish() {
            Ok(()) => Vec::new(),
            Err(err) => err.problems.into_iter().map(|p| p.key).collect(),
        };
        (config, problems)
    }

    #[test]
    fn defaults_keep_production_bounds() {
        let (config, problems) = read(&[]);
        assert!(problems.is_empty());
        assert_eq!(config, SchedulerConfig::default());
        assert_eq!(config.effective_interval(60), Duration::from_secs(15 * 60));
        assert_eq!(config.effective_interval(7_200), Duration::from_secs(7_200));
        assert_eq!(
            config.effective_interval(10 * 86_400),
            Duration::from_secs(86_400)
        );
    }

    #[test]
    fn tests_can_scale_everything_down_and_bad_values_are_reported() {
        let (config, problems) = read(&[
            ("CONVEYOR_SCHEDULER_MIN_INTERVAL", "1s"),
            ("CONVEYOR_SCHEDULER_TICK", "100ms"),
            ("CONVEYOR_OFFLINE_BACKOFF_BASE", "200ms"),
            ("CONVEYOR_OFFLINE_BACKOFF_CAP", "2s"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.effective_interval(2), Duration::from_secs(2));
        assert_eq!(config.tick, Duration::from_millis(100));
        assert_eq!(config.offline_backoff.nominal(5), Duration::from_secs(2));

        let (_, problems) = read(&[
            ("CONVEYOR_SCHEDULER_TICK", "0s"),
            ("CONVEYOR_SCHEDULER_ENABLED", "maybe"),
            ("CONVEYOR_OFFLINE_BACKOFF_BASE", "2m"),
            ("CONVEYOR_OFFLINE_BACKOFF_CAP", "1m"),
        ]);
        for key in [
            "CONVEYOR_SCHEDULER_TICK",
            "CONVEYOR_SCHEDULER_ENABLED",
            "CONVEYOR_OFFLINE_BACKOFF_CAP",
        ] {
            assert!(problems.iter().any(|p| p == key), "{key} in {problems:?}");
        }
    }
}
