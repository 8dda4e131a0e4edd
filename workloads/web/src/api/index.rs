//! `GET /api/0/`: the API index, which `sentry-cli info` reads to check its credentials.
//!
//! ```text
//!  no Authorization ─► 200 {"version": "0", "auth": null, "user": null}
//!  Bearer <valid>   ─► 200 {"version": "0", "auth": {"scopes": [...]}, "user": null}
//!  Bearer <unknown> ─► 401 (as Sentry answers a bad token)
//! ```
//!
//! Served by every silo; tokens are looked up in the process's own database (control's
//! directory in CONTROL and MONOLITH, the region's tokens in REGION). Tokens belong to no user
//! here, so `user` is always null.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::IntoResponse;
use silo_store::api_tokens;

use crate::error::{ApiResult, AppError};
use crate::state::AppState;

pub async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let auth = match headers.get(AUTHORIZATION) {
        None => None,
        Some(value) => {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    AppError::Unauthorized(
                        "Invalid Authorization header: expected \"Bearer <token>\".".to_owned(),
                    )
                })?;
            let found = api_tokens::authenticate(&state.pool, token)
                .await?
                .ok_or_else(|| AppError::Unauthorized("Invalid token.".to_owned()))?;
            Some(serde_json::json!({ "scopes": found.scopes }))
        }
    };
    Ok(axum::Json(serde_json::json!({
        "version": "0",
        "auth": auth,
        "user": null,
    })))
}
