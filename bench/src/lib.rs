//! Conveyor's benchmark harness.
//!
//! Benchmarks run the systems under test in child processes against a private `redis-server`,
//! so each process's peak memory can be read on its own and no benchmark shares Redis with
//! anything else. Every benchmark writes its numbers to `bench/results/<name>.json` and prints a
//! markdown table for the README.
//!
//! - [`queue`]: push and drain throughput, Redis commands per job and worker memory of
//!   conveyor-queue, apalis-redis and BullMQ, side by side in one run (`just bench-queue`).
//!
//! The shared parts: [`phase`] (one timed phase in a child process and the report it prints),
//! [`redis_counters`] (INFO commandstats around a phase), [`monitor`] (counting the commands
//! clients send, apart from those run inside Lua scripts) and [`machine`] (what the numbers were
//! measured on).

pub mod error;
pub mod machine;
pub mod monitor;
pub mod phase;
pub mod queue;
pub mod redis_counters;

pub use error::BenchError;
