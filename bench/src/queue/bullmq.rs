//! BullMQ, run by `bench/node/queue.mjs` with the machine's Node: the harness only builds the
//! command line; the script does the work and prints the same [`crate::phase::PhaseReport`].

use std::path::PathBuf;
use std::process::Command;

use super::child::ChildArgs;
use crate::BenchError;

/// `bench/node`, where the script and its node_modules live.
fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node")
}

/// Fails with a hint when `npm ci` has not been run in bench/node.
pub(crate) fn check_installed() -> Result<(), BenchError> {
    let dir = node_dir();
    if dir.join("node_modules/bullmq/package.json").is_file() {
        Ok(())
    } else {
        Err(BenchError::Missing(format!(
            "BullMQ is not installed in {}: run `npm ci` there (`just bench-queue` does)",
            dir.display()
        )))
    }
}

/// `node bench/node/queue.mjs <phase> --url ...`.
pub(crate) fn command(args: &ChildArgs) -> Command {
    let dir = node_dir();
    let mut command = Command::new("node");
    command
        .current_dir(&dir)
        .arg(dir.join("queue.mjs"))
        .arg(args.phase.cli())
        .args(args.options());
    command
}
