//! `conveyor-sim`: serves the ERP/CMMS simulator until SIGINT or SIGTERM.
//!
//! Configuration comes from `CONVEYOR_SIM_*` variables (see `conveyor_sim::SimConfig`), plus
//! `CONVEYOR_SIM_ADDR` (default `127.0.0.1:8900`) for the listening address, and
//! `CONVEYOR_SIM_LOG` (default `info`) for the log filter. Any variable can also be given as an
//! argument, `--records 1000000` standing for `CONVEYOR_SIM_RECORDS=1000000`; arguments win.
//! `--help` prints them.

use std::collections::HashMap;

use anyhow::Context;
use conveyor_sim::SimConfig;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

const HELP: &str = "conveyor-sim: a simulator of SAP OData v2/v4, Maximo OSLC and Oracle Fusion REST APIs

Variables (all optional; `--name value` sets CONVEYOR_SIM_NAME, e.g. --records 1000000):
  CONVEYOR_SIM_ADDR                 listening address (127.0.0.1:8900)
  CONVEYOR_SIM_SEED                 seed of generated data (42)
  CONVEYOR_SIM_RECORDS              records per entity, 10..1000000 (1000)
  CONVEYOR_SIM_SEEDED_UNTIL         change time of the last seeded record, RFC 3339 (now)
  CONVEYOR_SIM_STEP_MS              ms between seeded change times (30 days / records)
  CONVEYOR_SIM_CHURN_PER_SECOND     background changes per second (0)
  CONVEYOR_SIM_MAX_PAGE_SIZE        largest OData/Maximo page (5000)
  CONVEYOR_SIM_MAXIMO_UTC_OFFSET    Maximo's offset (-04:00)
  CONVEYOR_SIM_MAXIMO_INTERNAL_BASE host in Maximo nextPage links (http://maximo-internal.invalid:9080)
  CONVEYOR_SIM_TOKEN_TTL_SECS       OAuth2 token lifetime (3600)
  CONVEYOR_SIM_USERNAME / _PASSWORD basic auth (conveyor / conveyor-sim)
  CONVEYOR_SIM_API_KEY              Maximo apikey (sim-api-key)
  CONVEYOR_SIM_CLIENT_ID / _SECRET  OAuth2 client (conveyor / sim-client-secret)
  CONVEYOR_SIM_LOG                  log filter (info)
";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{HELP}");
        return Ok(());
    }
    let overrides = arguments_as_variables(&args)?;
    let lookup = |key: &str| {
        overrides
            .get(key)
            .cloned()
            .or_else(|| std::env::var(key).ok())
    };
    let config = SimConfig::from_lookup(lookup)?;
    let address = lookup("CONVEYOR_SIM_ADDR").unwrap_or_else(|| "127.0.0.1:8900".to_owned());
    let filter = lookup("CONVEYOR_SIM_LOG").unwrap_or_else(|| "info".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .with_context(|| format!("reading CONVEYOR_SIM_LOG `{filter}`"))?,
        )
        .init();
    let listener = TcpListener::bind(&address)
        .await
        .with_context(|| format!("binding CONVEYOR_SIM_ADDR {address}"))?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    conveyor_sim::serve(listener, config, shutdown).await
}

/// `--max-page-size 100` → `CONVEYOR_SIM_MAX_PAGE_SIZE=100`.
fn arguments_as_variables(args: &[String]) -> anyhow::Result<HashMap<String, String>> {
    let mut variables = HashMap::new();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let name = flag
            .strip_prefix("--")
            .with_context(|| format!("unexpected argument `{flag}`; see --help"))?;
        let value = rest
            .next()
            .with_context(|| format!("`{flag}` needs a value"))?;
        let key = format!(
            "CONVEYOR_SIM_{}",
            name.replace('-', "_").to_ascii_uppercase()
        );
        variables.insert(key, value.clone());
    }
    Ok(variables)
}
