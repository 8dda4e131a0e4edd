//! `/healthz` (process alive), `/readyz` (every dependency ready) and `/metrics` (Prometheus).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

/// Named readiness flags; the process is ready when every registered flag is set.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    flags: Arc<Mutex<BTreeMap<String, bool>>>,
    /// What `/readyz` answers when ready (e.g. the replica's role); "ok" when unset.
    detail: Arc<Mutex<Option<String>>>,
}

/// One component's readiness flag.
#[derive(Clone, Debug)]
pub struct ReadyFlag {
    name: String,
    flags: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a component, initially not ready.
    pub fn register(&self, name: impl Into<String>) -> ReadyFlag {
        let name = name.into();
        lock(&self.flags).insert(name.clone(), false);
        ReadyFlag {
            name,
            flags: self.flags.clone(),
        }
    }

    /// Say more than "ok" when ready, e.g. `standby: another replica holds the lease`.
    pub fn set_detail(&self, detail: impl Into<String>) {
        *lock(&self.detail) = Some(detail.into());
    }

    fn detail(&self) -> String {
        lock(&self.detail)
            .clone()
            .unwrap_or_else(|| "ok".to_owned())
    }

    /// Names of the components that are not ready; empty when the process is ready.
    pub fn not_ready(&self) -> Vec<String> {
        lock(&self.flags)
            .iter()
            .filter(|(_, ready)| !**ready)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

impl ReadyFlag {
    pub fn set(&self, ready: bool) {
        let mut flags = lock(&self.flags);
        if flags.get(&self.name) != Some(&ready) {
            tracing::info!(component = %self.name, ready, "readiness changed");
        }
        flags.insert(self.name.clone(), ready);
    }
}

fn lock<T>(flags: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent: keep using it.
    flags
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the admin endpoints read.
#[derive(Clone, Debug)]
pub struct AdminState {
    pub registry: Arc<Registry>,
    pub readiness: Readiness,
}

/// `/healthz`, `/readyz`, `/metrics`; merge into a workload's router or serve on its own port.
pub fn admin_router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let waiting = state.readiness.not_ready();
    if waiting.is_empty() {
        (StatusCode::OK, state.readiness.detail()).into_response()
    } else {
        let body = serde_json::json!({ "detail": "not ready", "waiting_for": waiting });
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {error}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt;

    use super::*;

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readyz_waits_for_every_flag() {
        let readiness = Readiness::new();
        let kafka = readiness.register("kafka");
        let db = readiness.register("postgres");
        let mut registry = Registry::default();
        let counter: Counter = Counter::default();
        registry.register("silo_test_events", "Events seen", counter.clone());
        counter.inc();
        let router = admin_router(AdminState {
            registry: Arc::new(registry),
            readiness: readiness.clone(),
        });

        let (status, body) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("kafka") && body.contains("postgres"),
            "{body}"
        );
        kafka.set(true);
        let (_, body) = get(&router, "/readyz").await;
        assert!(
            !body.contains("kafka") && body.contains("postgres"),
            "{body}"
        );
        db.set(true);
        assert_eq!(get(&router, "/readyz").await, (StatusCode::OK, "ok".into()));
        readiness.set_detail("standby");
        assert_eq!(
            get(&router, "/readyz").await,
            (StatusCode::OK, "standby".into())
        );
        assert_eq!(
            get(&router, "/healthz").await,
            (StatusCode::OK, "ok".into())
        );
        let (status, body) = get(&router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("silo_test_events_total 1"), "{body}");
    }
}
