//! Talking to customers' ERP/CMMS systems over HTTP: authentication, paging, change filters and
//! mapping records onto Conveyor's unified models.
//!
//! Four API families ([`ProfileKind`]) are covered, each configured per connection (base URL,
//! entity paths, field names, page size, UTC offset, timeout):
//!
//! | profile | systems | records | next page | change filter |
//! |---|---|---|---|---|
//! | `odata_v2` | SAP S/4HANA v2 services | `d.results` | `d.__next`, else `$top`/`$skip` | `$filter=F gt datetimeoffset'…'` |
//! | `odata_v4` | SAP v4 services, Dynamics 365 | `value` | `@odata.nextLink` (`Prefer: odata.maxpagesize`) | `$filter=F gt 2024-…Z` |
//! | `oslc` | IBM Maximo | `member` | `responseInfo.nextPage.href`, moved onto the base URL | `oslc.where=F>"…-04:00"` |
//! | `offset_hasmore` | Oracle Fusion Cloud REST | `items` | `hasMore`, `limit`/`offset` | `q=F > '…'` |
//!
//! Use:
//!
//! ```no_run
//! # async fn run(connection: conveyor_core::Connection, credentials: conveyor_core::Credentials)
//! # -> Result<(), conveyor_connectors::ConnectorError> {
//! use conveyor_connectors::{Connector, CrawlRange};
//! use conveyor_core::Entity;
//!
//! let connector = Connector::new(&connection, credentials, reqwest::Client::new())?;
//! let mut crawl = connector.crawl(Entity::PurchaseOrders, CrawlRange::default())?;
//! while let Some(page) = crawl.next_page().await? {
//!     // store page.records, then checkpoint page.resume
//! }
//! # Ok(()) }
//! ```
//!
//! Ranges: `changed_after` is exclusive and `changed_until` inclusive, compared at the source's
//! granularity (Maximo: seconds; others: milliseconds); a bound finer than that is rounded so
//! nothing inside the range is missed (a few records may come twice; writes are idempotent).
//! Each page carries a [`ResumeToken`] for the page after it; a crawl started with that token and
//! the same range continues there. A failed request is retried in-process a few times
//! ([`RetryPolicy`]) before its error is returned.
//!
//! Errors are a [`ConnectorError`] classified by what the sync engine does next
//! ([`ConnectorError::is_retryable`]). [`validate`] checks a connection without any network call;
//! [`Connector::probe`] checks that a system answers and accepts the credentials.
//!
//! Architecture invariant: this crate knows nothing of Redis, apalis or the sync engine; it reads
//! pages and hands them on.

mod auth;
mod crawl;
mod error;
mod http;
pub mod mapping;
pub mod profile;
pub mod timestamp;
mod validate;

pub use conveyor_core::ProfileKind;
pub use crawl::{Connector, Crawl, CrawlRange, DEFAULT_REQUEST_TIMEOUT, Page, ResumeToken};
pub use error::ConnectorError;
pub use http::RetryPolicy;
pub use validate::{FieldProblem, MAX_REQUEST_TIMEOUT_SECS, validate};

/// Maps one raw source record of `profile` and `entity` with the given field overrides; the
/// entry point of the data-driven mapping tests and of tools that preview a mapping.
pub fn map_record(
    profile: ProfileKind,
    entity: conveyor_core::Entity,
    field_overrides: &std::collections::BTreeMap<String, String>,
    utc_offset: chrono::FixedOffset,
    raw: serde_json::Value,
) -> Result<conveyor_core::UnifiedRecord, ConnectorError> {
    let mapping = mapping::EntityMapping::new(profile, entity, field_overrides, utc_offset)
        .map_err(|problems| ConnectorError::config(problems.join("; ")))?;
    let raw = serde_json::value::to_raw_value(&raw).map_err(|err| ConnectorError::BadData {
        url: "(memory)".into(),
        position: "(record)".into(),
        reason: err.to_string(),
    })?;
    mapping.map(raw).map_err(|failure| ConnectorError::BadData {
        url: "(memory)".into(),
        position: format!("field {}", failure.field),
        reason: failure.reason,
    })
}

/// Parses a page body of `profile` and maps its records, without any network call: the page
/// parsers' entry point for property tests and fuzzing. Returns the number of records mapped.
pub fn parse_and_map_page(
    profile: ProfileKind,
    entity: conveyor_core::Entity,
    body: &[u8],
) -> Result<usize, ConnectorError> {
    let offset = chrono::FixedOffset::east_opt(0).expect("zero is a valid offset");
    let mapping = mapping::EntityMapping::new(profile, entity, &Default::default(), offset)
        .map_err(|problems| ConnectorError::config(problems.join("; ")))?;
    let page = profile::parse_page(profile, body).map_err(|failure| ConnectorError::BadData {
        url: "(memory)".into(),
        position: failure.position,
        reason: failure.reason,
    })?;
    let mut count = 0;
    for (index, record) in page.records.into_iter().enumerate() {
        mapping
            .map(record)
            .map_err(|failure| ConnectorError::BadData {
                url: "(memory)".into(),
                position: format!("record {index}, field {}", failure.field),
                reason: failure.reason,
            })?;
        count += 1;
    }
    Ok(count)
}
