//! `AppError`: every failure a handler can return, rendered as Sentry's `{"detail": "..."}`.
//! Failures inside the service (a query that failed, a dependency that is down) are logged in
//! full with a new request id; the client gets a stable message with that id (and `errorId`,
//! as Sentry answers), never the internal error text.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use silo_runtime::RequestId;
use silo_store::StoreError;

/// A request failed. The message of a 4xx is shown to the API client, so it says what to
/// change; the detail of `Dependency` and `Internal` goes only to the log.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Malformed input: bad JSON, a path id that is not a number, an invalid field.
    #[error("{0}")]
    BadRequest(String),
    /// No or unknown credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials without the needed scope.
    #[error("{0}")]
    Forbidden(String),
    #[error("The requested resource does not exist")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// The service cannot answer as configured (e.g. no monolith region); the message says
    /// why and is shown as it is.
    #[error("{0}")]
    Unavailable(String),
    /// A dependency failed (`what`: the database, a region); the client should retry.
    #[error("{what} is unavailable: {detail}")]
    Dependency { what: String, detail: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Unavailable(_) | AppError::Dependency { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body: the message itself, or for failures inside the service a stable
    /// message and the request id the full error was logged under.
    fn body(&self) -> serde_json::Value {
        let id = RequestId::new();
        let detail = match self {
            AppError::Dependency { what, .. } => {
                tracing::warn!(request_id = %id, error = %self, "dependency unavailable");
                format!("{what} is unavailable; retry the request shortly (request id {id}).")
            }
            AppError::Internal(_) => {
                tracing::error!(request_id = %id, error = %self, "request failed");
                format!("Internal Error (request id {id}); the server log has the details.")
            }
            other => return serde_json::json!({ "detail": other.to_string() }),
        };
        serde_json::json!({ "detail": detail, "errorId": id.as_str() })
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            return AppError::Dependency {
                what: "The database".to_owned(),
                detail: error.to_string(),
            };
        }
        match error {
            StoreError::Conflict { what } => AppError::Conflict(format!("{what} already exists")),
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(self.body())).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Status, `Retry-After` and the JSON body of `error`'s response.
    async fn render(error: AppError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let retry = response
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    /// The request id in `detail`: the 32 hex digits after "request id ".
    fn request_id(detail: &str) -> &str {
        let start = detail.find("request id ").expect("names a request id") + 11;
        let id = &detail[start..(start + 32).min(detail.len())];
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{detail}");
        id
    }

    #[tokio::test]
    async fn a_failed_query_answers_500_with_a_request_id_and_no_internals() {
        let error = StoreError::db("loading issues", None)(sqlx::Error::Protocol(
            "relation \"groups\" does not exist".into(),
        ));
        let (status, _, body) = render(error.into()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let detail = body["detail"].as_str().unwrap();
        assert!(
            !detail.contains("groups") && !detail.contains("database error"),
            "{detail}"
        );
        assert_eq!(body["errorId"].as_str(), Some(request_id(detail)));
    }

    #[tokio::test]
    async fn a_database_outage_answers_503_with_a_request_id() {
        let error = StoreError::db("loading issues", None)(sqlx::Error::PoolTimedOut);
        let (status, retry, body) = render(error.into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("5"));
        let detail = body["detail"].as_str().unwrap();
        assert!(!detail.contains("pool"), "{detail}");
        assert!(detail.contains("database"), "{detail}");
        request_id(detail);
    }

    #[tokio::test]
    async fn two_failures_get_different_ids_and_client_errors_none() {
        let fail = || StoreError::Invalid("cursor 7:x".into()).into();
        let (_, _, first) = render(fail()).await;
        let (_, _, second) = render(fail()).await;
        assert_ne!(first["errorId"], second["errorId"]);
        let (status, _, body) = render(AppError::BadRequest("name: required".into())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, serde_json::json!({"detail": "name: required"}));
    }
}
