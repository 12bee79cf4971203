//! The queue benchmark (issue 3): conveyor-queue against apalis-redis and BullMQ, side by side
//! in one run on one private redis-server.
//!
//! For each system, with a FLUSHALL before each push so the systems never see each other's keys:
//!
//! 1. **push**: `jobs` no-op jobs pushed one at a time, `in_flight` pushes in flight at once;
//! 2. **push-bulk**: the same number pushed with the system's bulk call, `chunk` per call;
//! 3. **drain**: that bulk-pushed backlog drained by one worker process running `concurrency`
//!    jobs at once; its peak RSS is the worker's memory figure.
//!
//! Each phase runs in a child process (this binary again, or `node bench/node/queue.mjs` for
//! BullMQ) that times only the work. Around each phase the harness resets and reads Redis's
//! counters, so commands per job come from the server, the same way for every system. A second,
//! smaller counting pass repeats the phases under MONITOR to count the commands clients send
//! (an upper bound on round trips), which MONITOR's own cost would distort if it ran in the
//! timed pass.
//!
//! A system that fails is recorded, not fatal: if a drain of the full backlog fails (apalis-redis
//! cannot promote more than ~8,000 due jobs in one Lua call), the harness drains a backlog of
//! `small_backlog` jobs too and records both.

mod apalis_redis;
mod bullmq;
mod child;
mod conveyor;
mod results;
mod table;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conveyor_testkit::RedisServer;

pub use child::ChildArgs;
pub use results::{
    PerPhase, PhaseResult, Phases, QueueResults, Ratios, RunSettings, SystemResult, Targets,
};
pub use table::markdown;

use crate::BenchError;
use crate::machine::{Checkout, Machine, redis_version};
use crate::monitor::Monitor;
use crate::phase::{PhaseReport, peak_rss_mib, run_child};
use crate::redis_counters;

/// A queue system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum System {
    /// conveyor-queue, with leases on.
    Conveyor,
    /// apalis-redis 1.0 in its default configuration.
    ApalisRedis,
    /// BullMQ on Node.
    BullMq,
}

impl System {
    /// Every system, in the order the harness runs them.
    pub const ALL: [System; 3] = [System::Conveyor, System::ApalisRedis, System::BullMq];

    /// The name on the command line.
    pub fn cli(self) -> &'static str {
        match self {
            System::Conveyor => "conveyor",
            System::ApalisRedis => "apalis-redis",
            System::BullMq => "bullmq",
        }
    }

    /// Parses [`cli`](Self::cli).
    pub fn from_cli(name: &str) -> Option<System> {
        System::ALL.into_iter().find(|system| system.cli() == name)
    }

    /// The name in tables.
    pub fn label(self) -> &'static str {
        match self {
            System::Conveyor => "conveyor-queue",
            System::ApalisRedis => "apalis-redis",
            System::BullMq => "BullMQ",
        }
    }

    /// How the system is set up, for the results file.
    pub fn configuration(self) -> &'static str {
        match self {
            System::Conveyor => {
                "QueueConfig defaults (leases on, 30 s lease), apalis 1.0 worker via the \
                 conveyor-queue backend, no-op handler"
            }
            System::ApalisRedis => {
                "RedisStorage::new (Config::default(): fetch batch 10, locks and results on), \
                 apalis 1.0 worker with parallelize(tokio::spawn) and concurrency, no-op handler"
            }
            System::BullMq => {
                "BullMQ defaults (completed jobs kept) over ioredis, Worker with concurrency, \
                 async no-op processor"
            }
        }
    }

    /// Jobs the draining worker runs at once, chosen per system for its best drain on a
    /// 2-core machine (see bench/README.md).
    pub fn default_concurrency(self) -> usize {
        match self {
            System::Conveyor => 64,
            System::ApalisRedis => 100,
            System::BullMq => 50,
        }
    }
}

/// A phase of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// One job per call, several calls in flight.
    Push,
    /// Many jobs per call.
    PushBulk,
    /// One worker process drains the backlog.
    Drain,
}

impl Phase {
    /// The name on the command line (and in the node script).
    pub fn cli(self) -> &'static str {
        match self {
            Phase::Push => "push",
            Phase::PushBulk => "push-bulk",
            Phase::Drain => "drain",
        }
    }

    /// Parses [`cli`](Self::cli).
    pub fn from_cli(name: &str) -> Option<Phase> {
        [Phase::Push, Phase::PushBulk, Phase::Drain]
            .into_iter()
            .find(|phase| phase.cli() == name)
    }
}

/// How a run is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Jobs per timed phase. Defaults to 100,000.
    pub jobs: u64,
    /// Pushes in flight for the one-at-a-time push. Defaults to 32.
    pub in_flight: usize,
    /// Jobs per bulk push call. Defaults to 1,000.
    pub chunk: usize,
    /// Jobs per phase in the MONITOR counting pass; 0 skips the pass. Defaults to 5,000 (below
    /// apalis-redis's limit, so every system can be counted).
    pub count_jobs: u64,
    /// Backlog drained again when a system's full drain fails. Defaults to 5,000.
    pub small_backlog: u64,
    /// Jobs in conveyor's unbatched drain (fetch batch 1, concurrency 1, under MONITOR), which
    /// gives its round trips per job when nothing is batched; 0 skips it. Defaults to 1,000.
    pub unbatched_jobs: u64,
    /// The systems to run. Defaults to all three.
    pub systems: Vec<System>,
    /// Worker concurrency per system; systems not listed use their default.
    pub concurrency: Vec<(System, usize)>,
    /// The longest one phase may take before the run is abandoned. Defaults to 15 minutes.
    pub phase_limit: Duration,
}

impl Settings {
    /// The defaults, with `jobs` jobs per phase.
    pub fn new(jobs: u64) -> Settings {
        Settings {
            jobs,
            in_flight: 32,
            chunk: 1000,
            count_jobs: 5000,
            small_backlog: 5000,
            unbatched_jobs: 1000,
            systems: System::ALL.to_vec(),
            concurrency: Vec::new(),
            phase_limit: Duration::from_secs(15 * 60),
        }
    }

    /// The worker concurrency used for `system`.
    pub fn concurrency(&self, system: System) -> usize {
        self.concurrency
            .iter()
            .find(|(listed, _)| *listed == system)
            .map_or_else(|| system.default_concurrency(), |(_, n)| *n)
    }
}

/// Runs one phase of one Rust system in this process (the child side) and returns its report,
/// with this process's peak RSS.
pub fn run_child_phase(args: &ChildArgs) -> Result<PhaseReport, BenchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("starting the tokio runtime"))?;
    let mut report = runtime.block_on(async {
        match (args.system, args.phase) {
            (System::ApalisRedis, Phase::Push) => apalis_redis::push(args).await,
            (System::ApalisRedis, Phase::PushBulk) => apalis_redis::push_bulk(args).await,
            (System::ApalisRedis, Phase::Drain) => apalis_redis::drain(args).await,
            (System::Conveyor, Phase::Push) => conveyor::push(args).await,
            (System::Conveyor, Phase::PushBulk) => conveyor::push_bulk(args).await,
            (System::Conveyor, Phase::Drain) => conveyor::drain(args).await,
            (System::BullMq, _) => Err(BenchError::Usage(
                "BullMQ phases run in node: node bench/node/queue.mjs <phase> ...".to_owned(),
            )),
        }
    })?;
    // Let spawned tasks and connections go before reading the high-water mark; it only rises.
    drop(runtime);
    report.peak_rss_mib = peak_rss_mib();
    Ok(report)
}

/// Runs the whole benchmark and returns its results (the caller writes and prints them).
pub fn run(settings: &Settings) -> Result<QueueResults, BenchError> {
    if settings.systems.contains(&System::BullMq) {
        bullmq::check_installed()?;
    }
    let mut harness = Harness::start(settings)?;
    let mut results = QueueResults {
        jobs: settings.jobs,
        conveyor: None,
        apalis_redis: None,
        bullmq: None,
        ratios: Ratios::default(),
        targets: Targets::default(),
        settings: RunSettings {
            in_flight: settings.in_flight,
            chunk: settings.chunk,
            counting_pass_jobs: settings.count_jobs,
            small_backlog: settings.small_backlog,
            unbatched_jobs: settings.unbatched_jobs,
            method: "each phase in its own child process timing only its work; Redis counters \
                     reset before and read after each phase; client commands from a separate \
                     MONITOR pass of counting_pass_jobs jobs",
        },
        machine: Machine::describe(redis_version(&mut harness.connection)),
        checkout: Checkout::describe(&["crates/conveyor-queue", "bench"]),
        finished_at_unix: 0,
    };
    for system in &settings.systems {
        eprintln!("bench-queue: {} ...", system.label());
        let measured = harness.measure(*system)?;
        match system {
            System::Conveyor => results.conveyor = Some(measured),
            System::ApalisRedis => results.apalis_redis = Some(measured),
            System::BullMq => results.bullmq = Some(measured),
        }
    }
    results.compare();
    results.finished_at_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    Ok(results)
}

/// The private redis-server, the harness's connection to it and the run's settings.
struct Harness<'a> {
    server: RedisServer,
    connection: redis::Connection,
    settings: &'a Settings,
    exe: std::path::PathBuf,
}

impl<'a> Harness<'a> {
    fn start(settings: &'a Settings) -> Result<Harness<'a>, BenchError> {
        let server = RedisServer::start()?;
        let connection = server.client().get_connection()?;
        let exe = std::env::current_exe().map_err(BenchError::io("finding bench-queue itself"))?;
        Ok(Harness {
            server,
            connection,
            settings,
            exe,
        })
    }

    fn args(&self, system: System, phase: Phase, jobs: u64) -> ChildArgs {
        ChildArgs {
            system,
            phase,
            url: self.server.url(),
            jobs,
            in_flight: self.settings.in_flight,
            chunk: self.settings.chunk,
            concurrency: self.settings.concurrency(system),
            fetch_batch: None,
        }
    }

    fn command(&self, args: &ChildArgs) -> Command {
        match args.system {
            System::BullMq => bullmq::command(args),
            System::Conveyor | System::ApalisRedis => {
                let mut command = Command::new(&self.exe);
                command
                    .arg("child")
                    .arg(args.system.cli())
                    .arg(args.phase.cli())
                    .args(args.options());
                command
            }
        }
    }

    fn flush(&mut self) -> Result<(), BenchError> {
        redis::cmd("FLUSHALL").query::<()>(&mut self.connection)?;
        Ok(())
    }

    /// Runs one phase with Redis's counters around it; with `monitor`, also counts the
    /// commands clients send (which slows Redis down: never for a timed figure).
    fn phase(&mut self, args: &ChildArgs, monitor: bool) -> Result<PhaseResult, BenchError> {
        if args.phase != Phase::Drain {
            self.flush()?;
        }
        redis_counters::reset(&mut self.connection)?;
        let redis_cpu_before = redis_counters::cpu_seconds(&mut self.connection)?;
        let monitor = match monitor {
            true => Some(Monitor::start(self.server.port())?),
            false => None,
        };
        let report = run_child(
            self.command(args),
            self.settings.phase_limit,
            args.system.cli(),
            args.phase.cli(),
        );
        // Always stop the monitor, so its thread ends even when the child failed.
        let counted = match monitor {
            Some(monitor) => Some(monitor.finish(&mut self.connection)?),
            None => None,
        };
        let report = report?;
        let mut counters = redis_counters::read(&mut self.connection)?;
        // The harness's own reads: INFO cpu before the phase, and MONITOR and ECHO if counted.
        let harness_reads = if counted.is_some() { 3 } else { 1 };
        counters.reads = counters.reads.saturating_sub(harness_reads);
        let redis_cpu = counters.cpu_seconds - redis_cpu_before;
        let mut result = PhaseResult::new(report, counters, redis_cpu);
        if let Some(counted) = counted
            && result.report.error.is_none()
        {
            result.add_client_commands(&counted, args.jobs);
        }
        eprintln!(
            "bench-queue:   {:<9} {:>7} jobs in {:>8.3} s = {:>9} jobs/s, {:.2} redis cmds/job{}{}",
            args.phase.cli(),
            args.jobs,
            result.report.seconds,
            result
                .per_s
                .map_or_else(|| "-".to_owned(), table::thousands),
            result.redis_cmds_per_job,
            result
                .client_cmds_per_job
                .map(|per_job| format!(", {per_job:.3} client cmds/job (MONITOR)"))
                .unwrap_or_default(),
            result
                .report
                .error
                .as_ref()
                .map(|err| format!(", FAILED: {err}"))
                .unwrap_or_default()
        );
        Ok(result)
    }

    fn timed(
        &mut self,
        system: System,
        phase: Phase,
        jobs: u64,
    ) -> Result<PhaseResult, BenchError> {
        let args = self.args(system, phase, jobs);
        self.phase(&args, false)
    }

    /// The counting pass of one phase: its client commands, when the system succeeded.
    fn counted(
        &mut self,
        system: System,
        phase: Phase,
        jobs: u64,
    ) -> Result<Option<PhaseResult>, BenchError> {
        let args = self.args(system, phase, jobs);
        let result = self.phase(&args, true)?;
        Ok(result.report.error.is_none().then_some(result))
    }

    /// Conveyor's round trips for jobs handled one by one: one job per fetch, one running at
    /// a time, so no fetch or commit carries more than one job. Counted under MONITOR.
    fn unbatched_drain(&mut self, jobs: u64) -> Result<Option<PhaseResult>, BenchError> {
        eprintln!("bench-queue:   unbatched drain of {jobs} jobs: fetch batch 1, concurrency 1");
        let bulk = self.timed(System::Conveyor, Phase::PushBulk, jobs)?;
        if bulk.report.error.is_some() {
            return Ok(None);
        }
        let mut args = self.args(System::Conveyor, Phase::Drain, jobs);
        args.fetch_batch = Some(1);
        args.concurrency = 1;
        self.phase(&args, true).map(Some)
    }

    /// Every phase of `system`, the fallback drain if needed, and the counting pass.
    fn measure(&mut self, system: System) -> Result<SystemResult, BenchError> {
        let jobs = self.settings.jobs;
        let mut phases = Phases {
            push: Some(self.timed(system, Phase::Push, jobs)?),
            ..Phases::default()
        };
        let bulk = self.timed(system, Phase::PushBulk, jobs)?;
        let backlog_ready = bulk.report.error.is_none();
        phases.push_bulk = Some(bulk);
        if backlog_ready {
            phases.drain = Some(self.timed(system, Phase::Drain, jobs)?);
        }
        let drain_failed = phases
            .drain
            .as_ref()
            .is_some_and(|drain| drain.report.error.is_some());
        let small = self.settings.small_backlog;
        let mut drain_at_small_backlog = None;
        if drain_failed && small > 0 && small < jobs {
            eprintln!("bench-queue:   the full drain failed; draining a backlog of {small}");
            let bulk = self.timed(system, Phase::PushBulk, small)?;
            if bulk.report.error.is_none() {
                drain_at_small_backlog = Some(self.timed(system, Phase::Drain, small)?);
            }
        }

        let count = self.settings.count_jobs;
        if count > 0 {
            eprintln!("bench-queue:   counting client commands over {count} jobs (MONITOR)");
            let pushed = self.counted(system, Phase::Push, count)?;
            let bulk = self.counted(system, Phase::PushBulk, count)?;
            let drained = match bulk {
                Some(_) => self.counted(system, Phase::Drain, count)?,
                None => None,
            };
            // The counted drain is of `count` jobs, so it describes the small-backlog drain as
            // well as the full one.
            for (phase, counted) in [
                (&mut phases.push, &pushed),
                (&mut phases.push_bulk, &bulk),
                (&mut phases.drain, &drained),
                (&mut drain_at_small_backlog, &drained),
            ] {
                if let (Some(phase), Some(counted)) = (phase.as_mut(), counted) {
                    phase.client_cmds_per_job = counted.client_cmds_per_job;
                    phase.client_commands = counted.client_commands.clone();
                }
            }
        }
        let unbatched_jobs = self.settings.unbatched_jobs;
        let unbatched_drain = match system {
            System::Conveyor if unbatched_jobs > 0 => self.unbatched_drain(unbatched_jobs)?,
            _ => None,
        };
        Ok(SystemResult::new(
            system,
            self.settings.concurrency(system),
            phases,
            drain_at_small_backlog,
            unbatched_drain,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(server: &RedisServer, system: System, phase: Phase, jobs: u64) -> ChildArgs {
        ChildArgs {
            system,
            phase,
            url: server.url(),
            jobs,
            in_flight: 4,
            chunk: 100,
            concurrency: 8,
            fetch_batch: None,
        }
    }

    #[test]
    fn rust_systems_push_and_drain_every_job() {
        for system in [System::Conveyor, System::ApalisRedis] {
            let server = RedisServer::start().expect("redis-server starts");
            // 150 pushed one by one and 150 in bulk: a backlog of 300, drained; then 50 more,
            // drained with nothing batched.
            for (phase, jobs, fetch_batch) in [
                (Phase::Push, 150, None),
                (Phase::PushBulk, 150, None),
                (Phase::Drain, 300, None),
                (Phase::PushBulk, 50, None),
                (Phase::Drain, 50, Some(1)),
            ] {
                let mut child = args(&server, system, phase, jobs);
                child.fetch_batch = fetch_batch;
                let report = run_child_phase(&child)
                    .unwrap_or_else(|err| panic!("{system:?} {phase:?}: {err}"));
                assert_eq!(report.error, None, "{system:?} {phase:?}");
                assert!(report.seconds > 0.0);
                assert!(report.peak_rss_mib.is_some_and(|mib| mib > 0.0));
                if phase == Phase::Drain {
                    assert_eq!(report.handled, Some(jobs), "{system:?}");
                    assert_eq!(report.left_in_queue, Some(0), "{system:?}");
                }
            }
        }
    }

    #[test]
    fn a_failing_system_is_a_result_not_an_error() {
        // apalis-redis promotes every due job in one Lua call, which fails past ~8,000.
        let server = RedisServer::start().expect("redis-server starts");
        let pushed = run_child_phase(&args(&server, System::ApalisRedis, Phase::PushBulk, 9000))
            .expect("bulk push runs");
        assert_eq!(pushed.error, None);
        let drained = run_child_phase(&args(&server, System::ApalisRedis, Phase::Drain, 9000))
            .expect("a failed drain still reports");
        assert_eq!(drained.per_second(), None);
        assert_eq!(drained.left_in_queue, Some(9000));
        let error = drained.error.expect("the drain fails");
        assert!(error.contains("unpack"), "{error}");
    }
}
