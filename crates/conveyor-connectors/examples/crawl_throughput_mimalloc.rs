//! `crawl_throughput` with mimalloc as the global allocator, as in the worker and simulator
//! binaries: building `serde_json::Value` trees is mostly small allocations, so the allocator
//! decides much of the per-record cost.
//!
//! `cargo run --release -p conveyor-connectors --example crawl_throughput_mimalloc -- [records] [profile...]`

#[path = "support/throughput.rs"]
mod throughput;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    throughput::run().await
}
