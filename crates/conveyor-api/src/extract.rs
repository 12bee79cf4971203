//! Extractors that turn every malformed input into the API's one error shape.
//!
//! axum's own extractors answer with plain-text bodies and a mix of statuses. Ours answer 400
//! INVALID_REQUEST with a message naming the field and the problem (through
//! `serde_path_to_error`), so a client sees `entities[1]: unknown entity "invoices"; expected one
//! of: ...` rather than a generic parse failure.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body, deserialized with errors that name the field.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::invalid(
                "the body must be JSON with `content-type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::invalid(format!(
                        "the body is larger than the limit of {MAX_BODY_BYTES} bytes"
                    ))
                } else {
                    ApiError::invalid(format!("the body could not be read: {rejection}"))
                }
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserializes `bytes`, naming the offending field in the error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let problem = describe_json_error(&inner);
        if path == "." || path.is_empty() {
            ApiError::invalid(format!("invalid JSON body: {problem}"))
        } else {
            ApiError::invalid(format!("field `{path}`: {problem}"))
        }
    })?;
    deserializer.end().map_err(|err| {
        ApiError::invalid(format!("invalid JSON body: {}", describe_json_error(&err)))
    })?;
    Ok(value)
}

fn describe_json_error(err: &serde_json::Error) -> String {
    // serde_json appends " at line L column C"; keep it for syntax errors (it locates the typo)
    // but present data errors as sentences.
    let text = err.to_string();
    match err.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("malformed JSON: {text}")
        }
        _ => text
            .rsplit_once(" at line ")
            .map(|(head, _)| head.to_owned())
            .unwrap_or(text),
    }
}

/// Query parameters, with errors that name the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|err| {
                let path = err.path().to_string();
                let inner = err.into_inner();
                if path == "." || path.is_empty() {
                    ApiError::invalid(format!("invalid query string: {inner}"))
                } else {
                    ApiError::invalid(format!("query parameter `{path}`: {inner}"))
                }
            })
    }
}

/// Path parameters (ids), with errors that name the parameter and the expected form.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ApiError::invalid(format!(
                "invalid path: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// Parses the id in path parameter `name`, naming it in the error.
pub fn path_id<T>(name: &str, value: &str) -> Result<T, ApiError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|err| ApiError::invalid(format!("path parameter `{name}`: {err}")))
}

/// Largest page a list returns.
pub const MAX_LIMIT: u32 = 100;
/// Page size when a list request gives none.
pub const DEFAULT_LIMIT: u32 = 20;

/// The page size of a list request: `limit` within 1..=[`MAX_LIMIT`], [`DEFAULT_LIMIT`] when
/// absent.
pub fn page_limit(limit: Option<u32>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT as usize),
        Some(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit as usize),
        Some(_) => Err(ApiError::invalid(format!(
            "query parameter `limit`: must be between 1 and {MAX_LIMIT}"
        ))),
    }
}

/// Maps a store error on a paged read: a cursor the store refuses is the client's mistake.
pub fn cursor_error(err: conveyor_store::StoreError) -> ApiError {
    match err {
        conveyor_store::StoreError::Invalid(message) => {
            ApiError::invalid(format!("query parameter `cursor`: {message}"))
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use conveyor_core::{Entity, SyncMode};
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "fields are only deserialized")]
    struct Body {
        entities: Vec<Entity>,
        mode: SyncMode,
        limit: Option<u32>,
    }

    fn message(json: &str) -> String {
        let err = parse_json::<Body>(json.as_bytes()).unwrap_err();
        assert_eq!(err.code(), conveyor_core::ErrorCode::InvalidRequest);
        format!("{err:?}")
    }

    #[test]
    fn errors_name_the_field_and_the_problem() {
        let cases = [
            (
                r#"{"entities": ["assets", "invoices"], "mode": "full"}"#,
                "entities[1]",
            ),
            (r#"{"entities": ["assets"], "mode": "partial"}"#, "mode"),
            (
                r#"{"entities": ["assets"], "mode": "full", "limit": "ten"}"#,
                "limit",
            ),
            (
                r#"{"entities": ["assets"], "mode": "full", "colour": 1}"#,
                "unknown field `colour`",
            ),
            (r#"{"entities": ["assets"]}"#, "missing field `mode`"),
            (
                r#"{"entities": ["assets"], "mode": "full""#,
                "malformed JSON",
            ),
            (
                r#"{"entities": [], "mode": "full"} trailing"#,
                "invalid JSON body",
            ),
        ];
        for (json, expected) in cases {
            let text = message(json);
            assert!(text.contains(expected), "{json} -> {text}");
        }
        assert!(
            message(r#"{"entities": ["x"], "mode": "full"}"#)
                .contains("expected one of: purchase_orders")
        );
    }

    #[test]
    fn valid_bodies_parse() {
        let body: Body = parse_json(br#"{"entities": ["assets"], "mode": "incremental"}"#).unwrap();
        assert_eq!(body.entities, [Entity::Assets]);
    }
}
