//! The child side of the queue benchmark: the arguments a phase runs with, the no-op job, and
//! the counters a draining worker uses to know when the backlog is gone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{Phase, System};
use crate::BenchError;

/// A draining worker that finishes no job for this long has stalled: the child reports that
/// instead of hanging.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(30);

/// What one child process runs: one phase of one system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildArgs {
    /// The system under test.
    pub system: System,
    /// The phase to run.
    pub phase: Phase,
    /// The benchmark's redis-server.
    pub url: String,
    /// Jobs to push or drain.
    pub jobs: u64,
    /// Pushes in flight at once for [`Phase::Push`].
    pub in_flight: usize,
    /// Jobs per call for [`Phase::PushBulk`].
    pub chunk: usize,
    /// Jobs the worker runs at once for [`Phase::Drain`].
    pub concurrency: usize,
    /// Jobs fetched per call for [`Phase::Drain`], for systems that take it (conveyor);
    /// `None` keeps the system's default.
    pub fetch_batch: Option<usize>,
}

impl ChildArgs {
    /// The command-line form, after the system and phase: `--url U --jobs N ...`; the node
    /// script takes the same options.
    pub fn options(&self) -> Vec<String> {
        let mut options = vec![
            "--url".to_owned(),
            self.url.clone(),
            "--jobs".to_owned(),
            self.jobs.to_string(),
            "--in-flight".to_owned(),
            self.in_flight.to_string(),
            "--chunk".to_owned(),
            self.chunk.to_string(),
            "--concurrency".to_owned(),
            self.concurrency.to_string(),
        ];
        if let Some(fetch_batch) = self.fetch_batch {
            options.extend(["--fetch-batch".to_owned(), fetch_batch.to_string()]);
        }
        options
    }

    /// Parses `<system> <phase> --url U --jobs N [--in-flight K] [--chunk C] [--concurrency W]
    /// [--fetch-batch F]`.
    pub fn parse(args: &[String]) -> Result<ChildArgs, BenchError> {
        let usage = |detail: String| {
            BenchError::Usage(format!(
                "{detail}; expected: child <system> <phase> --url U --jobs N \
                 [--in-flight K] [--chunk C] [--concurrency W] [--fetch-batch F]"
            ))
        };
        let [system, phase, options @ ..] = args else {
            return Err(usage("missing system and phase".to_owned()));
        };
        let system =
            System::from_cli(system).ok_or_else(|| usage(format!("unknown system {system:?}")))?;
        let phase =
            Phase::from_cli(phase).ok_or_else(|| usage(format!("unknown phase {phase:?}")))?;
        let mut parsed = ChildArgs {
            system,
            phase,
            url: String::new(),
            jobs: 0,
            in_flight: 32,
            chunk: 1000,
            concurrency: system.default_concurrency(),
            fetch_batch: None,
        };
        let mut pairs = options.chunks(2);
        for pair in &mut pairs {
            let [name, value] = pair else {
                return Err(usage(format!("option {:?} has no value", pair[0])));
            };
            let number = || {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|number| *number > 0)
                    .ok_or_else(|| usage(format!("{name} must be a positive integer")))
            };
            match name.as_str() {
                "--url" => parsed.url = value.clone(),
                "--jobs" => parsed.jobs = number()?,
                "--in-flight" => parsed.in_flight = number()? as usize,
                "--chunk" => parsed.chunk = number()? as usize,
                "--concurrency" => parsed.concurrency = number()? as usize,
                "--fetch-batch" => parsed.fetch_batch = Some(number()? as usize),
                _ => return Err(usage(format!("unknown option {name}"))),
            }
        }
        if parsed.url.is_empty() || parsed.jobs == 0 {
            return Err(usage("--url and --jobs are required".to_owned()));
        }
        Ok(parsed)
    }
}

/// The job every system pushes and drains: a number, so payloads are the same size everywhere
/// (BullMQ's script pushes `{ n }` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NoOpJob {
    pub(crate) n: u64,
}

/// Hands out job numbers `0..total` to concurrent pushers.
#[derive(Debug)]
pub(crate) struct JobNumbers {
    next: AtomicU64,
    total: u64,
}

impl JobNumbers {
    pub(crate) fn new(total: u64) -> Self {
        JobNumbers {
            next: AtomicU64::new(0),
            total,
        }
    }

    /// The next job number, or `None` once all are taken.
    pub(crate) fn take(&self) -> Option<u64> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n < self.total).then_some(n)
    }
}

/// Counts jobs a draining worker has handled and wakes the waiter when all are.
#[derive(Debug)]
pub(crate) struct Progress {
    handled: AtomicU64,
    target: u64,
    all_handled: Notify,
}

impl Progress {
    pub(crate) fn new(target: u64) -> Self {
        Progress {
            handled: AtomicU64::new(0),
            target,
            all_handled: Notify::new(),
        }
    }

    /// Records one handled job.
    pub(crate) fn record(&self) {
        let handled = self.handled.fetch_add(1, Ordering::AcqRel) + 1;
        if handled == self.target {
            // notify_one keeps a permit if nobody waits yet, so the wake-up is never lost.
            self.all_handled.notify_one();
        }
    }

    pub(crate) fn handled(&self) -> u64 {
        self.handled.load(Ordering::Acquire)
    }

    /// Waits until every job is handled; fails when no job finished for `stall`.
    pub(crate) async fn wait(&self, stall: Duration) -> Result<(), String> {
        let mut last = self.handled();
        loop {
            if last >= self.target {
                return Ok(());
            }
            match tokio::time::timeout(stall, self.all_handled.notified()).await {
                Ok(()) => return Ok(()),
                Err(_) => {
                    let now = self.handled();
                    if now == last {
                        return Err(format!(
                            "stalled: no job finished for {} s after {now} of {} jobs",
                            stall.as_secs(),
                            self.target
                        ));
                    }
                    last = now;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn child_arguments_round_trip() {
        let args = ChildArgs {
            system: System::ApalisRedis,
            phase: Phase::PushBulk,
            url: "redis://127.0.0.1:7000/".to_owned(),
            jobs: 5000,
            in_flight: 8,
            chunk: 250,
            concurrency: 16,
            fetch_batch: Some(1),
        };
        let mut line = strings(&["apalis-redis", "push-bulk"]);
        line.extend(args.options());
        assert_eq!(ChildArgs::parse(&line).unwrap(), args);
    }

    #[test]
    fn bad_child_arguments_are_refused() {
        for line in [
            strings(&["apalis-redis"]),
            strings(&["nosuch", "push", "--url", "u", "--jobs", "1"]),
            strings(&["bullmq", "push", "--url", "u", "--jobs", "0"]),
            strings(&["bullmq", "push", "--url", "u", "--jobs"]),
            strings(&["bullmq", "drain", "--jobs", "10"]),
        ] {
            assert!(ChildArgs::parse(&line).is_err(), "{line:?}");
        }
    }

    #[test]
    fn job_numbers_are_handed_out_once() {
        let numbers = JobNumbers::new(3);
        let taken: Vec<_> = std::iter::from_fn(|| numbers.take()).collect();
        assert_eq!(taken, [0, 1, 2]);
        assert_eq!(numbers.take(), None);
    }

    #[tokio::test]
    async fn progress_reports_completion_and_stalls() {
        let progress = Progress::new(2);
        progress.record();
        let stalled = progress.wait(Duration::from_millis(20)).await;
        assert!(stalled.unwrap_err().contains("after 1 of 2"));
        progress.record();
        progress
            .wait(Duration::from_millis(20))
            .await
            .expect("all jobs were handled");
    }
}
