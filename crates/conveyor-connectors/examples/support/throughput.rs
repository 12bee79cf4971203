//! The crawl throughput measurement shared by `crawl_throughput` (the system allocator) and
//! `crawl_throughput_mimalloc` (mimalloc, as the worker binary uses), so both run the same code.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Utc;
use conveyor_connectors::{Connector, CrawlRange};
use conveyor_core::{
    Connection, ConnectionId, Credentials, Entity, EntityConfig, ProfileKind, SourceSettings,
    TenantId,
};
use conveyor_sim::{SimConfig, SimHandle};

/// Runs the measurement with the arguments of the process.
pub(crate) async fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let records: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let chosen: Vec<ProfileKind> = args
        .filter_map(|a| ProfileKind::ALL.iter().copied().find(|p| p.as_str() == a))
        .collect();
    let profiles = if chosen.is_empty() {
        ProfileKind::ALL.to_vec()
    } else {
        chosen
    };
    let sim = SimHandle::start(SimConfig {
        records_per_entity: records,
        ..SimConfig::default()
    })
    .await?;
    let base = sim.base_url();
    let secrets = sim.sim().config().credentials.clone();

    // The simulator alone: OData v4 pages of 1,000 followed by nextLink, bodies discarded.
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", secrets.client_id.as_str()),
            ("client_secret", secrets.client_secret.as_str()),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let started = Instant::now();
    let resource =
        format!("{base}/sap/opu/odata4/sap/api_purchaseorder_2/srvd_a2x/sap/purchaseorder/0001/");
    let mut next = Some(format!(
        "{resource}PurchaseOrder?$expand=_PurchaseOrderItem"
    ));
    let (mut bytes, mut pages) = (0usize, 0usize);
    while let Some(url) = next.take() {
        let body = http
            .get(&url)
            .bearer_auth(&token)
            .header("prefer", "odata.maxpagesize=1000")
            .send()
            .await?
            .bytes()
            .await?;
        bytes += body.len();
        pages += 1;
        // The link is near the end; find it without parsing the page.
        let text = String::from_utf8_lossy(&body[body.len().saturating_sub(4_096)..]).into_owned();
        next = text
            .split("\"@odata.nextLink\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(|link| format!("{resource}{link}"));
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "simulator alone (odata_v4, 1000/page): {pages} pages, {:.0} MB, {seconds:.2} s, {:.0} records/s, {:.0} MB/s",
        bytes as f64 / 1e6,
        records as f64 / seconds,
        bytes as f64 / 1e6 / seconds
    );

    // Parsing and mapping alone, on page bodies already in memory.
    let mut bodies = Vec::new();
    for page in 0..20u64 {
        let body = http
            .get(format!(
                "{base}/sap/opu/odata/sap/API_PURCHASEORDER_PROCESS_SRV/A_PurchaseOrder?$format=json&$expand=to_PurchaseOrderItem&$top=1000&$skip={}",
                page * 1000
            ))
            .basic_auth(&secrets.username, Some(&secrets.password))
            .send()
            .await?
            .bytes()
            .await?;
        bodies.push(body);
    }
    let started = Instant::now();
    let mut values = 0;
    for body in &bodies {
        let value: serde_json::Value = serde_json::from_slice(body)?;
        values += value["d"]["results"].as_array().map_or(0, Vec::len);
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "serde_json::Value alone (odata_v2): {values} records, {:.0} MB, {seconds:.2} s, {:.0} records/s",
        bodies.iter().map(|b| b.len()).sum::<usize>() as f64 / 1e6,
        values as f64 / seconds
    );
    // For comparison: records kept as raw JSON text (`RawValue`) instead of `Value` trees.
    #[derive(serde::Deserialize)]
    struct RawPage<'a> {
        #[serde(borrow)]
        d: RawResults<'a>,
    }
    #[derive(serde::Deserialize)]
    struct RawResults<'a> {
        #[serde(borrow)]
        results: Vec<&'a serde_json::value::RawValue>,
    }
    let started = Instant::now();
    let mut raw_records = 0;
    for body in &bodies {
        let page: RawPage<'_> = serde_json::from_slice(body)?;
        raw_records += page.d.results.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "serde_json RawValue alone (odata_v2): {raw_records} records, {seconds:.2} s, {:.0} records/s",
        raw_records as f64 / seconds
    );
    let started = Instant::now();
    let mut parsed = 0;
    for body in &bodies {
        parsed += conveyor_connectors::parse_and_map_page(
            ProfileKind::ODataV2,
            Entity::PurchaseOrders,
            body,
        )?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "parse and map alone (odata_v2): {parsed} records, {seconds:.2} s, {:.0} records/s",
        parsed as f64 / seconds
    );

    for profile in profiles {
        let connection = Connection {
            id: ConnectionId::new(),
            tenant_id: TenantId::new(),
            name: "throughput".into(),
            profile,
            base_url: base.clone(),
            settings: SourceSettings {
                page_size: Some(if profile == ProfileKind::OffsetHasMore {
                    500
                } else {
                    1_000
                }),
                ..SourceSettings::default()
            },
            entities: vec![EntityConfig {
                entity: Entity::PurchaseOrders,
                path: None,
                interval_secs: 3_600,
                enabled: true,
                field_overrides: BTreeMap::new(),
            }],
            historical_days: 90,
            overlap_secs: 120,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 0,
        };
        let credentials = match profile {
            ProfileKind::ODataV4 => Credentials::OAuth2ClientCredentials {
                token_url: format!("{base}/oauth2/token"),
                client_id: secrets.client_id.clone(),
                client_secret: secrets.client_secret.as_str().into(),
                scope: None,
            },
            ProfileKind::Oslc => Credentials::ApiKey {
                header: "apikey".into(),
                key: secrets.api_key.as_str().into(),
            },
            _ => Credentials::Basic {
                username: secrets.username.clone(),
                password: secrets.password.as_str().into(),
            },
        };
        let connector = Connector::new(&connection, credentials, http.clone())?;
        let range = CrawlRange {
            changed_until: Some(Utc::now()),
            ..CrawlRange::default()
        };
        let mut crawl = connector.crawl(Entity::PurchaseOrders, range)?;
        let started = Instant::now();
        let (mut count, mut pages, mut lines) = (0usize, 0usize, 0usize);
        while let Some(page) = crawl.next_page().await? {
            pages += 1;
            count += page.records.len();
            for record in &page.records {
                if let conveyor_core::RecordData::PurchaseOrder(po) = &record.data {
                    lines += po.lines.len();
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{profile:>15}: {count} records ({lines} lines) in {pages} pages, {seconds:.2} s, {:.0} records/s",
            count as f64 / seconds
        );
    }
    Ok(())
}
