//! Measures page upserts: 100,000 work orders in pages of 1,000 against a local redis-server,
//! first written, then re-sent unchanged, then with every tenth record changed.
//!
//! `cargo run --release -p conveyor-store --example upsert_throughput`
//! (needs `redis-server` on the PATH). Prints records per second; asserts nothing about speed.

use std::time::Instant;

use conveyor_core::{ConnectionId, Entity, RecordData, UnifiedRecord, WorkOrder};
use conveyor_store::{EncryptionKey, Store, StoreConfig, UpsertOutcome};
use conveyor_testkit::RedisServer;

const RECORDS: usize = 100_000;
const PAGE: usize = 1_000;

fn record(i: usize, revision: usize) -> UnifiedRecord {
    let key = format!("WO-{i:07}");
    let base = chrono::DateTime::from_timestamp(1_763_900_000, 0).unwrap_or_default();
    let description = format!("Replace pump seal, revision {revision}");
    UnifiedRecord {
        external_key: key.clone(),
        source_updated_at: base + chrono::Duration::seconds(revision as i64),
        deleted: false,
        data: RecordData::WorkOrder(WorkOrder {
            number: Some(key.clone()),
            description: Some(description.clone()),
            status: Some("APPR".into()),
            asset_key: Some(format!("A-{}", i % 5_000)),
            location: Some("PLANT-3".into()),
            priority: Some("2".into()),
            ..Default::default()
        }),
        raw: serde_json::value::to_raw_value(&serde_json::json!({
            "wonum": key, "description": description, "status": "APPR",
            "assetnum": format!("A-{}", i % 5_000), "location": "PLANT-3", "wopriority": 2,
        }))
        .expect("a JSON value always serializes"),
    }
}

async fn pass(
    raw: &mut redis::aio::MultiplexedConnection,
    store: &Store,
    connection_id: &ConnectionId,
    pages: &[Vec<UnifiedRecord>],
    label: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(raw)
        .await?;
    let started = Instant::now();
    let mut total = UpsertOutcome::default();
    for page in pages {
        let outcome = store
            .upsert_records(connection_id, Entity::WorkOrders, page, None)
            .await?;
        total.written += outcome.written;
        total.unchanged += outcome.unchanged;
    }
    let elapsed = started.elapsed();
    println!(
        "{label:<20} {RECORDS} records in {:>6.3} s = {:>7.0} records/s (written {}, unchanged {})",
        elapsed.as_secs_f64(),
        RECORDS as f64 / elapsed.as_secs_f64(),
        total.written,
        total.unchanged
    );
    // Time spent inside Redis, to tell the script's cost from the client's.
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(raw)
        .await?;
    for line in info.lines().filter(|l| l.starts_with("cmdstat_evalsha")) {
        println!("    inside redis: {line}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = RedisServer::start()?;
    let store = Store::connect(
        &server.url(),
        StoreConfig::new(EncryptionKey::new("bench", [9; 32])?),
    )
    .await?;
    let mut raw = server.client().get_multiplexed_async_connection().await?;
    let connection_id = ConnectionId::new();
    let build = |revision: &dyn Fn(usize) -> usize| -> Vec<Vec<UnifiedRecord>> {
        (0..RECORDS)
            .map(|i| record(i, revision(i)))
            .collect::<Vec<_>>()
            .chunks(PAGE)
            .map(<[UnifiedRecord]>::to_vec)
            .collect()
    };
    // Records are built before timing so the numbers are the store's (serialize, hash, script).
    let fresh = build(&|_| 0);
    pass(&mut raw, &store, &connection_id, &fresh, "new records").await?;
    pass(
        &mut raw,
        &store,
        &connection_id,
        &fresh,
        "unchanged re-send",
    )
    .await?;
    let tenth = build(&|i| usize::from(i % 10 == 0));
    pass(&mut raw, &store, &connection_id, &tenth, "10% changed").await?;
    Ok(())
}
