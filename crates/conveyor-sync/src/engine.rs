//! One attempt of one sync run, from the job to the stored records, cursor, status and events.
//!
//! An attempt:
//!
//! 1. makes sure the run record exists (the producer may not have written it yet) and marks it
//!    running with the attempt number the queue counted (crash redeliveries included);
//! 2. loads the connection and its credentials and builds a connector;
//! 3. resumes from the run's checkpoint if an earlier attempt left one, else freezes the window
//!    (cursor minus overlap up to now, or the historical period) and checkpoints it at once, so
//!    every later attempt reads the same window;
//! 4. reads pages, each under a fleet-wide request permit of the connection; while one page is
//!    stored (upsert, then checkpoint and run counts together) the next one is already being
//!    fetched, so the source and Redis work side by side and at most two pages are in memory;
//! 5. after the last page of a full run, marks deleted the records the run did not see;
//! 6. moves the cursor to the window's upper bound (dropping the checkpoint in the same step),
//!    records `data_as_of`, reports the connection online, appends `sync.completed`, and marks
//!    the run succeeded.
//!
//! A failure is classified once ([`Failure`]); the attempt then records it on the run, on the
//! connection's status (offline, auth_required) and, when the job will not run again (aborted,
//! or its last attempt), appends `sync.failed` and drops the checkpoint.
//!
//! Crash safety: every step before the cursor moves can be repeated (upserts are idempotent,
//! the checkpoint is written after the page it points past), and the cursor moves only once
//! everything is stored. If a worker dies after the cursor moved but before the run was marked
//! succeeded, the redelivered job finds no checkpoint and runs again from the new cursor: a
//! little repeated work and possibly a second `sync.completed` for the same sync, never a gap.

use std::time::Duration;

use chrono::Utc;
use conveyor_connectors::{Connector, Crawl, CrawlRange, Page, RetryPolicy};
use conveyor_core::{ConnectionId, ConnectionStatus, EventType, SyncJob};
use conveyor_queue::JobContext;
use conveyor_store::records::MAX_UPSERT_PAGE;
use conveyor_store::{RunError, RunStatus, RunUpdate, StatusReason, Store, StoreError};
use tracing::Instrument;

use crate::enqueue::ensure_run;
use crate::outcome::{Decision, Failure, StatusEffect};
use crate::politeness::{PermitSettings, with_permit};
use crate::progress::{Counts, Progress};
use crate::window::SyncWindow;

/// How the engine talks to sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineSettings {
    /// The fleet-wide per-connection request limit.
    pub permits: PermitSettings,
    /// In-process retries of one page request before its error reaches the queue. Defaults to
    /// the connector's default (3 quick retries).
    pub retry_policy: RetryPolicy,
}

/// Which delivery of its job an attempt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// This delivery's number, from 1 (crash redeliveries included).
    pub number: u32,
    /// The job's attempt limit.
    pub max_attempts: u32,
}

impl Attempt {
    /// Whether a failed attempt dead-letters the job instead of retrying it.
    pub fn is_last(&self) -> bool {
        self.number >= self.max_attempts
    }
}

impl From<&JobContext> for Attempt {
    fn from(context: &JobContext) -> Self {
        Attempt {
            number: context.attempt(),
            max_attempts: context.max_attempts(),
        }
    }
}

/// What a successful run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// The window it read; the cursor is now at its upper bound.
    pub window: Option<SyncWindow>,
    /// Its counts.
    pub counts: Counts,
}

/// Runs sync attempts. Cheap to clone; one per worker process.
#[derive(Debug, Clone)]
pub struct SyncEngine {
    store: Store,
    client: reqwest::Client,
    settings: EngineSettings,
}

/// The stable reason code of a successful sync's status report.
pub const SYNC_SUCCEEDED: &str = "sync_succeeded";

impl SyncEngine {
    /// An engine over `store`, making requests through `client` (shared, so connections to one
    /// source reuse their pool).
    pub fn new(store: Store, client: reqwest::Client, settings: EngineSettings) -> Self {
        SyncEngine {
            store,
            client,
            settings,
        }
    }

    /// The store the engine writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs one attempt of `job` and records its outcome. On failure the returned
    /// [`Failure`] says what the queue should do with the job.
    pub async fn run(&self, job: &SyncJob, attempt: Attempt) -> Result<RunReport, Failure> {
        let span = tracing::info_span!(
            "sync",
            sync_id = %job.sync_id,
            connection_id = %job.connection_id,
            entity = %job.entity,
            mode = %job.mode,
            attempt = attempt.number,
        );
        async {
            let mut counts = Counts::default();
            match self.attempt(job, attempt, &mut counts).await {
                Ok(report) => {
                    tracing::info!(
                        pages = report.counts.pages,
                        records_fetched = report.counts.records_fetched,
                        records_written = report.counts.records_written,
                        records_unchanged = report.counts.records_unchanged,
                        records_deleted = report.counts.records_deleted,
                        "sync succeeded"
                    );
                    Ok(report)
                }
                Err(failure) => {
                    self.record_failure(job, attempt, &failure, counts).await;
                    Err(failure)
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn attempt(
        &self,
        job: &SyncJob,
        attempt: Attempt,
        counts: &mut Counts,
    ) -> Result<RunReport, Failure> {
        let store = &self.store;
        let store_failure = |err: StoreError| Failure::from_store(&err);
        ensure_run(store, job).await.map_err(store_failure)?;
        let run = store
            .get_run(&job.connection_id, &job.sync_id)
            .await
            .map_err(store_failure)?;
        if run.status == RunStatus::Succeeded {
            // A redelivery of a job whose run already finished (the worker died between
            // finishing and acknowledging): nothing left to do.
            tracing::info!("run already succeeded; nothing to do");
            return Ok(RunReport {
                window: None,
                counts: Counts {
                    pages: run.pages,
                    records_fetched: run.records_fetched,
                    records_written: run.records_written,
                    records_unchanged: run.records_unchanged,
                    records_deleted: run.records_deleted,
                },
            });
        }
        let now = Utc::now();
        store
            .update_run(
                &job.connection_id,
                &job.sync_id,
                &RunUpdate {
                    status: Some(RunStatus::Running),
                    started_at: run.started_at.is_none().then_some(now),
                    attempts: Some(attempt.number),
                    ..RunUpdate::default()
                },
            )
            .await
            .map_err(store_failure)?;

        let connection = store
            .get_connection(&job.connection_id)
            .await
            .map_err(store_failure)?;
        if connection.entity(job.entity).is_none() {
            return Err(Failure::invalid_job(format!(
                "connection {} does not sync {}",
                job.connection_id, job.entity
            )));
        }
        let credentials = store
            .get_credentials(&job.connection_id)
            .await
            .map_err(store_failure)?;
        let connector = Connector::new(&connection, credentials, self.client.clone())
            .map_err(|err| Failure::from_connector(&err))?
            .with_retry_policy(self.settings.retry_policy);

        let checkpoint = store
            .get_checkpoint(&job.connection_id, job.entity, &job.sync_id)
            .await
            .map_err(store_failure)?;
        let mut progress = match checkpoint.as_ref().and_then(Progress::from_checkpoint) {
            Some(progress) => {
                tracing::info!(
                    pages = progress.counts.pages,
                    records_fetched = progress.counts.records_fetched,
                    "resuming from checkpoint"
                );
                progress
            }
            None => {
                let cursor = store
                    .get_cursor(&job.connection_id, job.entity)
                    .await
                    .map_err(store_failure)?;
                let window = SyncWindow::compute(&connection, job.mode, cursor, now);
                let progress = Progress::start(window, SyncWindow::is_full(job.mode, cursor));
                // Freeze the window now: a retry after a failure on the first page reads the
                // same window.
                self.save_checkpoint(job, &progress).await?;
                progress
            }
        };
        *counts = progress.counts;
        let window = progress.position.window;

        if !progress.position.crawled {
            let range = CrawlRange {
                changed_after: Some(window.changed_after),
                changed_until: Some(window.changed_until),
                resume: progress.position.next.clone(),
            };
            let mut crawl = connector
                .crawl(job.entity, range)
                .map_err(|err| Failure::from_connector(&err))?;
            let mut pending = self.fetch(&job.connection_id, &mut crawl).await?;
            while let Some(page) = pending {
                if page.resume.is_some() {
                    // Fetch the next page while this one is stored.
                    let (stored, next) = tokio::join!(
                        self.store_page(job, &mut progress, page),
                        self.fetch(&job.connection_id, &mut crawl)
                    );
                    *counts = progress.counts;
                    stored?;
                    pending = next?;
                } else {
                    let stored = self.store_page(job, &mut progress, page).await;
                    *counts = progress.counts;
                    stored?;
                    pending = None;
                }
            }
        }

        if progress.position.full && progress.position.swept.is_none() {
            // Records changed exactly at the lower bound were outside the crawl (it is
            // exclusive), so they are outside the sweep too.
            let not_before = window.changed_after + chrono::Duration::milliseconds(1);
            let deleted = store
                .sweep_deleted(
                    &job.connection_id,
                    job.entity,
                    &job.sync_id,
                    Some(not_before),
                )
                .await
                .map_err(store_failure)?;
            progress.position.swept = Some(deleted);
            progress.counts.records_deleted = deleted;
            *counts = progress.counts;
            self.save_checkpoint(job, &progress).await?;
        }

        let counts = progress.counts;
        store
            .complete_cursor(
                &job.connection_id,
                job.entity,
                &job.sync_id,
                window.changed_until,
            )
            .await
            .map_err(store_failure)?;
        store
            .set_data_as_of(&job.connection_id, job.entity, window.changed_until)
            .await
            .map_err(store_failure)?;
        let reason = StatusReason::new(
            SYNC_SUCCEEDED,
            format!(
                "{} synced: {} records read, {} written",
                job.entity, counts.records_fetched, counts.records_written
            ),
        );
        store
            .transition(&job.connection_id, ConnectionStatus::Online, &reason)
            .await
            .map_err(store_failure)?;
        store
            .append_event(
                &job.connection_id,
                EventType::SyncCompleted,
                event_data(job, &counts, None),
            )
            .await
            .map_err(store_failure)?;
        store
            .update_run(
                &job.connection_id,
                &job.sync_id,
                &RunUpdate {
                    status: Some(RunStatus::Succeeded),
                    finished_at: Some(Utc::now()),
                    error: Some(None),
                    ..counts_update(&counts)
                },
            )
            .await
            .map_err(store_failure)?;
        Ok(RunReport {
            window: Some(window),
            counts,
        })
    }

    /// Fetches the next page under one of the connection's request permits.
    async fn fetch(
        &self,
        connection_id: &ConnectionId,
        crawl: &mut Crawl,
    ) -> Result<Option<Page>, Failure> {
        with_permit(
            &self.store,
            self.settings.permits,
            connection_id,
            crawl.next_page(),
        )
        .await
        .map_err(|err| Failure::from_store(&err))?
        .map_err(|err| Failure::from_connector(&err))
    }

    /// Upserts a page, then checkpoints past it and updates the run's counts.
    async fn store_page(
        &self,
        job: &SyncJob,
        progress: &mut Progress,
        page: Page,
    ) -> Result<(), Failure> {
        let full_run = progress.position.full.then_some(&job.sync_id);
        for chunk in page.records.chunks(UPSERT_CHUNK) {
            let outcome = self
                .store
                .upsert_records(&job.connection_id, job.entity, chunk, full_run)
                .await
                .map_err(|err| Failure::from_store(&err))?;
            progress.counts.records_written += outcome.written;
            progress.counts.records_unchanged += outcome.unchanged;
        }
        progress.counts.pages += 1;
        progress.counts.records_fetched += page.records.len() as u64;
        progress.position.crawled = page.resume.is_none();
        progress.position.next = page.resume;
        // The checkpoint and the run's counts are independent writes, both after the upsert:
        // send them together instead of one round trip after the other.
        let update = counts_update(&progress.counts);
        let (checkpoint, counts) = tokio::join!(
            self.save_checkpoint(job, progress),
            self.store
                .update_run(&job.connection_id, &job.sync_id, &update)
        );
        checkpoint?;
        counts.map_err(|err| Failure::from_store(&err))?;
        tracing::debug!(
            pages = progress.counts.pages,
            records_fetched = progress.counts.records_fetched,
            "page stored"
        );
        Ok(())
    }

    async fn save_checkpoint(&self, job: &SyncJob, progress: &Progress) -> Result<(), Failure> {
        self.store
            .save_checkpoint(
                &job.connection_id,
                job.entity,
                &job.sync_id,
                &progress.to_checkpoint(Utc::now()),
            )
            .await
            .map_err(|err| Failure::from_store(&err))
    }

    /// Records a failed attempt on the connection's status, the run and, when the job will
    /// not run again, in a `sync.failed` event. Best effort: the job's outcome is decided
    /// already, and a store that is down cannot take the record anyway.
    async fn record_failure(
        &self,
        job: &SyncJob,
        attempt: Attempt,
        failure: &Failure,
        counts: Counts,
    ) {
        let store = &self.store;
        let final_attempt = match failure.decision {
            Decision::Abort => true,
            Decision::Retry => attempt.is_last(),
            Decision::Snooze(_) => false,
        };
        match failure.decision {
            Decision::Snooze(delay) => tracing::info!(
                code = failure.code,
                snooze_secs = delay.as_secs(),
                error = %failure.message,
                "sync snoozed"
            ),
            _ => tracing::warn!(
                code = failure.code,
                final_attempt,
                error = %failure.message,
                "sync attempt failed"
            ),
        }
        let warn = |what: &str, err: StoreError| {
            tracing::warn!(error = %err, "recording the failure: {what} failed");
        };
        if let StatusEffect::Set(status) = failure.status {
            let reason = StatusReason::new(failure.code, failure.message.clone());
            if let Err(err) = store.transition(&job.connection_id, status, &reason).await {
                warn("status transition", err);
            }
        }
        let update = RunUpdate {
            status: Some(if final_attempt {
                RunStatus::Failed
            } else {
                RunStatus::Retrying
            }),
            finished_at: final_attempt.then(Utc::now),
            error: Some(Some(RunError {
                code: failure.code.to_owned(),
                message: failure.message.clone(),
            })),
            ..counts_update(&counts)
        };
        if let Err(err) = store
            .update_run(&job.connection_id, &job.sync_id, &update)
            .await
        {
            warn("run update", err);
        }
        if !final_attempt {
            return;
        }
        // The checkpoint dies with the run: a later sync starts from the cursor, which never
        // moved past unstored data.
        if let Err(err) = store
            .clear_checkpoint(&job.connection_id, job.entity, &job.sync_id)
            .await
        {
            warn("checkpoint removal", err);
        }
        // No events for a connection that no longer exists.
        match store.get_connection(&job.connection_id).await {
            Err(StoreError::NotFound { .. }) => {}
            _ => {
                if let Err(err) = store
                    .append_event(
                        &job.connection_id,
                        EventType::SyncFailed,
                        event_data(job, &counts, Some(failure)),
                    )
                    .await
                {
                    warn("sync.failed event", err);
                }
            }
        }
    }
}

/// The run fields that carry counts.
fn counts_update(counts: &Counts) -> RunUpdate {
    RunUpdate {
        pages: Some(counts.pages),
        records_fetched: Some(counts.records_fetched),
        records_written: Some(counts.records_written),
        records_unchanged: Some(counts.records_unchanged),
        records_deleted: Some(counts.records_deleted),
        ..RunUpdate::default()
    }
}

/// The `data` of `sync.completed` and `sync.failed` events.
fn event_data(job: &SyncJob, counts: &Counts, failure: Option<&Failure>) -> serde_json::Value {
    let mut data = serde_json::json!({
        "sync_id": job.sync_id,
        "entity": job.entity,
        "mode": job.mode,
        "trigger": job.trigger,
        "counts": counts,
    });
    if let (Some(failure), Some(object)) = (failure, data.as_object_mut()) {
        object.insert(
            "error".to_owned(),
            serde_json::json!({"code": failure.code, "message": failure.message}),
        );
    }
    data
}

/// Records per upsert call. A call holds its records' JSON about three times over (the bodies,
/// the command, the bytes sent); a thousand keeps that near 8 MiB whatever the source's page
/// size, while the call's two round trips stay small next to its work.
const UPSERT_CHUNK: usize = 1_000;
const _: () = assert!(UPSERT_CHUNK <= MAX_UPSERT_PAGE);

/// How long a snoozed job waits at least, so a `Retry-After: 0` cannot spin.
pub(crate) const MIN_SNOOZE: Duration = Duration::from_millis(100);
