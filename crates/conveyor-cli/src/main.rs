//! `conveyorctl`: parses its arguments and calls [`conveyor_cli::run`].

use clap::Parser;
use conveyor_cli::{Cli, CliError, run};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    if let Err(err) = run(cli, &mut out).await {
        eprintln!("conveyorctl: {err}");
        let status = match err {
            CliError::Usage(_) => 2,
            CliError::Api { .. } | CliError::Transport(_) => 1,
        };
        std::process::exit(status);
    }
}
