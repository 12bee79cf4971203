//! One timed phase of a benchmark, run in a child process, and the report it prints.
//!
//! Running each phase in its own process lets the harness read the peak memory of exactly the
//! process that did the work, and keeps one system's allocations, threads and connections out
//! of the next one's numbers. The child times only the work (not its own start-up), prints one
//! JSON [`PhaseReport`] as the last line of stdout and exits 0, also when the system under test
//! failed: that failure is a result, recorded in [`PhaseReport::error`].

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use conveyor_testkit::ChildGuard;
use serde::{Deserialize, Serialize};

use crate::BenchError;

/// What a child reports about the phase it ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    /// Jobs the phase was asked to push or drain.
    pub jobs: u64,
    /// Wall time of the work, in seconds.
    pub seconds: f64,
    /// Peak resident set size of the child process (VmHWM), in MiB.
    pub peak_rss_mib: Option<f64>,
    /// CPU time (user + system, all threads) the child used during the work, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    /// Pushes in flight at once, for a one-at-a-time push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    /// Jobs per bulk push call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<usize>,
    /// Jobs the worker fetched per call, for a drain, where the system lets it be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_batch: Option<usize>,
    /// Jobs the worker ran at once, for a drain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Jobs the handler saw, for a drain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled: Option<u64>,
    /// Jobs still waiting in the queue after the drain (0 when it drained everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_in_queue: Option<u64>,
    /// Version of the system under test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why the system under test failed, in its own words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PhaseReport {
    /// Jobs per second, when the phase succeeded.
    pub fn per_second(&self) -> Option<f64> {
        (self.error.is_none() && self.seconds > 0.0).then(|| self.jobs as f64 / self.seconds)
    }
}

/// Peak resident set size of this process in MiB, from the kernel's high-water mark.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// CPU time this process has used so far (user + system, all threads), in seconds.
pub fn cpu_seconds() -> Option<f64> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok()?;
    let seconds =
        |time: nix::sys::time::TimeVal| time.tv_sec() as f64 + time.tv_usec() as f64 / 1_000_000.0;
    Some(seconds(usage.user_time()) + seconds(usage.system_time()))
}

/// Wall and CPU time of the work a child measures.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    started: std::time::Instant,
    cpu_at_start: Option<f64>,
}

impl Stopwatch {
    /// Starts timing now.
    pub fn start() -> Stopwatch {
        Stopwatch {
            started: std::time::Instant::now(),
            cpu_at_start: cpu_seconds(),
        }
    }

    /// Wall seconds and CPU seconds since [`start`](Self::start).
    pub fn stop(&self) -> (f64, Option<f64>) {
        let wall = self.started.elapsed().as_secs_f64();
        let cpu = match (self.cpu_at_start, cpu_seconds()) {
            (Some(start), Some(now)) => Some(now - start),
            _ => None,
        };
        (wall, cpu)
    }
}

/// Prints `report` as the child's last line of stdout.
pub fn print_report(report: &PhaseReport) -> Result<(), BenchError> {
    let line = serde_json::to_string(report)
        .map_err(|err| BenchError::System(format!("encoding the phase report: {err}")))?;
    println!("{line}");
    Ok(())
}

/// Runs `command` (stderr passed through) for at most `limit` and parses its report.
pub fn run_child(
    mut command: Command,
    limit: Duration,
    system: &str,
    phase: &str,
) -> Result<PhaseReport, BenchError> {
    let fail = |detail: String| BenchError::Child {
        system: system.to_owned(),
        phase: phase.to_owned(),
        detail,
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command
        .spawn()
        .map_err(|err| fail(format!("starting {command:?}: {err}")))?;
    let stdout = child.stdout.take();
    // Read stdout on a thread so a chatty child never blocks on a full pipe while we wait.
    let output = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stdout) = stdout {
            let _ = stdout.read_to_string(&mut text);
        }
        text
    });
    let mut guard = ChildGuard::new(format!("{system} {phase}"), child);
    let status = guard.wait_timeout(limit);
    let Some(status) = status else {
        guard.kill();
        return Err(fail(format!("did not finish within {limit:?}")));
    };
    let text = output
        .join()
        .map_err(|_| fail("the stdout reader thread panicked".to_owned()))?;
    if !status.success() {
        return Err(fail(format!("exited with {status}; stdout: {text}")));
    }
    let last = text.lines().rev().find(|line| !line.trim().is_empty());
    let Some(last) = last else {
        return Err(fail("printed no report".to_owned()));
    };
    serde_json::from_str(last).map_err(|err| fail(format!("unreadable report {last:?}: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_report_a_child_prints_last() {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            r#"echo starting; echo '{"jobs":10,"seconds":0.5,"peak_rss_mib":3.5,"error":"boom"}'"#,
        ]);
        let report = run_child(command, Duration::from_secs(10), "sh", "push").unwrap();
        assert_eq!(report.jobs, 10);
        assert_eq!(report.error.as_deref(), Some("boom"));
        assert_eq!(report.per_second(), None, "a failed phase has no rate");
    }

    #[test]
    fn a_child_that_fails_is_an_error() {
        let mut command = Command::new("sh");
        command.args(["-c", "exit 3"]);
        let err = run_child(command, Duration::from_secs(10), "sh", "drain").unwrap_err();
        assert!(err.to_string().contains("exit status: 3"), "{err}");
    }

    #[test]
    fn measures_its_own_cpu_time() {
        let stopwatch = Stopwatch::start();
        let mut sum = 0u64;
        for n in 0..5_000_000u64 {
            sum = sum.wrapping_add(n * n);
        }
        std::hint::black_box(sum);
        let (wall, cpu) = stopwatch.stop();
        let cpu = cpu.expect("getrusage works on Linux");
        assert!(
            wall > 0.0 && cpu > 0.0 && cpu < wall + 1.0,
            "wall {wall}, cpu {cpu}"
        );
    }

    #[test]
    fn reads_its_own_peak_rss() {
        let mib = peak_rss_mib().unwrap();
        assert!(mib > 0.0 && mib < 100_000.0, "{mib}");
    }
}
