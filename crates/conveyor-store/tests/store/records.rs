//! Record upserts, the change feed, and the deletion sweep.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use conveyor_core::{ConnectionId, Entity, SyncId, UnifiedRecord};
use conveyor_store::{Store, StoreError, UpsertOutcome};

use crate::{harness, raw_description, raw_json, wait_for_redis_clock_past, work_order};

const E: Entity = Entity::WorkOrders;

fn page(range: std::ops::Range<usize>, description: &str, at: DateTime<Utc>) -> Vec<UnifiedRecord> {
    range
        .map(|i| work_order(&format!("WO-{i:05}"), description, at))
        .collect()
}

/// Every record of the change feed from `since`, page by page, with `between` run after each
/// page.
async fn walk(
    store: &Store,
    conn: &ConnectionId,
    since: DateTime<Utc>,
    limit: usize,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_changed(conn, E, since, limit, cursor.as_deref())
            .await
            .unwrap();
        out.extend(page.items.into_iter().map(|r| {
            let description = raw_description(&r.record);
            (r.record.external_key, description)
        }));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

#[tokio::test]
async fn unchanged_records_are_skipped_and_counted() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let at = Utc::now();
    let first = page(0..100, "pump", at);
    assert_eq!(
        h.store
            .upsert_records(&conn, E, &first, None)
            .await
            .unwrap(),
        UpsertOutcome {
            written: 100,
            unchanged: 0
        }
    );
    let before = h
        .store
        .get_record(&conn, E, "WO-00007")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        h.store
            .upsert_records(&conn, E, &first, None)
            .await
            .unwrap(),
        UpsertOutcome {
            written: 0,
            unchanged: 100
        }
    );
    // Unchanged means not rewritten: the copy's synced_at did not move.
    let after = h
        .store
        .get_record(&conn, E, "WO-00007")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before, after);

    let mut second = first.clone();
    for record in second.iter_mut().take(10) {
        let mut raw = record.raw_value().unwrap();
        raw["description"] = "valve".into();
        record.raw = raw_json(&raw);
    }
    second[20].deleted = true;
    assert_eq!(
        h.store
            .upsert_records(&conn, E, &second, None)
            .await
            .unwrap(),
        UpsertOutcome {
            written: 11,
            unchanged: 89
        }
    );
    let changed = h
        .store
        .get_record(&conn, E, "WO-00003")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw_description(&changed.record), "valve");
    assert_eq!(changed.record.data, second[3].data);
    assert_eq!(
        changed.record.source_updated_at.timestamp_millis(),
        at.timestamp_millis()
    );
    assert!(changed.synced_at >= before.synced_at);
    assert!(
        h.store
            .get_record(&conn, E, "WO-00020")
            .await
            .unwrap()
            .unwrap()
            .record
            .deleted
    );
    assert_eq!(
        h.store.get_record(&conn, E, "WO-99999").await.unwrap(),
        None
    );
    assert_eq!(h.store.count_records(&conn, E).await.unwrap(), 100);
    // Other entities are separate.
    assert_eq!(
        h.store.count_records(&conn, Entity::Assets).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn bad_pages_are_refused() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let records = page(0..3, "x", Utc::now());
    assert!(matches!(
        h.store
            .upsert_records(&conn, Entity::Assets, &records, None)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        h.store.upsert_records(&conn, E, &[], None).await.unwrap(),
        UpsertOutcome::default()
    );
    assert!(matches!(
        h.store
            .list_changed(&conn, E, Utc::now(), 10, Some("not a cursor!"))
            .await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn the_change_feed_returns_every_record_once_across_pages() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let at = Utc::now();
    for chunk in 0..3 {
        let records = page(chunk * 1000..(chunk + 1) * 1000, "v1", at);
        h.store
            .upsert_records(&conn, E, &records, None)
            .await
            .unwrap();
    }
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let all = walk(&h.store, &conn, epoch, 170).await;
    assert_eq!(all.len(), 3000);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (key, _) in &all {
        *counts.entry(key.as_str()).or_default() += 1;
    }
    assert_eq!(counts.len(), 3000);
    assert!(counts.values().all(|&n| n == 1));

    // updated_since: only what changed after a point in time.
    let last = h
        .store
        .get_record(&conn, E, "WO-02999")
        .await
        .unwrap()
        .unwrap();
    wait_for_redis_clock_past(&h, last.synced_at).await;
    let since = last.synced_at + chrono::Duration::milliseconds(1);
    let mut updates = page(500..520, "v2", at);
    updates.extend(page(2500..2510, "v2", at));
    h.store
        .upsert_records(&conn, E, &updates, None)
        .await
        .unwrap();
    let recent = walk(&h.store, &conn, since, 7).await;
    assert_eq!(recent.len(), 30);
    assert!(recent.iter().all(|(_, d)| d == "v2"));
}

#[tokio::test]
async fn paging_is_stable_under_concurrent_writes() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let at = Utc::now();
    h.store
        .upsert_records(&conn, E, &page(0..1000, "v1", at), None)
        .await
        .unwrap();
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let result = h
            .store
            .list_changed(&conn, E, epoch, 100, cursor.as_deref())
            .await
            .unwrap();
        seen.extend(result.items.into_iter().map(|r| {
            let description = raw_description(&r.record);
            (r.record.external_key, description)
        }));
        pages += 1;
        if pages == 3 {
            // A writer changes 20 records already read and 20 not yet read.
            let mut writes = page(100..120, "v2", at);
            writes.extend(page(800..820, "v2", at));
            h.store
                .upsert_records(&conn, E, &writes, None)
                .await
                .unwrap();
        }
        match result.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut counts: HashMap<&str, Vec<&str>> = HashMap::new();
    for (key, description) in &seen {
        counts.entry(key).or_default().push(description);
    }
    assert_eq!(counts.len(), 1000, "every record is returned");
    for (key, descriptions) in &counts {
        let n: usize = key[3..].parse().unwrap();
        match n {
            // Read, then changed: returned again with the new content.
            100..120 => assert_eq!(descriptions, &["v1", "v2"], "{key}"),
            // Changed before being reached: returned once, new content.
            800..820 => assert_eq!(descriptions, &["v2"], "{key}"),
            _ => assert_eq!(descriptions, &["v1"], "{key}"),
        }
    }
}

#[tokio::test]
async fn a_full_run_marks_deleted_what_the_source_no_longer_has() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let at = Utc::now();
    let first_run = SyncId::new();
    for chunk in 0..3 {
        let records = page(chunk * 1000..(chunk + 1) * 1000, "v1", at);
        h.store
            .upsert_records(&conn, E, &records, Some(&first_run))
            .await
            .unwrap();
    }
    assert_eq!(
        h.store
            .sweep_deleted(&conn, E, &first_run, None)
            .await
            .unwrap(),
        0
    );

    // The second full run finds only 2000 of them, all unchanged.
    let second_run = SyncId::new();
    for chunk in 0..2 {
        let records = page(chunk * 1000..(chunk + 1) * 1000, "v1", at);
        let outcome = h
            .store
            .upsert_records(&conn, E, &records, Some(&second_run))
            .await
            .unwrap();
        assert_eq!(outcome.unchanged, 1000);
    }
    let latest = h
        .store
        .get_record(&conn, E, "WO-02999")
        .await
        .unwrap()
        .unwrap();
    wait_for_redis_clock_past(&h, latest.synced_at).await;
    let before_sweep = latest.synced_at + chrono::Duration::milliseconds(1);
    assert_eq!(
        h.store
            .sweep_deleted(&conn, E, &second_run, None)
            .await
            .unwrap(),
        1000
    );
    assert!(
        h.store
            .get_record(&conn, E, "WO-02500")
            .await
            .unwrap()
            .unwrap()
            .record
            .deleted
    );
    assert!(
        !h.store
            .get_record(&conn, E, "WO-01500")
            .await
            .unwrap()
            .unwrap()
            .record
            .deleted
    );
    // Sweeping again changes nothing.
    assert_eq!(
        h.store
            .sweep_deleted(&conn, E, &second_run, None)
            .await
            .unwrap(),
        0
    );
    // The deletions show in the change feed.
    let changed = walk(&h.store, &conn, before_sweep, 1000).await;
    assert_eq!(changed.len(), 1000);
    assert!(changed.iter().all(|(k, _)| k.as_str() >= "WO-02000"));

    // A deleted record the source has again is written back as live.
    let third_run = SyncId::new();
    let back = page(2500..2501, "v1", at);
    let outcome = h
        .store
        .upsert_records(&conn, E, &back, Some(&third_run))
        .await
        .unwrap();
    assert_eq!(outcome.written, 1);
    assert!(
        !h.store
            .get_record(&conn, E, "WO-02500")
            .await
            .unwrap()
            .unwrap()
            .record
            .deleted
    );
}

/// The sweep skips its scan when the run's marker count equals the stored records, so the count
/// must be exact: a retried page counted twice, or a record another full run took over still
/// counted, would let records the run never saw escape the sweep.
#[tokio::test]
async fn the_sweep_still_finds_unseen_records_when_pages_repeat_or_another_run_takes_records() {
    let h = harness().await;
    let at = Utc::now();

    // 25 records written by an incremental run, then a full run that sees the other 25, its
    // page sent twice: counted twice it would equal the 50 stored.
    let conn = ConnectionId::new();
    h.store
        .upsert_records(&conn, E, &page(25..50, "v1", at), None)
        .await
        .unwrap();
    let run = SyncId::new();
    for _ in 0..2 {
        h.store
            .upsert_records(&conn, E, &page(0..25, "v1", at), Some(&run))
            .await
            .unwrap();
    }
    assert_eq!(
        h.store.sweep_deleted(&conn, E, &run, None).await.unwrap(),
        25
    );

    // A full run sees all 50; another full run then marks one of them as its own.
    let conn = ConnectionId::new();
    let run = SyncId::new();
    h.store
        .upsert_records(&conn, E, &page(0..50, "v1", at), Some(&run))
        .await
        .unwrap();
    let other = SyncId::new();
    h.store
        .upsert_records(&conn, E, &page(0..1, "v1", at), Some(&other))
        .await
        .unwrap();
    assert_eq!(
        h.store.sweep_deleted(&conn, E, &run, None).await.unwrap(),
        1
    );
    // A run that saw everything marks nothing.
    let last = SyncId::new();
    h.store
        .upsert_records(&conn, E, &page(0..50, "v1", at), Some(&last))
        .await
        .unwrap();
    assert_eq!(
        h.store.sweep_deleted(&conn, E, &last, None).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn the_sweep_leaves_records_outside_the_historical_period_alone() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let now = Utc::now();
    let old = now - chrono::Duration::days(200);
    let run = SyncId::new();
    h.store
        .upsert_records(&conn, E, &page(0..10, "old", old), None)
        .await
        .unwrap();
    h.store
        .upsert_records(&conn, E, &page(10..20, "recent", now), None)
        .await
        .unwrap();
    // A 90-day full run sees only WO-00010..14.
    h.store
        .upsert_records(&conn, E, &page(10..15, "recent", now), Some(&run))
        .await
        .unwrap();
    let window_start = now - chrono::Duration::days(90);
    let marked = h
        .store
        .sweep_deleted(&conn, E, &run, Some(window_start))
        .await
        .unwrap();
    assert_eq!(marked, 5);
    assert!(
        !h.store
            .get_record(&conn, E, "WO-00003")
            .await
            .unwrap()
            .unwrap()
            .record
            .deleted
    );
    assert!(
        h.store
            .get_record(&conn, E, "WO-00017")
            .await
            .unwrap()
            .unwrap()
            .record
            .deleted
    );
}

#[tokio::test]
async fn a_record_repeated_in_one_page_is_stored_once_last_copy_wins() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let at = Utc::now();
    let records = vec![
        work_order("WO-1", "first copy", at),
        work_order("WO-2", "other", at),
        work_order("WO-1", "second copy", at),
    ];
    assert_eq!(
        h.store
            .upsert_records(&conn, E, &records, None)
            .await
            .unwrap(),
        UpsertOutcome {
            written: 2,
            unchanged: 1
        }
    );
    let stored = h.store.get_record(&conn, E, "WO-1").await.unwrap().unwrap();
    assert_eq!(raw_description(&stored.record), "second copy");
    let all = walk(&h.store, &conn, DateTime::<Utc>::UNIX_EPOCH, 10).await;
    assert_eq!(all.len(), 2, "one change position per record: {all:?}");
}

#[tokio::test]
async fn the_largest_page_fits_in_one_script_call_and_a_larger_one_is_refused() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let at = Utc::now();
    let largest = page(0..conveyor_store::records::MAX_UPSERT_PAGE, "x", at);
    let outcome = h
        .store
        .upsert_records(&conn, E, &largest, None)
        .await
        .unwrap();
    assert_eq!(outcome.written as usize, largest.len());
    let run = SyncId::new();
    let again = h
        .store
        .upsert_records(&conn, E, &largest, Some(&run))
        .await
        .unwrap();
    assert_eq!(again.unchanged as usize, largest.len());
    let too_big = page(0..conveyor_store::records::MAX_UPSERT_PAGE + 1, "x", at);
    assert!(matches!(
        h.store.upsert_records(&conn, E, &too_big, None).await,
        Err(StoreError::Invalid(_))
    ));
}
