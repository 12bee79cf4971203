//! The OpenAPI 3.1 document, generated from the handlers themselves.
//!
//! Every route is registered through `utoipa_axum`'s `routes!`, which takes the route's path and
//! method from the handler's `#[utoipa::path]` attribute: a route cannot exist without its
//! documentation. The document is built once and served at `/v1/openapi.json`.

use std::sync::OnceLock;

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// Top-level document metadata; paths are added by the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Conveyor API",
        description = "Keep copies of ERP/CMMS/EAM records fresh: connections, syncs, records, operations.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody, ErrorDetail))
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: `Authorization: Bearer cvk_...`"))
                    .build(),
            ),
        );
    }
}

/// The body of every error response (mirrors `conveyor_core::ApiErrorBody`, which stays free of
/// documentation dependencies).
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "exists only to describe the wire shape")]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// The fields of an error response.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "exists only to describe the wire shape")]
pub(crate) struct ErrorDetail {
    /// Stable code clients branch on.
    #[schema(example = "RATE_LIMIT_EXCEEDED")]
    code: String,
    /// Broad class of the code.
    #[schema(rename = "type", example = "rate_limit_error")]
    r#type: String,
    /// Human-readable explanation; may change between releases.
    message: String,
    /// The request id, also in the `X-Request-Id` header.
    #[schema(example = "req_01JD0000000000000000000000")]
    request_id: String,
}

static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();

/// The complete document (metadata plus every route's path item).
pub fn document() -> &'static utoipa::openapi::OpenApi {
    DOCUMENT.get_or_init(|| {
        let mut document = crate::routes().into_openapi();
        add_common_responses(&mut document);
        document
    })
}

/// The exact form of a path parameter, by its name: handlers take ids as text and parse them
/// (to name the parameter in a 400), so their attributes say only `string`; the document says
/// what parses, and a client or fuzzer can build valid paths from it.
fn path_parameter_schema(name: &str) -> Option<utoipa::openapi::Schema> {
    use conveyor_core::{ApiKeyId, ConnectionId, DeliveryId, EndpointId, JobId, SyncId};
    let object = match name {
        "connection_id" => crate::schema::id(ConnectionId::PREFIX),
        "sync_id" => crate::schema::id(SyncId::PREFIX),
        "job_id" => crate::schema::id(JobId::PREFIX),
        "api_key_id" => crate::schema::id(ApiKeyId::PREFIX),
        "endpoint_id" => crate::schema::id(EndpointId::PREFIX),
        "delivery_id" => crate::schema::id(DeliveryId::PREFIX),
        "entity" => crate::schema::entity(),
        _ => return None,
    };
    Some(utoipa::openapi::Schema::Object(object))
}

/// Answers that do not depend on the handler, with why they happen: the auth middleware (401,
/// 403, 429), Redis (503), path parameters (400, 404) and anything unforeseen (500).
const AUTHENTICATED: [(&str, &str); 5] = [
    ("401", "No API key, or an unknown or revoked one"),
    ("403", "The key's role may not do this"),
    (
        "429",
        "The key's rate limit is spent; see `Retry-After` and the `RateLimit-*` headers",
    ),
    (
        "500",
        "Internal error; quote the request id when reporting it",
    ),
    (
        "503",
        "Redis is unavailable; retry after `Retry-After` seconds",
    ),
];
const WITH_PATH_PARAMETERS: [(&str, &str); 2] = [
    ("400", "A path parameter is malformed"),
    ("404", "No such resource in this tenant"),
];

/// Documents on every operation the statuses every handler of its kind can answer, so that a
/// client (and schemathesis) finds each one described: a route's own list names only what its
/// handler decides; operation ids get their tag in front, so they are unique. Every response
/// also gets the `X-Request-Id` header, the authenticated ones
/// the `RateLimit-*` headers, and 429 and 503 the `Retry-After` header.
fn add_common_responses(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::header::{Header, HeaderBuilder};
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Type};

    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    let text = |description: &str| {
        HeaderBuilder::new()
            .schema(Some(utoipa::openapi::Object::with_type(Type::String)))
            .description(Some(description))
            .build()
    };
    let integer = |description: &str| -> Header {
        HeaderBuilder::new()
            .schema(Some(utoipa::openapi::Object::with_type(Type::Integer)))
            .description(Some(description))
            .build()
    };
    for (path, item) in document.paths.paths.iter_mut() {
        let has_path_parameters = path.contains('{');
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            // Handlers are named for what they do within their module (`list`, `get`), so the
            // bare names repeat across modules; OpenAPI wants each operationId unique.
            if let (Some(id), Some(tag)) = (
                operation.operation_id.as_mut(),
                operation.tags.as_ref().and_then(|tags| tags.first()),
            ) {
                *id = format!("{tag}_{id}");
            }
            for parameter in operation.parameters.iter_mut().flatten() {
                let RefOr::T(parameter) = parameter else {
                    continue;
                };
                if parameter.parameter_in == utoipa::openapi::path::ParameterIn::Path
                    && let Some(schema) = path_parameter_schema(&parameter.name)
                {
                    parameter.schema = Some(RefOr::T(schema));
                }
            }
            let authenticated = operation.security.is_some();
            let responses = &mut operation.responses.responses;
            if authenticated {
                for (status, description) in AUTHENTICATED {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| RefOr::T(error(description)));
                }
                if has_path_parameters {
                    for (status, description) in WITH_PATH_PARAMETERS {
                        responses
                            .entry(status.to_owned())
                            .or_insert_with(|| RefOr::T(error(description)));
                    }
                }
            }
            for (status, response) in responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if status == "429" || status == "503" {
                    response.headers.insert(
                        "Retry-After".to_owned(),
                        RefOr::T(integer("Seconds to wait before trying again")),
                    );
                }
                response.headers.insert(
                    "X-Request-Id".to_owned(),
                    RefOr::T(text(
                        "This request's id (`req_...`), also in error bodies and logs",
                    )),
                );
                if authenticated {
                    for (name, description) in [
                        ("RateLimit-Limit", "Requests a minute this key may make"),
                        ("RateLimit-Remaining", "Requests left in the current burst"),
                        ("RateLimit-Reset", "Seconds until the budget is full again"),
                    ] {
                        response
                            .headers
                            .insert(name.to_owned(), RefOr::T(integer(description)));
                    }
                }
            }
        }
    }
}

/// `GET /v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json"))
)]
pub(crate) async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(document())
}
