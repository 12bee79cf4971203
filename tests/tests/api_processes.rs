//! The real `conveyor-api` and `conveyorctl` binaries against one real Redis: the rate limit is
//! shared by two API processes, credentials never reach a response or a log line, every log
//! line of a request carries its id, the API answers 503 while Redis is down and recovers, and
//! conveyorctl bootstraps a key and drives the operations endpoints.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use conveyor_testkit::{RedisServer, Spawned, free_port};
use serde_json::{Value, json};

const KEYS: &str = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A running API process and its base URL.
struct Api {
    process: Spawned,
    base: String,
}

fn start_api(redis: &RedisServer, extra: &[(&str, &str)]) -> Api {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let url = redis.url();
    let mut pairs = vec![
        ("CONVEYOR_REDIS_URL", url.as_str()),
        ("CONVEYOR_API_LISTEN", listen.as_str()),
        ("CONVEYOR_ENCRYPTION_KEYS", KEYS),
        ("CONVEYOR_LOG_FORMAT", "json"),
    ];
    pairs.extend_from_slice(extra);
    let mut process = Spawned::start("conveyor-api", &env(&pairs)).unwrap();
    process.wait_for_output("conveyor-api listening", Duration::from_secs(60));
    Api {
        process,
        base: format!("http://{listen}"),
    }
}

/// Runs `conveyorctl` to completion: (exit code, everything it printed).
fn conveyorctl(args: &[&str], pairs: &[(&str, &str)]) -> (i32, String) {
    let output = std::process::Command::new(conveyor_testkit::cargo_bin("conveyorctl"))
        .args(args)
        .env_clear()
        .envs(env(pairs))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// Bootstraps a tenant through conveyorctl and returns its admin key.
fn bootstrap(redis: &RedisServer) -> String {
    let url = redis.url();
    let (code, text) = conveyorctl(
        &["bootstrap", "--tenant", "acme"],
        &[("CONVEYOR_REDIS_URL", url.as_str())],
    );
    assert_eq!(code, 0, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix("api_key: "))
        .unwrap_or_else(|| panic!("no key in:\n{text}"))
        .trim()
        .to_owned()
}

async fn request(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = client.request(method, url).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn two_api_processes_share_one_rate_limit() {
    let redis = RedisServer::start().unwrap();
    let key = bootstrap(&redis);
    // One request a minute with bursts of 5: nothing refills while the test runs.
    let limits = [
        ("CONVEYOR_API_RATE_LIMIT", "1"),
        ("CONVEYOR_API_RATE_BURST", "5"),
    ];
    let first = start_api(&redis, &limits);
    let second = start_api(&redis, &limits);
    let client = reqwest::Client::new();
    let mut allowed = 0;
    let mut refused = Vec::new();
    for round in 0..12 {
        let api = if round % 2 == 0 { &first } else { &second };
        let url = format!("{}/v1/connections", api.base);
        let (status, headers, body) =
            request(&client, reqwest::Method::GET, &url, &key, None).await;
        match status {
            200 => allowed += 1,
            429 => refused.push((headers, body)),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(allowed, 5, "both processes spend one budget");
    assert_eq!(refused.len(), 7);
    let (headers, body) = &refused[0];
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMIT_EXCEEDED");
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(headers["ratelimit-limit"], "1");
    assert_eq!(headers["ratelimit-remaining"], "0");
    assert!(headers.contains_key("ratelimit-reset"));
    drop((first, second));
}

#[tokio::test]
async fn credentials_never_reach_a_response_or_a_log_line() {
    let redis = RedisServer::start().unwrap();
    let key = bootstrap(&redis);
    let api = start_api(
        &redis,
        &[("CONVEYOR_LOG", "debug,hyper=info,h2=info,reqwest=info")],
    );
    let client = reqwest::Client::new();
    let secrets = [
        "pw-first-S3CRET-1111",
        "pw-second-S3CRET-2222",
        "pw-rejected-S3CRET-3333",
    ];
    let mut bodies = Vec::new();
    let connections = format!("{}/v1/connections", api.base);
    let body = json!({
        "name": "plant",
        "profile": "oslc",
        "base_url": "http://127.0.0.1:9/maximo",
        "credentials": {"type": "api_key", "key": secrets[0]},
        "entities": [{"entity": "work_orders"}]
    });
    let (status, headers, text) = request(
        &client,
        reqwest::Method::POST,
        &connections,
        &key,
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let create_request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    bodies.push(text);

    let one = format!("{connections}/{id}");
    let patch = json!({"credentials": {"type": "api_key", "key": secrets[1]}});
    let (status, _, text) = request(&client, reqwest::Method::PATCH, &one, &key, Some(patch)).await;
    assert_eq!(status, 200, "{text}");
    bodies.push(text);
    // Refused credentials (oslc takes no bearer tokens) are not echoed either.
    let bad = json!({"credentials": {"type": "bearer", "token": secrets[2]}});
    let (status, _, text) = request(&client, reqwest::Method::PATCH, &one, &key, Some(bad)).await;
    assert_eq!(status, 400, "{text}");
    bodies.push(text);
    for path in [one.clone(), connections.clone(), format!("{one}/status")] {
        let (status, _, text) = request(&client, reqwest::Method::GET, &path, &key, None).await;
        assert_eq!(status, 200, "{text}");
        bodies.push(text);
    }

    let logs = api.process.output();
    for secret in secrets.iter().copied().chain([key.as_str()]) {
        for body in &bodies {
            assert!(!body.contains(secret), "{secret} in a response: {body}");
        }
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
    // Every log line of the create request carries its id, the same as the header's.
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &Value| line.to_string().contains(&create_request_id))
        .collect();
    assert!(lines.len() >= 2, "request logs:\n{logs}");
    assert!(
        lines.iter().any(|l| l["message"] == "connection created"
            || l["fields"]["message"] == "connection created"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["span"]["request_id"] == create_request_id.as_str())
    );
}

#[tokio::test]
async fn the_api_answers_503_while_redis_is_down_and_recovers() {
    let mut redis = RedisServer::start_persistent().unwrap();
    let key = bootstrap(&redis);
    redis.stop();
    let api = start_api(&redis, &[("CONVEYOR_API_KEY_CACHE", "0s")]);
    let client = reqwest::Client::new();
    let url = format!("{}/v1/queues", api.base);
    let (status, headers, text) = request(&client, reqwest::Method::GET, &url, &key, None).await;
    assert_eq!(status, 503, "{text}");
    assert!(headers.contains_key("retry-after"));
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
    assert_eq!(
        body["error"]["request_id"],
        headers["x-request-id"].to_str().unwrap()
    );
    let health = client
        .get(format!("{}/healthz", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    redis.start_again().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, text) = request(&client, reqwest::Method::GET, &url, &key, None).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered: {status} {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn conveyorctl_drives_keys_and_operations_over_http() {
    let redis = RedisServer::start().unwrap();
    let admin = bootstrap(&redis);
    let api = start_api(&redis, &[]);
    let with_key = |key: &str| {
        [
            ("CONVEYOR_API_URL", api.base.clone()),
            ("CONVEYOR_API_KEY", key.to_owned()),
        ]
    };
    let run = |args: &[&str], key: &str| {
        let pairs = with_key(key);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        conveyorctl(args, &pairs)
    };

    let (code, text) = run(
        &["keys", "create", "--name", "ops", "--role", "operator"],
        &admin,
    );
    assert_eq!(code, 0, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    let operator = created["secret"].as_str().unwrap().to_owned();
    let operator_id = created["key"]["id"].as_str().unwrap().to_owned();

    let (code, text) = run(&["stats"], &operator);
    assert_eq!(code, 0, "{text}");
    let stats: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stats["queues"][0]["name"], "syncs");

    let (code, text) = run(&["dead", "list", "--queue", "webhooks"], &operator);
    assert_eq!(code, 0, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["total"], 0);
    let (code, text) = run(&["dead", "retry", "--all"], &operator);
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(&["dead", "purge", "--older-than", "7d"], &operator);
    assert_eq!(code, 0, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["count"], 0);
    let (code, text) = run(
        &["dead", "show", "job_01JD0000000000000000000000"],
        &operator,
    );
    assert_eq!(code, 1);
    assert!(text.contains("NOT_FOUND"), "{text}");

    // An operator may not manage keys; the admin lists (prefixes only) and revokes.
    let (code, text) = run(&["keys", "list"], &operator);
    assert_eq!(code, 1);
    assert!(text.contains("PERMISSION_DENIED"), "{text}");
    let (code, text) = run(&["keys", "list"], &admin);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains(&operator) && !text.contains(&admin));
    let (code, text) = run(&["keys", "revoke", &operator_id], &admin);
    assert_eq!(code, 0, "{text}");
    // Revoked through this same process, so its cache forgets the key at once.
    let (code, text) = run(&["stats"], &operator);
    assert_eq!(code, 1);
    assert!(text.contains("AUTHENTICATION_FAILED"), "{text}");

    let (code, text) = conveyorctl(&["stats"], &[("CONVEYOR_API_URL", api.base.as_str())]);
    assert_eq!(code, 2, "no key is a usage error: {text}");
}
