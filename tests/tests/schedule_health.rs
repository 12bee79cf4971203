//! Connection health under the scheduler, with real `conveyor-worker` processes, the
//! simulator's faults and a real redis-server:
//!
//! - an outage turns the connection offline at the first failed attempt; probes then come ever
//!   further apart, never beyond the cap; when the system answers again the status returns to
//!   online and the normal schedule resumes, with no manual step;
//! - rejected credentials stop every attempt until new credentials are stored; then syncs resume.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

#[path = "schedule_support.rs"]
mod support;

use std::time::Duration;

use chrono::Utc;
use conveyor_core::{ConnectionStatus, Credentials, Entity};
use conveyor_sim::{FaultKind, FaultSpec};
use conveyor_store::{RunStatus, SyncRun};
use support::{Fleet, PROFILE, TICK, millis, scheduled, start_worker, stop_worker, wait_until};

/// Offline backoff in this test: 300 ms doubling to a 2.4 s cap (±20 % jitter).
const BACKOFF_BASE_MS: i64 = 300;
const BACKOFF_CAP_MS: i64 = 2_400;

fn nominal_probe_delay_ms(probe: u32) -> i64 {
    (BACKOFF_BASE_MS << (probe - 1).min(16)).min(BACKOFF_CAP_MS)
}

/// Status transitions of a connection, oldest first, as `from→to`.
async fn transitions(fleet: &Fleet, connection_id: &conveyor_core::ConnectionId) -> Vec<String> {
    let mut list: Vec<String> = fleet
        .store
        .list_transitions(connection_id, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|transition| format!("{}→{}", transition.from, transition.to))
        .collect();
    list.reverse();
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_backs_off_and_recovers_by_itself() {
    let fleet = Fleet::start().await;
    let connection = fleet.connect(&[(Entity::WorkOrders, 1)]).await;
    let id = connection.id;
    let env = fleet.worker_env(&[
        ("CONVEYOR_OFFLINE_BACKOFF_BASE", "300ms"),
        ("CONVEYOR_OFFLINE_BACKOFF_CAP", "2400ms"),
    ]);
    let mut workers: Vec<_> = (0..2).map(|_| start_worker(&env)).collect();

    wait_until("online", Duration::from_secs(10), || async {
        fleet.store.get_status(&id).await.unwrap().status == ConnectionStatus::Online
    })
    .await;

    // The system goes down: every listing answers 503 from its load balancer.
    let outage_at = Utc::now();
    fleet
        .sim
        .sim()
        .set_fault(PROFILE, FaultSpec::new(FaultKind::Outage));
    wait_until("offline", Duration::from_secs(5), || async {
        fleet.store.get_status(&id).await.unwrap().status == ConnectionStatus::Offline
    })
    .await;
    let failed_runs = || async {
        scheduled(fleet.runs(&id, Entity::WorkOrders).await)
            .into_iter()
            .filter(|run| run.queued_at > outage_at && run.status == RunStatus::Failed)
            .collect::<Vec<SyncRun>>()
    };
    // The sync that hit the outage, then five probes: 0.3, 0.6, 1.2, 2.4 (capped), 2.4 s apart.
    wait_until("five probes", Duration::from_secs(20), || async {
        failed_runs().await.len() >= 6
    })
    .await;
    let status = fleet.store.get_status(&id).await.unwrap();
    assert_eq!(status.status, ConnectionStatus::Offline);
    assert!(
        status.next_attempt_at.is_some(),
        "the next probe time is shown"
    );

    // The system is back; nobody does anything.
    fleet.sim.sim().clear_faults();
    let recovered_at = Utc::now();
    wait_until("online again", Duration::from_secs(10), || async {
        fleet.store.get_status(&id).await.unwrap().status == ConnectionStatus::Online
    })
    .await;
    let back_online = Utc::now();
    // The normal schedule resumes: syncs every second again.
    wait_until(
        "three syncs after the outage",
        Duration::from_secs(10),
        || async {
            scheduled(fleet.runs(&id, Entity::WorkOrders).await)
                .iter()
                .filter(|run| run.queued_at > recovered_at && run.status == RunStatus::Succeeded)
                .count()
                >= 4
        },
    )
    .await;
    for worker in &mut workers {
        stop_worker(worker);
    }

    let failed = failed_runs().await;
    // The first failed sync is the one that hit the outage; it turned the connection offline at
    // its first attempt (then the queue's quick retries ran out).
    let first = &failed[0];
    let offline_since = fleet
        .store
        .list_transitions(&id, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|transition| transition.to == ConnectionStatus::Offline)
        .expect("an offline transition")
        .at;
    assert!(
        first.started_at.unwrap() <= offline_since,
        "{first:?} vs {offline_since}"
    );
    // Every later failure is a probe: one attempt each, waiting the backoff after the previous
    // failure, doubling up to the cap and never beyond it.
    let probes: Vec<&SyncRun> = failed
        .iter()
        .skip(1)
        .filter(|run| run.queued_at < recovered_at)
        .collect();
    assert!(probes.len() >= 5, "{} probes", probes.len());
    let mut waits = Vec::new();
    for (index, probe) in probes.iter().enumerate() {
        assert_eq!(probe.attempts, 1, "a probe is a single attempt: {probe:?}");
        let previous = if index == 0 { first } else { probes[index - 1] };
        let wait = millis(previous.finished_at.unwrap(), probe.queued_at);
        let nominal = nominal_probe_delay_ms(index as u32 + 1);
        let shortest = nominal * 8 / 10 - 50;
        let longest = (nominal * 12 / 10).min(BACKOFF_CAP_MS) + TICK.as_millis() as i64 + 400;
        assert!(
            (shortest..=longest).contains(&wait),
            "probe {} waited {wait} ms; expected {shortest}..={longest}",
            index + 1
        );
        waits.push(wait);
    }
    assert!(
        waits[0] * 3 < waits[3],
        "the probes came ever further apart: {waits:?}"
    );
    eprintln!("waits between failed attempts and probes (ms): {waits:?}");

    // Exactly one transition each way (each emits one connection.status_changed in the same
    // atomic step), and the first success after the outage reset the backoff.
    assert_eq!(
        transitions(&fleet, &id).await,
        ["unknown→online", "online→offline", "offline→online"]
    );
    let status = fleet.store.get_status(&id).await.unwrap();
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.next_attempt_at, None);
    assert!(status.last_success_at.unwrap() >= recovered_at);
    assert!(
        millis(recovered_at, back_online) <= BACKOFF_CAP_MS + 1_500,
        "back online {} ms after the outage ended",
        millis(recovered_at, back_online)
    );
    let schedule = fleet.store.get_schedule(&id).await.unwrap();
    assert_eq!((schedule.probe_at, schedule.probes), (None, 0));
    // The sync that brought the connection back (a probe), then the normal grid: each sync one
    // interval after the one before, starting from the probe. (The probe restarts its entity's
    // grid, and the return to online makes the schedule due at once instead of at the next
    // probe time; before both, a sync could follow the probe a fraction of an interval later.)
    let runs = scheduled(fleet.runs(&id, Entity::WorkOrders).await);
    let recovering = runs
        .iter()
        .position(|run| {
            run.status == RunStatus::Succeeded && run.finished_at.unwrap() >= recovered_at
        })
        .expect("the sync that recovered");
    let after = &runs[recovering..];
    assert!(after.len() >= 4, "{after:#?}");
    for pair in after.windows(2) {
        let gap = millis(pair[0].queued_at, pair[1].queued_at);
        assert!(
            (850..=1_000 + TICK.as_millis() as i64 + 500).contains(&gap),
            "syncs {gap} ms apart after the outage; the interval is 1 s: {:#?}",
            after
                .iter()
                .map(|run| (run.queued_at, run.started_at, run.finished_at, run.attempts))
                .collect::<Vec<_>>()
        );
        assert_eq!(pair[1].status, RunStatus::Succeeded, "{:?}", pair[1]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_wait_for_new_ones() {
    let fleet = Fleet::start().await;
    let wrong = Credentials::Basic {
        username: "conveyor".into(),
        password: "expired-password".into(),
    };
    let connection = fleet.connect_with(&[(Entity::WorkOrders, 1)], &wrong).await;
    let id = connection.id;
    let env = fleet.worker_env(&[]);
    let mut workers: Vec<_> = (0..2).map(|_| start_worker(&env)).collect();

    wait_until("auth_required", Duration::from_secs(10), || async {
        fleet.store.get_status(&id).await.unwrap().status == ConnectionStatus::AuthRequired
    })
    .await;
    // Three intervals pass without a single further attempt.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = scheduled(fleet.runs(&id, Entity::WorkOrders).await);
    assert_eq!(runs.len(), 1, "one attempt, then none: {runs:?}");
    assert_eq!(runs[0].status, RunStatus::Failed);
    let status = fleet.store.get_status(&id).await.unwrap();
    assert_eq!(status.consecutive_failures, 1);
    assert_eq!(status.next_attempt_at, None, "no attempt is planned");

    // New credentials, as the API's PATCH stores them: syncs resume by themselves.
    let updated_at = Utc::now();
    fleet
        .store
        .set_credentials(&id, &fleet.credentials())
        .await
        .unwrap();
    wait_until("online", Duration::from_secs(10), || async {
        fleet.store.get_status(&id).await.unwrap().status == ConnectionStatus::Online
    })
    .await;
    wait_until(
        "syncs on schedule again",
        Duration::from_secs(10),
        || async {
            scheduled(fleet.runs(&id, Entity::WorkOrders).await)
                .iter()
                .filter(|run| run.queued_at > updated_at && run.status == RunStatus::Succeeded)
                .count()
                >= 3
        },
    )
    .await;
    for worker in &mut workers {
        stop_worker(worker);
    }
    assert_eq!(
        transitions(&fleet, &id).await,
        ["unknown→auth_required", "auth_required→online"],
        "one connection.auth_required for the one transition"
    );
}
