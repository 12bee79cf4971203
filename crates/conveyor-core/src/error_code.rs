//! The API's stable error codes and the error body every error response carries.
//!
//! Clients branch on `code`, never on `message`, so codes are SCREAMING_SNAKE_CASE constants that
//! are documented and never renamed; new codes may be added. Each code fixes its HTTP status and
//! its broad `type`, so the API cannot answer the same code with two statuses.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::RequestId;

/// A stable, documented API error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed: bad JSON, an unknown or missing field, a bad id or value.
    InvalidRequest,
    /// No API key, or one that is unknown or revoked.
    AuthenticationFailed,
    /// The key is valid but its role may not do this.
    PermissionDenied,
    /// No such resource, or one that belongs to another tenant.
    NotFound,
    /// The request conflicts with the resource's current state.
    Conflict,
    /// Too many requests for this API key; see `Retry-After`.
    RateLimitExceeded,
    /// A bug or an unexpected failure on our side; details are in the logs under the request id.
    InternalError,
    /// A dependency of the API (Redis) is unavailable; retry later.
    ServiceUnavailable,
    /// The connection's source system is unreachable; Conveyor keeps probing it.
    ConnectionUnreachable,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::InvalidRequest,
        ErrorCode::AuthenticationFailed,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::RateLimitExceeded,
        ErrorCode::InternalError,
        ErrorCode::ServiceUnavailable,
        ErrorCode::ConnectionUnreachable,
    ];

    /// The wire spelling of the code.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::AuthenticationFailed => "AUTHENTICATION_FAILED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::ConnectionUnreachable => "CONNECTION_UNREACHABLE",
        }
    }

    /// The HTTP status every response with this code has.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::AuthenticationFailed => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::RateLimitExceeded => 429,
            ErrorCode::InternalError => 500,
            ErrorCode::ServiceUnavailable | ErrorCode::ConnectionUnreachable => 503,
        }
    }

    /// The broad class of the error, for clients that group codes.
    pub const fn error_type(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request_error",
            ErrorCode::AuthenticationFailed => "authentication_error",
            ErrorCode::PermissionDenied => "permission_error",
            ErrorCode::NotFound => "not_found_error",
            ErrorCode::Conflict => "conflict_error",
            ErrorCode::RateLimitExceeded => "rate_limit_error",
            ErrorCode::InternalError => "api_error",
            ErrorCode::ServiceUnavailable => "service_unavailable_error",
            ErrorCode::ConnectionUnreachable => "connection_error",
        }
    }

    /// Whether a client may retry the same request later and expect a different answer.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimitExceeded
                | ErrorCode::InternalError
                | ErrorCode::ServiceUnavailable
                | ErrorCode::ConnectionUnreachable
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error response: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// The error itself.
    pub error: ApiErrorDetail,
}

/// The fields of an error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorDetail {
    /// The stable code clients branch on.
    pub code: ErrorCode,
    /// The broad class of the code (see [`ErrorCode::error_type`]).
    #[serde(rename = "type")]
    pub error_type: String,
    /// A human-readable explanation; may change between releases.
    pub message: String,
    /// The id of the request, also in the `X-Request-Id` header and the logs.
    pub request_id: RequestId,
}

impl ApiErrorBody {
    /// Builds the body for `code`, filling in the type from the code.
    pub fn new(code: ErrorCode, message: impl Into<String>, request_id: RequestId) -> Self {
        ApiErrorBody {
            error: ApiErrorDetail {
                code,
                error_type: code.error_type().to_owned(),
                message: message.into(),
                request_id,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_status_and_type() {
        let expected = [
            ("INVALID_REQUEST", 400, "invalid_request_error"),
            ("AUTHENTICATION_FAILED", 401, "authentication_error"),
            ("PERMISSION_DENIED", 403, "permission_error"),
            ("NOT_FOUND", 404, "not_found_error"),
            ("CONFLICT", 409, "conflict_error"),
            ("RATE_LIMIT_EXCEEDED", 429, "rate_limit_error"),
            ("INTERNAL_ERROR", 500, "api_error"),
            ("SERVICE_UNAVAILABLE", 503, "service_unavailable_error"),
            ("CONNECTION_UNREACHABLE", 503, "connection_error"),
        ];
        assert_eq!(ErrorCode::ALL.len(), expected.len());
        for (code, (text, status, kind)) in ErrorCode::ALL.iter().zip(expected) {
            assert_eq!(code.as_str(), text);
            assert_eq!(code.http_status(), status, "{text}");
            assert_eq!(code.error_type(), kind, "{text}");
            // serde and as_str agree, both ways.
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(&serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn error_body_has_the_documented_shape() {
        let request_id = RequestId::new();
        let body = ApiErrorBody::new(ErrorCode::RateLimitExceeded, "slow down", request_id);
        let value = serde_json::to_value(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"error": {
                "code": "RATE_LIMIT_EXCEEDED",
                "type": "rate_limit_error",
                "message": "slow down",
                "request_id": request_id.to_string(),
            }})
        );
        assert_eq!(serde_json::from_value::<ApiErrorBody>(value).unwrap(), body);
    }

    #[test]
    fn only_transient_codes_are_retryable() {
        assert!(ErrorCode::ServiceUnavailable.is_retryable());
        assert!(ErrorCode::RateLimitExceeded.is_retryable());
        assert!(!ErrorCode::InvalidRequest.is_retryable());
        assert!(!ErrorCode::NotFound.is_retryable());
    }
}
