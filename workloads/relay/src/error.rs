//! `IngestError`: why an ingest request was refused, rendered as `{"detail": "..."}` with the
//! status SDKs understand (429 carries `Retry-After` and `X-Sentry-Rate-Limits`). A failure
//! inside relay (Kafka, the project config source, encoding) is logged in full with a new
//! request id; the SDK gets a stable message with that id, never the internal error text.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use silo_runtime::RequestId;

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

impl IngestError {
    /// What the client is told: the message itself for its own mistakes; for failures inside
    /// relay a stable message with the request id the full error was logged under.
    fn detail(&self) -> String {
        let public = match self {
            IngestError::Config(_) => "project config unavailable; retry shortly",
            IngestError::Kafka(_) => {
                "event not stored: the event queue is unavailable; retry shortly"
            }
            IngestError::Encode(_) => "event not stored: internal error",
            other => return other.to_string(),
        };
        let id = RequestId::new();
        tracing::warn!(request_id = %id, reason = self.reason(), error = %self, "ingest failed");
        format!("{public} (request id {id})")
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response =
            (status, Json(serde_json::json!({ "detail": self.detail() }))).into_response();
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    use super::*;

    async fn render(error: IngestError) -> (StatusCode, Option<String>, String) {
        let response = error.into_response();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        (status, retry, body["detail"].as_str().unwrap().to_owned())
    }

    /// Whether `detail` names a request id: 32 hex digits after "request id ".
    fn has_request_id(detail: &str) -> bool {
        detail.find("request id ").is_some_and(|i| {
            let id: String = detail[i + 11..].chars().take(32).collect();
            id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())
        })
    }

    #[tokio::test]
    async fn kafka_and_config_failures_answer_503_without_their_internals() {
        let kafka = IngestError::Kafka(ProduceError::Delivery {
            timeout: Duration::from_secs(5),
            source: KafkaError::MessageProduction(RDKafkaErrorCode::BrokerTransportFailure),
        });
        let config = IngestError::Config(ConfigError(
            "POST http://web.region-de.svc:8000/api/0/relays/projectconfigs/ failed".into(),
        ));
        for (error, leak) in [(kafka, "Broker"), (config, "http://")] {
            let (status, retry, detail) = render(error).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(retry.as_deref(), Some("5"));
            assert!(!detail.contains(leak), "{detail}");
            assert!(detail.contains("retry"), "{detail}");
            assert!(has_request_id(&detail), "{detail}");
        }
    }

    #[tokio::test]
    async fn client_errors_keep_their_message() {
        let (status, _, detail) = render(IngestError::KeyDisabled).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(detail, IngestError::KeyDisabled.to_string());
        assert!(!has_request_id(&detail));
    }
}
