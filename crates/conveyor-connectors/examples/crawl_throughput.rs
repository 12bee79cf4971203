//! Measures how fast a connector reads a large simulated dataset: a full crawl of purchase
//! orders per profile against an in-process simulator, plus the simulator alone (pages fetched
//! and discarded) and page parsing alone for comparison. Uses the system allocator; see
//! `crawl_throughput_mimalloc` for the allocator the binaries use.
//!
//! `cargo run --release -p conveyor-connectors --example crawl_throughput -- [records] [profile...]`
//! (defaults: 1,000,000 records, every profile).

#[path = "support/throughput.rs"]
mod throughput;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    throughput::run().await
}
