//! `bench-queue`: the queue benchmark of issue 3 (`just bench-queue [JOBS]`).
//!
//! ```text
//! bench-queue [--jobs N] [--out FILE] [--table FILE] [--only conveyor,apalis-redis,bullmq]
//!             [--count-jobs N] [--small-backlog N] [--unbatched-jobs N]
//!             [--concurrency SYSTEM=N ...]
//! bench-queue child <system> <phase> --url U --jobs N [...]   (run by the harness itself)
//! ```
//!
//! Without `--out` the results go to `bench/results/queue.json` and the markdown table to
//! `bench/results/queue.md`; the table is printed either way.

use std::path::PathBuf;
use std::process::ExitCode;

use conveyor_bench::BenchError;
use conveyor_bench::phase::print_report;
use conveyor_bench::queue::{self, ChildArgs, Settings, System};

const USAGE: &str = "usage: bench-queue [--jobs N] [--out FILE] [--table FILE] \
    [--only conveyor,apalis-redis,bullmq] [--count-jobs N] [--small-backlog N] \
    [--unbatched-jobs N] [--concurrency SYSTEM=N ...]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("child") => child(&args[1..]),
        _ => harness(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-queue: {err}");
            ExitCode::FAILURE
        }
    }
}

fn child(args: &[String]) -> Result<(), BenchError> {
    let args = ChildArgs::parse(args)?;
    let report = queue::run_child_phase(&args)?;
    print_report(&report)
}

fn results_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results")
}

fn harness(args: &[String]) -> Result<(), BenchError> {
    let mut settings = Settings::new(100_000);
    let mut out = results_dir().join("queue.json");
    let mut table_out = results_dir().join("queue.md");
    let usage = |detail: String| BenchError::Usage(format!("{detail}\n{USAGE}"));
    let number = |name: &str, value: &str| {
        value
            .replace('_', "")
            .parse::<u64>()
            .map_err(|_| usage(format!("{name} needs a whole number, got {value:?}")))
    };
    for pair in args.chunks(2) {
        let [name, value] = pair else {
            return Err(usage(format!("{} has no value", pair[0])));
        };
        match name.as_str() {
            "--jobs" => settings.jobs = number(name, value)?.max(1),
            "--out" => out = PathBuf::from(value),
            "--table" => table_out = PathBuf::from(value),
            "--count-jobs" => settings.count_jobs = number(name, value)?,
            "--small-backlog" => settings.small_backlog = number(name, value)?,
            "--unbatched-jobs" => settings.unbatched_jobs = number(name, value)?,
            "--only" => {
                settings.systems = value
                    .split(',')
                    .map(|name| {
                        System::from_cli(name.trim())
                            .ok_or_else(|| usage(format!("unknown system {name:?}")))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--concurrency" => {
                let (system, n) = value
                    .split_once('=')
                    .ok_or_else(|| usage("--concurrency takes SYSTEM=N".to_owned()))?;
                let system = System::from_cli(system)
                    .ok_or_else(|| usage(format!("unknown system {system:?}")))?;
                let n = number(name, n)?.max(1) as usize;
                settings.concurrency.push((system, n));
            }
            _ => return Err(usage(format!("unknown option {name}"))),
        }
    }

    let results = queue::run(&settings)?;
    let json = serde_json::to_string_pretty(&results)
        .map_err(|err| BenchError::System(format!("encoding the results: {err}")))?;
    let table = queue::markdown(&results);
    for (path, text) in [(&out, format!("{json}\n")), (&table_out, table.clone())] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(BenchError::io(format!("creating {}", dir.display())))?;
        }
        std::fs::write(path, text)
            .map_err(BenchError::io(format!("writing {}", path.display())))?;
    }
    println!("{table}");
    eprintln!(
        "bench-queue: wrote {} and {}",
        out.display(),
        table_out.display()
    );
    Ok(())
}
