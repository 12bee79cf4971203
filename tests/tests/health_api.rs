//! Connection health as an integrator sees it through the API, with a real `conveyor-worker`
//! process, the simulator's faults, a real redis-server and a webhook receiver:
//!
//! - a manual sync on an offline connection is an immediate probe: it runs at once, not at the
//!   next backoff step, and when it succeeds the connection is online, the backoff is reset and
//!   the normal schedule applies again;
//! - rejected credentials: nothing is retried by the schedule; a manual sync runs when asked; a
//!   PATCH with new credentials resumes syncs; `connection.auth_required` is sent once for the
//!   transition, however many attempts fail;
//! - the status shows status, since, consecutive failures, last error, next attempt, last
//!   success, and per entity `data_as_of` and lag against its schedule.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

#[path = "schedule_support.rs"]
mod support;

#[path = "webhooks_support.rs"]
mod hooks;

#[path = "api_support.rs"]
mod api;

use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor_core::{ConnectionId, ConnectionStatus, Entity, SyncTrigger};
use conveyor_sim::{FaultKind, FaultSpec, SimConfig};
use conveyor_store::RunStatus;
use hooks::Receiver;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Fleet, PROFILE, start_worker, stop_worker, wait_until};

/// The API router in-process over the fleet's Redis, with an admin key of its own tenant.
struct Api(api::Api);

impl Api {
    async fn start(fleet: &Fleet) -> Api {
        let redis_url = fleet.redis.url();
        // The tests poll the status every 20 ms: no rate limit in the way.
        let extra = [
            ("CONVEYOR_WEBHOOKS_ALLOW_PRIVATE", "true"),
            ("CONVEYOR_API_RATE_LIMIT", "1000000"),
            ("CONVEYOR_API_RATE_BURST", "100000"),
        ];
        Api(api::Api::start(&redis_url, &fleet.store, "health tests", &extra).await)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.0.ok(method, path, body).await
    }

    /// A connection to the simulator with work orders every 15 minutes: in these tests nothing
    /// is due by the schedule, so every sync is a manual one or a probe.
    async fn connection(&self, fleet: &Fleet, password: &str) -> ConnectionId {
        let body = json!({
            "name": "plant 7",
            "profile": "offset_hasmore",
            "base_url": fleet.sim.base_url(),
            "credentials": credentials(password),
            "settings": {"page_size": 10, "request_timeout_secs": 5},
            "entities": [{"entity": "work_orders", "interval_secs": 900}]
        });
        let created = self.call(Method::POST, "/v1/connections", Some(body)).await;
        created["id"].as_str().unwrap().parse().unwrap()
    }

    /// A webhook endpoint for every event type of the connection.
    async fn subscribe(&self, connection_id: &ConnectionId, url: &str) {
        self.call(
            Method::POST,
            &format!("/v1/connections/{connection_id}/webhooks"),
            Some(json!({
                "url": url,
                "event_types": [
                    "sync.completed",
                    "sync.failed",
                    "connection.status_changed",
                    "connection.auth_required",
                    "system.error"
                ]
            })),
        )
        .await;
    }

    /// Asks for a manual sync of work orders; returns its sync id.
    async fn sync(&self, connection_id: &ConnectionId) -> String {
        let accepted = self
            .call(
                Method::POST,
                &format!("/v1/connections/{connection_id}/syncs"),
                Some(json!({"entities": ["work_orders"]})),
            )
            .await;
        accepted["syncs"][0]["sync_id"].as_str().unwrap().to_owned()
    }

    async fn status(&self, connection_id: &ConnectionId) -> Value {
        self.call(
            Method::GET,
            &format!("/v1/connections/{connection_id}/status"),
            None,
        )
        .await
    }
}

fn credentials(password: &str) -> Value {
    json!({"type": "basic", "username": SimConfig::default().credentials.username, "password": password})
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a time, not {value}"))
        .parse()
        .unwrap()
}

/// Every distinct event a receiver got, in sequence order, after checking the envelope:
/// exactly `id`, `type`, `timestamp`, `connection_id`, `sequence`, `data`, and the sequence
/// numbers of the connection without gaps (the receiver subscribed to every type).
fn events(receiver: &Receiver, connection_id: &ConnectionId) -> Vec<Value> {
    let mut events: Vec<Value> = receiver
        .received()
        .iter()
        .map(|request| request.json())
        .collect();
    events.sort_by_key(|event| event["sequence"].as_u64());
    events.dedup_by_key(|event| event["id"].clone());
    for (index, event) in events.iter().enumerate() {
        let mut keys: Vec<&str> = event
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "connection_id",
                "data",
                "id",
                "sequence",
                "timestamp",
                "type"
            ],
            "{event}"
        );
        assert!(event["id"].as_str().unwrap().starts_with("evt_"), "{event}");
        assert_eq!(event["connection_id"], connection_id.to_string());
        assert_eq!(event["sequence"], index as u64 + 1, "{events:#?}");
        time(&event["timestamp"]);
    }
    events
}

/// The connection events a receiver got, as `type from→to`.
fn connection_events(receiver: &Receiver) -> Vec<String> {
    let mut events: Vec<(u64, String)> = receiver
        .received()
        .iter()
        .filter(|request| {
            request.json()["type"]
                .as_str()
                .is_some_and(|event_type| event_type.starts_with("connection."))
        })
        .map(|request| {
            let body = request.json();
            (
                body["sequence"].as_u64().unwrap(),
                format!(
                    "{} {}→{}",
                    body["type"].as_str().unwrap(),
                    body["data"]["from"].as_str().unwrap(),
                    body["data"]["to"].as_str().unwrap()
                ),
            )
        })
        .collect();
    events.sort();
    events.dedup();
    events.into_iter().map(|(_, event)| event).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_sync_on_an_offline_connection_is_an_immediate_probe() {
    let fleet = Fleet::start().await;
    let api = Api::start(&fleet).await;
    let receiver = Receiver::always_ok().await;
    let password = SimConfig::default().credentials.password;
    let id = api.connection(&fleet, password.as_str()).await;
    api.subscribe(&id, &receiver.url).await;
    // Probes back off from 30 minutes: none comes by itself while this test runs.
    let env = fleet.worker_env(&[
        ("CONVEYOR_OFFLINE_BACKOFF_BASE", "30m"),
        ("CONVEYOR_OFFLINE_BACKOFF_CAP", "1h"),
        ("CONVEYOR_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("CONVEYOR_WEBHOOK_POLL_INTERVAL", "50ms"),
    ]);
    let mut worker = start_worker(&env);

    api.sync(&id).await;
    wait_until("online", Duration::from_secs(10), || async {
        api.status(&id).await["status"] == "online"
    })
    .await;
    let status = api.status(&id).await;
    assert!(status["last_success_at"].is_string(), "{status}");
    assert!(status["data_as_of"]["work_orders"].is_string(), "{status}");
    assert_eq!(
        status["lag_secs"]["work_orders"], 0,
        "just synced: on schedule"
    );

    // The system goes down under a manual sync: offline, and the first probe is one backoff
    // step (30 min ± 20 %) after the failure, not at the next 15-minute slot.
    fleet
        .sim
        .sim()
        .set_fault(PROFILE, FaultSpec::new(FaultKind::Outage));
    let failing = api.sync(&id).await;
    // Until the queue's quick retries of that sync run out, another request would return it
    // (one sync per connection and entity); wait for it to fail for good.
    wait_until("the sync failed", Duration::from_secs(10), || async {
        fleet
            .runs(&id, Entity::WorkOrders)
            .await
            .iter()
            .any(|run| run.id.to_string() == failing && run.status == RunStatus::Failed)
    })
    .await;
    wait_until(
        "offline with a probe planned",
        Duration::from_secs(10),
        || async {
            let status = api.status(&id).await;
            status["status"] == "offline" && status["next_attempt_at"].is_string()
        },
    )
    .await;
    let status = api.status(&id).await;
    let failed_at = time(&status["last_error"]["at"]);
    let next_attempt = time(&status["next_attempt_at"]);
    let wait = (next_attempt - failed_at).num_seconds();
    assert!((24 * 60..=36 * 60).contains(&wait), "{wait} s: {status}");
    assert!(status["consecutive_failures"].as_u64().unwrap() >= 1);
    assert!(status["last_error"]["code"].is_string(), "{status}");
    assert!(time(&status["since"]) <= failed_at, "{status}");

    // The system is back; a manual sync runs now, not in 30 minutes, and resets everything.
    fleet.sim.sim().clear_faults();
    let asked = Utc::now();
    let sync_id = api.sync(&id).await;
    wait_until("online again", Duration::from_secs(10), || async {
        api.status(&id).await["status"] == "online"
    })
    .await;
    let run = fleet
        .runs(&id, Entity::WorkOrders)
        .await
        .into_iter()
        .find(|run| run.id.to_string() == sync_id)
        .unwrap();
    assert_ne!(sync_id, failing, "a new sync, not the failed one");
    assert_eq!(run.trigger, SyncTrigger::Manual);
    assert_eq!(run.status, RunStatus::Succeeded);
    let started_after = (run.started_at.unwrap() - asked).num_milliseconds();
    assert!(
        started_after < 2_000,
        "started {started_after} ms after asked"
    );
    let status = api.status(&id).await;
    assert_eq!(status["consecutive_failures"], 0, "{status}");
    assert!(status["next_attempt_at"].is_null(), "{status}");
    // The scheduler resets the probes at its next look and returns to the 15-minute grid.
    wait_until("backoff reset", Duration::from_secs(5), || async {
        let schedule = fleet.store.get_schedule(&id).await.unwrap();
        let looked = fleet
            .store
            .list_schedule_index()
            .await
            .unwrap()
            .into_iter()
            .any(|(entry, at)| entry == id && at > Utc::now() + chrono::Duration::minutes(5));
        schedule.probe_at.is_none() && schedule.probes == 0 && looked
    })
    .await;

    // One connection.status_changed each way; the first success of a new connection is none.
    wait_until("five events", Duration::from_secs(5), || async {
        events(&receiver, &id).len() >= 5
    })
    .await;
    assert_eq!(
        connection_events(&receiver),
        [
            "connection.status_changed online→offline",
            "connection.status_changed offline→online"
        ]
    );
    // The sync events carry the sync's id, entity, mode and counts, and a failure its error.
    let all = events(&receiver, &id);
    let types: Vec<&str> = all
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "sync.completed",
            "connection.status_changed",
            "sync.failed",
            "connection.status_changed",
            "sync.completed"
        ]
    );
    let last = &all[4]["data"];
    assert_eq!(last["sync_id"], sync_id.as_str(), "{last}");
    assert_eq!(
        (&last["entity"], &last["mode"]),
        (&json!("work_orders"), &json!("incremental"))
    );
    assert!(last["counts"]["records_fetched"].is_u64(), "{last}");
    let failed = &all[2]["data"];
    assert!(failed["error"]["code"].is_string(), "{failed}");
    assert!(failed["error"]["message"].is_string(), "{failed}");
    assert_eq!(all[1]["data"]["from"], "online");
    assert_eq!(all[1]["data"]["to"], "offline");
    stop_worker(&mut worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_wait_for_a_manual_sync_or_new_credentials() {
    let fleet = Fleet::start().await;
    let api = Api::start(&fleet).await;
    let receiver = Receiver::always_ok().await;
    let id = api.connection(&fleet, "expired-password").await;
    api.subscribe(&id, &receiver.url).await;
    let env = fleet.worker_env(&[
        ("CONVEYOR_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("CONVEYOR_WEBHOOK_POLL_INTERVAL", "50ms"),
    ]);
    let mut worker = start_worker(&env);
    let runs = || async { fleet.runs(&id, Entity::WorkOrders).await };

    api.sync(&id).await;
    wait_until("auth_required", Duration::from_secs(10), || async {
        api.status(&id).await["status"] == "auth_required"
    })
    .await;
    let status = api.status(&id).await;
    assert_eq!(status["consecutive_failures"], 1, "{status}");
    assert!(
        status["next_attempt_at"].is_null(),
        "nothing planned: {status}"
    );
    assert!(status["last_error"]["code"].is_string(), "{status}");
    assert!(status["last_success_at"].is_null(), "{status}");

    // Nothing retries by itself: the scheduler looks every 200 ms and finds the same
    // credentials. (There is no event to wait for; an absence needs a span of time.)
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(runs().await.len(), 1, "{:#?}", runs().await);

    // A manual sync runs when asked, and fails again: still one transition, one event.
    api.sync(&id).await;
    wait_until(
        "the manual sync failed",
        Duration::from_secs(10),
        || async {
            let runs = runs().await;
            runs.len() == 2 && runs[1].status == RunStatus::Failed
        },
    )
    .await;
    let status = api.status(&id).await;
    assert_eq!(status["status"], "auth_required");
    assert_eq!(status["consecutive_failures"], 2, "{status}");

    // New credentials through the API: syncs resume by themselves.
    let password = SimConfig::default().credentials.password;
    api.call(
        Method::PATCH,
        &format!("/v1/connections/{id}"),
        Some(json!({"credentials": credentials(password.as_str())})),
    )
    .await;
    wait_until("online", Duration::from_secs(10), || async {
        api.status(&id).await["status"] == "online"
    })
    .await;
    let runs = runs().await;
    assert_eq!(runs.len(), 3, "{runs:#?}");
    assert_eq!(
        runs[2].trigger,
        SyncTrigger::Scheduled,
        "the probe the PATCH allowed"
    );
    assert_eq!(runs[2].status, RunStatus::Succeeded);
    let status = api.status(&id).await;
    assert_eq!(status["consecutive_failures"], 0, "{status}");
    assert_eq!(status["lag_secs"]["work_orders"], 0, "{status}");

    // Two sync.failed, one connection.auth_required, one connection.status_changed, one
    // sync.completed, numbered without gaps.
    wait_until("five events", Duration::from_secs(5), || async {
        events(&receiver, &id).len() >= 5
    })
    .await;
    assert_eq!(
        connection_events(&receiver),
        [
            "connection.auth_required unknown→auth_required",
            "connection.status_changed auth_required→online"
        ],
        "connection.auth_required once for the transition, not once per failed attempt"
    );
    stop_worker(&mut worker);
    assert_eq!(
        fleet.store.get_status(&id).await.unwrap().status,
        ConnectionStatus::Online
    );
}
