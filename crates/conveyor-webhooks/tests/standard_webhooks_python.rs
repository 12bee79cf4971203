//! Independent check: real deliveries, recorded by a real receiver, verified by the official
//! Standard Webhooks library from PyPI (`standardwebhooks`), not by our own verifier.
//!
//! The Python package is installed with pip if it is missing, so the test runs the same on a
//! fresh CI machine; if neither import nor install works the test fails, it never skips.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use conveyor_core::{ConnectionId, EventType};
use conveyor_webhooks::{
    Deliverer, DeliveryConfig, DeliveryOutcome, SigningSecret, SigningSecrets, UrlPolicy,
    sample_event,
};
use serde_json::{Value, json};
use support::{Received, Receiver};

/// The pinned version of the verifier library.
const PACKAGE: &str = "standardwebhooks==1.1.0";

fn python_has_verifier() -> bool {
    Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|output| output.status.success())
}

fn ensure_verifier_installed() {
    if python_has_verifier() {
        return;
    }
    let output = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", PACKAGE])
        .output()
        .expect("python3 must be installed to run the Standard Webhooks interoperability test");
    assert!(
        output.status.success() && python_has_verifier(),
        "could not install {PACKAGE}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn case(
    name: &str,
    secret: &SigningSecret,
    request: &Received,
    body: &[u8],
    expect: &str,
) -> Value {
    let headers: serde_json::Map<String, Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .into_iter()
            .map(|name| (name.to_owned(), Value::from(request.header(name))))
            .collect();
    json!({
        "name": name,
        "secret": secret.expose(),
        "headers": headers,
        "body": std::str::from_utf8(body).unwrap(),
        "expect": expect,
    })
}

#[tokio::test]
async fn the_official_python_verifier_accepts_real_deliveries() {
    // Installing can take a while; do it on a blocking thread before the receiver starts.
    tokio::task::spawn_blocking(ensure_verifier_installed)
        .await
        .unwrap();

    let mut receiver = Receiver::start().await;
    let deliverer = Deliverer::new(DeliveryConfig {
        timeout: Duration::from_secs(5),
        url_policy: UrlPolicy::ALLOW_PRIVATE,
        ..DeliveryConfig::default()
    })
    .unwrap();
    let connection_id = ConnectionId::new();
    let mut cases = Vec::new();

    // One delivery of every event type with a single secret.
    let single = SigningSecrets::generate();
    for event_type in EventType::ALL {
        let event = sample_event(*event_type, connection_id);
        let attempt = deliverer
            .deliver(&receiver.url("ok"), &event, &single)
            .await;
        assert_eq!(attempt.outcome, DeliveryOutcome::Delivered);
        let request = receiver.next_request().await;
        cases.push(case(
            event_type.as_str(),
            &single.current,
            &request,
            &request.body,
            "valid",
        ));
    }

    // A delivery during a rotation: each secret verifies on its own.
    let mut rotating = SigningSecrets::generate();
    let old = rotating.current.clone();
    rotating.rotate(chrono::Utc::now());
    let event = sample_event(EventType::SyncFailed, connection_id);
    deliverer
        .deliver(&receiver.url("ok"), &event, &rotating)
        .await;
    let request = receiver.next_request().await;
    cases.push(case(
        "rotation, new secret",
        &rotating.current,
        &request,
        &request.body,
        "valid",
    ));
    cases.push(case(
        "rotation, old secret",
        &old,
        &request,
        &request.body,
        "valid",
    ));

    // What must fail: a tampered body and an unrelated secret.
    let mut tampered = request.body.to_vec();
    let position = tampered.iter().position(|byte| *byte == b'1').unwrap();
    tampered[position] = b'2';
    cases.push(case(
        "tampered body",
        &rotating.current,
        &request,
        &tampered,
        "invalid",
    ));
    cases.push(case(
        "unknown secret",
        &SigningSecret::generate(),
        &request,
        &request.body,
        "invalid",
    ));

    let directory = std::env::temp_dir().join(format!(
        "conveyor-webhooks-interop-{}",
        conveyor_core::EventId::new()
    ));
    std::fs::create_dir_all(&directory).unwrap();
    let cases_path = directory.join("cases.json");
    std::fs::write(&cases_path, serde_json::to_vec_pretty(&cases).unwrap()).unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verify_with_standardwebhooks.py");
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(&cases_path)
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&directory);
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the Python verifier disagreed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("{} cases, 0 mismatches", cases.len())),
        "{stdout}"
    );
}
