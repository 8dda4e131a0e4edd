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

/// The envelope item types Sentry defines; any other type a client sends is counted as
/// `other`, so that nobody holding a public DSN key can create metric series at will.
pub const KNOWN_ITEM_TYPES: [&str; 27] = [
    "event",
    "transaction",
    "security",
    "raw_security",
    "nel",
    "attachment",
    "form_data",
    "unreal_report",
    "user_report",
    "feedback",
    "session",
    "sessions",
    "statsd",
    "metric_buckets",
    "metric_meta",
    "client_report",
    "replay_event",
    "replay_recording",
    "replay_video",
    "check_in",
    "profile",
    "profile_chunk",
    "span",
    "otel_span",
    "otel_traces_data",
    "log",
    "otel_log",
];

/// The `item_type` label of an item type: itself when Sentry defines it, else `other`.
pub fn item_type_label(ty: &str) -> &'static str {
    KNOWN_ITEM_TYPES
        .iter()
        .find(|known| **known == ty)
        .copied()
        .unwrap_or("other")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ItemLabels {
    /// One of [`KNOWN_ITEM_TYPES`] or `other`.
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
    /// Envelope items of types relay does not ingest, by type (`other` for unknown types).
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

    /// Count an envelope item of type `ty` (as the client sent it) that is not ingested,
    /// under its bounded [`item_type_label`].
    pub fn item_dropped(&self, ty: &str) {
        self.items_dropped
            .get_or_create(&ItemLabels {
                item_type: item_type_label(ty).to_owned(),
            })
            .inc();
    }

    pub fn rejected(&self, reason: &str, n: u64) {
        self.events_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    /// The series of `silo_relay_items_dropped` in the text exposition.
    fn dropped_series(registry: &Registry) -> Vec<String> {
        let mut text = String::new();
        encode(&mut text, registry).unwrap();
        text.lines()
            .filter(|l| l.starts_with("silo_relay_items_dropped_total{"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn item_types_from_clients_give_a_bounded_label_set() {
        let mut registry = Registry::default();
        let metrics = RelayMetrics::register(&mut registry);
        for i in 0..10_000 {
            let random = uuid::Uuid::new_v4().simple().to_string();
            metrics.item_dropped(&random[..1 + i % 32]);
        }
        for known in ["attachment", "session", "client_report", "transaction"] {
            metrics.item_dropped(known);
        }
        let series = dropped_series(&registry);
        assert!(
            series.len() <= KNOWN_ITEM_TYPES.len() + 1,
            "{} series",
            series.len()
        );
        assert!(series.iter().any(|s| s.contains(r#"item_type="other""#)));
        assert!(
            series
                .iter()
                .any(|s| s.contains(r#"item_type="client_report""#))
        );
    }
}
