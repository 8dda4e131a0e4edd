//! The relay's Prometheus metrics (`silo_relay_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `envelope` or `store`.
    pub endpoint: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Machine-readable reason (`key_quota`, `invalid_envelope`, `disabled_key`, ...).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ItemLabels {
    pub item_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `memory`, `redis`, `upstream` or `error`.
    pub source: String,
}

/// Typed handles to every metric relay exports.
#[derive(Debug)]
pub struct RelayMetrics {
    /// Ingest requests answered, by endpoint and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Events written to Kafka and acknowledged.
    pub events_accepted: Counter,
    /// Events refused, by reason.
    pub events_rejected: Family<ReasonLabels, Counter>,
    /// Envelope items of types relay does not ingest.
    pub items_dropped: Family<ItemLabels, Counter>,
    /// Project config lookups by where the answer came from.
    pub config_lookups: Family<SourceLabels, Counter>,
    /// Kafka deliveries that failed (answered 503).
    pub kafka_errors: Counter,
    /// Rate-limit checks that could not reach Redis (the event was let through).
    pub rate_limit_errors: Counter,
    /// Outcomes that could not be queued or delivered.
    pub outcomes_dropped: Counter,
    /// Time from produce to Kafka acknowledgement, seconds.
    pub produce_latency: Histogram,
}

impl RelayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = RelayMetrics {
            requests: Family::default(),
            events_accepted: Counter::default(),
            events_rejected: Family::default(),
            items_dropped: Family::default(),
            config_lookups: Family::default(),
            kafka_errors: Counter::default(),
            rate_limit_errors: Counter::default(),
            outcomes_dropped: Counter::default(),
            produce_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        };
        let sub = registry.sub_registry_with_prefix("silo_relay");
        sub.register("requests", "Ingest requests answered", m.requests.clone());
        sub.register(
            "events_accepted",
            "Events acknowledged by Kafka",
            m.events_accepted.clone(),
        );
        sub.register(
            "events_rejected",
            "Events refused, by reason",
            m.events_rejected.clone(),
        );
        sub.register(
            "items_dropped",
            "Envelope items of types that are not ingested",
            m.items_dropped.clone(),
        );
        sub.register(
            "project_config_lookups",
            "Project config lookups by source",
            m.config_lookups.clone(),
        );
        sub.register(
            "kafka_errors",
            "Kafka deliveries that failed",
            m.kafka_errors.clone(),
        );
        sub.register(
            "rate_limit_errors",
            "Rate-limit checks that could not reach Redis",
            m.rate_limit_errors.clone(),
        );
        sub.register(
            "outcomes_dropped",
            "Outcomes that could not be delivered",
            m.outcomes_dropped.clone(),
        );
        sub.register(
            "produce_latency_seconds",
            "Time from produce to Kafka acknowledgement",
            m.produce_latency.clone(),
        );
        m
    }

    pub fn rejected(&self, reason: &str, n: u64) {
        self.events_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }
}
