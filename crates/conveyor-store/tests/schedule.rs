//! The schedule against a real `redis-server`: reconciling with configuration, claims that
//! several schedulers race for, offline probes, blocked credentials, deleted connections.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor_core::{
    Connection, ConnectionId, ConnectionStatus, Credentials, Entity, EntityConfig, ProfileKind,
    SourceSettings, TenantId,
};
use conveyor_store::{
    ClaimContext, ClaimKind, EncryptionKey, ScheduledEntity, StatusReason, Store, StoreConfig,
    StoreError,
};
use conveyor_testkit::RedisServer;

async fn start() -> (RedisServer, Store) {
    let server = RedisServer::start().expect("redis-server starts");
    let key = EncryptionKey::new("k1", [1; 32]).expect("a 32-byte key");
    let store = Store::connect(&server.url(), StoreConfig::new(key))
        .await
        .expect("the store connects");
    (server, store)
}

fn credentials(password: &str) -> Credentials {
    Credentials::Basic {
        username: "svc".into(),
        password: password.into(),
    }
}

async fn create_connection(store: &Store) -> Connection {
    let now = Utc::now();
    let connection = Connection {
        id: ConnectionId::new(),
        tenant_id: TenantId::new(),
        name: "plant".into(),
        profile: ProfileKind::ODataV2,
        base_url: "http://127.0.0.1:9".into(),
        settings: SourceSettings::default(),
        entities: vec![EntityConfig {
            entity: Entity::WorkOrders,
            path: None,
            interval_secs: 3_600,
            enabled: true,
            field_overrides: Default::default(),
        }],
        historical_days: 90,
        overlap_secs: 120,
        created_at: now,
        updated_at: now,
        version: 0,
    };
    store
        .create_connection(&connection, &credentials("one"))
        .await
        .unwrap()
}

fn every(entity: Entity, millis: u64) -> ScheduledEntity {
    ScheduledEntity {
        entity,
        interval: Duration::from_millis(millis),
    }
}

/// The claim context of a connection as its status stands now.
async fn context(store: &Store, id: &ConnectionId, probe_at: DateTime<Utc>) -> ClaimContext {
    let status = store.get_status(id).await.unwrap();
    ClaimContext {
        status: status.status,
        consecutive_failures: status.consecutive_failures,
        probes: store.get_schedule(id).await.unwrap().probes,
        probe_at,
        probe_rearm: Duration::from_secs(60),
        recheck: Duration::from_millis(100),
    }
}

/// Waits until the Redis server's clock reaches `at`.
async fn redis_clock_reaches(store: &Store, at: DateTime<Utc>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, now) = store.due_schedules(1).await.unwrap();
        if now >= at {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis clock never reached {at}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn reconcile_follows_configuration_and_revisions() {
    let (_server, store) = start().await;
    let connection = create_connection(&store).await;
    let id = connection.id;

    let revisions = store.schedule_revisions(&[id]).await.unwrap();
    assert_eq!(revisions, vec![(Some(1), None)], "never reconciled");

    let first = store
        .reconcile_schedule(
            &id,
            "1",
            &[
                every(Entity::WorkOrders, 60_000),
                every(Entity::Assets, 60_000),
            ],
        )
        .await
        .unwrap()
        .expect("something is scheduled");
    let schedule = store.get_schedule(&id).await.unwrap();
    assert_eq!(schedule.revision.as_deref(), Some("1"));
    assert_eq!(schedule.entities.len(), 2);
    assert!(
        schedule.entities.values().all(|e| e.next_due == first),
        "new entities are due one interval from now: {schedule:?}"
    );
    let (due, now) = store.due_schedules(10).await.unwrap();
    assert!(due.is_empty(), "nothing is due before the first interval");
    assert!(first > now + chrono::Duration::seconds(59));
    assert_eq!(
        store.schedule_revisions(&[id]).await.unwrap(),
        vec![(Some(1), Some("1".to_owned()))]
    );

    // Shorten one interval and drop the other entity.
    let claim = store
        .claim_schedule(&id, &context(&store, &id, Utc::now()).await)
        .await
        .unwrap();
    assert_eq!(claim.kind, ClaimKind::Due);
    assert!(claim.entities.is_empty());
    let next = store
        .reconcile_schedule(&id, "2", &[every(Entity::WorkOrders, 1_000)])
        .await
        .unwrap()
        .expect("work orders stay scheduled");
    let schedule = store.get_schedule(&id).await.unwrap();
    assert_eq!(
        schedule.entities.keys().copied().collect::<Vec<_>>(),
        vec![Entity::WorkOrders]
    );
    let work_orders = schedule.entities[&Entity::WorkOrders];
    assert_eq!(work_orders.interval, Duration::from_millis(1_000));
    assert_eq!(work_orders.next_due, next);
    assert!(
        next <= claim.server_now + chrono::Duration::milliseconds(1_500),
        "a shorter interval applies from now: {next} vs {}",
        claim.server_now
    );

    // No enabled entities: out of the index.
    assert_eq!(store.reconcile_schedule(&id, "3", &[]).await.unwrap(), None);
    assert!(store.list_schedule_index().await.unwrap().is_empty());
}

#[tokio::test]
async fn racing_schedulers_claim_each_due_slot_once() {
    let (server, store) = start().await;
    let key = EncryptionKey::new("k1", [1; 32]).unwrap();
    let mut schedulers = vec![store.clone()];
    for _ in 0..3 {
        schedulers.push(
            Store::connect(&server.url(), StoreConfig::new(key.clone()))
                .await
                .unwrap(),
        );
    }
    let interval = 150;
    let mut ids = Vec::new();
    for _ in 0..8 {
        let connection = create_connection(&store).await;
        store
            .reconcile_schedule(
                &connection.id,
                "1",
                &[
                    every(Entity::WorkOrders, interval),
                    every(Entity::Assets, interval * 2),
                ],
            )
            .await
            .unwrap();
        ids.push(connection.id);
    }
    let started = store.due_schedules(1).await.unwrap().1;

    // Four schedulers poll the index and claim as fast as they can for 1.3 seconds.
    let until = started + chrono::Duration::milliseconds(1_300);
    let mut tasks = Vec::new();
    for scheduler in schedulers {
        tasks.push(tokio::spawn(async move {
            let mut claimed: Vec<(ConnectionId, Entity, DateTime<Utc>)> = Vec::new();
            loop {
                let (due, now) = scheduler.due_schedules(100).await.unwrap();
                if now >= until {
                    return claimed;
                }
                for id in due {
                    let context = context(&scheduler, &id, now).await;
                    let claim = scheduler.claim_schedule(&id, &context).await.unwrap();
                    for entity in claim.entities {
                        claimed.push((id, entity, claim.server_now));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }

    let mut per_slot: HashMap<(ConnectionId, Entity), Vec<DateTime<Utc>>> = HashMap::new();
    for (id, entity, at) in all {
        per_slot.entry((id, entity)).or_default().push(at);
    }
    for id in &ids {
        let schedule = store.get_schedule(id).await.unwrap();
        for (entity, slot) in &schedule.entities {
            let mut claims = per_slot.remove(&(*id, *entity)).unwrap_or_default();
            claims.sort();
            let interval = slot.interval.as_millis() as i64;
            // The grid starts at the first claim; the stored next due time is the slot after the
            // last claim, so every grid point before it was claimed exactly once.
            let first = claims[0];
            let slots = (slot.next_due - first).num_milliseconds() as f64 / interval as f64;
            assert_eq!(
                claims.len() as i64,
                slots.round() as i64,
                "{entity}: {} claims, {slots} slots",
                claims.len()
            );
            for pair in claims.windows(2) {
                let gap = (pair[1] - pair[0]).num_milliseconds();
                assert!(
                    gap >= interval - 60,
                    "{entity}: claims only {gap} ms apart (interval {interval})"
                );
            }
            assert!(
                claims.len() >= 3,
                "{entity} was claimed {} times in a second",
                claims.len()
            );
        }
    }
    assert!(per_slot.is_empty(), "claims of unscheduled entities");
}

#[tokio::test]
async fn missed_slots_collapse_into_one_claim_on_the_grid() {
    let (_server, store) = start().await;
    let id = create_connection(&store).await.id;
    let first = store
        .reconcile_schedule(&id, "1", &[every(Entity::WorkOrders, 50)])
        .await
        .unwrap()
        .unwrap();
    // Nobody claims for several intervals (every scheduler was down).
    redis_clock_reaches(&store, first + chrono::Duration::milliseconds(230)).await;
    let claim = store
        .claim_schedule(&id, &context(&store, &id, Utc::now()).await)
        .await
        .unwrap();
    assert_eq!(
        claim.entities,
        vec![Entity::WorkOrders],
        "one sync, not five"
    );
    let next = store.get_schedule(&id).await.unwrap().entities[&Entity::WorkOrders].next_due;
    assert!(next > claim.server_now, "the next slot is in the future");
    assert_eq!(
        (next - first).num_milliseconds() % 50,
        0,
        "the next slot stays on the grid"
    );
    let again = store
        .claim_schedule(&id, &context(&store, &id, Utc::now()).await)
        .await
        .unwrap();
    assert!(again.entities.is_empty());
    assert_eq!(again.next_look, Some(next));
}

#[tokio::test]
async fn offline_connections_are_probed_once_per_backoff_step() {
    let (_server, store) = start().await;
    let id = create_connection(&store).await.id;
    store
        .reconcile_schedule(
            &id,
            "1",
            &[
                every(Entity::WorkOrders, 200),
                every(Entity::Assets, 60_000),
            ],
        )
        .await
        .unwrap();
    store
        .transition(
            &id,
            ConnectionStatus::Offline,
            &StatusReason::new("unreachable", "refused"),
        )
        .await
        .unwrap();
    let failed_at = store.get_status(&id).await.unwrap().last_error.unwrap().at;

    // The probe is 300 ms after the failure; before that nothing is due, whatever the schedule.
    let probe_at = failed_at + chrono::Duration::milliseconds(300);
    let waiting = store
        .claim_schedule(&id, &context(&store, &id, probe_at).await)
        .await
        .unwrap();
    assert_eq!(waiting.kind, ClaimKind::Waiting);
    assert!(waiting.entities.is_empty(), "the schedule is suspended");
    assert_eq!(waiting.next_look, Some(probe_at));
    let status = store.get_status(&id).await.unwrap();
    assert_eq!(status.next_attempt_at, Some(probe_at));

    // Another scheduler drew another jitter for the same failure count: the first one stands.
    let other = store
        .claim_schedule(
            &id,
            &context(&store, &id, probe_at + chrono::Duration::seconds(9)).await,
        )
        .await
        .unwrap();
    assert_eq!(other.next_look, Some(probe_at));

    redis_clock_reaches(&store, probe_at).await;
    let ctx = context(&store, &id, probe_at).await;
    let (first, second) = tokio::join!(
        store.claim_schedule(&id, &ctx),
        store.claim_schedule(&id, &ctx)
    );
    let claims = [first.unwrap(), second.unwrap()];
    let probes: Vec<_> = claims
        .iter()
        .filter(|claim| claim.kind == ClaimKind::Probe)
        .collect();
    assert_eq!(probes.len(), 1, "one probe: {claims:?}");
    assert_eq!(
        probes[0].entities,
        vec![Entity::WorkOrders],
        "a probe syncs one entity, the most overdue"
    );
    assert_eq!(store.get_schedule(&id).await.unwrap().probes, 1);
    let rearmed = probes[0].next_look.unwrap();
    assert!(rearmed >= probes[0].server_now + chrono::Duration::seconds(59));
    // The probe is a sync of work orders: their grid restarts one interval after it, so a
    // successful probe is not followed by a second sync moments later.
    assert_eq!(
        store.get_schedule(&id).await.unwrap().entities[&Entity::WorkOrders].next_due,
        probes[0].server_now + chrono::Duration::milliseconds(200)
    );

    // The probe failed: a new failure count means a new, later probe time.
    store
        .transition(
            &id,
            ConnectionStatus::Offline,
            &StatusReason::new("unreachable", "refused"),
        )
        .await
        .unwrap();
    let stale = store.claim_schedule(&id, &ctx).await.unwrap();
    assert_eq!(stale.kind, ClaimKind::Stale, "the failure count moved");
    let later = Utc::now() + chrono::Duration::seconds(2);
    let next = store
        .claim_schedule(&id, &context(&store, &id, later).await)
        .await
        .unwrap();
    assert_eq!(next.kind, ClaimKind::Waiting);
    assert_eq!(
        next.next_look.unwrap().timestamp_millis(),
        later.timestamp_millis()
    );

    // Back online: the index entry, a minute ahead at the re-armed probe, is due at once, so
    // the next tick resumes the schedule; the probe is dropped and the entity schedule applies
    // again.
    let index_entry = |entries: Vec<(ConnectionId, DateTime<Utc>)>| {
        entries
            .into_iter()
            .find(|(entry, _)| *entry == id)
            .map(|(_, at)| at)
    };
    let before = index_entry(store.list_schedule_index().await.unwrap()).unwrap();
    assert!(
        before > Utc::now() + chrono::Duration::seconds(1),
        "{before}"
    );
    store
        .transition(
            &id,
            ConnectionStatus::Online,
            &StatusReason::new("sync_succeeded", "ok"),
        )
        .await
        .unwrap();
    let back_at = store.get_status(&id).await.unwrap().since.unwrap();
    assert_eq!(
        index_entry(store.list_schedule_index().await.unwrap()),
        Some(back_at)
    );
    let online = store
        .claim_schedule(&id, &context(&store, &id, Utc::now()).await)
        .await
        .unwrap();
    assert_eq!(online.kind, ClaimKind::Due);
    assert!(
        !online.entities.contains(&Entity::Assets),
        "assets are not due for a minute: {online:?}"
    );
    let schedule = store.get_schedule(&id).await.unwrap();
    assert_eq!(
        (schedule.probe_at, schedule.probes),
        (None, 0),
        "reset for the next outage"
    );
}

#[tokio::test]
async fn rejected_credentials_block_until_they_change() {
    let (_server, store) = start().await;
    let id = create_connection(&store).await.id;
    store
        .reconcile_schedule(&id, "1", &[every(Entity::WorkOrders, 50)])
        .await
        .unwrap();
    store
        .transition(
            &id,
            ConnectionStatus::AuthRequired,
            &StatusReason::new("auth_rejected", "401"),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        let claim = store
            .claim_schedule(&id, &context(&store, &id, Utc::now()).await)
            .await
            .unwrap();
        assert_eq!(claim.kind, ClaimKind::Blocked);
        assert!(claim.entities.is_empty());
        let next = claim.next_look.unwrap();
        assert!(next > claim.server_now, "re-checked later, not never");
        redis_clock_reaches(&store, next).await;
    }
    assert_eq!(store.get_status(&id).await.unwrap().next_attempt_at, None);

    store
        .set_credentials(&id, &credentials("two"))
        .await
        .unwrap();
    let probe = store
        .claim_schedule(&id, &context(&store, &id, Utc::now()).await)
        .await
        .unwrap();
    assert_eq!(probe.kind, ClaimKind::Probe);
    assert_eq!(probe.entities, vec![Entity::WorkOrders]);
    let after = store
        .claim_schedule(&id, &context(&store, &id, Utc::now()).await)
        .await
        .unwrap();
    assert_eq!(
        after.kind,
        ClaimKind::Blocked,
        "one probe per credentials change"
    );
}

#[tokio::test]
async fn deleted_connections_lose_their_schedule() {
    let (_server, store) = start().await;
    let kept = create_connection(&store).await.id;
    let deleted = create_connection(&store).await.id;
    for id in [kept, deleted] {
        store
            .reconcile_schedule(&id, "1", &[every(Entity::WorkOrders, 60_000)])
            .await
            .unwrap();
    }
    store.delete_connection(&deleted).await.unwrap();
    assert!(
        store
            .get_schedule(&deleted)
            .await
            .unwrap()
            .entities
            .is_empty(),
        "the schedule hash goes with the connection"
    );
    assert_eq!(
        store.list_schedule_index().await.unwrap().len(),
        2,
        "the index entry lingers until a scheduler looks"
    );
    let (_, now) = store.due_schedules(10).await.unwrap();
    let claim = store
        .claim_schedule(&deleted, &context(&store, &deleted, now).await)
        .await
        .unwrap();
    assert_eq!(claim.kind, ClaimKind::Gone);
    let index: Vec<ConnectionId> = store
        .list_schedule_index()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(index, vec![kept]);
    assert!(matches!(
        store
            .reconcile_schedule(&deleted, "1", &[every(Entity::WorkOrders, 60_000)])
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        store
            .get_schedule(&deleted)
            .await
            .unwrap()
            .entities
            .is_empty()
    );
}

#[tokio::test]
async fn a_configuration_change_never_postpones_a_sooner_look() {
    let (_server, store) = start().await;
    let id = create_connection(&store).await.id;
    let hourly = [every(Entity::WorkOrders, 3_600_000)];
    store.reconcile_schedule(&id, "1", &hourly).await.unwrap();
    store
        .transition(
            &id,
            ConnectionStatus::AuthRequired,
            &StatusReason::new("auth_rejected", "401"),
        )
        .await
        .unwrap();
    let blocked = store
        .claim_schedule(&id, &context(&store, &id, Utc::now()).await)
        .await
        .unwrap();
    assert_eq!(blocked.kind, ClaimKind::Blocked);
    let recheck = blocked.next_look.unwrap();

    // A PATCH with new credentials bumps the version: the rebuilt schedule's first slot is an
    // hour away, but the credentials re-check stays where it was, so the new credentials are
    // noticed at once.
    store
        .set_credentials(&id, &credentials("two"))
        .await
        .unwrap();
    let next_due = store.reconcile_schedule(&id, "2", &hourly).await.unwrap();
    assert!(next_due.unwrap() > Utc::now() + chrono::Duration::minutes(59));
    let entry = store
        .list_schedule_index()
        .await
        .unwrap()
        .into_iter()
        .find(|(entry, _)| *entry == id)
        .map(|(_, at)| at);
    assert_eq!(entry, Some(recheck));
    redis_clock_reaches(&store, recheck).await;
    let probe = store
        .claim_schedule(&id, &context(&store, &id, Utc::now()).await)
        .await
        .unwrap();
    assert_eq!(probe.kind, ClaimKind::Probe);
}
