//! Role limits on every documented operation, and the paging and selection paths the main API
//! test leaves out: sync history pages, records changed since a time, retrying every dead job.
//!
//! The role table is checked against the OpenAPI document, so a new route fails here until its
//! roles are written down.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::{TimeZone, Utc};
use conveyor_core::{Asset, Entity, RecordData, UnifiedRecord};
use conveyor_store::ApiRole;
use serde_json::{Value, json};

mod support;

use support::{Harness, connection_body};

/// Who may call an operation: (admin, developer, operator).
type Roles = (bool, bool, bool);
const CONNECTIONS: Roles = (true, true, false);
const STATUS: Roles = (true, true, true);
const OPERATIONS: Roles = (true, false, true);
const ADMIN: Roles = (true, false, false);

/// Every protected operation: method, path template, a body that parses, and who may call it.
fn operations() -> Vec<(Method, &'static str, Option<Value>, Roles)> {
    let endpoint = json!({"url": "https://example.com/hook", "event_types": ["sync.completed"]});
    vec![
        (Method::GET, "/v1/connections", None, CONNECTIONS),
        (
            Method::POST,
            "/v1/connections",
            Some(connection_body("pw-role-test")),
            CONNECTIONS,
        ),
        (
            Method::GET,
            "/v1/connections/{connection_id}",
            None,
            CONNECTIONS,
        ),
        (
            Method::PATCH,
            "/v1/connections/{connection_id}",
            Some(json!({"name": "renamed"})),
            CONNECTIONS,
        ),
        (
            Method::DELETE,
            "/v1/connections/{connection_id}",
            None,
            CONNECTIONS,
        ),
        (
            Method::GET,
            "/v1/connections/{connection_id}/status",
            None,
            STATUS,
        ),
        (
            Method::POST,
            "/v1/connections/{connection_id}/syncs",
            Some(json!({"entities": ["assets"]})),
            CONNECTIONS,
        ),
        (
            Method::GET,
            "/v1/connections/{connection_id}/syncs",
            None,
            STATUS,
        ),
        (Method::GET, "/v1/syncs/{sync_id}", None, STATUS),
        (
            Method::GET,
            "/v1/connections/{connection_id}/records/{entity}",
            None,
            CONNECTIONS,
        ),
        (
            Method::GET,
            "/v1/connections/{connection_id}/records/{entity}/{key}",
            None,
            CONNECTIONS,
        ),
        (Method::GET, "/v1/queues", None, OPERATIONS),
        (Method::GET, "/v1/queues/{queue}/dead", None, OPERATIONS),
        (
            Method::GET,
            "/v1/queues/{queue}/dead/{job_id}",
            None,
            OPERATIONS,
        ),
        (
            Method::POST,
            "/v1/queues/{queue}/dead/retry",
            Some(json!({"select": "all"})),
            OPERATIONS,
        ),
        (
            Method::POST,
            "/v1/queues/{queue}/dead/purge",
            Some(json!({"select": "all"})),
            OPERATIONS,
        ),
        (Method::GET, "/v1/api_keys", None, ADMIN),
        (
            Method::POST,
            "/v1/api_keys",
            Some(json!({"name": "k", "role": "operator"})),
            ADMIN,
        ),
        (Method::DELETE, "/v1/api_keys/{api_key_id}", None, ADMIN),
        (
            Method::GET,
            "/v1/connections/{connection_id}/webhooks",
            None,
            CONNECTIONS,
        ),
        (
            Method::POST,
            "/v1/connections/{connection_id}/webhooks",
            Some(endpoint),
            CONNECTIONS,
        ),
        (
            Method::GET,
            "/v1/connections/{connection_id}/webhooks/{endpoint_id}",
            None,
            CONNECTIONS,
        ),
        (
            Method::PATCH,
            "/v1/connections/{connection_id}/webhooks/{endpoint_id}",
            Some(json!({})),
            CONNECTIONS,
        ),
        (
            Method::DELETE,
            "/v1/connections/{connection_id}/webhooks/{endpoint_id}",
            None,
            CONNECTIONS,
        ),
        (
            Method::POST,
            "/v1/connections/{connection_id}/webhooks/{endpoint_id}/rotate-secret",
            None,
            CONNECTIONS,
        ),
        (
            Method::POST,
            "/v1/connections/{connection_id}/webhooks/{endpoint_id}/test",
            Some(json!({})),
            CONNECTIONS,
        ),
        (
            Method::GET,
            "/v1/connections/{connection_id}/webhook-deliveries",
            None,
            STATUS,
        ),
        (
            Method::GET,
            "/v1/connections/{connection_id}/webhook-deliveries/{delivery_id}",
            None,
            STATUS,
        ),
        // Redelivery is for developers (their endpoints) and operators (recovering failures).
        (
            Method::POST,
            "/v1/connections/{connection_id}/webhook-deliveries/{delivery_id}/redeliver",
            None,
            STATUS,
        ),
        (
            Method::POST,
            "/v1/connections/{connection_id}/webhook-deliveries/redeliver",
            Some(json!({"since": "2026-01-01T00:00:00Z"})),
            STATUS,
        ),
    ]
}

#[tokio::test]
async fn every_operation_refuses_exactly_the_roles_outside_its_area() {
    let h = Harness::start().await;
    let (tenant, admin) = h.tenant(ApiRole::Admin).await;
    let developer = h.key(tenant, ApiRole::Developer).await;
    let operator = h.key(tenant, ApiRole::Operator).await;
    let created = h
        .call(
            Method::POST,
            "/v1/connections",
            &admin,
            Some(connection_body("pw-role-test")),
        )
        .await;
    let connection_id = created.body["id"].as_str().unwrap().to_owned();

    // The table covers the document exactly: a new route needs its roles written down here.
    let document = support::call(&h.app, Method::GET, "/v1/openapi.json", None, None).await;
    let mut documented = BTreeSet::new();
    for (path, item) in document.body["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if operation.get("security").is_some() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let table: BTreeSet<_> = operations()
        .iter()
        .map(|(method, path, _, _)| (method.to_string(), (*path).to_owned()))
        .collect();
    assert_eq!(table, documented);

    for (method, template, body, (a, d, o)) in operations() {
        let path = template
            .replace("{connection_id}", &connection_id)
            .replace("{sync_id}", "sync_01JD0000000000000000000000")
            .replace("{entity}", "assets")
            .replace("{key}", "A-1")
            .replace("{queue}", "syncs")
            .replace("{job_id}", "job_01JD0000000000000000000000")
            .replace("{api_key_id}", "key_01JD0000000000000000000000")
            .replace("{endpoint_id}", "whe_01JD0000000000000000000000")
            .replace("{delivery_id}", "whd_01JD0000000000000000000000");
        // Admin last: its DELETEs must not remove what the others' calls look at.
        for (role, key, may) in [
            ("developer", &developer, d),
            ("operator", &operator, o),
            ("admin", &admin, a),
        ] {
            let answer = h.call(method.clone(), &path, key, body.clone()).await;
            assert!(
                !answer.status.is_server_error(),
                "{role} {method} {path}: {answer:?}"
            );
            if may {
                assert_ne!(
                    answer.status,
                    StatusCode::FORBIDDEN,
                    "{role} {method} {path}: {answer:?}"
                );
            } else {
                assert_eq!(
                    answer.status,
                    StatusCode::FORBIDDEN,
                    "{role} {method} {path}: {answer:?}"
                );
                assert_eq!(answer.code(), "PERMISSION_DENIED");
                assert_eq!(answer.body["error"]["type"], "permission_error");
            }
            assert!(answer.headers.contains_key("x-request-id"));
        }
    }
}

#[tokio::test]
async fn sync_history_pages_with_a_cursor_and_filters_across_pages() {
    let h = Harness::start().await;
    let (_, key) = h.tenant(ApiRole::Developer).await;
    let mut body = connection_body("pw");
    body["entities"] = json!([
        {"entity": "purchase_orders"}, {"entity": "work_orders"},
        {"entity": "assets"}, {"entity": "vendors"}
    ]);
    let created = h
        .call(Method::POST, "/v1/connections", &key, Some(body))
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/connections/{id}/syncs");
    let accepted = h
        .call(
            Method::POST,
            &path,
            &key,
            Some(json!({"entities": ["purchase_orders", "work_orders", "assets", "vendors"]})),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{accepted:?}");

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let url = match &cursor {
            Some(cursor) => format!("{path}?limit=3&cursor={cursor}"),
            None => format!("{path}?limit=3"),
        };
        let page = h.call(Method::GET, &url, &key, None).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        for item in page.body["items"].as_array().unwrap() {
            seen.push(item["entity"].as_str().unwrap().to_owned());
        }
        cursor = page.body["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        ["assets", "purchase_orders", "vendors", "work_orders"],
        "every sync once over two pages"
    );
    let only = h
        .call(
            Method::GET,
            &format!("{path}?entity=vendors&limit=1"),
            &key,
            None,
        )
        .await;
    let items = only.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["entity"], "vendors");
    // A full page may carry a cursor even when nothing else matches; following it ends the list.
    if let Some(cursor) = only.body["next_cursor"].as_str() {
        let rest = h
            .call(
                Method::GET,
                &format!("{path}?entity=vendors&limit=1&cursor={cursor}"),
                &key,
                None,
            )
            .await;
        assert_eq!(rest.status, StatusCode::OK, "{rest:?}");
        assert!(
            rest.body["items"].as_array().unwrap().is_empty(),
            "{rest:?}"
        );
        assert!(rest.body.get("next_cursor").is_none(), "{rest:?}");
    }
    let bad = h
        .call(Method::GET, &format!("{path}?cursor=%21%21"), &key, None)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("cursor"), "{bad:?}");
    let bad_entity = h
        .call(Method::GET, &format!("{path}?entity=invoices"), &key, None)
        .await;
    assert_eq!(bad_entity.status, StatusCode::BAD_REQUEST);
    assert!(bad_entity.text.contains("entity"), "{bad_entity:?}");
}

#[tokio::test]
async fn records_changed_since_a_time_are_listed_and_read_one_by_one() {
    let h = Harness::start().await;
    let (_, key) = h.tenant(ApiRole::Developer).await;
    let created = h
        .call(
            Method::POST,
            "/v1/connections",
            &key,
            Some(connection_body("pw")),
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let connection_id = id.parse().unwrap();
    let record = |n: u32| UnifiedRecord {
        external_key: format!("A-{n}"),
        source_updated_at: Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, n).unwrap(),
        deleted: false,
        data: RecordData::Asset(Asset {
            description: Some(format!("pump {n}")),
            ..Asset::default()
        }),
        raw: serde_json::from_str(&json!({"ASSETNUM": format!("A-{n}"), "n": n}).to_string())
            .unwrap(),
    };
    h.store
        .upsert_records(
            &connection_id,
            Entity::Assets,
            &[record(0), record(1)],
            None,
        )
        .await
        .unwrap();
    // The copies' change times are the store's clock: wait until it has moved past the first
    // batch, then write the second.
    let boundary = Utc::now() + chrono::Duration::milliseconds(5);
    while Utc::now() <= boundary {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    h.store
        .upsert_records(&connection_id, Entity::Assets, &[record(2)], None)
        .await
        .unwrap();
    let base = format!("/v1/connections/{id}/records/assets");
    let since = boundary.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let since = since.replace('+', "%2B");
    let changed = h
        .call(
            Method::GET,
            &format!("{base}?updated_since={since}"),
            &key,
            None,
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
    let keys: Vec<&str> = changed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["external_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["A-2"], "{changed:?}");

    let one = h
        .call(Method::GET, &format!("{base}/A-2"), &key, None)
        .await;
    assert_eq!(one.status, StatusCode::OK, "{one:?}");
    assert_eq!(one.body["external_key"], "A-2");
    assert_eq!(one.body["data"]["description"], "pump 2");
    assert_eq!(one.body["raw"], json!({"ASSETNUM": "A-2", "n": 2}));
    let bad_since = h
        .call(
            Method::GET,
            &format!("{base}?updated_since=yesterday"),
            &key,
            None,
        )
        .await;
    assert_eq!(bad_since.status, StatusCode::BAD_REQUEST);
    assert!(bad_since.text.contains("updated_since"), "{bad_since:?}");
}

#[tokio::test]
async fn retrying_every_dead_job_requeues_them_all() {
    let h = Harness::start().await;
    let (_, operator) = h.tenant(ApiRole::Operator).await;
    let (queue, _) = support::dead_webhook_jobs(&h.server.url(), 3, |_| "bad_data").await;

    let all = h
        .call(
            Method::POST,
            "/v1/queues/webhooks/dead/retry",
            &operator,
            Some(json!({"select": "all"})),
        )
        .await;
    assert_eq!(all.status, StatusCode::OK, "{all:?}");
    assert_eq!(all.body["count"], 3);
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.dead, stats.ready), (0, 3));
    let listed = h
        .call(Method::GET, "/v1/queues/webhooks/dead", &operator, None)
        .await;
    assert_eq!(listed.body["total"], 0, "{listed:?}");
    // Found by schemathesis: an offset past Redis's signed ranks was a 503, not the client's 400.
    let far = h
        .call(
            Method::GET,
            "/v1/queues/webhooks/dead?offset=9223372036854775808",
            &operator,
            None,
        )
        .await;
    assert_eq!(far.status, StatusCode::BAD_REQUEST, "{far:?}");
    assert!(far.text.contains("offset"), "{far:?}");
}
