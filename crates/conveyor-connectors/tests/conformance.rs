//! Conformance suite: every connector profile against the simulator, started in-process on a
//! free loopback port. Each test runs all four profiles; what a profile must do is the same,
//! only the wire differs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use conveyor_connectors::{Connector, ConnectorError, CrawlRange, ResumeToken, RetryPolicy};
use conveyor_core::{
    Connection, ConnectionId, Credentials, Entity, EntityConfig, ProfileKind, RecordData,
    SourceSettings, TenantId, UnifiedRecord,
};
use conveyor_sim::{FaultKind, FaultSpec, SimConfig, SimHandle, external_key};

const RECORDS: u64 = 120;
const PAGE_SIZE: u32 = 25;

fn seeded_until() -> DateTime<Utc> {
    "2024-06-01T00:00:00Z".parse().unwrap()
}

fn sim_config() -> SimConfig {
    SimConfig {
        records_per_entity: RECORDS,
        seeded_until: seeded_until(),
        // 1.5 s apart: consecutive records land in different seconds, but not on whole seconds,
        // so Maximo's second granularity is exercised.
        step_ms: Some(1_500),
        ..SimConfig::default()
    }
}

async fn start_sim() -> SimHandle {
    SimHandle::start(sim_config()).await.unwrap()
}

fn connection(profile: ProfileKind, base_url: &str) -> Connection {
    Connection {
        id: ConnectionId::new(),
        tenant_id: TenantId::new(),
        name: format!("sim {profile}"),
        profile,
        base_url: base_url.to_owned(),
        settings: SourceSettings {
            page_size: Some(PAGE_SIZE),
            utc_offset: (profile == ProfileKind::Oslc).then(|| "-04:00".to_owned()),
            request_timeout_secs: Some(5),
        },
        entities: Entity::ALL
            .iter()
            .map(|entity| EntityConfig {
                entity: *entity,
                path: None,
                interval_secs: 3_600,
                enabled: true,
                field_overrides: BTreeMap::new(),
            })
            .collect(),
        historical_days: 90,
        overlap_secs: 120,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        version: 0,
    }
}

fn credentials(profile: ProfileKind, base_url: &str) -> Credentials {
    let sim = SimConfig::default().credentials;
    match profile {
        ProfileKind::ODataV4 => Credentials::OAuth2ClientCredentials {
            token_url: format!("{base_url}/oauth2/token"),
            client_id: sim.client_id,
            client_secret: sim.client_secret.as_str().into(),
            scope: None,
        },
        ProfileKind::Oslc => Credentials::ApiKey {
            header: "apikey".into(),
            key: sim.api_key.as_str().into(),
        },
        _ => Credentials::Basic {
            username: sim.username,
            password: sim.password.as_str().into(),
        },
    }
}

/// Fast in-process retries so fault tests stay quick.
fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_in_process_wait: Duration::from_secs(1),
    }
}

fn connector(sim: &SimHandle, profile: ProfileKind) -> Connector {
    connector_for(&connection(profile, &sim.base_url()), sim)
}

fn connector_for(connection: &Connection, sim: &SimHandle) -> Connector {
    Connector::new(
        connection,
        credentials(connection.profile, &sim.base_url()),
        reqwest::Client::new(),
    )
    .unwrap()
    .with_retry_policy(quick_retries())
}

struct Crawled {
    records: Vec<UnifiedRecord>,
    pages: usize,
}

async fn crawl_all(
    connector: &Connector,
    entity: Entity,
    range: CrawlRange,
) -> Result<Crawled, ConnectorError> {
    let mut crawl = connector.crawl(entity, range)?;
    let mut records = Vec::new();
    let mut pages = 0;
    while let Some(page) = crawl.next_page().await? {
        pages += 1;
        assert!(
            page.records.len() <= PAGE_SIZE as usize,
            "page bounded by the page size"
        );
        records.extend(page.records);
        assert!(pages < 1_000, "crawl does not end");
    }
    Ok(Crawled { records, pages })
}

fn keys(records: &[UnifiedRecord]) -> Vec<String> {
    records.iter().map(|r| r.external_key.clone()).collect()
}

fn expected_keys(
    profile: ProfileKind,
    entity: Entity,
    indexes: impl Iterator<Item = u64>,
) -> BTreeSet<String> {
    indexes.map(|i| external_key(profile, entity, i)).collect()
}

/// The change time as the profile's source records it (Maximo: whole seconds).
fn at_granularity(profile: ProfileKind, at: DateTime<Utc>) -> DateTime<Utc> {
    if profile == ProfileKind::Oslc {
        at.trunc_subsecs(0)
    } else {
        at.trunc_subsecs(3)
    }
}

fn assert_no_duplicates(keys: &[String]) {
    let unique: BTreeSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "duplicate records: {keys:?}");
}

#[tokio::test]
async fn full_crawl_returns_exactly_the_seeded_set() {
    let sim = start_sim().await;
    for profile in ProfileKind::ALL {
        let connector = connector(&sim, *profile);
        for entity in Entity::ALL {
            let crawled = crawl_all(&connector, *entity, CrawlRange::default())
                .await
                .unwrap();
            let got = keys(&crawled.records);
            assert_no_duplicates(&got);
            assert_eq!(
                got.iter().cloned().collect::<BTreeSet<_>>(),
                expected_keys(*profile, *entity, 0..RECORDS),
                "{profile} {entity}"
            );
            assert_eq!(
                crawled.pages,
                (RECORDS as usize).div_ceil(PAGE_SIZE as usize)
                    + usize::from(
                        *profile == ProfileKind::ODataV2
                            && RECORDS.is_multiple_of(u64::from(PAGE_SIZE))
                    )
            );
            for (index, record) in crawled.records.iter().enumerate() {
                assert_eq!(record.entity(), *entity);
                assert!(!record.deleted);
                assert_eq!(
                    record.source_updated_at,
                    at_granularity(*profile, sim.sim().seeded_updated_at(*entity, index as u64)),
                    "{profile} {entity} record {index}"
                );
                assert!(record.raw_value().is_ok_and(|raw| raw.is_object()));
                match &record.data {
                    RecordData::PurchaseOrder(po) => {
                        assert!(po.order_number.is_some(), "{profile}");
                        assert!(po.vendor_key.is_some(), "{profile}");
                        assert!(!po.lines.is_empty(), "{profile}: lines expanded");
                        assert!(
                            po.lines
                                .iter()
                                .all(|l| l.quantity.is_some() && l.unit_price.is_some())
                        );
                    }
                    RecordData::WorkOrder(wo) => {
                        assert!(wo.asset_key.is_some() && wo.status.is_some())
                    }
                    RecordData::Asset(asset) => {
                        assert!(asset.number.is_some() && asset.serial_number.is_some())
                    }
                    RecordData::Vendor(vendor) => {
                        assert!(vendor.name.is_some() && vendor.country.is_some())
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }
}

#[tokio::test]
async fn filtered_crawl_returns_exactly_the_records_changed_in_the_range() {
    let sim = start_sim().await;
    // Records 31..=90 (after record 30's change time, up to record 90's). Both bounds fall on
    // whole seconds ((119 - 31) * 1.5 s and (119 - 90) * 1.5 s are not, so take 29 and 89).
    let after = sim.sim().seeded_updated_at(Entity::PurchaseOrders, 29);
    let until = sim.sim().seeded_updated_at(Entity::PurchaseOrders, 89);
    assert_eq!(after, after.trunc_subsecs(0));
    assert_eq!(until, until.trunc_subsecs(0));
    for profile in ProfileKind::ALL {
        let connector = connector(&sim, *profile);
        let expected: BTreeSet<String> = (0..RECORDS)
            .filter(|i| {
                let at = at_granularity(
                    *profile,
                    sim.sim().seeded_updated_at(Entity::PurchaseOrders, *i),
                );
                at > after && at <= until
            })
            .map(|i| external_key(*profile, Entity::PurchaseOrders, i))
            .collect();
        assert_eq!(expected.len(), 60);
        let range = CrawlRange {
            changed_after: Some(after),
            changed_until: Some(until),
            resume: None,
        };
        let crawled = crawl_all(&connector, Entity::PurchaseOrders, range)
            .await
            .unwrap();
        let got = keys(&crawled.records);
        assert_no_duplicates(&got);
        assert_eq!(
            got.into_iter().collect::<BTreeSet<_>>(),
            expected,
            "{profile}"
        );
    }
}

#[tokio::test]
async fn incremental_crawls_find_changes_and_full_crawls_find_deletions() {
    let sim = start_sim().await;
    let entity = Entity::PurchaseOrders;
    let changes_from = seeded_until() + chrono::Duration::seconds(1);
    assert!(sim.sim().update(entity, 5).is_some());
    assert!(sim.sim().update(entity, 77).is_some());
    assert!(sim.sim().delete(entity, 9).is_some());
    let created = sim.sim().apply_changes(
        entity,
        conveyor_sim::ChangeRequest {
            create: 2,
            ..Default::default()
        },
    );
    assert_eq!(created.created, [RECORDS, RECORDS + 1]);
    for profile in ProfileKind::ALL {
        let connector = connector(&sim, *profile);
        let flags_deletions = conveyor_sim::keeps_deleted_with_flag(*profile, entity);

        let incremental = CrawlRange {
            changed_after: Some(changes_from),
            changed_until: Some(Utc::now() + chrono::Duration::seconds(60)),
            resume: None,
        };
        let crawled = crawl_all(&connector, entity, incremental).await.unwrap();
        let mut expected = vec![5, 77, RECORDS, RECORDS + 1];
        if flags_deletions {
            expected.push(9);
        }
        assert_eq!(
            keys(&crawled.records).into_iter().collect::<BTreeSet<_>>(),
            expected_keys(*profile, entity, expected.into_iter()),
            "{profile}"
        );
        for record in &crawled.records {
            let is_nine = record.external_key == external_key(*profile, entity, 9);
            assert_eq!(
                record.deleted, is_nine,
                "{profile}: only record 9 is flagged deleted"
            );
            assert!(record.source_updated_at > seeded_until());
        }

        let full = crawl_all(&connector, entity, CrawlRange::default())
            .await
            .unwrap();
        let full_keys: BTreeSet<_> = keys(&full.records).into_iter().collect();
        assert_eq!(
            full_keys.len() as u64,
            RECORDS + 2 - u64::from(!flags_deletions),
            "{profile}"
        );
        let nine = external_key(*profile, entity, 9);
        assert_eq!(full_keys.contains(&nine), flags_deletions, "{profile}");
    }
}

#[tokio::test]
async fn a_crawl_resumes_from_a_stored_token_without_refetching() {
    let sim = start_sim().await;
    let entity = Entity::WorkOrders;
    for profile in ProfileKind::ALL {
        let connector = connector(&sim, *profile);
        let range = CrawlRange {
            changed_after: Some(sim.sim().seeded_updated_at(entity, 9)),
            changed_until: Some(seeded_until()),
            resume: None,
        };
        let mut first = connector.crawl(entity, range.clone()).unwrap();
        let mut seen = Vec::new();
        let mut token = None;
        for _ in 0..2 {
            let page = first.next_page().await.unwrap().unwrap();
            seen.extend(keys(&page.records));
            token = page.resume;
        }
        drop(first);
        // The engine stores the token as JSON and reads it back in another process.
        let stored = serde_json::to_string(&token.unwrap()).unwrap();
        let token: ResumeToken = serde_json::from_str(&stored).unwrap();
        let before = sim.sim().stats(*profile).list_requests;
        let resumed = crawl_all(
            &connector,
            entity,
            CrawlRange {
                resume: Some(token),
                ..range
            },
        )
        .await
        .unwrap();
        let requests = sim.sim().stats(*profile).list_requests - before;
        assert_eq!(
            requests as usize, resumed.pages,
            "{profile}: one request per remaining page"
        );
        seen.extend(keys(&resumed.records));
        assert_no_duplicates(&seen);
        assert_eq!(
            seen.into_iter().collect::<BTreeSet<_>>(),
            expected_keys(*profile, entity, 10..RECORDS),
            "{profile}"
        );
    }
}

#[tokio::test]
async fn odata_v2_follows_skiptoken_links_when_the_server_pages() {
    // The server serves at most 10 records per answer; the connector asks for 25 at a time and
    // must follow `__next` inside each window, then continue with `$skip`.
    let sim = SimHandle::start(SimConfig {
        max_page_size: 10,
        ..sim_config()
    })
    .await
    .unwrap();
    let connector = connector(&sim, ProfileKind::ODataV2);
    let mut crawl = connector
        .crawl(Entity::Vendors, CrawlRange::default())
        .unwrap();
    let mut got = Vec::new();
    let mut followed_links = 0;
    while let Some(page) = crawl.next_page().await.unwrap() {
        assert!(page.records.len() <= 10);
        if page.url.contains("skiptoken") {
            followed_links += 1;
        }
        got.extend(keys(&page.records));
    }
    assert!(followed_links >= 8, "followed {followed_links} links");
    assert_no_duplicates(&got);
    assert_eq!(
        got.into_iter().collect::<BTreeSet<_>>(),
        expected_keys(ProfileKind::ODataV2, Entity::Vendors, 0..RECORDS)
    );
}

#[tokio::test]
async fn oslc_next_page_links_are_moved_onto_the_configured_base_url() {
    let sim = start_sim().await;
    assert!(
        sim.sim()
            .config()
            .maximo_internal_base
            .contains("maximo-internal.invalid")
    );
    let connector = connector(&sim, ProfileKind::Oslc);
    let mut crawl = connector
        .crawl(Entity::Assets, CrawlRange::default())
        .unwrap();
    let first = crawl.next_page().await.unwrap().unwrap();
    let token = serde_json::to_string(&first.resume.unwrap()).unwrap();
    assert!(token.contains("pageno=2"), "{token}");
    let second = crawl.next_page().await.unwrap().unwrap();
    assert!(second.url.starts_with(&sim.base_url()), "{}", second.url);
    assert!(second.url.contains("pageno=2"));
    assert!(second.url.contains("oslc.where") || !second.url.contains("where"));
}

fn class_of(result: Result<Crawled, ConnectorError>) -> (&'static str, ConnectorError) {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(error) => (error.class(), error),
    }
}

#[tokio::test]
async fn each_fault_maps_to_its_error_class() {
    let sim = start_sim().await;
    let entity = Entity::Assets;
    for profile in ProfileKind::ALL {
        let connector = connector(&sim, *profile);
        let cases = [
            (FaultSpec::new(FaultKind::Outage), "server_error"),
            (FaultSpec::new(FaultKind::ServerError), "server_error"),
            (FaultSpec::new(FaultKind::ConnectionDrop), "unreachable"),
            (
                FaultSpec {
                    retry_after_secs: Some(120),
                    ..FaultSpec::new(FaultKind::RateLimit)
                },
                "rate_limited",
            ),
            (FaultSpec::new(FaultKind::Unauthorized), "auth_rejected"),
            (FaultSpec::new(FaultKind::MalformedPage), "bad_data"),
        ];
        for (spec, class) in cases {
            sim.sim().set_fault(*profile, spec.clone());
            let before = sim.sim().stats(*profile).list_requests;
            let (got, error) = class_of(crawl_all(&connector, entity, CrawlRange::default()).await);
            let requests = sim.sim().stats(*profile).list_requests - before;
            sim.sim().clear_fault(*profile);
            assert_eq!(got, class, "{profile} {:?}: {error}", spec.kind);
            // Transient failures were retried in-process; the others were not.
            let expected_requests = match class {
                "server_error" | "unreachable" => 3,
                // One refresh of the OAuth2 token, then the same 401.
                "auth_rejected" if *profile == ProfileKind::ODataV4 => 2,
                _ => 1,
            };
            assert_eq!(requests, expected_requests, "{profile} {:?}", spec.kind);
            if class == "rate_limited" {
                assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
            }
            if class == "bad_data" {
                let text = error.to_string();
                assert!(text.contains(&sim.base_url()), "names the URL: {text}");
                assert!(text.contains("line 1 column"), "names the position: {text}");
            }
            assert_eq!(
                error.is_retryable(),
                matches!(class, "server_error" | "unreachable" | "rate_limited")
            );
        }
    }
}

#[tokio::test]
async fn short_failures_are_retried_in_process_and_then_succeed() {
    let sim = start_sim().await;
    for profile in ProfileKind::ALL {
        let connector = connector(&sim, *profile);
        for spec in [
            FaultSpec::new(FaultKind::Outage).times(2),
            FaultSpec::new(FaultKind::ConnectionDrop).times(1),
            FaultSpec {
                retry_after_secs: Some(0),
                ..FaultSpec::new(FaultKind::RateLimit)
            }
            .times(2),
        ] {
            sim.sim().set_fault(*profile, spec.clone().after(1));
            let crawled = crawl_all(&connector, Entity::Vendors, CrawlRange::default())
                .await
                .unwrap_or_else(|e| panic!("{profile} {:?}: {e}", spec.kind));
            sim.sim().clear_fault(*profile);
            assert_eq!(
                crawled.records.len() as u64,
                RECORDS,
                "{profile} {:?}",
                spec.kind
            );
        }
    }
}

#[tokio::test]
async fn a_failure_at_page_n_keeps_the_crawl_on_that_page() {
    let sim = start_sim().await;
    for profile in ProfileKind::ALL {
        let connector = connector(&sim, *profile);
        let mut crawl = connector
            .crawl(Entity::PurchaseOrders, CrawlRange::default())
            .unwrap();
        // Page 3 fails until the fault is cleared.
        sim.sim()
            .set_fault(*profile, FaultSpec::new(FaultKind::ServerError).after(2));
        let mut got = Vec::new();
        for _ in 0..2 {
            got.extend(keys(&crawl.next_page().await.unwrap().unwrap().records));
        }
        let error = crawl.next_page().await.unwrap_err();
        assert_eq!(error.class(), "server_error", "{profile}: {error}");
        sim.sim().clear_fault(*profile);
        while let Some(page) = crawl.next_page().await.unwrap() {
            got.extend(keys(&page.records));
        }
        assert_no_duplicates(&got);
        assert_eq!(got.len() as u64, RECORDS, "{profile}");
    }
}

#[tokio::test]
async fn unreachable_systems_are_classified_unreachable() {
    let sim = start_sim().await;
    // A port nobody listens on: connection refused.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let refused = Connector::new(
        &connection(ProfileKind::Oslc, &format!("http://{closed}")),
        credentials(ProfileKind::Oslc, "http://unused"),
        reqwest::Client::new(),
    )
    .unwrap()
    .with_retry_policy(quick_retries());
    let (class, error) = class_of(crawl_all(&refused, Entity::Assets, CrawlRange::default()).await);
    assert_eq!(class, "unreachable", "{error}");

    // The whole simulator cutting connections, for every profile.
    sim.sim().set_refuse_connections(true);
    for profile in ProfileKind::ALL {
        let (class, error) = class_of(
            crawl_all(
                &connector(&sim, *profile),
                Entity::Assets,
                CrawlRange::default(),
            )
            .await,
        );
        assert_eq!(class, "unreachable", "{profile}: {error}");
    }
    sim.sim().set_refuse_connections(false);
    let back = crawl_all(
        &connector(&sim, ProfileKind::ODataV2),
        Entity::Assets,
        CrawlRange::default(),
    )
    .await;
    assert_eq!(back.unwrap().records.len() as u64, RECORDS);
}

#[tokio::test]
async fn slow_answers_time_out_as_unreachable() {
    let sim = start_sim().await;
    let mut conn = connection(ProfileKind::OffsetHasMore, &sim.base_url());
    conn.settings.request_timeout_secs = Some(1);
    let connector = connector_for(&conn, &sim).with_retry_policy(RetryPolicy::none());
    sim.sim().set_fault(
        ProfileKind::OffsetHasMore,
        FaultSpec {
            delay_ms: Some(1_500),
            ..FaultSpec::new(FaultKind::Slow)
        },
    );
    let (class, error) =
        class_of(crawl_all(&connector, Entity::Vendors, CrawlRange::default()).await);
    assert_eq!(class, "unreachable", "{error}");
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[tokio::test]
async fn configuration_mistakes_are_config_errors() {
    let sim = start_sim().await;
    for profile in ProfileKind::ALL {
        // An entity path the system does not have: 404.
        let mut wrong_path = connection(*profile, &sim.base_url());
        let missing = match profile {
            ProfileKind::ODataV2 => "/sap/opu/odata/sap/API_NOPE/A_Nope",
            ProfileKind::ODataV4 => "/sap/opu/odata4/sap/api_nope/srvd_a2x/sap/nope/0001/Nope",
            ProfileKind::Oslc => "/maximo/api/os/mxapinope",
            _ => "/fscmRestApi/resources/11.13.18.05/nopes",
        };
        wrong_path.entities[0].path = Some(missing.to_owned());
        let (class, error) = class_of(
            crawl_all(
                &connector_for(&wrong_path, &sim),
                Entity::PurchaseOrders,
                CrawlRange::default(),
            )
            .await,
        );
        assert_eq!(class, "config", "{profile}: {error}");
        assert!(!error.is_retryable());

        // A filter the system refuses: a change-time field it cannot filter on.
        let mut wrong_field = connection(*profile, &sim.base_url());
        wrong_field.entities[0]
            .field_overrides
            .insert("updated_at".into(), "CreationDate".into());
        let range = CrawlRange {
            changed_after: Some(seeded_until()),
            ..CrawlRange::default()
        };
        let (class, error) = class_of(
            crawl_all(
                &connector_for(&wrong_field, &sim),
                Entity::PurchaseOrders,
                range,
            )
            .await,
        );
        assert_eq!(class, "config", "{profile}: {error}");
    }
    // Invalid settings never reach the network.
    let mut oracle = connection(ProfileKind::OffsetHasMore, &sim.base_url());
    oracle.settings.page_size = Some(1_000);
    let error = Connector::new(
        &oracle,
        credentials(ProfileKind::OffsetHasMore, ""),
        reqwest::Client::new(),
    )
    .unwrap_err();
    assert_eq!(error.class(), "config");
    assert!(error.to_string().contains("settings.page_size"), "{error}");
}

#[tokio::test]
async fn oauth2_tokens_are_cached_refreshed_once_then_rejected() {
    let sim = start_sim().await;
    let profile = ProfileKind::ODataV4;
    let connector = connector(&sim, profile);
    let tokens = || sim.sim().stats(profile).token_requests;

    crawl_all(&connector, Entity::Vendors, CrawlRange::default())
        .await
        .unwrap();
    crawl_all(&connector, Entity::Assets, CrawlRange::default())
        .await
        .unwrap();
    assert_eq!(tokens(), 1, "one token serves every page of both crawls");

    // The identity provider revokes tokens: a 401, one refresh, and the crawl goes on.
    sim.sim().revoke_tokens();
    let crawled = crawl_all(&connector, Entity::Vendors, CrawlRange::default())
        .await
        .unwrap();
    assert_eq!(crawled.records.len() as u64, RECORDS);
    assert_eq!(tokens(), 2);

    // Credentials that stay rejected: exactly one refresh, then AuthRejected.
    sim.sim()
        .set_fault(profile, FaultSpec::new(FaultKind::Unauthorized));
    let (class, error) =
        class_of(crawl_all(&connector, Entity::Vendors, CrawlRange::default()).await);
    assert_eq!(class, "auth_rejected", "{error}");
    assert_eq!(tokens(), 3);
    sim.sim().clear_fault(profile);

    // A wrong client secret is rejected at the token endpoint.
    let wrong = Connector::new(
        &connection(profile, &sim.base_url()),
        Credentials::OAuth2ClientCredentials {
            token_url: format!("{}/oauth2/token", sim.base_url()),
            client_id: "conveyor".into(),
            client_secret: "wrong".into(),
            scope: None,
        },
        reqwest::Client::new(),
    )
    .unwrap();
    let (class, error) = class_of(crawl_all(&wrong, Entity::Vendors, CrawlRange::default()).await);
    assert_eq!(class, "auth_rejected", "{error}");
}

/// A log sink shared with the test.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn credentials_never_appear_in_logs_or_errors() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sim = start_sim().await;
    let secrets = SimConfig::default().credentials;
    let mut texts = Vec::new();
    for profile in ProfileKind::ALL {
        let connector = connector(&sim, *profile);
        crawl_all(&connector, Entity::Vendors, CrawlRange::default())
            .await
            .unwrap();
        // After a crawl, so an OAuth2 token is cached inside.
        texts.push(format!("{connector:?}"));
        for spec in [
            FaultSpec::new(FaultKind::Unauthorized),
            FaultSpec::new(FaultKind::ServerError),
            FaultSpec::new(FaultKind::MalformedPage),
        ] {
            sim.sim().set_fault(*profile, spec);
            let error = crawl_all(&connector, Entity::Vendors, CrawlRange::default())
                .await
                .err()
                .unwrap();
            texts.push(format!("{error} {error:?}"));
        }
        sim.sim().clear_fault(*profile);
    }
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("source page read"), "the capture works");
    texts.push(logs);
    let basic_header = "Y29udmV5b3I6Y29udmV5b3Itc2lt"; // base64("conveyor:conveyor-sim")
    for text in texts {
        for secret in [
            secrets.password.as_str(),
            secrets.api_key.as_str(),
            secrets.client_secret.as_str(),
            basic_header,
            "simtok.",
        ] {
            assert!(
                !text.contains(secret),
                "`{secret}` leaked into: {}",
                &text[..text.len().min(2_000)]
            );
        }
    }
}

#[tokio::test]
async fn a_probe_reads_one_record_and_reports_the_failure_class() {
    let sim = start_sim().await;
    for profile in ProfileKind::ALL {
        let connector = connector(&sim, *profile);
        let before = sim.sim().stats(*profile).list_requests;
        connector.probe(Entity::WorkOrders).await.unwrap();
        assert_eq!(
            sim.sim().stats(*profile).list_requests - before,
            1,
            "{profile}"
        );
        sim.sim()
            .set_fault(*profile, FaultSpec::new(FaultKind::Unauthorized));
        let error = connector.probe(Entity::WorkOrders).await.unwrap_err();
        assert_eq!(error.class(), "auth_rejected", "{profile}: {error}");
        sim.sim().clear_fault(*profile);
    }
}
