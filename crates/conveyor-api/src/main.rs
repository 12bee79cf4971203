//! `conveyor-api`: reads its configuration, binds, and serves until SIGTERM or SIGINT.

use anyhow::Context;
use conveyor_api::{AppState, Config, serve};
use conveyor_runtime::{Shutdown, telemetry};

// Every request allocates many short-lived buffers (headers, JSON, Redis commands). Profiling
// the API under `just bench-api`, the system allocator's functions took about 15% of its CPU
// samples and mimalloc's about 10%.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match Config::from_lookup(|key| std::env::var(key).ok()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("conveyor-api: {err}");
            std::process::exit(2);
        }
    };
    telemetry::init(config.common.log_format, &config.common.log_filter);
    let state = AppState::new(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    serve(listener, state, Shutdown::on_signals()).await
}
