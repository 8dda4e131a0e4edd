//! The web process's Prometheus metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route template (`/api/0/issues/{issue_id}/`), never the raw path.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfigLabels {
    /// `enabled`, `disabled` or `unknown`.
    pub state: String,
}

/// Typed handles to every metric web exports.
#[derive(Debug)]
pub struct WebMetrics {
    /// API requests answered, by route, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// API request latency in seconds, by route.
    pub latency: Family<RequestLabels, Histogram>,
    /// Project configs handed to relays, by key state.
    pub project_configs: Family<ConfigLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl WebMetrics {
    /// Create the metrics and register them under `silo_web_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = WebMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            project_configs: Family::default(),
        };
        let sub = registry.sub_registry_with_prefix("silo_web");
        sub.register(
            "http_requests",
            "API requests answered",
            metrics.requests.clone(),
        );
        sub.register(
            "http_request_duration_seconds",
            "API request latency",
            metrics.latency.clone(),
        );
        sub.register(
            "project_configs",
            "Project configs served to relays, by key state",
            metrics.project_configs.clone(),
        );
        metrics
    }
}

/// Middleware counting every request by its matched route.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = RequestLabels {
        route,
        method,
        status: response.status().as_u16(),
    };
    state.metrics.requests.get_or_create(&labels).inc();
    state
        .metrics
        .latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}
