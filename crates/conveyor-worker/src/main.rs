//! `conveyor-worker`: reads its configuration and runs jobs until SIGTERM or SIGINT.

use conveyor_runtime::{Shutdown, telemetry};
use conveyor_worker::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match Config::from_lookup(|key| std::env::var(key).ok()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("conveyor-worker: {err}");
            std::process::exit(2);
        }
    };
    telemetry::init(config.common.log_format, &config.common.log_filter);
    run(config, Shutdown::on_signals()).await
}
