//! Sync run history.

use chrono::{Duration, Utc};
use conveyor_core::{ConnectionId, Entity, SyncId, SyncMode, SyncTrigger};
use conveyor_store::{NewRun, RunError, RunFilter, RunStatus, RunUpdate, StoreError};

use crate::{harness, harness_with};

fn new_run(connection_id: ConnectionId, entity: Entity) -> NewRun {
    NewRun {
        id: SyncId::new(),
        connection_id,
        entity,
        mode: SyncMode::Incremental,
        trigger: SyncTrigger::Scheduled,
        queued_at: Utc::now(),
    }
}

#[tokio::test]
async fn runs_are_created_updated_and_read_back() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let new = new_run(conn, Entity::PurchaseOrders);
    let run = h.store.create_run(&new).await.unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(h.store.get_run(&conn, &new.id).await.unwrap(), run);
    assert_eq!(h.store.find_run(&new.id).await.unwrap(), run);
    assert!(matches!(
        h.store.find_run(&SyncId::new()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        h.store.create_run(&new).await,
        Err(StoreError::Conflict { .. })
    ));

    let started = Utc::now();
    let running = h
        .store
        .update_run(
            &conn,
            &new.id,
            &RunUpdate {
                status: Some(RunStatus::Running),
                started_at: Some(started),
                attempts: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(running.status, RunStatus::Running);
    assert_eq!(running.attempts, 1);
    assert_eq!(
        running.started_at.map(|t| t.timestamp_millis()),
        Some(started.timestamp_millis())
    );

    let failed_attempt = h
        .store
        .update_run(
            &conn,
            &new.id,
            &RunUpdate {
                status: Some(RunStatus::Retrying),
                pages: Some(3),
                records_fetched: Some(3000),
                error: Some(Some(RunError {
                    code: "SOURCE_UNREACHABLE".into(),
                    message: "connection refused".into(),
                })),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        failed_attempt.error.as_ref().unwrap().code,
        "SOURCE_UNREACHABLE"
    );
    assert_eq!(failed_attempt.attempts, 1, "untouched fields are kept");

    let done = h
        .store
        .update_run(
            &conn,
            &new.id,
            &RunUpdate {
                status: Some(RunStatus::Succeeded),
                finished_at: Some(Utc::now()),
                attempts: Some(2),
                pages: Some(5),
                records_fetched: Some(5000),
                records_written: Some(4000),
                records_unchanged: Some(990),
                records_deleted: Some(10),
                error: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(done.error, None);
    assert_eq!(
        (
            done.records_written,
            done.records_unchanged,
            done.records_deleted
        ),
        (4000, 990, 10)
    );
    assert!(done.status.is_finished());
    assert_eq!(h.store.get_run(&conn, &new.id).await.unwrap(), done);

    assert!(matches!(
        h.store
            .update_run(&conn, &SyncId::new(), &RunUpdate::default())
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn lists_are_newest_first_filtered_and_paged() {
    let h = harness().await;
    let conn = ConnectionId::new();
    let mut ids = Vec::new();
    for i in 0..12 {
        let entity = if i % 3 == 0 {
            Entity::Assets
        } else {
            Entity::WorkOrders
        };
        let run = h.store.create_run(&new_run(conn, entity)).await.unwrap();
        if i % 2 == 0 {
            h.store
                .update_run(
                    &conn,
                    &run.id,
                    &RunUpdate {
                        status: Some(RunStatus::Failed),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        }
        ids.push(run.id);
    }
    // Another connection's runs never show up.
    h.store
        .create_run(&new_run(ConnectionId::new(), Entity::Assets))
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = h
            .store
            .list_runs(&conn, RunFilter::default(), 5, cursor.as_deref())
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|r| r.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    // Newest first means by id: ULIDs order by creation millisecond (ties in one millisecond
    // fall in id order, which is what every page agrees on).
    let mut newest_first = ids.clone();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen, newest_first);

    // Assets runs are i = 0, 3, 6, 9; failed ones are the even i: 0 and 6.
    let filter = RunFilter {
        entity: Some(Entity::Assets),
        status: Some(RunStatus::Failed),
    };
    let mut filtered = Vec::new();
    let mut cursor = None;
    loop {
        let page = h
            .store
            .list_runs(&conn, filter, 1, cursor.as_deref())
            .await
            .unwrap();
        filtered.extend(page.items.iter().map(|r| r.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut expected = vec![ids[6], ids[0]];
    expected.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(filtered, expected);
}

#[tokio::test]
async fn history_is_bounded_per_connection() {
    let h = harness_with(|config| config.run_history_len = 5).await;
    let conn = ConnectionId::new();
    let mut ids = Vec::new();
    for i in 0..8 {
        let mut new = new_run(conn, Entity::Vendors);
        new.queued_at = Utc::now() + Duration::seconds(i);
        ids.push(h.store.create_run(&new).await.unwrap().id);
    }
    let page = h
        .store
        .list_runs(&conn, RunFilter::default(), 100, None)
        .await
        .unwrap();
    let kept: Vec<_> = page.items.iter().map(|r| r.id).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(kept, ids[..5]);
    for dropped in &ids[5..] {
        assert!(matches!(
            h.store.get_run(&conn, dropped).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            h.store.find_run(dropped).await,
            Err(StoreError::NotFound { .. })
        ));
    }
    assert_eq!(h.store.find_run(&ids[0]).await.unwrap().id, ids[0]);
    let owners = h
        .all_keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with("conveyor:sync_run:"))
        .count();
    assert_eq!(owners, 5);
    let run_keys = h
        .all_keys()
        .await
        .into_iter()
        .filter(|k| k.contains(":run:"))
        .count();
    assert_eq!(run_keys, 5);
}
