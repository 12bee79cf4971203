//! The queue benchmark's results, as written to `bench/results/queue.json`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::System;
use crate::machine::{Checkout, Machine};
use crate::monitor::ClientCommands;
use crate::phase::PhaseReport;
use crate::redis_counters::ServerCounters;

/// Rounds to `digits` decimals, so the JSON is readable and diffs stay small.
pub(crate) fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// One timed phase: the child's report and Redis's counters around it.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    /// What the child reported (jobs, seconds, peak RSS, error...).
    #[serde(flatten)]
    pub report: PhaseReport,
    /// Jobs per second; absent when the phase failed.
    pub per_s: Option<f64>,
    /// Commands Redis ran per job, those inside Lua scripts included (INFO commandstats).
    pub redis_cmds_per_job: f64,
    /// Socket reads from clients per job (pipelined commands arriving together are one read).
    pub redis_reads_per_job: f64,
    /// redis-server CPU time per job, in microseconds.
    pub redis_cpu_us_per_job: f64,
    /// The child's own CPU time per job, in microseconds.
    pub process_cpu_us_per_job: Option<f64>,
    /// Calls per command during the phase, as INFO commandstats counts them.
    pub redis_commands: BTreeMap<String, u64>,
    /// Commands clients sent per job (not counting those run inside scripts), from the
    /// MONITOR counting pass: each is at most one round trip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cmds_per_job: Option<f64>,
    /// Client commands by name in the counting pass, for `counting_pass_jobs` jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_commands: Option<BTreeMap<String, u64>>,
}

impl PhaseResult {
    /// `redis_cpu_seconds` is the server's CPU time during the phase.
    pub(crate) fn new(
        mut report: PhaseReport,
        counters: ServerCounters,
        redis_cpu_seconds: f64,
    ) -> PhaseResult {
        let jobs = report.jobs.max(1) as f64;
        let process_cpu_us_per_job = report
            .cpu_seconds
            .map(|seconds| round(seconds * 1e6 / jobs, 2));
        report.cpu_seconds = report.cpu_seconds.map(|seconds| round(seconds, 3));
        let per_s = report.per_second().map(|rate| round(rate, 0));
        report.seconds = round(report.seconds, 3);
        report.peak_rss_mib = report.peak_rss_mib.map(|mib| round(mib, 1));
        PhaseResult {
            per_s,
            redis_cmds_per_job: round(counters.total_commands() as f64 / jobs, 3),
            redis_reads_per_job: round(counters.reads as f64 / jobs, 3),
            redis_cpu_us_per_job: round(redis_cpu_seconds * 1e6 / jobs, 2),
            process_cpu_us_per_job,
            redis_commands: counters.commands,
            client_cmds_per_job: None,
            client_commands: None,
            report,
        }
    }

    /// Adds what MONITOR saw during this phase, over `jobs` jobs.
    pub(crate) fn add_client_commands(&mut self, counted: &ClientCommands, jobs: u64) {
        self.client_cmds_per_job = Some(round(counted.total() as f64 / jobs.max(1) as f64, 3));
        self.client_commands = Some(counted.by_command.clone());
    }
}

/// One number per phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PerPhase {
    /// One-at-a-time push.
    pub push: Option<f64>,
    /// Bulk push.
    pub push_bulk: Option<f64>,
    /// Drain.
    pub drain: Option<f64>,
}

/// The timed phases of one system.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    /// Push one at a time with `in_flight` pushes in flight.
    pub push: Option<PhaseResult>,
    /// Push in calls of `chunk` jobs.
    pub push_bulk: Option<PhaseResult>,
    /// Drain the bulk-pushed backlog with one worker process.
    pub drain: Option<PhaseResult>,
}

/// Everything measured for one system.
#[derive(Debug, Clone, Serialize)]
pub struct SystemResult {
    /// The system's name.
    pub name: &'static str,
    /// Its version.
    pub version: Option<String>,
    /// How it was configured.
    pub configuration: &'static str,
    /// Jobs its drain worker ran at once.
    pub concurrency: usize,
    /// One-at-a-time push rate (jobs/s).
    pub push_per_s: Option<f64>,
    /// Bulk push rate (jobs/s).
    pub push_bulk_per_s: Option<f64>,
    /// Drain rate of the full backlog by one worker process (jobs/s).
    pub drain_per_s: Option<f64>,
    /// Commands Redis ran per job (scripts' commands included), per phase.
    pub redis_cmds_per_job: PerPhase,
    /// Commands clients sent per job (at most one round trip each), per phase, from the
    /// counting pass.
    pub client_cmds_per_job: PerPhase,
    /// redis-server CPU time per job (µs), per phase.
    pub redis_cpu_us_per_job: PerPhase,
    /// The pushing or draining process's own CPU time per job (µs), per phase.
    pub process_cpu_us_per_job: PerPhase,
    /// Peak RSS of the draining worker process (MiB).
    pub peak_rss_mib: Option<f64>,
    /// The drain's per-job figures and memory come from the small-backlog drain, because the
    /// full drain failed.
    pub drain_figures_from_small_backlog: bool,
    /// The first failure of the system under test, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The timed phases in full.
    pub phases: Phases,
    /// When the full drain failed: a drain of a backlog the system survives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_at_small_backlog: Option<PhaseResult>,
    /// conveyor only: a drain with nothing batched (fetch batch 1, concurrency 1) under
    /// MONITOR, for round trips per job when jobs come one by one. Not a throughput figure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unbatched_drain: Option<PhaseResult>,
}

impl SystemResult {
    pub(crate) fn new(
        system: System,
        concurrency: usize,
        phases: Phases,
        drain_at_small_backlog: Option<PhaseResult>,
        unbatched_drain: Option<PhaseResult>,
    ) -> SystemResult {
        let named = [
            ("push", &phases.push),
            ("push-bulk", &phases.push_bulk),
            ("drain", &phases.drain),
        ];
        let version = named
            .iter()
            .find_map(|(_, phase)| phase.as_ref()?.report.version.clone());
        let error = named.iter().find_map(|(name, phase)| {
            let err = phase.as_ref()?.report.error.as_ref()?;
            Some(format!("{name}: {err}"))
        });
        // A failed phase's per-job figures divide little work by many jobs; leave them out.
        // When the full drain failed, the drain's per-job figures and memory come from the
        // small-backlog drain, and `drain_figures_from_small_backlog` says so.
        let succeeded = |phase: &Option<PhaseResult>| {
            phase
                .as_ref()
                .filter(|phase| phase.report.error.is_none())
                .cloned()
        };
        let full_drain = succeeded(&phases.drain);
        let small_drain = succeeded(&drain_at_small_backlog);
        let drain_figures_from_small_backlog = full_drain.is_none() && small_drain.is_some();
        let drain_figures = full_drain.or(small_drain);
        let push = succeeded(&phases.push);
        let push_bulk = succeeded(&phases.push_bulk);
        let per_phase = |get: fn(&PhaseResult) -> Option<f64>| PerPhase {
            push: push.as_ref().and_then(get),
            push_bulk: push_bulk.as_ref().and_then(get),
            drain: drain_figures.as_ref().and_then(get),
        };
        SystemResult {
            name: system.label(),
            version,
            configuration: system.configuration(),
            concurrency,
            push_per_s: push.as_ref().and_then(|p| p.per_s),
            push_bulk_per_s: push_bulk.as_ref().and_then(|p| p.per_s),
            drain_per_s: phases.drain.as_ref().and_then(|p| p.per_s),
            redis_cmds_per_job: per_phase(|p| Some(p.redis_cmds_per_job)),
            client_cmds_per_job: per_phase(|p| p.client_cmds_per_job),
            redis_cpu_us_per_job: per_phase(|p| Some(p.redis_cpu_us_per_job)),
            process_cpu_us_per_job: per_phase(|p| p.process_cpu_us_per_job),
            peak_rss_mib: drain_figures.as_ref().and_then(|p| p.report.peak_rss_mib),
            drain_figures_from_small_backlog,
            error,
            phases,
            drain_at_small_backlog,
            unbatched_drain,
        }
    }
}

/// Conveyor's numbers over the others'.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ratios {
    /// conveyor drain / BullMQ drain.
    pub conveyor_drain_over_bullmq: Option<f64>,
    /// conveyor drain / apalis-redis drain (full backlog).
    pub conveyor_drain_over_apalis_redis: Option<f64>,
    /// conveyor drain (full backlog) / apalis-redis drain at the small backlog it survives.
    pub conveyor_drain_over_apalis_redis_small_backlog: Option<f64>,
    /// conveyor push / BullMQ push (one at a time).
    pub conveyor_push_over_bullmq: Option<f64>,
    /// conveyor bulk push / BullMQ bulk push.
    pub conveyor_push_bulk_over_bullmq: Option<f64>,
}

/// The targets for conveyor-queue, checked against this run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Targets {
    /// Drain at least 3x BullMQ's.
    pub drain_at_least_3x_bullmq: Option<bool>,
    /// Drain at least 50,000 jobs/s with leases on.
    pub drain_at_least_50k_per_s: Option<bool>,
    /// Client commands per job, an upper bound on round trips, with nothing batched: the
    /// one-at-a-time push plus the unbatched drain (fetch batch 1, concurrency 1).
    pub round_trips_per_job_unbatched: Option<f64>,
    /// That bound is at most 4.
    pub round_trips_at_most_4: Option<bool>,
}

/// How the run was set up.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    /// Pushes in flight for the one-at-a-time push.
    pub in_flight: usize,
    /// Jobs per bulk push call.
    pub chunk: usize,
    /// Jobs per phase in the MONITOR counting pass.
    pub counting_pass_jobs: u64,
    /// Backlog drained again when a system's full drain fails.
    pub small_backlog: u64,
    /// Jobs in conveyor's unbatched drain.
    pub unbatched_jobs: u64,
    /// How the phases are measured.
    pub method: &'static str,
}

/// The whole result file.
#[derive(Debug, Clone, Serialize)]
pub struct QueueResults {
    /// Jobs per timed phase.
    pub jobs: u64,
    /// conveyor-queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conveyor: Option<SystemResult>,
    /// apalis-redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apalis_redis: Option<SystemResult>,
    /// BullMQ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bullmq: Option<SystemResult>,
    /// Conveyor's numbers over the others'.
    pub ratios: Ratios,
    /// The targets.
    pub targets: Targets,
    /// How the run was set up.
    pub settings: RunSettings,
    /// What it ran on.
    pub machine: Machine,
    /// The code it ran: the commit, and uncommitted changes to the systems' code, if any.
    pub checkout: Checkout,
    /// Seconds since the Unix epoch when the run finished.
    pub finished_at_unix: u64,
}

impl QueueResults {
    /// Fills in ratios and targets from the systems' numbers.
    pub(crate) fn compare(&mut self) {
        let ratio = |ours: Option<f64>, theirs: Option<f64>| match (ours, theirs) {
            (Some(ours), Some(theirs)) if theirs > 0.0 => Some(round(ours / theirs, 2)),
            _ => None,
        };
        let conveyor = self.conveyor.as_ref();
        let bullmq = self.bullmq.as_ref();
        let apalis = self.apalis_redis.as_ref();
        let drain = conveyor.and_then(|c| c.drain_per_s);
        self.ratios = Ratios {
            conveyor_drain_over_bullmq: ratio(drain, bullmq.and_then(|b| b.drain_per_s)),
            conveyor_drain_over_apalis_redis: ratio(drain, apalis.and_then(|a| a.drain_per_s)),
            conveyor_drain_over_apalis_redis_small_backlog: ratio(
                drain,
                apalis.and_then(|a| a.drain_at_small_backlog.as_ref()?.per_s),
            ),
            conveyor_push_over_bullmq: ratio(
                conveyor.and_then(|c| c.push_per_s),
                bullmq.and_then(|b| b.push_per_s),
            ),
            conveyor_push_bulk_over_bullmq: ratio(
                conveyor.and_then(|c| c.push_bulk_per_s),
                bullmq.and_then(|b| b.push_bulk_per_s),
            ),
        };
        let round_trips = conveyor.and_then(|c| {
            let drain = c.unbatched_drain.as_ref()?.client_cmds_per_job?;
            Some(round(c.client_cmds_per_job.push? + drain, 3))
        });
        self.targets = Targets {
            drain_at_least_3x_bullmq: self.ratios.conveyor_drain_over_bullmq.map(|r| r >= 3.0),
            drain_at_least_50k_per_s: drain.map(|rate| rate >= 50_000.0),
            round_trips_per_job_unbatched: round_trips,
            round_trips_at_most_4: round_trips.map(|trips| trips <= 4.0),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_the_given_decimals() {
        assert_eq!(round(12.3456, 2), 12.35);
        assert_eq!(round(99_999.6, 0), 100_000.0);
    }

    #[test]
    fn a_phase_result_divides_by_jobs() {
        let report = PhaseReport {
            jobs: 1000,
            seconds: 0.5,
            ..PhaseReport::default()
        };
        let counters = ServerCounters {
            commands: BTreeMap::from([("evalsha".to_owned(), 10), ("hset".to_owned(), 2000)]),
            reads: 10,
            cpu_seconds: 100.0,
        };
        let result = PhaseResult::new(report, counters, 0.25);
        assert_eq!(result.per_s, Some(2000.0));
        assert_eq!(result.redis_cmds_per_job, 2.01);
        assert_eq!(result.redis_reads_per_job, 0.01);
        assert_eq!(result.redis_cpu_us_per_job, 250.0);
    }
}
