//! The markdown table of a queue benchmark run, printed by the harness and pasted into the
//! README.

use std::fmt::Write;

use super::results::{PerPhase, QueueResults, SystemResult};

/// `1234567.8` as `1,234,568`.
pub(crate) fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.round().abs());
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if value < 0.0 {
        format!("-{grouped}")
    } else {
        grouped
    }
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "failed".to_owned(), thousands)
}

fn per_job(values: &PerPhase) -> String {
    // Batched phases send far less than one command per job; keep their digits visible.
    let one = |value: Option<f64>| match value {
        None => "–".to_owned(),
        Some(v) if v < 0.1 => format!("{v:.3}"),
        Some(v) => format!("{v:.2}"),
    };
    format!(
        "{} / {} / {}",
        one(values.push),
        one(values.push_bulk),
        one(values.drain)
    )
}

fn drain_cell(system: &SystemResult, jobs: u64) -> String {
    match (system.drain_per_s, &system.drain_at_small_backlog) {
        (Some(drain), _) => thousands(drain),
        (None, Some(small)) => format!(
            "fails at {} backlog; {}: {}",
            thousands(jobs as f64),
            thousands(small.report.jobs as f64),
            rate(small.per_s)
        ),
        (None, None) => "failed".to_owned(),
    }
}

/// The table, followed by the ratios, the targets and the failures, if any.
pub fn markdown(results: &QueueResults) -> String {
    let systems: Vec<&SystemResult> = [&results.conveyor, &results.apalis_redis, &results.bullmq]
        .into_iter()
        .flatten()
        .collect();
    let settings = &results.settings;
    let mut out = String::new();
    let row = |out: &mut String, label: &str, cell: &dyn Fn(&SystemResult) -> String| {
        let cells: Vec<String> = systems.iter().map(|system| cell(system)).collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    };
    let names: Vec<String> = systems
        .iter()
        .map(|system| match &system.version {
            Some(version) => format!("{} {version}", system.name),
            None => system.name.to_owned(),
        })
        .collect();
    let _ = writeln!(
        out,
        "| {} no-op jobs, one redis-server | {} |",
        thousands(results.jobs as f64),
        names.join(" | ")
    );
    let _ = writeln!(out, "|---|{}", "---:|".repeat(systems.len()));
    row(
        &mut out,
        &format!(
            "push, one at a time, {} in flight (jobs/s)",
            settings.in_flight
        ),
        &|s| rate(s.push_per_s),
    );
    row(
        &mut out,
        &format!(
            "push, bulk of {} (jobs/s)",
            thousands(settings.chunk as f64)
        ),
        &|s| rate(s.push_bulk_per_s),
    );
    row(
        &mut out,
        "drain of the backlog by one worker process (jobs/s)",
        &|s| drain_cell(s, results.jobs),
    );
    row(
        &mut out,
        "drain worker: concurrency, jobs per fetch",
        &|s| {
            let fetch_batch = s
                .phases
                .drain
                .as_ref()
                .and_then(|drain| drain.report.fetch_batch)
                .map_or_else(|| "–".to_owned(), |batch| batch.to_string());
            format!("{}, {fetch_batch}", s.concurrency)
        },
    );
    row(
        &mut out,
        "Redis commands per job, scripts' included: push / bulk / drain",
        &|s| per_job(&s.redis_cmds_per_job),
    );
    row(
        &mut out,
        "client commands (≥ round trips) per job: push / bulk / drain",
        &|s| per_job(&s.client_cmds_per_job),
    );
    row(
        &mut out,
        "drain CPU per job (µs): redis-server / worker process",
        &|s| {
            let one =
                |value: Option<f64>| value.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"));
            format!(
                "{} / {}",
                one(s.redis_cpu_us_per_job.drain),
                one(s.process_cpu_us_per_job.drain)
            )
        },
    );
    row(&mut out, "peak RSS of the draining worker (MiB)", &|s| {
        s.peak_rss_mib
            .or_else(|| s.drain_at_small_backlog.as_ref()?.report.peak_rss_mib)
            .map_or_else(|| "–".to_owned(), |mib| format!("{mib:.1}"))
    });
    out.push('\n');
    let ratios = &results.ratios;
    if let Some(ratio) = ratios.conveyor_drain_over_bullmq {
        let _ = writeln!(out, "conveyor drain / BullMQ drain: {ratio:.2}x");
    }
    if let Some(ratio) = ratios.conveyor_drain_over_apalis_redis {
        let _ = writeln!(out, "conveyor drain / apalis-redis drain: {ratio:.2}x");
    } else if let Some(ratio) = ratios.conveyor_drain_over_apalis_redis_small_backlog {
        let _ = writeln!(
            out,
            "conveyor drain / apalis-redis drain at the small backlog: {ratio:.1}x"
        );
    }
    let targets = &results.targets;
    let verdict = |met: Option<bool>| match met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    };
    let _ = writeln!(
        out,
        "targets: drain >= 3x BullMQ: {}; drain >= 50,000 jobs/s: {}; <= 4 round trips per \
         job unbatched: {}{}",
        verdict(targets.drain_at_least_3x_bullmq),
        verdict(targets.drain_at_least_50k_per_s),
        verdict(targets.round_trips_at_most_4),
        targets
            .round_trips_per_job_unbatched
            .map(|trips| format!(" ({trips:.2})"))
            .unwrap_or_default()
    );
    for system in &systems {
        if let Some(error) = &system.error {
            let _ = writeln!(out, "{} failed: {error}", system.name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(-12_345.0), "-12,345");
    }
}
