//! How far one run has got, as kept in the store's checkpoint between attempts.
//!
//! The store's [`Checkpoint`] holds the counts and an opaque `resume_token`. The engine needs more
//! than the connector's token to resume correctly, so the token it stores is a small object of
//! its own ([`Position`]): the window frozen at the run's first start (a retry must read the same
//! window, or the cursor could move past records it never read), whether the run reads the whole
//! historical period (and so sweeps deletions at the end), the connector's token for the next
//! page, and whether the crawl and the sweep already finished (so a retry after a crash at the
//! very end does not read the source again).

use chrono::{DateTime, Utc};
use conveyor_connectors::ResumeToken;
use conveyor_store::Checkpoint;
use serde::{Deserialize, Serialize};

use crate::window::SyncWindow;

/// Where a run is, as stored in the checkpoint's `resume_token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    /// The window frozen at the run's first start.
    pub(crate) window: SyncWindow,
    /// Whether the run reads the whole historical period and sweeps deletions when it is done.
    pub(crate) full: bool,
    /// The connector's token for the next page; `None` with `crawled == false` means the first.
    #[serde(default)]
    pub(crate) next: Option<ResumeToken>,
    /// Every page was read and stored.
    #[serde(default)]
    pub(crate) crawled: bool,
    /// Records marked deleted by the sweep, once it ran.
    #[serde(default)]
    pub(crate) swept: Option<u64>,
}

/// What a run has done so far: its position and counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) position: Position,
    pub(crate) counts: Counts,
}

/// The counts of a run, as its record, its checkpoint and its events show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Pages stored.
    pub pages: u64,
    /// Records read from the source.
    pub records_fetched: u64,
    /// Records written because they were new or changed.
    pub records_written: u64,
    /// Records read whose content had not changed (overlap duplicates among them).
    pub records_unchanged: u64,
    /// Records marked deleted by a full run's sweep.
    pub records_deleted: u64,
}

impl Progress {
    /// A run that has not read anything yet.
    pub(crate) fn start(window: SyncWindow, full: bool) -> Progress {
        Progress {
            position: Position {
                window,
                full,
                next: None,
                crawled: false,
                swept: None,
            },
            counts: Counts::default(),
        }
    }

    /// The progress a checkpoint holds; `None` if its token is not one of ours (written by
    /// an incompatible version), in which case the run starts over.
    pub(crate) fn from_checkpoint(checkpoint: &Checkpoint) -> Option<Progress> {
        let position: Position = serde_json::from_value(checkpoint.resume_token.clone()).ok()?;
        Some(Progress {
            counts: Counts {
                pages: checkpoint.pages,
                records_fetched: checkpoint.records_fetched,
                records_written: checkpoint.records_written,
                records_unchanged: checkpoint.records_unchanged,
                records_deleted: position.swept.unwrap_or(0),
            },
            position,
        })
    }

    /// The checkpoint to store for this progress.
    pub(crate) fn to_checkpoint(&self, saved_at: DateTime<Utc>) -> Checkpoint {
        Checkpoint {
            // A struct of plain fields always serializes; the fallback is never taken.
            resume_token: serde_json::to_value(&self.position).unwrap_or_default(),
            pages: self.counts.pages,
            records_fetched: self.counts.records_fetched,
            records_written: self.counts.records_written,
            records_unchanged: self.counts.records_unchanged,
            saved_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_round_trips_through_a_checkpoint() {
        let window = SyncWindow {
            changed_after: "2026-11-23T08:58:00Z".parse().unwrap(),
            changed_until: "2026-11-23T10:00:00Z".parse().unwrap(),
        };
        let mut progress = Progress::start(window, true);
        progress.position.next = Some(serde_json::from_str(r#"{"offset":200}"#).unwrap());
        progress.counts = Counts {
            pages: 2,
            records_fetched: 200,
            records_written: 150,
            records_unchanged: 50,
            records_deleted: 0,
        };
        let checkpoint = progress.to_checkpoint(Utc::now());
        assert_eq!(checkpoint.pages, 2);
        assert_eq!(
            checkpoint.resume_token["window"]["changed_until"],
            "2026-11-23T10:00:00Z"
        );
        assert_eq!(Progress::from_checkpoint(&checkpoint), Some(progress));
    }

    #[test]
    fn a_foreign_token_starts_over() {
        let checkpoint = Checkpoint {
            resume_token: serde_json::json!({"offset": 5}),
            pages: 1,
            records_fetched: 5,
            records_written: 5,
            records_unchanged: 0,
            saved_at: Utc::now(),
        };
        assert_eq!(Progress::from_checkpoint(&checkpoint), None);
    }
}
