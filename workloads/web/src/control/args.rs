//! Flags of the gateway, RPC client and outbox drain.

use std::time::Duration;

use clap::Args;
use silo_runtime::args::parse_duration;

use super::CrossSiloSettings;

#[derive(Debug, Clone, Args)]
pub struct CrossSiloArgs {
    /// Longest time one RPC call to another silo may take (per attempt).
    #[arg(long, env = "SILO_RPC_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub rpc_timeout: Duration,

    /// Attempts per RPC call while the other silo answers 503 or is unreachable.
    #[arg(long, env = "SILO_RPC_ATTEMPTS", default_value_t = 4)]
    pub rpc_attempts: u32,

    /// Longest time the gateway waits for a region to answer a proxied request.
    #[arg(long, env = "SILO_GATEWAY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub gateway_timeout: Duration,

    /// How long the gateway reuses an organization -> region lookup (0 disables the cache).
    #[arg(long, env = "SILO_GATEWAY_CACHE_TTL", default_value = "2s", value_parser = parse_duration)]
    pub gateway_cache_ttl: Duration,

    /// How long the gateway trusts a bearer token it authenticated before looking it up again
    /// (0 disables the cache). A token deleted or expired in the directory keeps working through
    /// the gateway for at most this long; the control silo's own routes always look it up.
    #[arg(long, env = "SILO_GATEWAY_TOKEN_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub gateway_token_cache_ttl: Duration,

    /// How often the region's outbox is checked for undelivered messages (writes in this
    /// process wake the drain at once).
    #[arg(long, env = "SILO_OUTBOX_DRAIN_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub outbox_interval: Duration,
}

impl CrossSiloArgs {
    pub fn settings(&self) -> CrossSiloSettings {
        CrossSiloSettings {
            rpc_timeout: self.rpc_timeout,
            rpc_attempts: self.rpc_attempts.max(1),
            proxy_timeout: self.gateway_timeout,
            mapping_cache_ttl: self.gateway_cache_ttl,
            token_cache_ttl: self.gateway_token_cache_ttl,
            outbox_interval: self.outbox_interval,
        }
    }
}
