//! Cursors and checkpoints.

use chrono::{Duration, Utc};
use conveyor_core::{ConnectionId, Entity, SyncId};
use conveyor_store::Checkpoint;

use crate::harness;

#[tokio::test]
async fn checkpoints_resume_and_the_cursor_moves_only_on_completion() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let sync_id = SyncId::new();
    assert_eq!(
        h.store.get_cursor(&conn, Entity::Assets).await.unwrap(),
        None
    );
    assert_eq!(
        h.store
            .get_checkpoint(&conn, Entity::Assets, &sync_id)
            .await
            .unwrap(),
        None
    );

    let now = Utc::now();
    for page in 1..=3u64 {
        let checkpoint = Checkpoint {
            resume_token: serde_json::json!({"skiptoken": page * 1000}),
            pages: page,
            records_fetched: page * 1000,
            records_written: page * 900,
            records_unchanged: page * 100,
            saved_at: now,
        };
        h.store
            .save_checkpoint(&conn, Entity::Assets, &sync_id, &checkpoint)
            .await
            .unwrap();
    }
    // A retried job of the same run reads the last checkpoint; another run sees none.
    let resumed = h
        .store
        .get_checkpoint(&conn, Entity::Assets, &sync_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resumed.pages, 3);
    assert_eq!(resumed.resume_token["skiptoken"], 3000);
    assert_eq!(
        h.store
            .get_checkpoint(&conn, Entity::Assets, &SyncId::new())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        h.store.get_cursor(&conn, Entity::Assets).await.unwrap(),
        None
    );

    let up_to = now - Duration::minutes(2);
    h.store
        .complete_cursor(&conn, Entity::Assets, &sync_id, up_to)
        .await
        .unwrap();
    assert_eq!(
        h.store.get_cursor(&conn, Entity::Assets).await.unwrap(),
        Some(chrono::DateTime::from_timestamp_millis(up_to.timestamp_millis()).unwrap())
    );
    assert_eq!(
        h.store
            .get_checkpoint(&conn, Entity::Assets, &sync_id)
            .await
            .unwrap(),
        None
    );
    // Other entities have cursors of their own.
    assert_eq!(
        h.store.get_cursor(&conn, Entity::Vendors).await.unwrap(),
        None
    );
    h.store.clear_cursor(&conn, Entity::Assets).await.unwrap();
    assert_eq!(
        h.store.get_cursor(&conn, Entity::Assets).await.unwrap(),
        None
    );
}
