//! The simulator over real HTTP: each family's wire shape and authentication, the admin
//! endpoints, a million-record dataset answered without materializing it, and the binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use conveyor_core::{Entity, ProfileKind};
use conveyor_sim::{SimConfig, SimHandle, external_key};
use reqwest::StatusCode;
use serde_json::{Value, json};

const V2_PO: &str = "/sap/opu/odata/sap/API_PURCHASEORDER_PROCESS_SRV/A_PurchaseOrder";
const V4_PO: &str =
    "/sap/opu/odata4/sap/api_purchaseorder_2/srvd_a2x/sap/purchaseorder/0001/PurchaseOrder";
const MAXIMO_PO: &str = "/maximo/api/os/mxapipo";
const ORACLE_PO: &str = "/fscmRestApi/resources/11.13.18.05/purchaseOrders";

fn config(records: u64) -> SimConfig {
    SimConfig {
        records_per_entity: records,
        seeded_until: "2024-06-01T00:00:00Z".parse().unwrap(),
        step_ms: Some(1_000),
        ..SimConfig::default()
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(sim: &SimHandle) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: sim.base_url(),
        }
    }

    async fn token(&self) -> String {
        let answer: Value = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "conveyor"),
                ("client_secret", "sim-client-secret"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["access_token"].as_str().unwrap().to_owned()
    }

    /// GET with the profile's real authentication.
    async fn get(&self, profile: ProfileKind, path_and_query: &str) -> reqwest::Response {
        let request = self.http.get(format!("{}{path_and_query}", self.base));
        let request = match profile {
            ProfileKind::ODataV4 => request.bearer_auth(self.token().await),
            ProfileKind::Oslc => request.header("apikey", "sim-api-key"),
            ProfileKind::OffsetHasMore => request
                .basic_auth("conveyor", Some("conveyor-sim"))
                .header("REST-Framework-Version", "4"),
            _ => request.basic_auth("conveyor", Some("conveyor-sim")),
        };
        request.send().await.unwrap()
    }

    async fn json(&self, profile: ProfileKind, path_and_query: &str) -> Value {
        let response = self.get(profile, path_and_query).await;
        assert_eq!(response.status(), StatusCode::OK, "{path_and_query}");
        response.json().await.unwrap()
    }
}

#[tokio::test]
async fn each_family_speaks_its_wire_format() {
    let sim = SimHandle::start(config(30)).await.unwrap();
    let client = Client::new(&sim);

    let v2 = client
        .json(
            ProfileKind::ODataV2,
            &format!("{V2_PO}?$format=json&$top=2&$expand=to_PurchaseOrderItem"),
        )
        .await;
    let first = &v2["d"]["results"][0];
    assert_eq!(first["PurchaseOrder"], "4500000000");
    assert!(
        first["__metadata"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("A_PurchaseOrder('4500000000')")
    );
    let changed = first["LastChangeDateTime"].as_str().unwrap();
    assert!(
        changed.starts_with("/Date(") && changed.ends_with("+0000)/"),
        "{changed}"
    );
    assert!(
        first["to_PurchaseOrderItem"]["results"][0]["NetPriceAmount"].is_string(),
        "decimals as strings"
    );
    assert!(
        v2["d"].get("__next").is_none(),
        "client paging with $top: no link"
    );

    let v4 = client
        .http
        .get(format!("{}{V4_PO}?$expand=_PurchaseOrderItem", client.base))
        .bearer_auth(client.token().await)
        .header("Prefer", "odata.maxpagesize=7")
        .send()
        .await
        .unwrap();
    assert_eq!(v4.headers()["preference-applied"], "odata.maxpagesize=7");
    let v4: Value = v4.json().await.unwrap();
    assert_eq!(v4["value"].as_array().unwrap().len(), 7);
    assert!(
        v4["value"][0]["LastChangeDateTime"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(v4["value"][0]["_PurchaseOrderItem"].is_array());
    assert!(
        v4["@odata.nextLink"]
            .as_str()
            .unwrap()
            .starts_with("PurchaseOrder?")
    );

    let maximo = client
        .json(ProfileKind::Oslc, &format!("{MAXIMO_PO}?lean=1&oslc.pageSize=10&oslc.where=changedate%3E%222024-05-31T19%3A59%3A40-04%3A00%22"))
        .await;
    let members = maximo["member"].as_array().unwrap();
    // Seeded times end at 2024-06-01T00:00:00Z, one second apart: 19 records are after 23:59:40Z.
    assert_eq!(members.len(), 10);
    assert_eq!(members[0]["poid"], 11);
    assert_eq!(members[0]["changedate"], "2024-05-31T19:59:41-04:00");
    let next = maximo["responseInfo"]["nextPage"]["href"].as_str().unwrap();
    assert!(
        next.starts_with("http://maximo-internal.invalid:9080/maximo/api/os/mxapipo?"),
        "{next}"
    );
    assert!(next.contains("pageno=2"));

    let oracle = client
        .json(
            ProfileKind::OffsetHasMore,
            &format!("{ORACLE_PO}?limit=25&offset=20&expand=lines&onlyData=true"),
        )
        .await;
    assert_eq!(oracle["count"], 10);
    assert_eq!(oracle["hasMore"], false);
    assert_eq!(oracle["items"][0]["POHeaderId"], 300_000_001_000_020u64);
    assert!(oracle["items"][0]["Total"].is_number());
    assert!(oracle["items"][0]["lines"].is_array());
    assert!(
        oracle["items"][0]["LastUpdateDate"]
            .as_str()
            .unwrap()
            .ends_with("+00:00")
    );
}

#[tokio::test]
async fn each_family_demands_its_credentials_and_answers_in_its_error_shape() {
    let sim = SimHandle::start(config(10)).await.unwrap();
    let http = reqwest::Client::new();
    let base = sim.base_url();
    for (path, error_pointer) in [
        (V2_PO, "/error/message/value"),
        (V4_PO, "/error/message"),
        (MAXIMO_PO, "/Error/message"),
        (ORACLE_PO, "/detail"),
    ] {
        let response = http
            .get(format!("{base}{path}"))
            .basic_auth("conveyor", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(response.headers().contains_key("www-authenticate"));
        let body: Value = response.json().await.unwrap();
        assert!(
            body.pointer(error_pointer).is_some_and(Value::is_string),
            "{path}: {body}"
        );
    }
    // Bad filters are refused with 400, as the real systems do.
    let client = Client::new(&sim);
    let bad = client
        .get(
            ProfileKind::Oslc,
            &format!("{MAXIMO_PO}?lean=1&oslc.where=changedate%3E%22x%22%20or%20wonum%3D%221%22"),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let token_refused = http
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "conveyor"),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(token_refused.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admin_endpoints_change_records_and_switch_faults() {
    let sim = SimHandle::start(config(20)).await.unwrap();
    let client = Client::new(&sim);
    let admin = |path: &str| format!("{}/admin/{path}", client.base);

    let report: Value = client
        .http
        .post(admin("entities/purchase_orders/changes"))
        .json(&json!({"create": 1, "update": 2, "delete": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["created"], json!([20]));
    assert_eq!(report["updated"].as_array().unwrap().len(), 2);
    let deleted = report["deleted"][0].as_u64().unwrap();
    let at: DateTime<Utc> = report["at"].as_str().unwrap().parse().unwrap();

    // Oracle drops deleted records; the incremental listing shows exactly the changes.
    let since =
        format!("{ORACLE_PO}?limit=100&q=LastUpdateDate%20%3E%20%272024-06-01T00%3A00%3A00Z%27");
    let changed = client.json(ProfileKind::OffsetHasMore, &since).await;
    let keys: Vec<u64> = changed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["POHeaderId"].as_u64().unwrap())
        .collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(!keys.contains(&(300_000_001_000_000 + deleted)));
    let full = client
        .json(
            ProfileKind::OffsetHasMore,
            &format!("{ORACLE_PO}?limit=100"),
        )
        .await;
    assert_eq!(full["count"], 20);
    // SAP keeps it, flagged.
    let v2 = client
        .json(ProfileKind::ODataV2, &format!("{V2_PO}?$filter=LastChangeDateTime%20gt%20datetimeoffset%272024-06-01T00%3A00%3A00Z%27"))
        .await;
    let flagged: Vec<&Value> = v2["d"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["PurchasingDocumentDeletionCode"] == "L")
        .collect();
    assert_eq!(flagged.len(), 1);
    assert_eq!(
        flagged[0]["PurchaseOrder"],
        external_key(ProfileKind::ODataV2, Entity::PurchaseOrders, deleted)
    );
    assert_eq!(
        flagged[0]["LastChangeDateTime"],
        format!("/Date({}+0000)/", at.timestamp_millis())
    );

    let record = client
        .http
        .post(admin("entities/assets/records/3/update"))
        .send()
        .await
        .unwrap();
    assert_eq!(record.status(), StatusCode::OK);
    let gone = client
        .http
        .post(admin("entities/assets/records/999/delete"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    // A 429 on the second request, once.
    let set = client
        .http
        .put(admin("faults/odata_v2"))
        .json(
            &json!({"kind": "rate_limit", "retry_after_secs": 7, "after_requests": 1, "count": 1}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::NO_CONTENT);
    let statuses = [
        client.get(ProfileKind::ODataV2, V2_PO).await,
        client.get(ProfileKind::ODataV2, V2_PO).await,
        client.get(ProfileKind::ODataV2, V2_PO).await,
    ];
    assert_eq!(statuses[0].status(), StatusCode::OK);
    assert_eq!(statuses[1].status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(statuses[1].headers()["retry-after"], "7");
    assert_eq!(statuses[2].status(), StatusCode::OK);
    let stats: Value = client
        .http
        .get(admin("stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["profiles"]["odata_v2"]["list_requests"], 4);
    assert_eq!(stats["live_records"]["purchase_orders"], 20);

    // Malformed pages are cut short.
    client
        .http
        .put(admin("faults/oslc"))
        .json(&json!({"kind": "malformed_page"}))
        .send()
        .await
        .unwrap();
    let text = client
        .get(ProfileKind::Oslc, &format!("{MAXIMO_PO}?lean=1"))
        .await
        .text()
        .await
        .unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err());
    let cleared = client.http.delete(admin("faults")).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    client
        .json(ProfileKind::Oslc, &format!("{MAXIMO_PO}?lean=1"))
        .await;
}

#[tokio::test]
async fn a_million_records_are_served_without_materializing_them() {
    let sim = SimHandle::start(SimConfig {
        records_per_entity: 1_000_000,
        seeded_until: "2024-06-01T00:00:00Z".parse().unwrap(),
        step_ms: Some(1_000),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let client = Client::new(&sim);
    // Some changes spread over the range, so offsets must skip around them.
    for index in [10, 500_000, 999_995] {
        sim.sim().update(Entity::PurchaseOrders, index).unwrap();
    }
    sim.sim().delete(Entity::PurchaseOrders, 999_990).unwrap();

    // The last page by offset: 999,999 live records, so offset 999,990 holds 9 of them.
    let tail = client
        .json(
            ProfileKind::OffsetHasMore,
            &format!("{ORACLE_PO}?limit=20&offset=999990"),
        )
        .await;
    assert_eq!(tail["count"], 9);
    assert_eq!(tail["hasMore"], false);
    assert_eq!(
        tail["items"][0]["POHeaderId"],
        300_000_001_000_000u64 + 999_991
    );

    // A filtered window deep in the data: seeded records 999,000..=999,100 by change time.
    let start = sim
        .sim()
        .seeded_updated_at(Entity::PurchaseOrders, 998_999)
        .to_rfc3339();
    let end = sim
        .sim()
        .seeded_updated_at(Entity::PurchaseOrders, 999_100)
        .to_rfc3339();
    let query = format!("LastChangeDateTime gt {start} and LastChangeDateTime le {end}")
        .replace('+', "%2B")
        .replace(' ', "%20");
    let response = client
        .http
        .get(format!("{}{V4_PO}?$filter={query}", client.base))
        .bearer_auth(client.token().await)
        .send()
        .await
        .unwrap();
    let page: Value = response.json().await.unwrap();
    let keys: Vec<&str> = page["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["PurchaseOrder"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 101);
    assert_eq!(keys[0], "4500999000");
    assert_eq!(keys[100], "4500999100");
    assert!(page.get("@odata.nextLink").is_none());
    assert_eq!(sim.sim().live_count(Entity::PurchaseOrders), 999_999);
}

/// Kills the child if the test fails before it exits.
struct Spawned(std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_serves_until_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_conveyor-sim"))
        .args(["--addr", &format!("127.0.0.1:{port}"), "--records", "50"])
        .env("CONVEYOR_SIM_RECORDS", "7")
        .env("CONVEYOR_SIM_LOG", "warn")
        .spawn()
        .unwrap();
    let mut child = Spawned(child);
    let http = reqwest::Client::new();
    let health = format!("http://127.0.0.1:{port}/admin/health");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = http.get(&health).send().await {
            assert_eq!(response.status(), StatusCode::OK);
            break;
        }
        assert!(Instant::now() < deadline, "the simulator did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // `--records 50` won over CONVEYOR_SIM_RECORDS=7 (which alone would be refused).
    let stats: Value = http
        .get(format!("http://127.0.0.1:{port}/admin/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["live_records"]["purchase_orders"], 50);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            assert!(exit.success(), "{exit}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the simulator did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_conveyor-sim"))
        .env("CONVEYOR_SIM_RECORDS", "5")
        .env("CONVEYOR_SIM_MAXIMO_UTC_OFFSET", "EST")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("records_per_entity") && stderr.contains("maximo_utc_offset"),
        "{stderr}"
    );
}

#[tokio::test]
async fn background_churn_produces_changes_for_incremental_syncs() {
    let sim = SimHandle::start(SimConfig {
        churn_per_second: 200.0,
        ..config(50)
    })
    .await
    .unwrap();
    let client = Client::new(&sim);
    let since =
        format!("{ORACLE_PO}?limit=500&q=LastUpdateDate%20%3E%20%272024-06-01T00%3A00%3A00Z%27");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = client.json(ProfileKind::OffsetHasMore, &since).await;
        if page["count"].as_u64().unwrap() > 0 {
            let changed = page["items"][0]["LastUpdateDate"].as_str().unwrap();
            let changed: DateTime<Utc> = changed.parse().unwrap();
            assert!(changed > "2024-06-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
            break;
        }
        assert!(Instant::now() < deadline, "no background change appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
