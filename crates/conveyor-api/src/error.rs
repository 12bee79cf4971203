//! The one error type every handler returns, and how it becomes a response.
//!
//! Every error response has the same body, `{"error": {"code", "type", "message",
//! "request_id"}}`, with a stable code from [`ErrorCode`]. A 5xx never shows internals: the client
//! gets a safe message and the request id, while the real cause goes to the log under that id.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use conveyor_core::{ApiErrorBody, ErrorCode};

use crate::request_id;

/// An API error: a stable code, a message for the client, and maybe a cause for the log.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    cause: Option<anyhow::Error>,
    retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with `code` and a message the client may see.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            cause: None,
            retry_after: None,
        }
    }

    /// 400 INVALID_REQUEST.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// 404 NOT_FOUND for `what` (also the answer for another tenant's resource).
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// 500 INTERNAL_ERROR: `cause` is logged, never shown.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        ApiError {
            code: ErrorCode::InternalError,
            message: "internal error; quote the request id when reporting it".to_owned(),
            cause: Some(cause.into()),
            retry_after: None,
        }
    }

    /// 503 SERVICE_UNAVAILABLE: a dependency (Redis) is down; `cause` is logged.
    pub fn unavailable(cause: impl Into<anyhow::Error>) -> Self {
        ApiError {
            code: ErrorCode::ServiceUnavailable,
            message: "the service is temporarily unavailable; retry shortly".to_owned(),
            cause: Some(cause.into()),
            retry_after: Some(Duration::from_secs(1)),
        }
    }

    /// Adds a `Retry-After` header (rate limits, unavailability).
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = request_id::current();
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            match &self.cause {
                Some(cause) => {
                    tracing::error!(code = %self.code, error = format!("{cause:#}"), "request failed")
                }
                None => {
                    tracing::error!(code = %self.code, message = %self.message, "request failed")
                }
            }
        } else {
            tracing::debug!(code = %self.code, message = %self.message, "request rejected");
        }
        let body = ApiErrorBody::new(self.code, self.message, request_id);
        let mut response = (status, Json(body)).into_response();
        if let Some(retry_after) = self.retry_after {
            // Whole seconds, rounded up, so a client never retries early.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            if let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// The body of a handler's error path.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<conveyor_store::StoreError> for ApiError {
    fn from(err: conveyor_store::StoreError) -> Self {
        use conveyor_store::StoreError;
        match err {
            StoreError::NotFound { what, id } => ApiError::not_found(format!("{what} `{id}`")),
            StoreError::Conflict { .. } => ApiError::new(ErrorCode::Conflict, err.to_string()),
            StoreError::Invalid(message) => ApiError::invalid(message),
            StoreError::Unavailable(_) => ApiError::unavailable(err),
            // Corrupt data and undecryptable credentials are ours to fix, never the client's.
            other => ApiError::internal(other),
        }
    }
}

impl From<conveyor_queue::QueueError> for ApiError {
    fn from(err: conveyor_queue::QueueError) -> Self {
        if err.is_retryable() {
            ApiError::unavailable(err)
        } else {
            ApiError::internal(err)
        }
    }
}

impl From<conveyor_sync::EnqueueError> for ApiError {
    fn from(err: conveyor_sync::EnqueueError) -> Self {
        match err {
            conveyor_sync::EnqueueError::Queue(err) => err.into(),
            conveyor_sync::EnqueueError::Store(err) => err.into(),
        }
    }
}
