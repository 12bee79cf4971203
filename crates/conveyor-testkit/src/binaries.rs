//! The workspace's own binaries, started as real processes for end-to-end tests.
//!
//! Output goes to a log file that tests can wait on ("wait until the worker logs that it is
//! ready") and that is printed when a test fails, so a failing CI run shows what the process said.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::ChildGuard;

/// The path of a binary of this workspace, built if it is not there yet.
///
/// Test executables live in `target/<profile>/deps`; binaries one level up.
pub fn cargo_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in target/<profile>/deps")
        .to_path_buf();
    let path = profile_dir.join(name);
    if !path.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "--bin", name])
            .status()
            .unwrap_or_else(|err| panic!("building {name}: {err}"));
        assert!(status.success(), "building {name} failed");
    }
    path
}

/// A running workspace binary with its output captured in a file.
#[derive(Debug)]
pub struct Spawned {
    guard: ChildGuard,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Spawned {
    /// Starts binary `name` with `env` added to a clean `CONVEYOR_*`-free environment.
    pub fn start(name: &str, env: &BTreeMap<String, String>) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("conveyor-proc-")
            .tempdir()?;
        let log = dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let mut command = Command::new(cargo_bin(name));
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("CONVEYOR_")) {
            command.env_remove(key);
        }
        command
            .envs(env)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = command.spawn()?;
        Ok(Spawned {
            guard: ChildGuard::new(name, child),
            log,
            _dir: dir,
        })
    }

    /// Everything the process wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the output contains `needle`; panics with the output after `timeout`.
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output().contains(needle) {
                return;
            }
            if let Some(status) = self.guard.wait_timeout(Duration::ZERO) {
                panic!(
                    "{} exited with {status} before printing {needle:?}:\n{}",
                    self.guard.name(),
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print {needle:?} within {timeout:?}:\n{}",
                self.guard.name(),
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process handle, to signal or kill it.
    pub fn process(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }
}
