//! The consumers' Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use silo_kafka_consumer::CountErrors;

/// Why a message was not processed on the first try.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `invalid` (message skipped), `postgres` (retried), `batch_split` (a batch stored one
    /// event at a time after a permanent error), `kafka_consume`, `kafka_produce`, `commit`
    /// (retried or logged).
    pub kind: &'static str,
}

#[derive(Clone, Debug)]
pub struct Metrics {
    /// Events stored for the first time.
    pub events_processed: Counter,
    /// Messages whose event was already stored (replays, SDK retries).
    pub duplicates: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    /// Seconds from relay accepting an event to its eventstream record being acknowledged.
    pub ingest_latency: Histogram,
    /// Seconds from the start of a message's batch to its record being published (store +
    /// publish, including retries).
    pub processing_seconds: Histogram,
    /// Events per stored batch (one transaction each).
    pub batch_events: Histogram,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            events_processed: Counter::default(),
            duplicates: Counter::default(),
            errors: Family::default(),
            ingest_latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            processing_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
        };
        let r = registry.sub_registry_with_prefix("silo_consumers");
        r.register(
            "events_processed",
            "Events stored for the first time",
            m.events_processed.clone(),
        );
        r.register(
            "duplicates",
            "Messages whose event was already stored",
            m.duplicates.clone(),
        );
        r.register(
            "errors",
            "Errors by kind (invalid messages are skipped, the rest retried)",
            m.errors.clone(),
        );
        r.register(
            "ingest_latency_seconds",
            "Seconds from relay accepting an event to its eventstream record",
            m.ingest_latency.clone(),
        );
        r.register(
            "processing_seconds",
            "Seconds from a message's batch start to its record published, including retries",
            m.processing_seconds.clone(),
        );
        r.register(
            "batch_events",
            "Events per stored batch (one transaction each)",
            m.batch_events.clone(),
        );
        m
    }
}

impl CountErrors for Metrics {
    fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&ErrorLabels { kind }).inc();
    }
}
