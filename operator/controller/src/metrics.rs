//! The operator's Prometheus metrics (served on `/metrics`).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `region` or `controlplane`.
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    /// Condition-style reason (`ApplyFailed`, `DuplicateSnowflakeId`, ...).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method of a request the operator sent to the API server.
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApplyLabels {
    pub kind: &'static str,
    /// `applied` (a write was sent) or `unchanged` (skipped without a request).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    /// `pending`, `upgrading`, `soaking`, `done`, `failed`, `unreachable` or `pinned`; and
    /// `deferred`, the part of `unreachable` past `progressDeadline` that holds no slot.
    pub state: &'static str,
}

/// Every metric of the operator, registered once.
#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Family<ControllerLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Family<ControllerLabels, Histogram>,
    pub api_requests: Family<RequestLabels, Counter>,
    pub applies: Family<ApplyLabels, Counter>,
    /// 1 while this replica holds the leader lease (or runs without election).
    pub leader: Gauge,
    pub rollout_regions: Family<RolloutLabels, Gauge>,
    /// Seconds from the start of the current rollout to its completion (or to now).
    pub rollout_seconds: Gauge<f64, AtomicU64>,
}

impl Metrics {
    /// Create the metrics and register them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            api_requests: Family::default(),
            applies: Family::default(),
            leader: Gauge::default(),
            rollout_regions: Family::default(),
            rollout_seconds: Gauge::default(),
        };
        registry.register(
            "silo_operator_reconciles",
            "Reconcile runs, by controller",
            metrics.reconciles.clone(),
        );
        registry.register(
            "silo_operator_reconcile_errors",
            "Reconciles that ended in an error or an unusable spec, by controller and reason",
            metrics.errors.clone(),
        );
        registry.register(
            "silo_operator_reconcile_duration_seconds",
            "Time spent in one reconcile, by controller",
            metrics.duration.clone(),
        );
        registry.register(
            "silo_operator_api_requests",
            "Requests the operator sent to the Kubernetes API server, by HTTP method",
            metrics.api_requests.clone(),
        );
        registry.register(
            "silo_operator_child_applies",
            "Desired child objects per reconcile: written (applied) or skipped (unchanged)",
            metrics.applies.clone(),
        );
        registry.register(
            "silo_operator_leader",
            "1 while this replica holds the leader lease and reconciles, 0 while it is a standby",
            metrics.leader.clone(),
        );
        registry.register(
            "silo_operator_rollout_regions",
            "Regions of the current rollout by state",
            metrics.rollout_regions.clone(),
        );
        registry.register(
            "silo_operator_rollout_duration_seconds",
            "Time from the start of the current rollout to its completion (to now while it runs)",
            metrics.rollout_seconds.clone(),
        );
        metrics
    }

    pub fn rollout_regions(&self, state: &'static str, n: i64) {
        self.rollout_regions
            .get_or_create(&RolloutLabels { state })
            .set(n);
    }

    pub fn reconciled(&self, controller: &'static str, took: Duration) {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn error(&self, controller: &'static str, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                controller,
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn request(&self, method: &str) {
        self.api_requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
            })
            .inc();
    }

    pub fn apply(&self, kind: &'static str, applied: bool) {
        let outcome = if applied { "applied" } else { "unchanged" };
        self.applies
            .get_or_create(&ApplyLabels { kind, outcome })
            .inc();
    }
}
