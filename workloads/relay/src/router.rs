//! Routes: Sentry's ingest endpoints (with and without the trailing slash SDKs send).

use std::sync::Arc;

use axum::Router;
use axum::routing::post;

use crate::ingest;
use crate::state::RelayState;

pub fn router(state: Arc<RelayState>) -> Router {
    Router::new()
        .route("/api/{project_id}/envelope/", post(ingest::envelope))
        .route("/api/{project_id}/envelope", post(ingest::envelope))
        .route("/api/{project_id}/store/", post(ingest::store))
        .route("/api/{project_id}/store", post(ingest::store))
        .with_state(state)
}
