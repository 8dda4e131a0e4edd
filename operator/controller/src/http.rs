//! `/healthz` and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct HttpState {
    pub registry: Arc<Registry>,
}

/// The operator's HTTP routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn serves_health_and_metrics() {
        let mut registry = Registry::default();
        let metrics = crate::metrics::Metrics::register(&mut registry);
        metrics.reconciled("region", std::time::Duration::from_millis(3));
        metrics.error("region", "ApplyFailed");
        let app = router(HttpState {
            registry: Arc::new(registry),
        });
        let health = app
            .clone()
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        let response = app
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("silo_operator_reconciles_total{controller=\"region\"} 1"));
        assert!(text.contains(
            "silo_operator_reconcile_errors_total{controller=\"region\",reason=\"ApplyFailed\"} 1"
        ));
        assert!(
            text.contains(
                "silo_operator_reconcile_duration_seconds_count{controller=\"region\"} 1"
            )
        );
    }
}
