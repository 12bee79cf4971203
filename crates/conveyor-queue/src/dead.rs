//! Dead letters: list, show, retry and purge jobs that ran out of attempts or were aborted.
//!
//! Dead jobs sit in a sorted set scored by the time they died (so "newest first" is a reverse
//! range) and in one sorted set per error kind (so the kind filter is a range too). Retry and
//! purge act only on jobs they themselves removed from the dead set inside one script, so a
//! retry and a purge racing on the same job never both act on it: it is either back in the
//! ready list once, or gone.

use std::collections::HashMap;
use std::time::Duration;

use conveyor_core::JobId;
use serde::{Deserialize, Serialize};

use crate::error::QueueError;
use crate::job::{JobDetail, millis_to_time};
use crate::queue::{Queue, split_attempts};
use crate::scripts::{DEAD_PURGE_SCRIPT, DEAD_RETRY_SCRIPT};

/// Dead jobs retried or purged per script call.
const DEAD_CHUNK: usize = 500;

/// Which dead jobs to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadFilter {
    /// Only jobs whose last error has this kind (e.g. `timeout`, `panic`, `lease_expired`).
    pub error_kind: Option<String>,
}

/// A page of a newest-first list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Entries to skip.
    pub offset: u64,
    /// Entries to return (at most 1,000).
    pub limit: u64,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            offset: 0,
            limit: 50,
        }
    }
}

/// One dead job in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadJob {
    /// The job.
    pub job_id: JobId,
    /// When it died.
    pub dead_at: chrono::DateTime<chrono::Utc>,
    /// Attempts it used.
    pub attempts: u32,
    /// Kind of its last error.
    pub error_kind: String,
    /// Its last error.
    pub last_error: String,
    /// Its unique key, if any.
    pub unique_key: Option<String>,
}

/// A page of dead jobs, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadPage {
    /// The jobs on this page.
    pub jobs: Vec<DeadJob>,
    /// How many dead jobs match the filter in all.
    pub total: u64,
}

/// Which dead jobs to retry or purge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "select", rename_all = "snake_case")]
pub enum DeadSelector {
    /// One job.
    One {
        /// The job.
        job_id: JobId,
    },
    /// Every dead job whose last error has this kind.
    ErrorKind {
        /// The kind.
        error_kind: String,
    },
    /// Every dead job that died more than `age` ago.
    OlderThan {
        /// The age.
        age: Duration,
    },
    /// Every dead job of the queue.
    All,
}

impl<T> Queue<T> {
    /// Lists dead jobs, newest first.
    pub async fn dead_list(&self, filter: &DeadFilter, page: Page) -> Result<DeadPage, QueueError> {
        let keys = self.keys();
        let set = match &filter.error_kind {
            Some(kind) => keys.dead_kind(kind),
            None => keys.dead.clone(),
        };
        let limit = page.limit.clamp(1, 1_000);
        let stop = page.offset + limit - 1;
        let (ids, total): (Vec<String>, u64) = redis::pipe()
            .cmd("ZREVRANGE")
            .arg(&set)
            .arg(page.offset)
            .arg(stop)
            .cmd("ZCARD")
            .arg(&set)
            .query_async(&mut self.conn())
            .await?;
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(keys.job(id));
            pipe.cmd("HGET").arg(&keys.attempts).arg(id);
        }
        let records: Vec<(HashMap<String, String>, Option<String>)> = if ids.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut self.conn()).await?
        };
        let mut jobs = Vec::with_capacity(ids.len());
        for (id, (fields, attempts)) in ids.iter().zip(records) {
            let Ok(job_id) = id.parse() else {
                tracing::warn!(job_id = %id, "skipping a dead entry with an unreadable id");
                continue;
            };
            let number = |name: &str| -> i64 {
                fields
                    .get(name)
                    .and_then(|value| value.parse().ok())
                    .unwrap_or_default()
            };
            jobs.push(DeadJob {
                job_id,
                dead_at: millis_to_time(number("dead_at")),
                attempts: attempts
                    .as_deref()
                    .and_then(split_attempts)
                    .map(|(attempts, _)| attempts)
                    .unwrap_or_default(),
                error_kind: fields.get("last_error_kind").cloned().unwrap_or_default(),
                last_error: fields.get("last_error").cloned().unwrap_or_default(),
                unique_key: fields.get("unique_key").cloned(),
            });
        }
        Ok(DeadPage { jobs, total })
    }

    /// Shows one job (dead or not): payload, attempts and every recorded error with its time.
    pub async fn dead_show(&self, job_id: JobId) -> Result<Option<JobDetail>, QueueError> {
        self.job_detail(job_id).await
    }

    /// Sends the selected dead jobs back to the ready list with attempts reset to 0 and the
    /// same job ids (so their history stays linked). Returns how many were retried.
    pub async fn dead_retry(&self, selector: &DeadSelector) -> Result<u64, QueueError> {
        self.dead_apply(&DEAD_RETRY_SCRIPT, selector).await
    }

    /// Deletes the selected dead jobs and their records. Returns how many were purged.
    pub async fn dead_purge(&self, selector: &DeadSelector) -> Result<u64, QueueError> {
        self.dead_apply(&DEAD_PURGE_SCRIPT, selector).await
    }

    async fn dead_apply(
        &self,
        script: &redis::Script,
        selector: &DeadSelector,
    ) -> Result<u64, QueueError> {
        let (mode, argument) = match selector {
            DeadSelector::One { job_id } => ("ids", job_id.to_string()),
            DeadSelector::ErrorKind { error_kind } => ("kind", error_kind.clone()),
            DeadSelector::OlderThan { age } => ("before", age.as_millis().to_string()),
            DeadSelector::All => ("all", String::new()),
        };
        let mut total = 0;
        // Each call handles one bounded chunk; selections larger than a chunk take several
        // calls, each atomic on its own.
        loop {
            let mut invocation = self.invocation(script);
            invocation.arg(mode).arg(DEAD_CHUNK).arg(&argument);
            let (done, examined): (u64, u64) = invocation.invoke_async(&mut self.conn()).await?;
            total += done;
            if mode == "ids" || examined < DEAD_CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}
