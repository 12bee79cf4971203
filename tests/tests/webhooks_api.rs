//! The webhook API end to end: the real API router served on a loopback port (reqwest as the
//! client), the worker's webhook code in-process, real receivers and a real redis-server.
//!
//! - endpoints: the secret is shown once, never again; a rotation signs with both secrets;
//! - the delivery log per connection, endpoint and event, with filters and pages, and one
//!   delivery with every attempt;
//! - redelivery of one delivery, of one event, and of every failed delivery since a time;
//! - test deliveries wait for the attempt and return its outcome (delivered, failed, timed out);
//! - endpoints can be disabled, re-subscribed and deleted, and private URLs are refused unless
//!   the operator allows them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

#[path = "webhooks_support.rs"]
mod support;

#[path = "api_support.rs"]
mod api;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use conveyor_core::{ConnectionId, EventType};
use conveyor_store::Store;
use conveyor_webhooks::{SigningSecret, Verifier};
use reqwest::Method;
use serde_json::{Value, json};
use support::{Answer, Fixture, Receiver, test_settings, wait_until};

/// The API router in-process over the fixture's Redis, with an admin key of its own tenant.
struct Api(api::Api);

impl Api {
    async fn start(redis_url: &str, store: &Store) -> Api {
        Api::start_with(redis_url, store, true).await
    }

    async fn start_with(redis_url: &str, store: &Store, allow_private: bool) -> Api {
        let allow_private = allow_private.to_string();
        let extra = [("CONVEYOR_WEBHOOKS_ALLOW_PRIVATE", allow_private.as_str())];
        Api(api::Api::start(redis_url, store, "webhook tests", &extra).await)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.0.call(method, path, body).await
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// A connection owned by this API key's tenant (its system is never called here).
    async fn connection(&self) -> ConnectionId {
        let (status, body) = self
            .post(
                "/v1/connections",
                json!({
                    "name": "plant 3",
                    "profile": "odata_v4",
                    "base_url": "http://127.0.0.1:9/odata",
                    "credentials": {"type": "basic", "username": "svc", "password": "pw"},
                    "entities": [{"entity": "work_orders"}]
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// Adds an endpoint through the API: (its id, the secret shown once).
    async fn endpoint(
        &self,
        connection_id: &ConnectionId,
        url: &str,
        types: &[&str],
    ) -> (String, SigningSecret) {
        let (status, body) = self
            .post(
                &format!("/v1/connections/{connection_id}/webhooks"),
                json!({"url": url, "event_types": types}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let secret = body["secret"].as_str().unwrap();
        assert!(secret.starts_with("whsec_"), "{secret}");
        (
            body["id"].as_str().unwrap().to_owned(),
            secret.parse().unwrap(),
        )
    }

    /// Every delivery the log lists for `query`, following the pages (`limit` per page).
    async fn deliveries(&self, connection_id: &ConnectionId, query: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/connections/{connection_id}/webhook-deliveries?{query}");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page = self.get(&path).await;
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
    }
}

fn ids_of(items: &[Value], field: &str) -> BTreeSet<String> {
    items
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_log_and_redelivery_work_through_the_api() {
    let fixture = Fixture::start().await;
    let api = Api::start(&fixture.redis.url(), &fixture.store).await;
    let connection_id = api.connection().await;
    // `steady` answers 200; `flaky` fails every attempt of the first round (10 attempts per
    // delivery, three deliveries), then answers 200.
    let steady = Receiver::always_ok().await;
    let flaky = Receiver::start(|n| {
        if n < 30 {
            Answer::status(503)
        } else {
            Answer::ok()
        }
    })
    .await;
    let (steady_id, steady_secret) = api
        .endpoint(
            &connection_id,
            &steady.url,
            &["sync.completed", "sync.failed"],
        )
        .await;
    let (flaky_id, _) = api
        .endpoint(
            &connection_id,
            &flaky.url,
            &["sync.completed", "sync.failed"],
        )
        .await;
    // The secret was shown once: reads never carry it.
    let listed = api
        .get(&format!("/v1/connections/{connection_id}/webhooks"))
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains("whsec_"), "{listed}");
    let one = api
        .get(&format!(
            "/v1/connections/{connection_id}/webhooks/{steady_id}"
        ))
        .await;
    assert!(one.get("secret").is_none(), "{one}");

    let mut settings = test_settings();
    // The whole retry table (about three days) in about 3 seconds.
    settings.retry_scale = 0.00001;
    let webhooks = fixture.serve(settings);
    let started = Utc::now();
    let append = |event_type: EventType, n: u64| {
        let store = fixture.store.clone();
        async move {
            store
                .append_event(&connection_id, event_type, json!({"n": n}))
                .await
                .unwrap()
        }
    };
    let events = [
        append(EventType::SyncCompleted, 1).await,
        append(EventType::SyncFailed, 2).await,
        append(EventType::SyncCompleted, 3).await,
    ];
    // Every flaky delivery runs out of attempts; every steady one is delivered at once.
    wait_until(Duration::from_secs(20), || async {
        api.deliveries(&connection_id, "state=failed").await.len() == 3
    })
    .await;
    assert_eq!(flaky.received().len(), 30);
    let received = steady.wait_for(3, Duration::from_secs(5)).await;
    let verifier = Verifier::new([steady_secret.clone()]);
    for request in &received {
        verifier.verify(&request.headers, &request.body).unwrap();
    }

    // The log: per connection, paged two at a time; per endpoint; per event; per type.
    let all = api.deliveries(&connection_id, "limit=2").await;
    assert_eq!(all.len(), 6, "{all:#?}");
    assert_eq!(
        ids_of(&all, "id").len(),
        6,
        "no delivery twice across pages"
    );
    let steady_log = api
        .deliveries(&connection_id, &format!("endpoint_id={steady_id}"))
        .await;
    assert_eq!(steady_log.len(), 3);
    assert!(steady_log.iter().all(|d| d["state"] == "delivered"));
    let one_event = api
        .deliveries(&connection_id, &format!("event_id={}", events[1].id))
        .await;
    assert_eq!(
        ids_of(&one_event, "endpoint_id"),
        BTreeSet::from([steady_id.clone(), flaky_id.clone()])
    );
    let failed_type = api
        .deliveries(&connection_id, "event_type=sync.failed&state=failed")
        .await;
    assert_eq!(failed_type.len(), 1);
    assert_eq!(failed_type[0]["endpoint_id"], flaky_id.as_str());
    let (status, _) = api
        .call(
            Method::GET,
            &format!("/v1/connections/{connection_id}/webhook-deliveries?state=lost"),
            None,
        )
        .await;
    assert_eq!(status, 400);

    // One delivery shows every attempt: time, URL, status, duration, error, body excerpt.
    let failed_id = failed_type[0]["id"].as_str().unwrap().to_owned();
    let shown = api
        .get(&format!(
            "/v1/connections/{connection_id}/webhook-deliveries/{failed_id}"
        ))
        .await;
    let log = shown["attempts_log"].as_array().unwrap();
    assert_eq!(log.len(), 10);
    assert_eq!(shown["attempts"], 10);
    for (index, attempt) in log.iter().enumerate() {
        assert_eq!(attempt["attempt"], index + 1);
        assert_eq!(attempt["status"], 503);
        assert_eq!(attempt["url"], flaky.url.as_str());
        assert_eq!(attempt["response_body"], "receiver says hi");
        assert!(attempt["attempted_at"].is_string() && attempt["duration_ms"].is_u64());
        assert!(attempt["error"].as_str().unwrap().contains("503"));
    }
    assert_eq!(shown["event"]["id"], events[1].id.to_string());

    // Redeliver that one delivery: a fresh round, the same webhook-id.
    let path = format!("/v1/connections/{connection_id}/webhook-deliveries/{failed_id}/redeliver");
    let (status, body) = api.post(&path, json!({})).await;
    assert_eq!(status, 202, "{body}");
    wait_until(Duration::from_secs(5), || async {
        api.deliveries(&connection_id, "state=delivered")
            .await
            .len()
            == 4
    })
    .await;
    assert_eq!(
        flaky.received()[30].webhook_id(),
        events[1].id.to_string(),
        "the redelivery carries the event's id"
    );

    // Every failed delivery since the start: the other two.
    let redeliver = format!("/v1/connections/{connection_id}/webhook-deliveries/redeliver");
    let (status, body) = api
        .post(&redeliver, json!({"since": started.to_rfc3339()}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["requeued"], 2, "{body}");
    wait_until(Duration::from_secs(5), || async {
        api.deliveries(&connection_id, "state=delivered")
            .await
            .len()
            == 6
    })
    .await;
    let flaky_ids: BTreeSet<String> = flaky.received()[30..]
        .iter()
        .map(|request| request.webhook_id())
        .collect();
    assert_eq!(
        flaky_ids,
        events.iter().map(|event| event.id.to_string()).collect()
    );
    // Nothing failed is left: asking again requeues nothing.
    let (_, body) = api
        .post(&redeliver, json!({"since": started.to_rfc3339()}))
        .await;
    assert_eq!(body["requeued"], 0, "{body}");

    // One event to every endpoint again, delivered or not.
    let (status, body) = api
        .post(&redeliver, json!({"event_id": events[2].id.to_string()}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["requeued"], 2, "{body}");
    steady.wait_for(4, Duration::from_secs(5)).await;
    assert_eq!(steady.received()[3].webhook_id(), events[2].id.to_string());
    let (status, body) = api.post(&redeliver, json!({})).await;
    assert_eq!(status, 400, "{body}");

    // A rotation through the API: the new secret is shown once and both sign for a while.
    let (status, rotated) = api
        .post(
            &format!("/v1/connections/{connection_id}/webhooks/{steady_id}/rotate-secret"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret: SigningSecret = rotated["secret"].as_str().unwrap().parse().unwrap();
    let event = append(EventType::SyncCompleted, 4).await;
    let latest = steady.wait_for(5, Duration::from_secs(5)).await;
    let request = latest
        .iter()
        .find(|request| request.webhook_id() == event.id.to_string())
        .expect("the event after the rotation");
    for secret in [steady_secret, new_secret] {
        Verifier::new([secret])
            .verify(&request.headers, &request.body)
            .unwrap();
    }
    webhooks.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_deliveries_return_the_attempts_outcome() {
    let fixture = Fixture::start().await;
    let api = Api::start(&fixture.redis.url(), &fixture.store).await;
    let connection_id = api.connection().await;
    // 200, then 500, then a hang past the worker's 500 ms timeout.
    let receiver = Receiver::start(|n| match n {
        0 => Answer::ok(),
        1 => Answer::status(500),
        _ => Answer {
            delay: Duration::from_secs(3),
            ..Answer::ok()
        },
    })
    .await;
    let (endpoint_id, secret) = api
        .endpoint(&connection_id, &receiver.url, &["sync.completed"])
        .await;
    let webhooks = fixture.serve(test_settings());
    let path = format!("/v1/connections/{connection_id}/webhooks/{endpoint_id}/test");

    let asked = std::time::Instant::now();
    let (status, body) = api.post(&path, json!({})).await;
    let waited = asked.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["completed"], true, "{body}");
    let delivery = &body["delivery"];
    assert_eq!(delivery["state"], "delivered", "{body}");
    assert_eq!(delivery["test"], true);
    assert_eq!(delivery["attempts_log"][0]["status"], 200);
    let request = &receiver.received()[0];
    assert_eq!(request.json()["type"], "webhook.test");
    assert_eq!(request.webhook_id(), delivery["event_id"].as_str().unwrap());
    Verifier::new([secret])
        .verify(&request.headers, &request.body)
        .unwrap();
    eprintln!("a test delivery answered in {waited:?}");

    // A sample of a chosen type, refused by the receiver: the answer says so, at once.
    let (status, body) = api.post(&path, json!({"event_type": "sync.failed"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["completed"], true, "{body}");
    let attempt = &body["delivery"]["attempts_log"][0];
    assert_eq!(attempt["status"], 500, "{body}");
    assert_eq!(attempt["outcome"], "failed", "{body}");
    let sample = receiver.received()[1].json();
    assert_eq!(sample["type"], "sync.failed");
    for field in ["sync_id", "entity", "mode"] {
        assert!(sample["data"][field].is_string(), "{field} in {sample}");
    }

    // A receiver that hangs: the attempt times out and the answer carries the error.
    let (status, body) = api.post(&path, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let attempt = &body["delivery"]["attempts_log"][0];
    assert!(attempt.get("status").is_none(), "{body}");
    assert!(
        attempt["error"].as_str().unwrap().contains("time"),
        "{body}"
    );

    // Test deliveries are one-offs: never retried, never part of a bulk redelivery.
    let failed = api
        .deliveries(&connection_id, "state=failed")
        .await
        .into_iter()
        .filter(|delivery| delivery["test"] == true)
        .count();
    assert_eq!(failed, 2);
    let (_, body) = api
        .post(
            &format!("/v1/connections/{connection_id}/webhook-deliveries/redeliver"),
            json!({"since": (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339()}),
        )
        .await;
    assert_eq!(body["requeued"], 0, "{body}");
    assert_eq!(receiver.received().len(), 3);
    webhooks.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_disabled_resubscribed_deleted_and_private_urls_refused() {
    let fixture = Fixture::start().await;
    let api = Api::start(&fixture.redis.url(), &fixture.store).await;
    let connection_id = api.connection().await;
    let first = Receiver::always_ok().await;
    let second = Receiver::always_ok().await;
    let (first_id, _) = api
        .endpoint(&connection_id, &first.url, &["sync.completed"])
        .await;
    api.endpoint(&connection_id, &second.url, &["sync.completed"])
        .await;
    let webhooks = fixture.serve(test_settings());
    let append = |event_type: EventType, n: u64| {
        let store = fixture.store.clone();
        async move {
            store
                .append_event(&connection_id, event_type, json!({"n": n}))
                .await
                .unwrap()
        }
    };
    let endpoint_path = format!("/v1/connections/{connection_id}/webhooks/{first_id}");
    let deliveries_of = |event: &conveyor_core::Event| {
        let query = format!("event_id={}", event.id);
        let api = &api;
        async move { api.deliveries(&connection_id, &query).await.len() }
    };

    // Disabled: the event goes to the other endpoint only.
    let (status, body) = api
        .call(
            Method::PATCH,
            &endpoint_path,
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!((status, &body["enabled"]), (200, &json!(false)), "{body}");
    let event = append(EventType::SyncCompleted, 1).await;
    second.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(deliveries_of(&event).await, 1);
    assert!(first.received().is_empty());

    // Enabled again for another type only.
    let (status, body) = api
        .call(
            Method::PATCH,
            &endpoint_path,
            Some(json!({"enabled": true, "event_types": ["system.error"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let error = append(EventType::SystemError, 2).await;
    let completed = append(EventType::SyncCompleted, 3).await;
    let received = first.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received[0].webhook_id(), error.id.to_string());
    second.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(
        deliveries_of(&completed).await,
        1,
        "only the second endpoint"
    );

    // Deleted: gone from the API, and later events are not delivered to it.
    let (status, _) = api.call(Method::DELETE, &endpoint_path, None).await;
    assert_eq!(status, 204);
    let (status, _) = api.call(Method::GET, &endpoint_path, None).await;
    assert_eq!(status, 404);
    let error = append(EventType::SystemError, 4).await;
    append(EventType::SyncCompleted, 5).await;
    // The dispatcher takes a connection's events in order: once the later one reached the
    // second endpoint, the earlier one was dispatched (to nobody).
    second.wait_for(3, Duration::from_secs(5)).await;
    assert_eq!(deliveries_of(&error).await, 0);
    assert_eq!(first.received().len(), 1);
    webhooks.stop().await;

    // Without the operator's permission, private and loopback URLs are refused with the
    // standard error; a public name is accepted (checked again after DNS at delivery time).
    let strict = Api::start_with(&fixture.redis.url(), &fixture.store, false).await;
    let strict_connection = strict.connection().await;
    let path = format!("/v1/connections/{strict_connection}/webhooks");
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest",
        "ftp://hooks.example.com/",
    ] {
        let (status, body) = strict
            .post(&path, json!({"url": url, "event_types": ["sync.failed"]}))
            .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_REQUEST", "{url}: {body}");
    }
    let (status, body) = strict
        .post(
            &path,
            json!({"url": "https://hooks.example.com/conveyor", "event_types": ["sync.failed"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}
