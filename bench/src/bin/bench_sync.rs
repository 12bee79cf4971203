//! `bench-sync [RECORDS] [--quick]`: how fast one worker fully syncs RECORDS purchase orders (default
//! 1,000,000) from the simulator into Redis, how much memory it needs for that, and how long an
//! incremental sync of 1,000 changes then takes.
//!
//! Everything runs on this machine: a private `redis-server`, the simulator served by this
//! process on a loopback port, and the release `conveyor-worker` as a child process (so its peak
//! RSS, `VmHWM`, is its own). The full sync is measured twice, at 100,000 records and at
//! RECORDS, each against fresh Redis, simulator and worker, to show that memory does not grow
//! with the dataset. Results go to `bench/results/sync.json` and a markdown table to stdout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use conveyor_bench::machine::{Machine, redis_version};
use conveyor_bench::redis_counters;
use conveyor_core::job::SYNC_QUEUE;
use conveyor_core::{
    Connection, ConnectionId, Credentials, Entity, EntityConfig, ProfileKind, SourceSettings,
    SyncId, SyncJob, SyncMode, SyncTrigger, TenantId,
};
use conveyor_queue::{Queue, QueueConfig};
use conveyor_sim::{ChangeRequest, SimConfig, SimHandle};
use conveyor_store::{EncryptionKey, RunStatus, Store, StoreConfig, SyncRun};
use conveyor_sync::enqueue_sync;
use conveyor_testkit::{ChildGuard, RedisServer};
use serde::Serialize;

const KEYS: &str = "bench:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const PROFILE: ProfileKind = ProfileKind::ODataV4;
const ENTITY: Entity = Entity::PurchaseOrders;
/// Records per page asked of the source, unless `BENCH_SYNC_PAGE_SIZE` says otherwise.
const PAGE_SIZE: u32 = 2_000;
const SMALL: u64 = 100_000;
const CHANGES: u32 = 1_000;

#[derive(Debug, Serialize)]
struct Full {
    records: u64,
    seconds: f64,
    records_per_s: f64,
    peak_rss_mib: f64,
    /// Where the time went: CPU seconds of each part during the full sync.
    cpu_seconds: CpuSeconds,
}

/// CPU seconds used by each part during one sync, to tell which one limits throughput.
#[derive(Debug, Clone, Copy, Serialize)]
struct CpuSeconds {
    /// The worker process: HTTP, JSON parsing, mapping, hashing, Redis client.
    worker: f64,
    /// redis-server: the upsert scripts.
    redis: f64,
    /// This process: the simulator rendering pages.
    simulator: f64,
}

impl CpuSeconds {
    fn minus(self, before: CpuSeconds) -> CpuSeconds {
        CpuSeconds {
            worker: self.worker - before.worker,
            redis: self.redis - before.redis,
            simulator: self.simulator - before.simulator,
        }
    }
}

#[derive(Debug, Serialize)]
struct FullSmall {
    records: u64,
    seconds: f64,
    peak_rss_mib: f64,
}

#[derive(Debug, Serialize)]
struct Incremental {
    changed: u32,
    records_fetched: u64,
    records_written: u64,
    seconds: f64,
    ratio_to_full: f64,
}

#[derive(Debug, Serialize)]
struct Results {
    full: Full,
    full_small: FullSmall,
    incremental: Incremental,
    page_size: u32,
    profile: &'static str,
    measured_at: chrono::DateTime<Utc>,
    machine: Machine,
}

/// One measured scenario: Redis, simulator and worker, all fresh.
struct Scenario {
    redis: RedisServer,
    sim: SimHandle,
    store: Store,
    queue: Queue<SyncJob>,
    connection_id: ConnectionId,
    worker: ChildGuard,
    _log_dir: PathBuf,
}

impl Scenario {
    async fn start(records: u64) -> anyhow::Result<Scenario> {
        let redis = RedisServer::start().context("starting redis-server")?;
        let sim = SimHandle::start(SimConfig {
            records_per_entity: records,
            seeded_until: Utc::now() - chrono::Duration::minutes(10),
            ..SimConfig::default()
        })
        .await?;
        let keys = EncryptionKey::parse_list(KEYS)?;
        let store = Store::connect(&redis.url(), StoreConfig::from_keys(keys)?).await?;
        let queue = Queue::connect(&redis.url(), QueueConfig::new(SYNC_QUEUE)).await?;
        let connection = connection(&sim.base_url());
        let sim_credentials = SimConfig::default().credentials;
        let credentials = Credentials::OAuth2ClientCredentials {
            token_url: format!("{}/oauth2/token", sim.base_url()),
            client_id: sim_credentials.client_id,
            client_secret: sim_credentials.client_secret.as_str().into(),
            scope: None,
        };
        store.create_connection(&connection, &credentials).await?;

        let log_dir = std::env::temp_dir().join(format!("bench-sync-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&log_dir)?;
        let log = std::fs::File::create(log_dir.join("worker.log"))?;
        let mut command = Command::new(sibling_binary("conveyor-worker")?);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("CONVEYOR_")) {
            command.env_remove(key);
        }
        let env: BTreeMap<&str, String> = [
            ("CONVEYOR_REDIS_URL", redis.url()),
            ("CONVEYOR_ENCRYPTION_KEYS", KEYS.to_owned()),
            ("CONVEYOR_WORKER_CONCURRENCY", "1".to_owned()),
            ("CONVEYOR_LOG", "warn".to_owned()),
        ]
        .into_iter()
        .collect();
        let child = command
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting conveyor-worker")?;
        Ok(Scenario {
            redis,
            sim,
            store,
            queue,
            connection_id: connection.id,
            worker: ChildGuard::new("conveyor-worker", child),
            _log_dir: log_dir,
        })
    }

    /// Runs one sync to its end; returns the run and its duration from its start to its end as
    /// the worker recorded them.
    async fn sync(&self, mode: SyncMode) -> anyhow::Result<(SyncRun, f64)> {
        let enqueued = enqueue_sync(
            &self.store,
            &self.queue,
            self.connection_id,
            ENTITY,
            mode,
            SyncTrigger::Manual,
        )
        .await?;
        let run = self.wait(enqueued.sync_id).await?;
        if run.status != RunStatus::Succeeded {
            bail!("the {mode} sync did not succeed: {run:?}");
        }
        let (Some(started), Some(finished)) = (run.started_at, run.finished_at) else {
            bail!("the run has no start or finish time: {run:?}");
        };
        let seconds = (finished - started).num_milliseconds() as f64 / 1_000.0;
        Ok((run, seconds))
    }

    async fn wait(&self, sync_id: SyncId) -> anyhow::Result<SyncRun> {
        let deadline = Instant::now() + Duration::from_secs(3_600);
        loop {
            let run = self.store.get_run(&self.connection_id, &sync_id).await?;
            if run.status.is_finished() {
                return Ok(run);
            }
            if Instant::now() > deadline {
                bail!("the sync did not finish within an hour: {run:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// CPU seconds used so far by the worker, Redis and this process (the simulator).
    fn cpu_seconds(&self) -> anyhow::Result<CpuSeconds> {
        // Fields 14 and 15 of /proc/<pid>/stat: user and system time of all threads, in
        // clock ticks. The command name (field 2) may hold spaces, so count after its `)`.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.worker.pid()))
            .context("reading the worker's /proc stat")?;
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |index: usize| -> f64 {
            fields
                .get(index)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0.0)
        };
        // /proc reports in USER_HZ, which Linux fixes at 100 for user space.
        let ticks_per_second = 100.0;
        // After the name, field 3 (state) is index 0, so utime (14) is index 11.
        let worker_ticks = ticks(11) + ticks(12);
        let mut connection = self.redis.client().get_connection()?;
        Ok(CpuSeconds {
            worker: worker_ticks / ticks_per_second,
            redis: redis_counters::cpu_seconds(&mut connection)?,
            simulator: conveyor_bench::phase::cpu_seconds().unwrap_or(0.0),
        })
    }

    /// The worker's peak resident memory so far, in MiB.
    fn worker_peak_rss_mib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.worker.pid()))
            .context("reading the worker's /proc status")?;
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in the worker's /proc status")?;
        Ok(kib / 1_024.0)
    }
}

fn connection(base_url: &str) -> Connection {
    Connection {
        id: ConnectionId::new(),
        tenant_id: TenantId::new(),
        name: "bench".to_owned(),
        profile: PROFILE,
        base_url: base_url.to_owned(),
        settings: SourceSettings {
            page_size: Some(page_size()),
            utc_offset: None,
            request_timeout_secs: Some(60),
        },
        entities: vec![EntityConfig {
            entity: ENTITY,
            path: None,
            interval_secs: 3_600,
            enabled: true,
            field_overrides: BTreeMap::new(),
        }],
        historical_days: 90,
        overlap_secs: 120,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        version: 0,
    }
}

/// The page size: `BENCH_SYNC_PAGE_SIZE` (smaller pages keep single scripts short, for
/// profiling Redis under valgrind) or [`PAGE_SIZE`].
fn page_size() -> u32 {
    std::env::var("BENCH_SYNC_PAGE_SIZE")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(PAGE_SIZE)
}

/// A binary built next to this one (`target/release/`).
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .context("this binary has no directory")?
        .join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it first (`cargo build --release --bin {name}`)",
            path.display()
        );
    }
    Ok(path)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `--quick`: only the RECORDS full sync, printed and not written (for profiling rounds).
    let quick = args.iter().any(|arg| arg == "--quick");
    args.retain(|arg| arg != "--quick");
    let records: u64 = match args.first() {
        Some(text) => text
            .trim()
            .parse()
            .with_context(|| format!("RECORDS must be a number, not `{text}`"))?,
        None => 1_000_000,
    };
    if quick {
        return quick_full(records).await;
    }

    eprintln!("full sync of {SMALL} records...");
    let small = Scenario::start(SMALL).await?;
    let (small_run, small_seconds) = small.sync(SyncMode::Full).await?;
    let full_small = FullSmall {
        records: small_run.records_written,
        seconds: small_seconds,
        peak_rss_mib: small.worker_peak_rss_mib()?,
    };
    drop(small);

    eprintln!("full sync of {records} records...");
    let big = Scenario::start(records).await?;
    let cpu_before = big.cpu_seconds()?;
    let (full_run, full_seconds) = big.sync(SyncMode::Full).await?;
    let cpu = big.cpu_seconds()?.minus(cpu_before);
    if full_run.records_written != records {
        bail!(
            "the full sync wrote {} records, not {records}",
            full_run.records_written
        );
    }
    let full = Full {
        records,
        seconds: full_seconds,
        records_per_s: records as f64 / full_seconds,
        peak_rss_mib: big.worker_peak_rss_mib()?,
        cpu_seconds: cpu,
    };

    eprintln!("{CHANGES} changes, then an incremental sync...");
    big.sim.sim().apply_changes(
        ENTITY,
        ChangeRequest {
            create: 0,
            update: CHANGES,
            delete: 0,
        },
    );
    let (incremental_run, incremental_seconds) = big.sync(SyncMode::Incremental).await?;
    let incremental = Incremental {
        changed: CHANGES,
        records_fetched: incremental_run.records_fetched,
        records_written: incremental_run.records_written,
        seconds: incremental_seconds,
        ratio_to_full: incremental_seconds / full_seconds,
    };
    let redis_version = big
        .redis
        .client()
        .get_connection()
        .ok()
        .and_then(|mut connection| redis_version(&mut connection));
    drop(big);

    let results = Results {
        full,
        full_small,
        incremental,
        page_size: page_size(),
        profile: PROFILE.as_str(),
        measured_at: Utc::now(),
        machine: Machine::describe(redis_version),
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/sync.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    print_table(&results);
    eprintln!("written to {}", path.display());
    Ok(())
}

/// One full sync of `records`, its time and CPU printed, nothing written.
async fn quick_full(records: u64) -> anyhow::Result<()> {
    let scenario = Scenario::start(records).await?;
    let cpu_before = scenario.cpu_seconds()?;
    let (run, seconds) = scenario.sync(SyncMode::Full).await?;
    let cpu = scenario.cpu_seconds()?.minus(cpu_before);
    let per_record = |cpu_seconds: f64| cpu_seconds * 1e6 / run.records_written.max(1) as f64;
    println!(
        "{} records in {seconds:.2} s = {:.0} records/s; CPU us/record: worker {:.2}, redis {:.2}, simulator {:.2}; worker peak RSS {:.1} MiB",
        run.records_written,
        run.records_written as f64 / seconds,
        per_record(cpu.worker),
        per_record(cpu.redis),
        per_record(cpu.simulator),
        scenario.worker_peak_rss_mib()?
    );
    Ok(())
}

fn print_table(results: &Results) {
    let target = |ok: bool| if ok { "yes" } else { "**no**" };
    println!("| measure | value | target | met |");
    println!("|---|---|---|---|");
    println!(
        "| full sync, {} records | {:.1} s, {:.0} records/s | ≥ 100,000 records/s | {} |",
        results.full.records,
        results.full.seconds,
        results.full.records_per_s,
        target(results.full.records_per_s >= 100_000.0)
    );
    let cpu = results.full.cpu_seconds;
    println!(
        "| CPU during the full sync | worker {:.1} s, redis {:.1} s, simulator {:.1} s ({:.0} records per worker CPU-second) | | |",
        cpu.worker,
        cpu.redis,
        cpu.simulator,
        results.full.records as f64 / cpu.worker
    );
    println!(
        "| worker peak RSS, {} records | {:.1} MiB | < 100 MiB | {} |",
        results.full.records,
        results.full.peak_rss_mib,
        target(results.full.peak_rss_mib < 100.0)
    );
    println!(
        "| worker peak RSS, {} records | {:.1} MiB | < 100 MiB, same as above | {} |",
        results.full_small.records,
        results.full_small.peak_rss_mib,
        target(results.full_small.peak_rss_mib < 100.0)
    );
    println!(
        "| incremental sync, {} changes | {:.2} s ({} read, {} written) | ≤ 2% of the full sync | {} ({:.2}%) |",
        results.incremental.changed,
        results.incremental.seconds,
        results.incremental.records_fetched,
        results.incremental.records_written,
        target(results.incremental.ratio_to_full <= 0.02),
        results.incremental.ratio_to_full * 100.0
    );
}
