//! Handler state, built once in [`crate::app`] (or by tests and the benchmark).

use std::sync::Arc;

use crate::client_addr::TrustedProxies;
use crate::kafka::EventProducer;
use crate::metrics::RelayMetrics;
use crate::outcomes::Outcomes;
use crate::project_config::ProjectConfigs;
use crate::rate_limit::RateLimiter;

/// Size limits on what SDKs send.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body, before and after decompression.
    pub max_envelope_bytes: usize,
    /// Largest single event payload.
    pub max_event_bytes: usize,
}

pub struct RelayState {
    pub configs: ProjectConfigs,
    pub limiter: RateLimiter,
    pub producer: Arc<EventProducer>,
    pub outcomes: Outcomes,
    pub metrics: Arc<RelayMetrics>,
    pub limits: Limits,
    /// Whose X-Forwarded-For names the client address.
    pub trusted_proxies: TrustedProxies,
}
