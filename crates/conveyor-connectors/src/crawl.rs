//! The connector and its crawls: reading an entity page by page, within a change-time range,
//! resumable from any page.
//!
//! A crawl holds one position (the next page's link or offset) and nothing else, so memory is
//! bounded by one page whatever the dataset. After each page it hands out a [`ResumeToken`] for
//! the page after it; the sync engine stores it as a checkpoint and a retried job starts a new
//! crawl from it with the same range (the upper bound frozen at sync start), continuing where the
//! failed attempt stopped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use conveyor_core::{Connection, Credentials, Entity, ProfileKind, UnifiedRecord};
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::auth::Authenticator;
use crate::error::ConnectorError;
use crate::http::{PageRequest, RetryPolicy, fetch};
use crate::mapping::EntityMapping;
use crate::profile::{
    NextHint, RequestShape, default_path, display_url, limits, parse_page, rewrite_onto_base,
};
use crate::timestamp::parse_utc_offset;
use crate::validate::validate;

/// The request timeout when the connection does not set one.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads entities from one connection's source system.
///
/// Cheap to clone; clones share the OAuth2 token cache.
#[derive(Debug, Clone)]
pub struct Connector {
    inner: Arc<Inner>,
    policy: RetryPolicy,
}

#[derive(Debug)]
struct Inner {
    profile: ProfileKind,
    base_url: Url,
    page_size: u32,
    utc_offset: FixedOffset,
    timeout: Duration,
    client: reqwest::Client,
    auth: Authenticator,
    entities: HashMap<Entity, Arc<EntityPlan>>,
}

/// How to read one entity: its resource URL and field mapping.
#[derive(Debug)]
struct EntityPlan {
    url: Url,
    mapping: EntityMapping,
}

/// Which records a crawl reads, and where it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlRange {
    /// Only records changed after this instant (incremental syncs); `None` reads all.
    pub changed_after: Option<DateTime<Utc>>,
    /// Only records changed at or before this instant, frozen at sync start so records changing
    /// during the sync do not shift the pages under it; `None` means no upper bound.
    pub changed_until: Option<DateTime<Utc>>,
    /// Continue from a checkpoint instead of the first page. The range must be the same as the
    /// one the token was handed out with.
    pub resume: Option<ResumeToken>,
}

/// Where the next page of a crawl is: stored by the sync engine as a checkpoint.
///
/// Serializes as a small JSON object (`{"offset":1000}` or `{"next_url":"..."}`); treat it as
/// opaque. A stored link is moved onto the connection's base URL again when used, so a token can
/// never send credentials to another host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeToken(Position);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Position {
    /// Client-driven paging (`$skip`, `offset`): the next record's position.
    Offset(u64),
    /// Server-driven paging: the link the source gave for the next page.
    NextUrl(String),
    /// OData v2 client-driven paging cut short by the server: the connector asked for a window
    /// of `page_size` records at `window_start`, the server answered part of it with a
    /// `__next` link; after the window it continues with `$skip`.
    Window {
        next_url: String,
        window_start: u64,
        seen: u64,
    },
}

/// One page of records.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The page's records, mapped, in source order.
    pub records: Vec<UnifiedRecord>,
    /// Where the next page is; `None` when this was the last one.
    pub resume: Option<ResumeToken>,
    /// The URL the page was read from (no credentials), for logs and errors.
    pub url: String,
}

impl Connector {
    /// A connector for `connection`. Checks the configuration (see [`crate::validate`]) and
    /// fails with `Config` listing every problem. `client` is shared so connections reuse
    /// connection pools; each request gets the connection's own timeout.
    pub fn new(
        connection: &Connection,
        credentials: Credentials,
        client: reqwest::Client,
    ) -> Result<Connector, ConnectorError> {
        if let Err(problems) = validate(connection, &credentials) {
            let listed: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            return Err(ConnectorError::config(listed.join("; ")));
        }
        let profile = connection.profile;
        let base_url = Url::parse(&connection.base_url)
            .map_err(|error| ConnectorError::config(format!("base_url: {error}")))?;
        let settings = &connection.settings;
        let utc_offset = settings
            .utc_offset
            .as_deref()
            .map_or(FixedOffset::east_opt(0), parse_utc_offset)
            .ok_or_else(|| ConnectorError::config("settings.utc_offset is invalid"))?;
        let mut entities = HashMap::new();
        for entity in Entity::ALL {
            if crate::mapping::default_fields(profile, *entity).is_empty() {
                continue;
            }
            let config = connection.entity(*entity);
            let path = config
                .and_then(|c| c.path.as_deref())
                .unwrap_or_else(|| default_path(profile, *entity));
            let empty = Default::default();
            let overrides = config.map_or(&empty, |c| &c.field_overrides);
            let mapping = EntityMapping::new(profile, *entity, overrides, utc_offset)
                .map_err(|problems| ConnectorError::config(problems.join("; ")))?;
            let url = join_path(&base_url, path);
            entities.insert(*entity, Arc::new(EntityPlan { url, mapping }));
        }
        Ok(Connector {
            inner: Arc::new(Inner {
                profile,
                page_size: settings
                    .page_size
                    .unwrap_or(limits(profile).default_page_size),
                utc_offset,
                timeout: settings
                    .request_timeout_secs
                    .map_or(DEFAULT_REQUEST_TIMEOUT, Duration::from_secs),
                base_url,
                client,
                auth: Authenticator::new(credentials),
                entities,
            }),
            policy: RetryPolicy::default(),
        })
    }

    /// The same connector with another in-process retry policy.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The profile this connector speaks.
    pub fn profile(&self) -> ProfileKind {
        self.inner.profile
    }

    /// The URL of an entity's resource (no credentials).
    pub fn entity_url(&self, entity: Entity) -> Option<String> {
        self.inner
            .entities
            .get(&entity)
            .map(|plan| display_url(&plan.url))
    }

    /// Starts reading `entity` within `range`. Nothing is requested until
    /// [`Crawl::next_page`].
    pub fn crawl(&self, entity: Entity, range: CrawlRange) -> Result<Crawl, ConnectorError> {
        let plan =
            self.inner.entities.get(&entity).cloned().ok_or_else(|| {
                ConnectorError::config(format!("entity {entity} is not supported"))
            })?;
        if let (Some(after), Some(until)) = (range.changed_after, range.changed_until)
            && after > until
        {
            return Err(ConnectorError::config(format!(
                "the crawl range is empty: changed_after {after} is later than changed_until {until}"
            )));
        }
        let position = match range.resume.clone() {
            Some(ResumeToken(position)) => position,
            None => Position::Offset(0),
        };
        Ok(Crawl {
            page_size: self.inner.page_size,
            inner: Arc::clone(&self.inner),
            policy: self.policy,
            plan,
            range,
            position: Some(position),
        })
    }

    /// Checks that the system answers and accepts the credentials by reading one page of one
    /// record of `entity`: the cheapest request that exercises URL, authentication and paging.
    /// Used to probe an offline connection before resuming its syncs.
    pub async fn probe(&self, entity: Entity) -> Result<(), ConnectorError> {
        let mut crawl = self.crawl(entity, CrawlRange::default())?;
        crawl.page_size = 1;
        crawl.next_page().await.map(|_| ())
    }
}

/// Appends an entity path to the base URL, keeping the base URL's own path prefix.
fn join_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}/{}", path.trim_start_matches('/')));
    url
}

/// An entity being read page by page. Get pages with [`Crawl::next_page`] until it returns
/// `Ok(None)`. After an error the crawl stays on the same page, so calling `next_page` again
/// retries it.
#[derive(Debug)]
pub struct Crawl {
    inner: Arc<Inner>,
    policy: RetryPolicy,
    plan: Arc<EntityPlan>,
    range: CrawlRange,
    /// Records per page asked for: the connection's setting, or 1 for a probe.
    page_size: u32,
    /// The next page; `None` once the last page was handed out.
    position: Option<Position>,
}

impl Crawl {
    /// Fetches, parses and maps the next page; `Ok(None)` when the crawl is complete.
    pub async fn next_page(&mut self) -> Result<Option<Page>, ConnectorError> {
        let Some(position) = self.position.clone() else {
            return Ok(None);
        };
        let inner = &*self.inner;
        let mapping = &self.plan.mapping;
        let updated_field = mapping.source_of("updated_at").unwrap_or("updated_at");
        let expand = mapping
            .source_of("lines")
            .and_then(|path| path.split('/').next());
        let key_field = mapping
            .source_of("external_key")
            .filter(|key| !key.contains('/'));
        let shape = RequestShape {
            profile: inner.profile,
            updated_field,
            key_field,
            expand,
            page_size: self.page_size,
            utc_offset: inner.utc_offset,
            changed_after: self.range.changed_after,
            changed_until: self.range.changed_until,
        };
        let url = match &position {
            Position::Offset(offset) => {
                let mut url = self.plan.url.clone();
                url.query_pairs_mut().extend_pairs(shape.query(*offset));
                url
            }
            Position::NextUrl(link) | Position::Window { next_url: link, .. } => {
                rewrite_onto_base(&inner.base_url, &self.plan.url, link)
                    .map_err(|reason| ConnectorError::config(format!("resume token: {reason}")))?
            }
        };
        let url_text = display_url(&url);
        let headers = shape.headers();
        let body = fetch(PageRequest {
            client: &inner.client,
            auth: &inner.auth,
            url: &url,
            headers: &headers,
            timeout: inner.timeout,
            policy: self.policy,
        })
        .await?;
        let bad_data = |position: String, reason: String| ConnectorError::BadData {
            url: url_text.clone(),
            position,
            reason,
        };
        let raw = parse_page(inner.profile, &body)
            .map_err(|failure| bad_data(failure.position, failure.reason))?;
        drop(body);
        let count = raw.records.len() as u64;
        let page_size = u64::from(self.page_size);
        let next = match (raw.next, &position) {
            (NextHint::Link(link), _) => {
                let next_url = rewrite_onto_base(&inner.base_url, &url, &link)
                    .map_err(|reason| bad_data("next-page link".into(), reason))?;
                if next_url == url {
                    return Err(bad_data(
                        "next-page link".into(),
                        "the next page link points at this same page".into(),
                    ));
                }
                let next_url = next_url.to_string();
                match (inner.profile, &position) {
                    (ProfileKind::ODataV2, Position::Offset(offset)) => Some(Position::Window {
                        next_url,
                        window_start: *offset,
                        seen: count,
                    }),
                    (
                        ProfileKind::ODataV2,
                        Position::Window {
                            window_start, seen, ..
                        },
                    ) => Some(Position::Window {
                        next_url,
                        window_start: *window_start,
                        seen: seen + count,
                    }),
                    _ => Some(Position::NextUrl(next_url)),
                }
            }
            (NextHint::More, Position::Offset(offset)) if count > 0 => {
                Some(Position::Offset(offset + count))
            }
            (NextHint::More, _) => {
                return Err(bad_data(
                    "hasMore".into(),
                    "the source says there is more but sent no records".into(),
                ));
            }
            // Client-driven paging: a full page (or window) may be followed by more.
            (NextHint::Silent, Position::Offset(offset)) if count > 0 && count >= page_size => {
                Some(Position::Offset(offset + count))
            }
            (
                NextHint::Silent,
                Position::Window {
                    window_start, seen, ..
                },
            ) if count > 0 && seen + count >= page_size => {
                Some(Position::Offset(window_start + seen + count))
            }
            (NextHint::Silent | NextHint::End, _) => None,
        };
        let mut records = Vec::with_capacity(raw.records.len());
        for (index, record) in raw.records.into_iter().enumerate() {
            let mapped = mapping.map(record).map_err(|failure| {
                bad_data(
                    format!("record {index}, field {}", failure.field),
                    failure.reason,
                )
            })?;
            records.push(mapped);
        }
        tracing::debug!(
            url = %url_text,
            records = records.len(),
            more = next.is_some(),
            "source page read"
        );
        self.position = next.clone();
        Ok(Some(Page {
            records,
            resume: next.map(ResumeToken),
            url: url_text,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_tokens_are_small_json() {
        let offset = ResumeToken(Position::Offset(1_000));
        assert_eq!(
            serde_json::to_string(&offset).unwrap(),
            r#"{"offset":1000}"#
        );
        let link = ResumeToken(Position::NextUrl("http://h/x?$skiptoken=5".into()));
        let json = serde_json::to_string(&link).unwrap();
        assert_eq!(json, r#"{"next_url":"http://h/x?$skiptoken=5"}"#);
        assert_eq!(serde_json::from_str::<ResumeToken>(&json).unwrap(), link);
        let window = ResumeToken(Position::Window {
            next_url: "http://h/x?$skiptoken=5".into(),
            window_start: 0,
            seen: 5,
        });
        let json = serde_json::to_string(&window).unwrap();
        assert_eq!(serde_json::from_str::<ResumeToken>(&json).unwrap(), window);
    }

    #[test]
    fn entity_paths_keep_the_base_prefix() {
        let base = Url::parse("https://gw.example.com/erp/").unwrap();
        assert_eq!(
            join_path(&base, "/maximo/api/os/mxapipo").as_str(),
            "https://gw.example.com/erp/maximo/api/os/mxapipo"
        );
        let bare = Url::parse("https://erp.example.com").unwrap();
        assert_eq!(
            join_path(&bare, "/x/y").as_str(),
            "https://erp.example.com/x/y"
        );
    }
}
