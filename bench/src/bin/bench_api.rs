//! `bench-api`: manual sync enqueue throughput of the real `conveyor-api` binary (`just bench-api`).
//!
//! ```text
//! bench-api [--seconds N] [--connections N] [--pool N] [--out FILE]
//! ```
//!
//! It starts a private `redis-server` and the release `conveyor-api` beside this binary, creates
//! a tenant, a developer key and `--pool` connections (four entities each) directly through the
//! store, then keeps `--connections` HTTP/1.1 connections busy with
//! `POST /v1/connections/{id}/syncs {"entities": [one]}` for `--seconds`, in two phases:
//!
//! - **fresh**: every request names a (connection, entity) pair not asked for before, so each
//!   one pushes a job and writes a run record (the pool is sized so the phase never wraps);
//! - **duplicate**: the same pairs again; each answers with the already-queued sync.
//!
//! The API runs with its real middleware (authentication, the Redis rate limiter, request ids,
//! metrics) and `CONVEYOR_LOG=warn`, the rate limit set high enough never to refuse. Results go
//! to `bench/results/api.json`, with each phase's CPU microseconds per request of the API, Redis
//! and this load generator, and the load average: on a shared 2-core machine the throughput is
//! the cores' share these three get, divided by the sum of their per-request costs.

use std::collections::BTreeMap;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use conveyor_bench::machine::{Machine, redis_version};
use conveyor_core::{
    Connection, ConnectionId, Credentials, Entity, EntityConfig, ProfileKind, SourceSettings,
};
use conveyor_store::{ApiRole, EncryptionKey, Store, StoreConfig};
use conveyor_testkit::{ChildGuard, RedisServer, free_port};
use serde_json::json;

const USAGE: &str = "usage: bench-api [--seconds N] [--connections N] [--pool N] [--out FILE]";
const KEYS: &str = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

struct Settings {
    seconds: u64,
    connections: usize,
    pool: usize,
    out: String,
}

fn parse(args: &[String]) -> anyhow::Result<Settings> {
    let mut settings = Settings {
        seconds: 10,
        connections: 64,
        pool: 40_000,
        out: "bench/results/api.json".to_owned(),
    };
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let value = iter
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--seconds" => settings.seconds = value.parse().context("--seconds")?,
            "--connections" => settings.connections = value.parse().context("--connections")?,
            "--pool" => settings.pool = value.parse().context("--pool")?,
            "--out" => settings.out = value.clone(),
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    Ok(settings)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let outcome = parse(&args).and_then(|settings| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting tokio")?
            .block_on(run(settings))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-api: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// One phase's numbers.
#[derive(Debug, serde::Serialize)]
struct PhaseResult {
    requests: usize,
    errors: usize,
    req_per_s: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// CPU time per request, in microseconds, of each process on the machine's cores.
    cpu_us_per_request: CpuPerRequest,
    /// The 1-minute load average when the phase ended: other work competing for the cores.
    load_average: Option<f64>,
}

/// CPU microseconds one request cost each process.
#[derive(Debug, serde::Serialize)]
struct CpuPerRequest {
    api: f64,
    redis: f64,
    load_generator: f64,
}

/// CPU seconds used so far by the API, Redis and this process.
#[derive(Debug, Clone, Copy)]
struct CpuSeconds {
    api: f64,
    redis: f64,
    load_generator: f64,
}

/// What a phase needs to account for CPU: the API's pid and a Redis connection.
struct Meters {
    api_pid: u32,
    redis: redis::Client,
}

impl Meters {
    fn read(&self) -> anyhow::Result<CpuSeconds> {
        // Fields 14 and 15 of /proc/<pid>/stat are user and system ticks (USER_HZ, fixed at 100
        // for user space); the command name (field 2) may hold spaces, so count after its `)`.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.api_pid))
            .context("reading the API's /proc stat")?;
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |index: usize| -> f64 {
            fields
                .get(index)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0.0)
        };
        let mut connection = self.redis.get_connection()?;
        Ok(CpuSeconds {
            api: (ticks(11) + ticks(12)) / 100.0,
            redis: conveyor_bench::redis_counters::cpu_seconds(&mut connection)?,
            load_generator: conveyor_bench::phase::cpu_seconds().unwrap_or(0.0),
        })
    }
}

/// The 1-minute load average.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let load_at_start = load_average();
    let redis = RedisServer::start().context("starting redis-server")?;
    let version = redis_version(&mut redis.client().get_connection()?);
    let store = Store::connect(
        &redis.url(),
        StoreConfig::from_keys(EncryptionKey::parse_list(KEYS)?)?,
    )
    .await?;
    let tenant = store.create_tenant("bench").await?;
    let key = store
        .create_api_key(&tenant.id, ApiRole::Developer, "bench")
        .await?;
    let secret = key.secret.expose().to_owned();

    eprintln!("bench-api: creating {} connections", settings.pool);
    let started = Instant::now();
    let ids = create_connections(&store, tenant.id, settings.pool).await?;
    eprintln!(
        "bench-api: created in {:.1}s; starting the API",
        started.elapsed().as_secs_f64()
    );

    let port = free_port();
    let exe = std::env::current_exe()?;
    let api_path = exe
        .parent()
        .context("the binary has a directory")?
        .join("conveyor-api");
    let log = std::fs::File::create(std::env::temp_dir().join("bench-api-server.log"))?;
    let child = Command::new(&api_path)
        .env_clear()
        .env("CONVEYOR_REDIS_URL", redis.url())
        .env("CONVEYOR_API_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONVEYOR_ENCRYPTION_KEYS", KEYS)
        .env("CONVEYOR_LOG", "warn")
        .env("CONVEYOR_API_RATE_LIMIT", "10000000")
        .env("CONVEYOR_API_RATE_BURST", "1000000")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", api_path.display()))?;
    let api_pid = child.id();
    let _api = ChildGuard::new("conveyor-api", child);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(settings.connections)
        .http1_only()
        .tcp_nodelay(true)
        .build()?;
    wait_ready(&client, &base).await?;

    let targets: Arc<Vec<String>> = Arc::new(
        ids.iter()
            .flat_map(|id| {
                Entity::ALL
                    .iter()
                    .map(move |entity| format!("{id}|{entity}"))
            })
            .collect(),
    );
    // Warm up connections and code paths on pairs the phases never use.
    let warm = Arc::new(targets[targets.len() - 2_000..].to_vec());
    let meters = Meters {
        api_pid,
        redis: redis.client(),
    };
    phase(
        &client,
        &base,
        &secret,
        &warm,
        settings.connections,
        1,
        &meters,
    )
    .await?;
    let measured = Arc::new(targets[..targets.len() - 2_000].to_vec());

    let fresh = phase(
        &client,
        &base,
        &secret,
        &measured,
        settings.connections,
        settings.seconds,
        &meters,
    )
    .await?;
    eprintln!("bench-api: fresh {fresh:?}");
    if fresh.requests >= measured.len() {
        eprintln!("bench-api: the pool ran out; raise --pool for an all-fresh phase");
    }
    let used = Arc::new(measured[..fresh.requests.min(measured.len())].to_vec());
    let duplicate = phase(
        &client,
        &base,
        &secret,
        &used,
        settings.connections,
        settings.seconds,
        &meters,
    )
    .await?;
    eprintln!("bench-api: duplicate {duplicate:?}");

    let results = json!({
        "enqueue": {
            "req_per_s": fresh.req_per_s.round(),
            "p50_ms": round3(fresh.p50_ms),
            "p99_ms": round3(fresh.p99_ms),
            "connections": settings.connections,
            "fresh": fresh,
            "duplicate": duplicate,
            "seconds_per_phase": settings.seconds,
            "what": "POST /v1/connections/{id}/syncs with one entity; fresh = a new sync each time, duplicate = the existing sync returned",
            "server": "release conveyor-api, CONVEYOR_LOG=warn, auth + Redis rate limiter on, one redis-server, load generator on the same machine",
            "load_average_at_start": load_at_start,
        },
        "machine": Machine::describe(version),
        "measured_at": Utc::now().to_rfc3339(),
    });
    let text = serde_json::to_string_pretty(&results)?;
    std::fs::write(&settings.out, format!("{text}\n"))
        .with_context(|| format!("writing {}", settings.out))?;
    println!("{text}");
    Ok(())
}

fn round3(value: f64) -> f64 {
    (value * 1_000.0).round() / 1_000.0
}

async fn create_connections(
    store: &Store,
    tenant_id: conveyor_core::TenantId,
    count: usize,
) -> anyhow::Result<Vec<ConnectionId>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let store = store.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut ids = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let now = Utc::now();
                let connection = Connection {
                    id: ConnectionId::new(),
                    tenant_id,
                    name: "bench".into(),
                    profile: ProfileKind::ODataV4,
                    base_url: "http://127.0.0.1:9/odata".into(),
                    settings: SourceSettings::default(),
                    entities: Entity::ALL
                        .iter()
                        .map(|&entity| EntityConfig {
                            entity,
                            path: None,
                            interval_secs: 3_600,
                            enabled: true,
                            field_overrides: BTreeMap::new(),
                        })
                        .collect(),
                    historical_days: 90,
                    overlap_secs: 120,
                    created_at: now,
                    updated_at: now,
                    version: 0,
                };
                store
                    .create_connection(&connection, &Credentials::None)
                    .await?;
                ids.push(connection.id);
            }
            Ok::<_, anyhow::Error>(ids)
        });
    }
    let mut ids = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        ids.extend(joined??);
    }
    Ok(ids)
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the API did not become ready; see the log in the temp dir");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Keeps `connections` requests in flight over `targets` (in order, wrapping) for `seconds`.
async fn phase(
    client: &reqwest::Client,
    base: &str,
    secret: &str,
    targets: &Arc<Vec<String>>,
    connections: usize,
    seconds: u64,
    meters: &Meters,
) -> anyhow::Result<PhaseResult> {
    let cpu_before = meters.read()?;
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for _ in 0..connections {
        let (client, next, stop, errors, targets) = (
            client.clone(),
            next.clone(),
            stop.clone(),
            errors.clone(),
            targets.clone(),
        );
        let base = base.to_owned();
        let auth = format!("Bearer {secret}");
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            while !stop.load(Ordering::Relaxed) {
                let index = next.fetch_add(1, Ordering::Relaxed) % targets.len();
                let (id, entity) = targets[index].split_once('|').unwrap_or_default();
                let sent = Instant::now();
                let outcome = client
                    .post(format!("{base}/v1/connections/{id}/syncs"))
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(format!(r#"{{"entities":["{entity}"]}}"#))
                    .send()
                    .await;
                let ok = match outcome {
                    Ok(response) => {
                        let accepted = response.status().as_u16() == 202;
                        accepted && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                if ok {
                    latencies.push(sent.elapsed().as_micros() as u32);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        });
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        latencies.extend(joined?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = meters.read()?;
    let per_request =
        |before: f64, after: f64| ((after - before) * 1e6 / latencies.len().max(1) as f64).round();
    let cpu_us_per_request = CpuPerRequest {
        api: per_request(cpu_before.api, cpu_after.api),
        redis: per_request(cpu_before.redis, cpu_after.redis),
        load_generator: per_request(cpu_before.load_generator, cpu_after.load_generator),
    };
    latencies.sort_unstable();
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |micros| f64::from(*micros) / 1_000.0)
    };
    Ok(PhaseResult {
        requests: latencies.len(),
        errors: errors.load(Ordering::Relaxed),
        req_per_s: latencies.len() as f64 / elapsed,
        p50_ms: quantile(0.50),
        p90_ms: quantile(0.90),
        p99_ms: quantile(0.99),
        max_ms: latencies.last().map_or(0.0, |m| f64::from(*m) / 1_000.0),
        cpu_us_per_request,
        load_average: load_average(),
    })
}
