//! `AppError`: every failure a handler can return, rendered as Sentry's `{"detail": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use silo_store::StoreError;

/// A request failed. The message is shown to the API client, so it says what to change.
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
    /// A dependency (the database) is down; the client should retry.
    #[error("{0}")]
    Unavailable(String),
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
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            tracing::warn!(%error, "database unavailable");
            return AppError::Unavailable(
                "The database is unavailable; retry the request shortly.".to_owned(),
            );
        }
        match error {
            StoreError::Conflict { what } => AppError::Conflict(format!("{what} already exists")),
            other => {
                tracing::error!(error = %other, "database query failed");
                AppError::Internal(other.to_string())
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (
            status,
            Json(serde_json::json!({ "detail": self.to_string() })),
        )
            .into_response();
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
