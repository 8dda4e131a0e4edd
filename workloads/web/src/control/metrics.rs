//! Metrics of the gateway, RPC and outbox drain (`silo_web_gateway_*`, `silo_web_rpc_*`,
//! `silo_web_outbox_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegionOutcome {
    pub region: String,
    /// `ok`, `unknown_org`, `not_in_directory`, `bad_address`, `unavailable`, `timeout`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenSource {
    /// `cache` or `database`.
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub service: String,
    pub method: String,
    pub outcome: String,
}

/// Typed handles to the cross-silo metrics.
#[derive(Debug, Default)]
pub struct CrossSiloMetrics {
    /// Requests the gateway proxied (or refused), by region and outcome.
    pub gateway_requests: Family<RegionOutcome, Counter>,
    /// Bearer tokens the gateway authenticated, by where it found them.
    pub gateway_token_lookups: Family<TokenSource, Counter>,
    /// RPC calls made, by service, method and outcome.
    pub rpc_calls: Family<RpcLabels, Counter>,
    /// RPC requests received, by service, method and outcome.
    pub rpc_received: Family<RpcLabels, Counter>,
    /// Outbox messages acknowledged by the control silo.
    pub outbox_delivered: Counter,
    /// Failed outbox delivery attempts.
    pub outbox_failures: Counter,
    /// Undelivered outbox messages at the last drain.
    pub outbox_backlog: Gauge,
}

impl CrossSiloMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let sub = registry.sub_registry_with_prefix("silo_web");
        sub.register(
            "gateway_requests",
            "Requests proxied by the control gateway, by region and outcome",
            metrics.gateway_requests.clone(),
        );
        sub.register(
            "gateway_token_lookups",
            "Bearer tokens the gateway authenticated, by source (cache or database)",
            metrics.gateway_token_lookups.clone(),
        );
        sub.register(
            "rpc_calls",
            "Cross-silo RPC calls made, by service, method and outcome",
            metrics.rpc_calls.clone(),
        );
        sub.register(
            "rpc_received",
            "Cross-silo RPC requests received, by service, method and outcome",
            metrics.rpc_received.clone(),
        );
        sub.register(
            "outbox_delivered",
            "Outbox messages acknowledged by the control silo",
            metrics.outbox_delivered.clone(),
        );
        sub.register(
            "outbox_failures",
            "Failed outbox delivery attempts",
            metrics.outbox_failures.clone(),
        );
        sub.register(
            "outbox_backlog",
            "Undelivered outbox messages at the last drain",
            metrics.outbox_backlog.clone(),
        );
        metrics
    }
}
