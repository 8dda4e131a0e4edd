//! `IngestError`: why an ingest request was refused, rendered as `{"detail": "..."}` with the
//! status SDKs understand (429 carries `Retry-After` and `X-Sentry-Rate-Limits`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;
use crate::body::BodyError;
use crate::kafka::ProduceError;
use crate::project_config::ConfigError;
use crate::rate_limit::Limited;

pub const RATE_LIMITS_HEADER: &str = "x-sentry-rate-limits";

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid project id {0:?} in the URL: expected /api/<numeric project id>/envelope/")]
    ProjectIdSyntax(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("the DSN key is unknown or disabled; check the DSN the SDK is configured with")]
    KeyDisabled,
    #[error(
        "the DSN key belongs to project {key_project}, not project {url_project}; \
         use the DSN shown for that project"
    )]
    ProjectMismatch { url_project: u64, key_project: u64 },
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("rate limit exceeded ({reason}); retry in {retry_after} seconds", reason = .0.reason_code, retry_after = .0.retry_after)]
    RateLimited(Limited),
    #[error("{0}; retry shortly")]
    Config(#[from] ConfigError),
    #[error("event not stored: {0}; retry shortly")]
    Kafka(#[from] ProduceError),
    #[error("cannot encode the Kafka message: {0}")]
    Encode(#[from] serde_json::Error),
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        match self {
            IngestError::ProjectIdSyntax(_) => StatusCode::BAD_REQUEST,
            IngestError::Auth(_) => StatusCode::UNAUTHORIZED,
            IngestError::KeyDisabled | IngestError::ProjectMismatch { .. } => StatusCode::FORBIDDEN,
            IngestError::Body(BodyError::TooLarge { .. } | BodyError::EventTooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IngestError::Body(BodyError::UnsupportedEncoding(_)) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            IngestError::Body(_) => StatusCode::BAD_REQUEST,
            IngestError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            IngestError::Config(_) | IngestError::Kafka(_) => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The outcome reason recorded for the rejected items.
    pub fn reason(&self) -> &str {
        match self {
            IngestError::ProjectIdSyntax(_) | IngestError::ProjectMismatch { .. } => "project_id",
            IngestError::Auth(_) => "auth",
            IngestError::KeyDisabled => "disabled_key",
            IngestError::Body(BodyError::TooLarge { .. } | BodyError::EventTooLarge { .. }) => {
                "too_large"
            }
            IngestError::Body(_) => "invalid_envelope",
            IngestError::RateLimited(limited) => &limited.reason_code,
            IngestError::Config(_) => "project_config_unavailable",
            IngestError::Kafka(_) => "kafka_unavailable",
            IngestError::Encode(_) => "internal",
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (
            status,
            Json(serde_json::json!({ "detail": self.to_string() })),
        )
            .into_response();
        let headers = response.headers_mut();
        match &self {
            IngestError::RateLimited(limited) => {
                if let Ok(v) = HeaderValue::from_str(&limited.retry_after.to_string()) {
                    headers.insert(header::RETRY_AFTER, v);
                }
                if let Ok(v) = HeaderValue::from_str(&limited.header_value()) {
                    headers.insert(RATE_LIMITS_HEADER, v);
                }
            }
            IngestError::Config(_) | IngestError::Kafka(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}
