//! What the numbers were measured on, recorded beside them: on a shared, noisy machine a number
//! means little without the CPU, core count and the versions of the parts.

use std::process::Command;

use serde::Serialize;

/// The machine and the versions of the shared parts.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model name from /proc/cpuinfo.
    pub cpu: Option<String>,
    /// Logical CPUs this process may use.
    pub cpus: Option<usize>,
    /// Total memory in MiB.
    pub memory_mib: Option<u64>,
    /// Kernel release.
    pub kernel: Option<String>,
    /// redis-server version, from INFO.
    pub redis: Option<String>,
    /// `node --version`.
    pub node: Option<String>,
}

impl Machine {
    /// Describes this machine; `redis_version` comes from the server the benchmark uses.
    pub fn describe(redis_version: Option<String>) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map(|(_, name)| name.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_mib = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib / 1024);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|release| release.trim().to_owned());
        let node = Command::new("node")
            .arg("--version")
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map(usize::from).ok(),
            memory_mib,
            kernel,
            redis: redis_version,
            node,
        }
    }
}

/// The commit of the checkout the benchmark was built from, and whether the code under test
/// had uncommitted changes (the workspace is shared while it is being written).
#[derive(Debug, Clone, Serialize)]
pub struct Checkout {
    /// `git rev-parse HEAD`.
    pub commit: Option<String>,
    /// Paths (from `paths`) with uncommitted changes.
    pub uncommitted: Vec<String>,
}

impl Checkout {
    /// Reads the checkout holding this package; `paths` are relative to the workspace root.
    pub fn describe(paths: &[&str]) -> Checkout {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let git = |args: &[&str]| {
            Command::new("git")
                .current_dir(&root)
                .args(args)
                .output()
                .ok()
                .filter(|output| output.status.success())
                .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        };
        let mut status_args = vec!["status", "--porcelain", "--"];
        status_args.extend_from_slice(paths);
        let uncommitted = porcelain_paths(&git(&status_args).unwrap_or_default());
        Checkout {
            commit: git(&["rev-parse", "HEAD"]).map(|commit| commit.trim().to_owned()),
            uncommitted,
        }
    }
}

/// The paths in `git status --porcelain` output. Lines are `XY path`, and X is a space for an
/// unstaged change, so the text must not be trimmed first.
fn porcelain_paths(status: &str) -> Vec<String> {
    status
        .lines()
        .filter_map(|line| line.get(3..))
        .map(str::to_owned)
        .collect()
}

/// The `redis_version` field of an INFO server reply.
pub fn redis_version(connection: &mut redis::Connection) -> Option<String> {
    let info: String = redis::cmd("INFO").arg("server").query(connection).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(|version| version.trim().to_owned())
}

/// The version of `package` in the workspace's Cargo.lock (the one this binary was built with,
/// unless the lock file changed since).
pub fn locked_version(package: &str) -> Option<String> {
    let lock_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    let lock = std::fs::read_to_string(lock_path).ok()?;
    let wanted = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines.next()?.trim().strip_prefix("version = ")?;
            return Some(version.trim_matches('"').to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_paths_from_git_status() {
        let status = " M Cargo.lock\nM  bench/src/lib.rs\n?? bench/new.rs\n";
        assert_eq!(
            porcelain_paths(status),
            ["Cargo.lock", "bench/src/lib.rs", "bench/new.rs"]
        );
    }

    #[test]
    fn finds_locked_versions() {
        let version = locked_version("apalis-redis").expect("apalis-redis is locked");
        assert!(version.starts_with("1."), "{version}");
        assert_eq!(locked_version("no-such-package-here"), None);
    }
}
