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
    DOCUMENT.get_or_init(|| crate::routes().into_openapi())
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
