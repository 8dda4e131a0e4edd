//! The post-processor's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use silo_kafka_consumer::CountErrors;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `delivered`, `failed`, or `replayed` (already handled before a restart).
    pub outcome: &'static str,
}

#[derive(Clone, Debug)]
pub struct Metrics {
    pub events_processed: Counter,
    /// Rules that fired, by kind.
    pub rules_fired: Family<KindLabels, Counter>,
    pub notifications: Family<OutcomeLabels, Counter>,
    pub webhook_attempts: Counter,
    /// `invalid` (skipped), `postgres` (retried), `kafka_consume`, `commit`.
    pub errors: Family<KindLabels, Counter>,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            events_processed: Counter::default(),
            rules_fired: Family::default(),
            notifications: Family::default(),
            webhook_attempts: Counter::default(),
            errors: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("silo_postprocess");
        r.register(
            "events_processed",
            "Eventstream records evaluated",
            m.events_processed.clone(),
        );
        r.register(
            "rules_fired",
            "Alert rules that fired, by kind",
            m.rules_fired.clone(),
        );
        r.register(
            "notifications",
            "Notifications by delivery outcome",
            m.notifications.clone(),
        );
        r.register(
            "webhook_attempts",
            "Webhook POSTs sent",
            m.webhook_attempts.clone(),
        );
        r.register("errors", "Errors by kind", m.errors.clone());
        m
    }

    pub fn notification(&self, outcome: &'static str) {
        self.notifications
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

impl CountErrors for Metrics {
    fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabels { kind }).inc();
    }
}
