//! Every `/v1` endpoint against a real Redis: connections, status, syncs, records, operations,
//! API keys; roles, tenant isolation, validation errors, the rate limit, and Redis outages.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::{TimeZone, Utc};
use conveyor_core::{Asset, Entity, RecordData, UnifiedRecord};
use conveyor_store::ApiRole;
use serde_json::{Value, json};

mod support;

use support::{Harness, connection_body};

const PASSWORD: &str = "hunter2-very-secret-password";

async fn create_connection(h: &Harness, key: &str) -> String {
    let answer = h
        .call(
            Method::POST,
            "/v1/connections",
            key,
            Some(connection_body(PASSWORD)),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    answer.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn connections_crud_never_returns_credentials() {
    let h = Harness::start().await;
    let (_, key) = h.tenant(ApiRole::Developer).await;
    let id = create_connection(&h, &key).await;
    let mut seen = Vec::new();

    let got = h
        .call(Method::GET, &format!("/v1/connections/{id}"), &key, None)
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["entities"][1]["interval_secs"], 900);
    assert_eq!(got.body["historical_days"], 90);
    assert_eq!(got.body["version"], 1);
    seen.push(got);

    let second = create_connection(&h, &key).await;
    let page = h
        .call(Method::GET, "/v1/connections?limit=1", &key, None)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body["items"][0]["id"], second.as_str(), "newest first");
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let next = h
        .call(
            Method::GET,
            &format!("/v1/connections?limit=1&cursor={cursor}"),
            &key,
            None,
        )
        .await;
    assert_eq!(next.body["items"][0]["id"], id.as_str());
    assert!(next.body.get("next_cursor").is_none());
    seen.extend([page, next]);

    // PATCH: rename and replace the credentials; the new password is stored, never shown.
    let patched = h
        .call(
            Method::PATCH,
            &format!("/v1/connections/{id}"),
            &key,
            Some(json!({
                "name": "plant 4",
                "credentials": {"type": "basic", "username": "svc", "password": "new-secret-pw-77"},
                "version": 1
            })),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
    assert_eq!(patched.body["name"], "plant 4");
    assert_eq!(patched.body["version"], 2);
    let connection_id = id.parse().unwrap();
    match h.store.get_credentials(&connection_id).await.unwrap() {
        conveyor_core::Credentials::Basic { password, .. } => {
            assert_eq!(password.expose(), "new-secret-pw-77")
        }
        other => panic!("{other:?}"),
    }
    let stale = h
        .call(
            Method::PATCH,
            &format!("/v1/connections/{id}"),
            &key,
            Some(json!({"name": "x", "version": 1})),
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.code(), "CONFLICT");
    seen.extend([patched, stale]);

    for answer in &seen {
        assert!(!answer.text.contains(PASSWORD), "{answer:?}");
        assert!(!answer.text.contains("new-secret-pw-77"), "{answer:?}");
        assert!(!answer.text.contains("credentials"), "{answer:?}");
    }

    let deleted = h
        .call(Method::DELETE, &format!("/v1/connections/{id}"), &key, None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = h
        .call(Method::GET, &format!("/v1/connections/{id}"), &key, None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.code(), "NOT_FOUND");
}

#[tokio::test]
async fn invalid_connections_are_refused_naming_every_field() {
    let h = Harness::start().await;
    let (_, key) = h.tenant(ApiRole::Admin).await;
    let mut body = connection_body(PASSWORD);
    body["base_url"] = json!("ftp://user:pw@host/x");
    body["settings"] = json!({"page_size": 0});
    body["historical_days"] = json!(0);
    let answer = h
        .call(Method::POST, "/v1/connections", &key, Some(body))
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.code(), "INVALID_REQUEST");
    let message = answer.body["error"]["message"].as_str().unwrap();
    for field in ["base_url", "settings.page_size", "historical_days"] {
        assert!(message.contains(field), "{field} missing: {message}");
    }
    assert!(!answer.text.contains(PASSWORD));

    let cases: &[(Value, &str)] = &[
        (json!({"name": "x"}), "missing field `profile`"),
        (
            {
                let mut b = connection_body("p");
                b["colour"] = json!("red");
                b
            },
            "unknown field `colour`",
        ),
        (
            {
                let mut b = connection_body("p");
                b["entities"] = json!([{"entity": "invoices"}]);
                b
            },
            "entities[0].entity",
        ),
        (
            {
                let mut b = connection_body("p");
                b["entities"] = json!([{"entity": "assets", "interval_secs": 60}]);
                b
            },
            "entities[0].interval_secs",
        ),
        (
            {
                let mut b = connection_body("p");
                b["historical_days"] = json!("ninety");
                b
            },
            "historical_days",
        ),
        (
            {
                let mut b = connection_body("p");
                b["credentials"] = json!({"type": "kerberos"});
                b
            },
            "credentials",
        ),
    ];
    for (body, expected) in cases {
        let answer = h
            .call(Method::POST, "/v1/connections", &key, Some(body.clone()))
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(answer.text.contains(expected), "{expected}: {answer:?}");
    }
}

#[tokio::test]
async fn malformed_requests_are_invalid_requests_naming_the_problem() {
    let h = Harness::start().await;
    let (_, key) = h.tenant(ApiRole::Admin).await;
    let id = create_connection(&h, &key).await;
    let syncs = format!("/v1/connections/{id}/syncs");
    let raw = |body: &'static str, content_type: &'static str| {
        axum::http::Request::post(syncs.clone())
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", content_type)
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    let cases = [
        (
            raw(r#"{"entities": ["assets"]"#, "application/json"),
            "malformed JSON",
        ),
        (
            raw(r#"{"entities": "assets"}"#, "application/json"),
            "entities",
        ),
        (
            raw(
                r#"{"entities": ["assets"], "mode": "partial"}"#,
                "application/json",
            ),
            "mode",
        ),
        (
            raw(r#"{"entities": ["invoices"]}"#, "application/json"),
            "entities[0]",
        ),
        (
            raw(r#"{"mode": "full"}"#, "application/json"),
            "missing field `entities`",
        ),
        (
            raw(r#"{"entities": ["assets"], "x": 1}"#, "application/json"),
            "unknown field `x`",
        ),
        (
            raw(r#"{"entities": ["assets"]}"#, "text/plain"),
            "content-type",
        ),
    ];
    for (request, expected) in cases {
        let answer = support::send(&h.app, request).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{expected}: {answer:?}"
        );
        assert_eq!(answer.code(), "INVALID_REQUEST");
        assert!(answer.text.contains(expected), "{expected}: {answer:?}");
    }
    let huge = format!(
        r#"{{"entities": ["assets"], "pad": "{}"}}"#,
        "x".repeat(100_000)
    );
    let request = axum::http::Request::post(syncs.clone())
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(huge))
        .unwrap();
    let answer = support::send(&h.app, request).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.text.contains("larger than the limit"), "{answer:?}");

    for (path, expected) in [
        ("/v1/connections/conn_nope".to_owned(), "connection_id"),
        (
            "/v1/connections/sync_01JD0000000000000000000000".to_owned(),
            "conn_",
        ),
        ("/v1/syncs/banana".to_owned(), "sync_id"),
        (format!("/v1/connections/{id}/records/invoices"), "entity"),
        ("/v1/connections?limit=0".to_owned(), "limit"),
        ("/v1/connections?limit=ten".to_owned(), "limit"),
        ("/v1/connections?colour=red".to_owned(), "colour"),
        ("/v1/connections?cursor=!!".to_owned(), "cursor"),
    ] {
        let answer = h.call(Method::GET, &path, &key, None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}: {answer:?}");
        assert!(answer.text.contains(expected), "{path}: {answer:?}");
    }
}

#[tokio::test]
async fn manual_syncs_return_one_sync_per_entity_and_existing_ones_as_such() {
    let h = Harness::start().await;
    let (_, key) = h.tenant(ApiRole::Developer).await;
    let id = create_connection(&h, &key).await;
    let path = format!("/v1/connections/{id}/syncs");

    let first = h
        .call(
            Method::POST,
            &path,
            &key,
            Some(json!({"entities": ["purchase_orders", "assets"], "mode": "full"})),
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
    assert_eq!(first.body["connection_status"]["status"], "unknown");
    let syncs = first.body["syncs"].as_array().unwrap();
    assert_eq!(syncs.len(), 2);
    assert_eq!(syncs[0]["entity"], "purchase_orders");
    assert_eq!(syncs[0]["existing"], false);
    assert_eq!(syncs[0]["status"], "queued");
    assert_eq!(syncs[0]["mode"], "full");

    let again = h
        .call(
            Method::POST,
            &path,
            &key,
            Some(json!({"entities": ["assets"]})),
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["syncs"][0]["existing"], true);
    assert_eq!(again.body["syncs"][0]["sync_id"], syncs[1]["sync_id"]);
    assert_eq!(
        again.body["syncs"][0]["mode"], "full",
        "the existing sync keeps its mode"
    );

    let missing = h
        .call(
            Method::POST,
            &path,
            &key,
            Some(json!({"entities": ["vendors"]})),
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(missing.text.contains("entities[0]") && missing.text.contains("vendors"));
    let twice = h
        .call(
            Method::POST,
            &path,
            &key,
            Some(json!({"entities": ["assets", "assets"]})),
        )
        .await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST);
    assert!(twice.text.contains("entities[1]"));

    // One sync by its id alone, and the history with filters.
    let sync_id = syncs[0]["sync_id"].as_str().unwrap();
    let one = h
        .call(Method::GET, &format!("/v1/syncs/{sync_id}"), &key, None)
        .await;
    assert_eq!(one.status, StatusCode::OK, "{one:?}");
    assert_eq!(one.body["connection_id"], id.as_str());
    assert_eq!(one.body["trigger"], "manual");
    assert_eq!(one.body["counts"]["records_written"], 0);

    let history = h.call(Method::GET, &path, &key, None).await;
    assert_eq!(history.body["items"].as_array().unwrap().len(), 2);
    let filtered = h
        .call(
            Method::GET,
            &format!("{path}?entity=assets&status=queued"),
            &key,
            None,
        )
        .await;
    let items = filtered.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["entity"], "assets");
    let none = h
        .call(Method::GET, &format!("{path}?status=succeeded"), &key, None)
        .await;
    assert!(none.body["items"].as_array().unwrap().is_empty());
    let bad = h
        .call(Method::GET, &format!("{path}?status=done"), &key, None)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("status"));

    let unknown = h
        .call(
            Method::GET,
            "/v1/syncs/sync_01JD0000000000000000000000",
            &key,
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn status_and_records_read_what_the_store_holds() {
    let h = Harness::start().await;
    let (_, key) = h.tenant(ApiRole::Admin).await;
    let id = create_connection(&h, &key).await;
    let connection_id = id.parse().unwrap();
    let at = Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap();
    h.store
        .transition(
            &connection_id,
            conveyor_core::ConnectionStatus::Offline,
            &conveyor_store::StatusReason::new("SOURCE_UNREACHABLE", "connection refused"),
        )
        .await
        .unwrap();
    h.store
        .set_data_as_of(&connection_id, Entity::Assets, at)
        .await
        .unwrap();
    let status = h
        .call(
            Method::GET,
            &format!("/v1/connections/{id}/status"),
            &key,
            None,
        )
        .await;
    assert_eq!(status.status, StatusCode::OK, "{status:?}");
    assert_eq!(status.body["status"], "offline");
    assert_eq!(status.body["last_error"]["code"], "SOURCE_UNREACHABLE");
    assert_eq!(status.body["consecutive_failures"], 1);
    assert_eq!(status.body["data_as_of"]["assets"], "2026-11-01T08:00:00Z");

    // The sync answer carries the status too.
    let accepted = h
        .call(
            Method::POST,
            &format!("/v1/connections/{id}/syncs"),
            &key,
            Some(json!({"entities": ["assets"]})),
        )
        .await;
    assert_eq!(accepted.body["connection_status"]["status"], "offline");

    let records: Vec<UnifiedRecord> = (0..3)
        .map(|n| UnifiedRecord {
            external_key: format!("A-{n}"),
            source_updated_at: at,
            deleted: false,
            data: RecordData::Asset(Asset {
                description: Some(format!("pump {n}")),
                ..Asset::default()
            }),
            raw: serde_json::value::to_raw_value(
                &json!({"ASSETNUM": format!("A-{n}"), "extra": n}),
            )
            .unwrap(),
        })
        .collect();
    h.store
        .upsert_records(&connection_id, Entity::Assets, &records, None)
        .await
        .unwrap();
    let base = format!("/v1/connections/{id}/records/assets");
    let page = h
        .call(Method::GET, &format!("{base}?limit=2"), &key, None)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    let items = page.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["entity"], "assets");
    assert_eq!(items[0]["raw"]["ASSETNUM"], items[0]["external_key"]);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = h
        .call(Method::GET, &format!("{base}?cursor={cursor}"), &key, None)
        .await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 1);
    let later = h
        .call(
            Method::GET,
            &format!("{base}?updated_since=2999-01-01T00:00:00Z"),
            &key,
            None,
        )
        .await;
    assert!(later.body["items"].as_array().unwrap().is_empty());

    let one = h
        .call(Method::GET, &format!("{base}/A-1"), &key, None)
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["data"]["description"], "pump 1");
    assert_eq!(one.body["raw"]["extra"], 1);
    let missing = h
        .call(Method::GET, &format!("{base}/A-9"), &key, None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_tenants_connection_is_answered_exactly_like_a_missing_one() {
    let h = Harness::start().await;
    let (_, owner) = h.tenant(ApiRole::Admin).await;
    let (_, stranger) = h.tenant(ApiRole::Admin).await;
    let id = create_connection(&h, &owner).await;
    let sync = h
        .call(
            Method::POST,
            &format!("/v1/connections/{id}/syncs"),
            &owner,
            Some(json!({"entities": ["assets"]})),
        )
        .await;
    let sync_id = sync.body["syncs"][0]["sync_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let missing_id = "conn_01JD0000000000000000000000";

    let strip = |mut body: Value, id: &str, missing: &str| {
        body["error"]["request_id"] = Value::Null;
        serde_json::from_str::<Value>(&body.to_string().replace(id, missing)).unwrap()
    };
    for suffix in [
        "",
        "/status",
        "/syncs",
        "/records/assets",
        "/records/assets/A-1",
    ] {
        let theirs = h
            .call(
                Method::GET,
                &format!("/v1/connections/{id}{suffix}"),
                &stranger,
                None,
            )
            .await;
        let none = h
            .call(
                Method::GET,
                &format!("/v1/connections/{missing_id}{suffix}"),
                &stranger,
                None,
            )
            .await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{suffix}: {theirs:?}");
        assert_eq!(none.status, StatusCode::NOT_FOUND);
        assert_eq!(
            strip(theirs.body, &id, missing_id),
            strip(none.body, missing_id, missing_id)
        );
    }
    for (method, suffix, body) in [
        (Method::PATCH, "", Some(json!({"name": "mine"}))),
        (Method::DELETE, "", None),
        (
            Method::POST,
            "/syncs",
            Some(json!({"entities": ["assets"]})),
        ),
    ] {
        let answer = h
            .call(
                method,
                &format!("/v1/connections/{id}{suffix}"),
                &stranger,
                body,
            )
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{suffix}");
    }
    let their_sync = h
        .call(
            Method::GET,
            &format!("/v1/syncs/{sync_id}"),
            &stranger,
            None,
        )
        .await;
    assert_eq!(their_sync.status, StatusCode::NOT_FOUND);
    let listed = h
        .call(Method::GET, "/v1/connections", &stranger, None)
        .await;
    assert!(listed.body["items"].as_array().unwrap().is_empty());
    // Still there for its owner.
    let mine = h
        .call(Method::GET, &format!("/v1/connections/{id}"), &owner, None)
        .await;
    assert_eq!(mine.status, StatusCode::OK);
}

#[tokio::test]
async fn each_role_reaches_only_its_areas() {
    let h = Harness::start().await;
    let (tenant, admin) = h.tenant(ApiRole::Admin).await;
    let developer = h.key(tenant, ApiRole::Developer).await;
    let operator = h.key(tenant, ApiRole::Operator).await;
    let id = create_connection(&h, &admin).await;

    let sync_body = json!({"entities": ["assets"]});
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/connections".into(), None),
        (
            Method::POST,
            format!("/v1/connections/{id}/syncs"),
            Some(sync_body),
        ),
        (
            Method::GET,
            format!("/v1/connections/{id}/records/assets"),
            None,
        ),
        (Method::GET, format!("/v1/connections/{id}/status"), None),
        (Method::GET, "/v1/queues".into(), None),
        (Method::GET, "/v1/queues/syncs/dead".into(), None),
        (Method::GET, "/v1/api_keys".into(), None),
    ];
    // (admin, developer, operator) may each route.
    let allowed = [
        (true, true, false),
        (true, true, false),
        (true, true, false),
        (true, true, true),
        (true, false, true),
        (true, false, true),
        (true, false, false),
    ];
    for ((method, path, body), (a, d, o)) in routes.into_iter().zip(allowed) {
        for (key, may) in [(&admin, a), (&developer, d), (&operator, o)] {
            let answer = h.call(method.clone(), &path, key, body.clone()).await;
            if may {
                assert!(answer.status.is_success(), "{method} {path}: {answer:?}");
            } else {
                assert_eq!(
                    answer.status,
                    StatusCode::FORBIDDEN,
                    "{method} {path}: {answer:?}"
                );
                assert_eq!(answer.code(), "PERMISSION_DENIED");
            }
        }
    }
}

#[tokio::test]
async fn missing_unknown_and_revoked_keys_fail_authentication() {
    // No key cache, so a revocation through the store is seen at once.
    let h = Harness::start_with(&[("CONVEYOR_API_KEY_CACHE", "0s")]).await;
    let (_, admin) = h.tenant(ApiRole::Admin).await;
    let no_key = support::call(&h.app, Method::GET, "/v1/connections", None, None).await;
    assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);
    assert_eq!(no_key.code(), "AUTHENTICATION_FAILED");
    assert!(no_key.headers.contains_key("x-request-id"));
    let unknown = h
        .call(Method::GET, "/v1/connections", "cvk_not-a-key", None)
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);

    // Keys through the API: create (secret once), list (prefix only), revoke.
    let created = h
        .call(
            Method::POST,
            "/v1/api_keys",
            &admin,
            Some(json!({"name": "ci", "role": "operator"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    let key_id = created.body["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["key"]["role"], "operator");
    let stats = h.call(Method::GET, "/v1/queues", &secret, None).await;
    assert_eq!(stats.status, StatusCode::OK);
    let listed = h.call(Method::GET, "/v1/api_keys", &admin, None).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);
    assert!(!listed.text.contains(&secret));
    assert!(secret.starts_with(listed.body["items"][1]["prefix"].as_str().unwrap()));
    let revoked = h
        .call(
            Method::DELETE,
            &format!("/v1/api_keys/{key_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert!(revoked.body["revoked_at"].is_string());
    let after = h.call(Method::GET, "/v1/queues", &secret, None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    let bad_role = h
        .call(
            Method::POST,
            "/v1/api_keys",
            &admin,
            Some(json!({"name": "x", "role": "root"})),
        )
        .await;
    assert_eq!(bad_role.status, StatusCode::BAD_REQUEST);
    assert!(bad_role.text.contains("role"));
}

#[tokio::test]
async fn a_key_over_its_budget_gets_429_with_retry_after_and_ratelimit_headers() {
    let h = Harness::start_with(&[
        ("CONVEYOR_API_RATE_LIMIT", "60"),
        ("CONVEYOR_API_RATE_BURST", "3"),
    ])
    .await;
    let (tenant, key) = h.tenant(ApiRole::Admin).await;
    let other = h.key(tenant, ApiRole::Admin).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let answer = h.call(Method::GET, "/v1/connections", &key, None).await;
        assert_eq!(answer.headers["ratelimit-limit"], "60");
        statuses.push(answer);
    }
    assert_eq!(statuses[0].headers["ratelimit-remaining"], "2");
    assert!(statuses[..3].iter().all(|a| a.status == StatusCode::OK));
    let refused = &statuses[4];
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "RATE_LIMIT_EXCEEDED");
    assert_eq!(refused.body["error"]["type"], "rate_limit_error");
    assert_eq!(refused.headers["ratelimit-remaining"], "0");
    assert_eq!(refused.headers["retry-after"], "1");
    // Budgets are per key.
    let fresh = h.call(Method::GET, "/v1/connections", &other, None).await;
    assert_eq!(fresh.status, StatusCode::OK);
}

#[tokio::test]
async fn queue_stats_and_dead_letters_list_show_retry_and_purge() {
    let h = Harness::start().await;
    let (_, operator) = h.tenant(ApiRole::Operator).await;
    let (queue, ids) = support::dead_webhook_jobs(&h.server.url(), 4, |n| {
        if n.is_multiple_of(2) {
            "bad_data"
        } else {
            "timeout"
        }
    })
    .await;

    let stats = h.call(Method::GET, "/v1/queues", &operator, None).await;
    assert_eq!(stats.body["queues"][1]["name"], "webhooks");
    assert_eq!(stats.body["queues"][1]["dead"], 4);
    let list = h
        .call(
            Method::GET,
            "/v1/queues/webhooks/dead?error_kind=timeout",
            &operator,
            None,
        )
        .await;
    assert_eq!(list.body["total"], 2, "{list:?}");
    let shown = h
        .call(
            Method::GET,
            &format!("/v1/queues/webhooks/dead/{}", ids[0]),
            &operator,
            None,
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{shown:?}");
    assert_eq!(shown.body["state"], "dead");
    assert_eq!(shown.body["payload"]["n"], 0);
    assert_eq!(shown.body["errors"][0]["kind"], "bad_data");

    let retry_one = h
        .call(
            Method::POST,
            "/v1/queues/webhooks/dead/retry",
            &operator,
            Some(json!({"select": "one", "job_id": ids[0].to_string()})),
        )
        .await;
    assert_eq!(retry_one.body["count"], 1, "{retry_one:?}");
    let retry_kind = h
        .call(
            Method::POST,
            "/v1/queues/webhooks/dead/retry",
            &operator,
            Some(json!({"select": "error_kind", "error_kind": "timeout"})),
        )
        .await;
    assert_eq!(retry_kind.body["count"], 2);
    let purge_old = h
        .call(
            Method::POST,
            "/v1/queues/webhooks/dead/purge",
            &operator,
            Some(json!({"select": "older_than", "older_than_secs": 3600})),
        )
        .await;
    assert_eq!(purge_old.body["count"], 0);
    let purge_all = h
        .call(
            Method::POST,
            "/v1/queues/webhooks/dead/purge",
            &operator,
            Some(json!({"select": "all"})),
        )
        .await;
    assert_eq!(purge_all.body["count"], 1);
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.dead, stats.ready), (0, 3));

    for (path, body, expected) in [
        ("/v1/queues/jobs/dead", None, StatusCode::NOT_FOUND),
        (
            "/v1/queues/syncs/dead/job_01JD0000000000000000000000",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/queues/syncs/dead/retry",
            Some(json!({"select": "some"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/queues/syncs/dead/retry",
            Some(json!({"select": "one", "job_id": "x"})),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let method = if body.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        let answer = h.call(method, path, &operator, body).await;
        assert_eq!(answer.status, expected, "{path}: {answer:?}");
    }

    // The scrape reports queue depths.
    let metrics = support::call(&h.app, Method::GET, "/metrics", None, None).await;
    assert!(
        metrics
            .text
            .contains(r#"conveyor_queue_jobs{queue="webhooks",state="ready"} 3"#),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn redis_outage_is_503_and_the_api_recovers_by_itself() {
    let mut h = Harness::start_persistent(&[("CONVEYOR_API_KEY_CACHE", "0s")]).await;
    let (_, key) = h.tenant(ApiRole::Admin).await;
    let ok = h.call(Method::GET, "/v1/connections", &key, None).await;
    assert_eq!(ok.status, StatusCode::OK);

    h.server.stop();
    let down = h.call(Method::GET, "/v1/connections", &key, None).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "{down:?}");
    assert_eq!(down.code(), "SERVICE_UNAVAILABLE");
    assert!(down.headers.contains_key("retry-after"));
    assert!(!down.text.contains("refused"), "no internals: {down:?}");

    h.server.start_again().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer = h.call(Method::GET, "/v1/connections", &key, None).await;
        if answer.status == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never recovered: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_api_starts_while_redis_is_down() {
    let mut server = conveyor_testkit::RedisServer::start().unwrap();
    let url = server.url();
    server.stop();
    let state = conveyor_api::AppState::new(&support::config(&url, &[])).unwrap();
    let app = conveyor_api::router(state);
    let down = support::call(&app, Method::GET, "/v1/connections", Some("cvk_x"), None).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "{down:?}");
    server.start_again().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer = support::call(&app, Method::GET, "/v1/connections", Some("cvk_x"), None).await;
        if answer.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never recovered: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
