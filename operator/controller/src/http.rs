//! `/healthz` (process alive), `/readyz` (every watch has listed its objects once) and
//! `/metrics`: the workloads' admin router, shared through silo-runtime.

use std::sync::Arc;

use axum::Router;
use prometheus_client::registry::Registry;
use silo_runtime::{AdminState, Readiness, admin_router};

/// The operator's HTTP routes.
pub fn router(registry: Arc<Registry>, readiness: Readiness) -> Router {
    admin_router(AdminState {
        registry,
        readiness,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get(app: &Router, path: &str) -> (StatusCode, String) {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn serves_health_readiness_and_metrics() {
        let mut registry = Registry::default();
        let metrics = crate::metrics::Metrics::register(&mut registry);
        metrics.reconciled("region", std::time::Duration::from_millis(3));
        metrics.error("region", "ApplyFailed");
        let readiness = Readiness::new();
        let watches = readiness.register("watches");
        let app = router(Arc::new(registry), readiness);
        assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
        let (status, body) = get(&app, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("watches"), "{body}");
        watches.set(true);
        assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
        let (status, text) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
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
