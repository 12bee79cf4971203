//! The HTTP side: one axum router with a handler per API family, the OAuth2 token endpoint, the
//! admin endpoints, faults, and the connection-cutting listener.
//!
//! Each family's handler reads the parameters its real system reads (`$filter`/`$top`/`$skip`/
//! `$skiptoken`, `Prefer: odata.maxpagesize`, `oslc.where`/`oslc.pageSize`/`pageno`,
//! `q`/`limit`/`offset`), answers errors in that system's error shape, and writes pages straight
//! into a byte buffer (see [`crate::render`]).

#![allow(
    clippy::result_large_err,
    reason = "helpers return a finished error Response for the handler to answer with; it is the rare path and boxing would only add noise"
)]

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::serve::Listener;
use chrono::Utc;
use conveyor_core::{Entity, ProfileKind};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use crate::data::{ListingView, RecordState, TimeBounds, keeps_deleted_with_flag, mix};
use crate::fault::{FaultKind, FaultSpec};
use crate::filter::parse_filter;
use crate::render::{RenderContext, write_record};
use crate::{ChangeRequest, Sim, profile_slot, slot};

type Params = Vec<(String, String)>;

/// Serves until `shutdown` completes.
pub(crate) async fn run(
    listener: TcpListener,
    sim: Arc<Sim>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let router = Router::new()
        .route("/sap/opu/odata/sap/{service}/{set}", get(odata_v2))
        .route(
            "/sap/opu/odata4/sap/{service}/srvd_a2x/sap/{group}/{version}/{set}",
            get(odata_v4),
        )
        .route("/oauth2/token", post(token))
        .route("/maximo/api/os/{structure}", get(oslc))
        .route("/fscmRestApi/resources/{version}/{resource}", get(oracle))
        .route("/admin/health", get(|| async { "ok" }))
        .route("/admin/entities/{entity}/changes", post(admin_changes))
        .route(
            "/admin/entities/{entity}/records/{index}/{action}",
            post(admin_record),
        )
        .route("/admin/faults", delete(admin_clear_faults))
        .route(
            "/admin/faults/{profile}",
            put(admin_set_fault).delete(admin_clear_fault),
        )
        .route("/admin/connections", put(admin_connections))
        .route("/admin/tokens/revoke", post(admin_revoke))
        .route("/admin/stats", get(admin_stats))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&sim),
            cut_when_refusing,
        ))
        .with_state(Arc::clone(&sim));
    let listener = CuttingListener {
        inner: listener,
        sim,
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Accepts connections, but drops them at once while the simulator refuses connections, so a
/// client sees its connection closed before any answer: the system is down.
struct CuttingListener {
    inner: TcpListener,
    sim: Arc<Sim>,
}

impl Listener for CuttingListener {
    type Io = TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, address) = Listener::accept(&mut self.inner).await;
            if self.sim.refuse_connections.load(Ordering::SeqCst) {
                drop(stream);
                continue;
            }
            return (stream, address);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Listener::local_addr(&self.inner)
    }
}

/// Open keep-alive connections would outlive a refusal at accept; this cuts them too.
async fn cut_when_refusing(
    State(sim): State<Arc<Sim>>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    if sim.refuse_connections.load(Ordering::SeqCst) && !request.uri().path().starts_with("/admin")
    {
        return cut_connection();
    }
    next.run(request).await
}

/// A response whose body fails at once: hyper aborts the connection mid-answer.
fn cut_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("connection cut by the simulator"))
    });
    Response::new(Body::from_stream(stream))
}

/// Background churn: creates, updates and deletes records at the configured rate.
pub(crate) async fn churn(sim: Arc<Sim>) {
    let tick = Duration::from_millis(100);
    let mut interval = tokio::time::interval(tick);
    let mut budget = 0.0;
    let mut random = sim.config.seed ^ 0xC0FF_EE00;
    loop {
        interval.tick().await;
        budget += sim.config.churn_per_second * tick.as_secs_f64();
        while budget >= 1.0 {
            budget -= 1.0;
            random = random.wrapping_add(1);
            let roll = mix(random);
            let entity = Entity::ALL[(roll % Entity::ALL.len() as u64) as usize];
            let request = match (roll >> 8) % 10 {
                0 => ChangeRequest {
                    create: 1,
                    ..ChangeRequest::default()
                },
                1 => ChangeRequest {
                    delete: 1,
                    ..ChangeRequest::default()
                },
                _ => ChangeRequest {
                    update: 1,
                    ..ChangeRequest::default()
                },
            };
            sim.apply_changes(entity, request);
        }
    }
}

// ----- shared listing machinery -----

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn number<T: std::str::FromStr>(
    profile: ProfileKind,
    params: &Params,
    name: &str,
) -> Result<Option<T>, Response> {
    match param(params, name) {
        None => Ok(None),
        Some(text) => text.trim().parse().map(Some).map_err(|_| {
            error(
                profile,
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER",
                &format!("`{name}` must be a non-negative number"),
            )
        }),
    }
}

/// What happens to a listing request before it is answered: counted, maybe faulted, checked.
enum Gate {
    Proceed { malformed: bool },
    Answer(Response),
}

async fn gate(sim: &Sim, profile: ProfileKind, headers: &HeaderMap) -> Gate {
    sim.counters[profile_slot(profile)]
        .list_requests
        .fetch_add(1, Ordering::SeqCst);
    let fault = sim
        .lock_faults()
        .get_mut(&profile)
        .and_then(|fault| fault.on_request());
    let mut malformed = false;
    if let Some(spec) = fault {
        tracing::debug!(profile = %profile, fault = ?spec.kind, "simulated fault");
        match spec.kind {
            FaultKind::Slow => {
                tokio::time::sleep(Duration::from_millis(spec.delay_ms.unwrap_or(2_000))).await;
            }
            FaultKind::MalformedPage => malformed = true,
            _ => return Gate::Answer(fault_response(profile, &spec)),
        }
    }
    if let Err(response) = authenticate(sim, profile, headers) {
        return Gate::Answer(response);
    }
    Gate::Proceed { malformed }
}

fn fault_response(profile: ProfileKind, spec: &FaultSpec) -> Response {
    match spec.kind {
        FaultKind::Outage => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>503 Service Unavailable</h1>No server is available to handle this request.</body></html>",
        )
            .into_response(),
        FaultKind::ConnectionDrop => cut_connection(),
        FaultKind::RateLimit => {
            let mut response = error(
                profile,
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMIT",
                "Too many requests; try again later",
            );
            let seconds = spec.retry_after_secs.unwrap_or(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        FaultKind::Unauthorized => unauthorized(profile),
        _ => {
            let status = spec
                .status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(profile, status, "INTERNAL", "Simulated server failure")
        }
    }
}

/// The error body of each family.
fn error(profile: ProfileKind, status: StatusCode, code: &str, message: &str) -> Response {
    let body = match profile {
        ProfileKind::ODataV2 => {
            json!({"error": {"code": code, "message": {"lang": "en", "value": message}}})
        }
        ProfileKind::ODataV4 => json!({"error": {"code": code, "message": message}}),
        ProfileKind::Oslc => json!({"Error": {
            "reasonCode": code,
            "message": message,
            "statusCode": status.as_u16().to_string(),
        }}),
        _ => json!({
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16().to_string(),
            "detail": message,
        }),
    };
    (status, axum::Json(body)).into_response()
}

fn unauthorized(profile: ProfileKind) -> Response {
    let (challenge, code, message) = match profile {
        ProfileKind::ODataV2 => (
            "Basic realm=\"SAP NetWeaver Application Server [SIM/100]\"",
            "/IWFND/CM_CONSUMER/101",
            "Logon failed",
        ),
        ProfileKind::ODataV4 => (
            "Bearer error=\"invalid_token\"",
            "401",
            "The access token is missing, invalid or expired",
        ),
        ProfileKind::Oslc => (
            "apikey",
            "BMXAA7901E",
            "You cannot log in at this time. Contact the system administrator.",
        ),
        _ => (
            "Basic realm=\"Oracle Fusion\"",
            "401",
            "Authentication failed",
        ),
    };
    let mut response = error(profile, StatusCode::UNAUTHORIZED, code, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

fn authenticate(sim: &Sim, profile: ProfileKind, headers: &HeaderMap) -> Result<(), Response> {
    let credentials = &sim.config.credentials;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let accepted = match profile {
        ProfileKind::ODataV2 | ProfileKind::OffsetHasMore => {
            authorization == Some(basic(&credentials.username, &credentials.password).as_str())
        }
        ProfileKind::ODataV4 => authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|token| token_valid(sim, token)),
        _ => headers
            .get("apikey")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|key| key == credentials.api_key),
    };
    if accepted {
        Ok(())
    } else {
        Err(unauthorized(profile))
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let bytes = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Tokens are `simtok.<generation>.<issued unix secs>.<nonce>`: valid while the generation is
/// current and the lifetime has not passed.
fn token_valid(sim: &Sim, token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some("simtok"), Some(generation), Some(issued), Some(_)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(generation), Ok(issued)) = (generation.parse::<u64>(), issued.parse::<i64>()) else {
        return false;
    };
    generation == sim.token_generation.load(Ordering::SeqCst)
        && Utc::now().timestamp() < issued.saturating_add(sim.config.token_ttl_secs as i64)
}

/// Builds a URL query, percent-encoding values (keeping `$` for OData's readability).
fn encode_query<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (key, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        percent_encode(&mut out, key);
        out.push('=');
        percent_encode(&mut out, value);
    }
    out
}

fn percent_encode(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'$') {
            out.push(char::from(byte));
        } else {
            let _ = std::fmt::Write::write_fmt(out, format_args!("%{byte:02X}"));
        }
    }
}

/// Where a listing starts.
enum Start {
    /// At this record index (skip tokens).
    Index(u64),
    /// At this position in the listing (`$skip`, `offset`, `pageno`).
    Offset(u64),
}

fn view(sim: &Sim, profile: ProfileKind, entity: Entity, bounds: TimeBounds) -> ListingView {
    let _ = sim;
    ListingView {
        bounds,
        granularity_ms: granularity_ms(profile),
        shows_deleted: keeps_deleted_with_flag(profile, entity),
    }
}

fn granularity_ms(profile: ProfileKind) -> i64 {
    if profile == ProfileKind::Oslc {
        1_000
    } else {
        1
    }
}

fn listing(
    sim: &Sim,
    entity: Entity,
    view: &ListingView,
    start: Start,
    limit: usize,
) -> (Vec<RecordState>, bool) {
    let data = sim.read_data();
    let records = &data.entities[slot(entity)];
    let first = match start {
        Start::Index(index) => Some(index),
        Start::Offset(offset) => records.index_at(view, offset),
    };
    match first {
        Some(first) => records.list(view, first, limit),
        None => (Vec::new(), false),
    }
}

fn filter_bounds(
    profile: ProfileKind,
    text: Option<&str>,
    field: &str,
) -> Result<TimeBounds, Response> {
    match text {
        None => Ok(TimeBounds::default()),
        Some(text) => parse_filter(profile, text, field, granularity_ms(profile))
            .map_err(|message| error(profile, StatusCode::BAD_REQUEST, "INVALID_FILTER", &message)),
    }
}

fn render_context<'a>(
    sim: &Sim,
    profile: ProfileKind,
    entity: Entity,
    expand_lines: bool,
    link_base: &'a str,
) -> RenderContext<'a> {
    RenderContext {
        profile,
        entity,
        seed: sim.config.seed,
        population: sim.config.records_per_entity,
        expand_lines,
        link_base,
        maximo_offset_secs: sim.maximo_offset_secs,
    }
}

fn write_records(out: &mut Vec<u8>, context: &RenderContext<'_>, records: &[RecordState]) {
    out.push(b'[');
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_record(out, context, *record);
    }
    out.push(b']');
}

fn json_page(mut body: Vec<u8>, malformed: bool, extra: &[(&'static str, String)]) -> Response {
    if malformed {
        // Cut in the middle, as a proxy that dropped the rest of the answer would.
        body.truncate(body.len() / 2);
    }
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, value);
        }
    }
    response
}

fn json_string(out: &mut Vec<u8>, text: &str) {
    // serde_json writes a correctly escaped string literal.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn not_found(profile: ProfileKind, what: &str) -> Response {
    error(
        profile,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!("Resource `{what}` does not exist"),
    )
}

// ----- SAP OData v2 -----

fn v2_entity(service: &str, set: &str) -> Option<Entity> {
    match (service, set) {
        ("API_PURCHASEORDER_PROCESS_SRV", "A_PurchaseOrder") => Some(Entity::PurchaseOrders),
        ("API_MAINTENANCEORDER", "MaintenanceOrder") => Some(Entity::WorkOrders),
        ("API_EQUIPMENT", "Equipment") => Some(Entity::Assets),
        ("API_BUSINESS_PARTNER", "A_Supplier") => Some(Entity::Vendors),
        _ => None,
    }
}

async fn odata_v2(
    State(sim): State<Arc<Sim>>,
    Path((service, set)): Path<(String, String)>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let profile = ProfileKind::ODataV2;
    let malformed = match gate(&sim, profile, &headers).await {
        Gate::Answer(response) => return response,
        Gate::Proceed { malformed } => malformed,
    };
    let Some(entity) = v2_entity(&service, &set) else {
        return not_found(profile, &format!("{service}/{set}"));
    };
    match odata_v2_page(&sim, entity, &service, &set, &params, malformed) {
        Ok(response) | Err(response) => response,
    }
}

fn odata_v2_page(
    sim: &Sim,
    entity: Entity,
    service: &str,
    set: &str,
    params: &Params,
    malformed: bool,
) -> Result<Response, Response> {
    let profile = ProfileKind::ODataV2;
    if param(params, "$format").is_some_and(|format| format != "json") {
        return Err(error(
            profile,
            StatusCode::BAD_REQUEST,
            "FORMAT",
            "The simulator answers $format=json only",
        ));
    }
    let bounds = filter_bounds(profile, param(params, "$filter"), "LastChangeDateTime")?;
    let expand = param(params, "$expand").is_some_and(|e| {
        e.split(',')
            .any(|part| part.trim() == "to_PurchaseOrderItem")
    });
    let top: Option<u64> = number(profile, params, "$top")?;
    let skip: Option<u64> = number(profile, params, "$skip")?;
    let token: Option<u64> = number(profile, params, "$skiptoken")?;
    let cap = u64::from(sim.config.max_page_size);
    let take = top.unwrap_or(cap).min(cap) as usize;
    let start = match token {
        Some(index) => Start::Index(index),
        None => Start::Offset(skip.unwrap_or(0)),
    };
    let view = view(sim, profile, entity, bounds);
    let (records, more) = listing(sim, entity, &view, start, take);
    let remaining = top.map(|top| top.saturating_sub(records.len() as u64));
    let base = sim.base_url();
    let context = render_context(sim, profile, entity, expand, base);
    let mut body = Vec::with_capacity(records.len() * 900 + 256);
    body.extend_from_slice(b"{\"d\":{\"results\":");
    write_records(&mut body, &context, &records);
    if let (true, Some(last)) = (more && remaining != Some(0), records.last()) {
        // The server cut the answer short: a `$skiptoken` link carries on, with what is left of
        // the client's `$top` window.
        let kept = params
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "$skiptoken" | "$skip" | "$top"))
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let token = (last.index + 1).to_string();
        let top_left = remaining.map(|r| r.to_string());
        let mut pairs: Vec<(&str, &str)> = kept.collect();
        if let Some(top_left) = &top_left {
            pairs.push(("$top", top_left));
        }
        pairs.push(("$skiptoken", &token));
        let link = format!(
            "{base}/sap/opu/odata/sap/{service}/{set}?{}",
            encode_query(pairs.into_iter())
        );
        body.extend_from_slice(b",\"__next\":");
        json_string(&mut body, &link);
    }
    body.extend_from_slice(b"}}");
    Ok(json_page(
        body,
        malformed,
        &[("dataserviceversion", "2.0".into())],
    ))
}

// ----- SAP OData v4 -----

fn v4_entity(service: &str, set: &str) -> Option<Entity> {
    match (service, set) {
        ("api_purchaseorder_2", "PurchaseOrder") => Some(Entity::PurchaseOrders),
        ("api_maintenanceorder", "MaintenanceOrder") => Some(Entity::WorkOrders),
        ("api_equipment", "Equipment") => Some(Entity::Assets),
        ("api_supplier", "Supplier") => Some(Entity::Vendors),
        _ => None,
    }
}

async fn odata_v4(
    State(sim): State<Arc<Sim>>,
    Path((service, _group, _version, set)): Path<(String, String, String, String)>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let profile = ProfileKind::ODataV4;
    let malformed = match gate(&sim, profile, &headers).await {
        Gate::Answer(response) => return response,
        Gate::Proceed { malformed } => malformed,
    };
    let Some(entity) = v4_entity(&service, &set) else {
        return not_found(profile, &format!("{service}/{set}"));
    };
    match odata_v4_page(&sim, entity, &set, &params, &headers, malformed) {
        Ok(response) | Err(response) => response,
    }
}

fn odata_v4_page(
    sim: &Sim,
    entity: Entity,
    set: &str,
    params: &Params,
    headers: &HeaderMap,
    malformed: bool,
) -> Result<Response, Response> {
    let profile = ProfileKind::ODataV4;
    let bounds = filter_bounds(profile, param(params, "$filter"), "LastChangeDateTime")?;
    let expand = param(params, "$expand")
        .is_some_and(|e| e.split(',').any(|part| part.trim() == "_PurchaseOrderItem"));
    let preferred = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("odata.maxpagesize="))
        .and_then(|n| n.trim().parse::<u32>().ok());
    let page_size = preferred
        .unwrap_or(sim.config.max_page_size)
        .clamp(1, sim.config.max_page_size);
    let token: Option<u64> = number(profile, params, "$skiptoken")?;
    let view = view(sim, profile, entity, bounds);
    let (records, more) = listing(
        sim,
        entity,
        &view,
        Start::Index(token.unwrap_or(0)),
        page_size as usize,
    );
    let base = sim.base_url();
    let context = render_context(sim, profile, entity, expand, base);
    let mut body = Vec::with_capacity(records.len() * 900 + 256);
    let _ = write!(body, "{{\"@odata.context\":\"$metadata#{set}\",\"value\":");
    write_records(&mut body, &context, &records);
    if let (true, Some(last)) = (more, records.last()) {
        // Relative to the resource, as SAP writes it.
        let token = (last.index + 1).to_string();
        let pairs = params
            .iter()
            .filter(|(k, _)| k != "$skiptoken")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(std::iter::once(("$skiptoken", token.as_str())));
        let link = format!("{set}?{}", encode_query(pairs));
        body.extend_from_slice(b",\"@odata.nextLink\":");
        json_string(&mut body, &link);
    }
    body.push(b'}');
    let mut extra = vec![("odata-version", "4.0".to_owned())];
    if let Some(preferred) = preferred {
        extra.push((
            "preference-applied",
            format!("odata.maxpagesize={preferred}"),
        ));
    }
    Ok(json_page(body, malformed, &extra))
}

#[derive(serde::Serialize)]
struct TokenAnswer {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

async fn token(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Form(form): Form<Params>,
) -> Response {
    sim.counters[profile_slot(ProfileKind::ODataV4)]
        .token_requests
        .fetch_add(1, Ordering::SeqCst);
    if param(&form, "grant_type") != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    let credentials = &sim.config.credentials;
    let in_form = param(&form, "client_id") == Some(credentials.client_id.as_str())
        && param(&form, "client_secret") == Some(credentials.client_secret.as_str());
    let in_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(basic(&credentials.client_id, &credentials.client_secret).as_str());
    if !(in_form || in_header) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({
                "error": "invalid_client",
                "error_description": "Client authentication failed",
            })),
        )
            .into_response();
    }
    let generation = sim.token_generation.load(Ordering::SeqCst);
    let nonce = mix(Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64);
    axum::Json(TokenAnswer {
        access_token: format!("simtok.{generation}.{}.{nonce:x}", Utc::now().timestamp()),
        token_type: "Bearer",
        expires_in: sim.config.token_ttl_secs,
    })
    .into_response()
}

// ----- IBM Maximo OSLC -----

fn oslc_entity(structure: &str) -> Option<Entity> {
    match structure.to_ascii_lowercase().as_str() {
        "mxapipo" => Some(Entity::PurchaseOrders),
        "mxapiwodetail" => Some(Entity::WorkOrders),
        "mxapiasset" => Some(Entity::Assets),
        "mxapivendor" => Some(Entity::Vendors),
        _ => None,
    }
}

async fn oslc(
    State(sim): State<Arc<Sim>>,
    Path(structure): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let profile = ProfileKind::Oslc;
    let malformed = match gate(&sim, profile, &headers).await {
        Gate::Answer(response) => return response,
        Gate::Proceed { malformed } => malformed,
    };
    let Some(entity) = oslc_entity(&structure) else {
        return not_found(profile, &structure);
    };
    match oslc_page(&sim, entity, &structure, &params, malformed) {
        Ok(response) | Err(response) => response,
    }
}

fn oslc_page(
    sim: &Sim,
    entity: Entity,
    structure: &str,
    params: &Params,
    malformed: bool,
) -> Result<Response, Response> {
    let profile = ProfileKind::Oslc;
    if param(params, "lean") != Some("1") {
        return Err(error(
            profile,
            StatusCode::BAD_REQUEST,
            "BMXAA0000E",
            "The simulator answers lean=1 only",
        ));
    }
    let bounds = filter_bounds(profile, param(params, "oslc.where"), "changedate")?;
    let page_size: u64 = number(profile, params, "oslc.pageSize")?
        .unwrap_or(1_000)
        .clamp(1, u64::from(sim.config.max_page_size));
    let page_number: u64 = number(profile, params, "pageno")?.unwrap_or(1).max(1);
    let view = view(sim, profile, entity, bounds);
    let (records, more) = listing(
        sim,
        entity,
        &view,
        Start::Offset((page_number - 1) * page_size),
        page_size as usize,
    );
    let link_base = if sim.config.maximo_internal_base.is_empty() {
        sim.base_url()
    } else {
        sim.config.maximo_internal_base.as_str()
    };
    let context = render_context(sim, profile, entity, true, link_base);
    let mut body = Vec::with_capacity(records.len() * 900 + 512);
    body.extend_from_slice(b"{\"member\":");
    write_records(&mut body, &context, &records);
    let kept: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k != "pageno")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let this_page = page_number.to_string();
    let here = format!(
        "{link_base}/maximo/api/os/{structure}?{}",
        encode_query(
            kept.iter()
                .copied()
                .chain(std::iter::once(("pageno", this_page.as_str())))
        )
    );
    let _ = write!(
        body,
        ",\"responseInfo\":{{\"pagenum\":{page_number},\"href\":"
    );
    json_string(&mut body, &here);
    if more {
        let next_page = (page_number + 1).to_string();
        let next = format!(
            "{link_base}/maximo/api/os/{structure}?{}",
            encode_query(
                kept.iter()
                    .copied()
                    .chain(std::iter::once(("pageno", next_page.as_str())))
            )
        );
        body.extend_from_slice(b",\"nextPage\":{\"href\":");
        json_string(&mut body, &next);
        body.push(b'}');
    }
    body.extend_from_slice(b"}}");
    Ok(json_page(body, malformed, &[]))
}

// ----- Oracle Fusion Cloud REST -----

/// Oracle caps `limit` at 500 whatever the client asks.
const ORACLE_MAX_LIMIT: u64 = 500;

fn oracle_entity(resource: &str) -> Option<Entity> {
    match resource {
        "purchaseOrders" => Some(Entity::PurchaseOrders),
        "maintenanceWorkOrders" => Some(Entity::WorkOrders),
        "installedBaseAssets" => Some(Entity::Assets),
        "suppliers" => Some(Entity::Vendors),
        _ => None,
    }
}

async fn oracle(
    State(sim): State<Arc<Sim>>,
    Path((version, resource)): Path<(String, String)>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let profile = ProfileKind::OffsetHasMore;
    let malformed = match gate(&sim, profile, &headers).await {
        Gate::Answer(response) => return response,
        Gate::Proceed { malformed } => malformed,
    };
    let Some(entity) = oracle_entity(&resource) else {
        return not_found(profile, &resource);
    };
    match oracle_page(
        &sim, entity, &version, &resource, &params, &headers, malformed,
    ) {
        Ok(response) | Err(response) => response,
    }
}

fn oracle_page(
    sim: &Sim,
    entity: Entity,
    version: &str,
    resource: &str,
    params: &Params,
    headers: &HeaderMap,
    malformed: bool,
) -> Result<Response, Response> {
    let profile = ProfileKind::OffsetHasMore;
    let framework = headers
        .get("rest-framework-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(1);
    // Framework version 1 joins `q` conditions with `;` only; later versions also take `and`.
    let raw_query = param(params, "q");
    if framework < 2 && raw_query.is_some_and(|q| q.to_ascii_lowercase().contains(" and ")) {
        return Err(error(
            profile,
            StatusCode::BAD_REQUEST,
            "400",
            "URL request parameter q with value 'and' is not valid before REST-Framework-Version 2",
        ));
    }
    let query = raw_query.map(|q| q.replace(';', " and "));
    let bounds = filter_bounds(profile, query.as_deref(), "LastUpdateDate")?;
    let limit = number(profile, params, "limit")?
        .unwrap_or(25u64)
        .clamp(1, ORACLE_MAX_LIMIT);
    let offset: u64 = number(profile, params, "offset")?.unwrap_or(0);
    let expand = param(params, "expand")
        .is_some_and(|e| e == "all" || e.split(',').any(|part| part.trim() == "lines"));
    let view = view(sim, profile, entity, bounds);
    let (records, more) = listing(sim, entity, &view, Start::Offset(offset), limit as usize);
    let base = sim.base_url();
    let context = render_context(sim, profile, entity, expand, base);
    let mut body = Vec::with_capacity(records.len() * 900 + 512);
    body.extend_from_slice(b"{\"items\":");
    write_records(&mut body, &context, &records);
    let _ = write!(
        body,
        ",\"count\":{},\"hasMore\":{more},\"limit\":{limit},\"offset\":{offset},\"links\":[{{\"rel\":\"self\",\"href\":\"{base}/fscmRestApi/resources/{version}/{resource}\",\"name\":\"{resource}\",\"kind\":\"collection\"}}]}}",
        records.len()
    );
    Ok(json_page(body, malformed, &[]))
}

// ----- admin -----

fn admin_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

fn parse_entity(text: &str) -> Result<Entity, Response> {
    text.parse().map_err(|e: conveyor_core::UnknownVariant| {
        admin_error(StatusCode::NOT_FOUND, &e.to_string())
    })
}

fn parse_profile(text: &str) -> Result<ProfileKind, Response> {
    ProfileKind::ALL
        .iter()
        .copied()
        .find(|p| p.as_str() == text)
        .ok_or_else(|| admin_error(StatusCode::NOT_FOUND, &format!("unknown profile `{text}`")))
}

async fn admin_changes(
    State(sim): State<Arc<Sim>>,
    Path(entity): Path<String>,
    axum::Json(request): axum::Json<ChangeRequest>,
) -> Response {
    match parse_entity(&entity) {
        Ok(entity) => axum::Json(sim.apply_changes(entity, request)).into_response(),
        Err(response) => response,
    }
}

async fn admin_record(
    State(sim): State<Arc<Sim>>,
    Path((entity, index, action)): Path<(String, u64, String)>,
) -> Response {
    let entity = match parse_entity(&entity) {
        Ok(entity) => entity,
        Err(response) => return response,
    };
    let at = match action.as_str() {
        "update" => sim.update(entity, index),
        "delete" => sim.delete(entity, index),
        _ => return admin_error(StatusCode::NOT_FOUND, "action must be update or delete"),
    };
    match at {
        Some(at) => axum::Json(json!({"index": index, "at": at})).into_response(),
        None => admin_error(StatusCode::NOT_FOUND, "no live record at that index"),
    }
}

async fn admin_set_fault(
    State(sim): State<Arc<Sim>>,
    Path(profile): Path<String>,
    axum::Json(spec): axum::Json<FaultSpec>,
) -> Response {
    match parse_profile(&profile) {
        Ok(profile) => {
            sim.set_fault(profile, spec);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(response) => response,
    }
}

async fn admin_clear_fault(State(sim): State<Arc<Sim>>, Path(profile): Path<String>) -> Response {
    match parse_profile(&profile) {
        Ok(profile) => {
            sim.clear_fault(profile);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(response) => response,
    }
}

async fn admin_clear_faults(State(sim): State<Arc<Sim>>) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

#[derive(serde::Deserialize)]
struct ConnectionsSetting {
    refuse: bool,
}

async fn admin_connections(
    State(sim): State<Arc<Sim>>,
    axum::Json(setting): axum::Json<ConnectionsSetting>,
) -> StatusCode {
    sim.set_refuse_connections(setting.refuse);
    StatusCode::NO_CONTENT
}

async fn admin_revoke(State(sim): State<Arc<Sim>>) -> StatusCode {
    sim.revoke_tokens();
    StatusCode::NO_CONTENT
}

async fn admin_stats(State(sim): State<Arc<Sim>>) -> Response {
    let stats: serde_json::Map<String, serde_json::Value> = ProfileKind::ALL
        .iter()
        .map(|p| (p.as_str().to_owned(), json!(sim.stats(*p))))
        .collect();
    let live: serde_json::Map<String, serde_json::Value> = Entity::ALL
        .iter()
        .map(|e| (e.as_str().to_owned(), json!(sim.live_count(*e))))
        .collect();
    axum::Json(json!({"profiles": stats, "live_records": live})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_query_encoding() {
        assert_eq!(base64(b"svc:hunter2"), "c3ZjOmh1bnRlcjI=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(
            encode_query(
                [
                    ("$filter", "A gt datetimeoffset'x'"),
                    ("oslc.orderBy", "+changedate")
                ]
                .into_iter()
            ),
            "$filter=A%20gt%20datetimeoffset%27x%27&oslc.orderBy=%2Bchangedate"
        );
    }
}
