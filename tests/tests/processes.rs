//! The real binaries start, serve, report bad configuration, and stop cleanly on SIGTERM.

use std::collections::BTreeMap;
use std::time::Duration;

use conveyor_testkit::{RedisServer, Spawned, free_port};
use nix::sys::signal::Signal;

fn env(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[tokio::test]
async fn api_serves_readyz_and_stops_on_sigterm() {
    let redis = RedisServer::start().unwrap();
    let port = free_port();
    let mut api = Spawned::start(
        "conveyor-api",
        &env(&[
            ("CONVEYOR_REDIS_URL", redis.url()),
            ("CONVEYOR_API_LISTEN", format!("127.0.0.1:{port}")),
            ("CONVEYOR_LOG_FORMAT", "json".into()),
            (
                "CONVEYOR_ENCRYPTION_KEYS",
                "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            ),
        ]),
    )
    .unwrap();
    api.wait_for_output("conveyor-api listening", Duration::from_secs(30));

    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // JSON logs: every line is an object.
    for line in api.output().lines().filter(|l| !l.trim().is_empty()) {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "not a JSON log line: {line}");
    }

    api.process().signal(Signal::SIGTERM);
    let status = api
        .process()
        .wait_timeout(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert!(
        status.success(),
        "clean exit, got {status}:\n{}",
        api.output()
    );
}

#[test]
fn bad_configuration_is_reported_in_full_before_binding() {
    let port = free_port();
    let mut api = Spawned::start(
        "conveyor-api",
        &env(&[
            ("CONVEYOR_API_LISTEN", format!("127.0.0.1:{port}x")),
            ("CONVEYOR_REDIS_URL", "http://nope".into()),
            ("CONVEYOR_LOG_FORMAT", "xml".into()),
        ]),
    )
    .unwrap();
    let status = api
        .process()
        .wait_timeout(Duration::from_secs(30))
        .expect("exits at once");
    assert_eq!(status.code(), Some(2));
    let output = api.output();
    for key in [
        "CONVEYOR_API_LISTEN",
        "CONVEYOR_REDIS_URL",
        "CONVEYOR_LOG_FORMAT",
    ] {
        assert!(output.contains(key), "{key} missing from:\n{output}");
    }
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "the port was never bound"
    );
}

#[test]
fn worker_waits_for_redis_logs_ready_and_exits_on_sigterm() {
    let mut redis = RedisServer::start().unwrap();
    redis.stop();
    let mut worker = Spawned::start(
        "conveyor-worker",
        &env(&[
            ("CONVEYOR_REDIS_URL", redis.url()),
            (
                "CONVEYOR_ENCRYPTION_KEYS",
                "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            ),
        ]),
    )
    .unwrap();
    worker.wait_for_output("Redis unavailable", Duration::from_secs(30));
    redis.start_again().unwrap();
    worker.wait_for_output("conveyor-worker ready", Duration::from_secs(30));

    worker.process().signal(Signal::SIGTERM);
    let status = worker
        .process()
        .wait_timeout(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no exit after SIGTERM:\n{}", worker.output()));
    assert!(
        status.success(),
        "clean exit, got {status}:\n{}",
        worker.output()
    );
    assert!(worker.output().contains("conveyor-worker stopped"));
}
