//! Command line and environment of the `relay` binary.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser};
use silo_runtime::RuntimeArgs;
use silo_runtime::args::parse_duration;

/// Sentry-compatible ingest: envelopes and store requests into Kafka `ingest-events`.
#[derive(Debug, Clone, Parser)]
#[command(name = "relay", version)]
pub struct Cli {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address SDKs send events to.
    #[arg(long, env = "SILO_RELAY_LISTEN", default_value = "0.0.0.0:3000")]
    pub listen: SocketAddr,

    /// Separate address for /healthz, /readyz and /metrics; when unset they are served on the
    /// ingest address.
    #[arg(long, env = "SILO_RELAY_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// Proxies (comma-separated addresses or networks, e.g. `10.0.0.0/8,127.0.0.1`) whose
    /// X-Forwarded-For header names the client address (what `{{auto}}` IPs become). Empty:
    /// the header is ignored and the TCP peer is the client.
    #[arg(long, env = "SILO_RELAY_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
}

#[derive(Debug, Clone, Args)]
pub struct UpstreamArgs {
    /// Base URL of the region's web API, where project configs come from.
    #[arg(long, env = "SILO_RELAY_UPSTREAM_URL")]
    pub upstream_url: String,

    /// Secret shared with web; signs project-config requests.
    #[arg(long, env = "RELAY_SHARED_SECRET", hide_env_values = true)]
    pub relay_secret: String,

    /// Identifier sent as X-Sentry-Relay-Id.
    #[arg(long, env = "SILO_RELAY_ID", default_value = "relay")]
    pub relay_id: String,

    /// Timeout of one project-config request to web.
    #[arg(long, env = "SILO_RELAY_UPSTREAM_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// How long an enabled project config is cached (memory and Redis).
    #[arg(long, env = "SILO_RELAY_CONFIG_TTL", default_value = "60s", value_parser = parse_duration)]
    pub config_ttl: Duration,

    /// How long an unknown or disabled key is cached.
    #[arg(long, env = "SILO_RELAY_CONFIG_NEGATIVE_TTL", default_value = "10s", value_parser = parse_duration)]
    pub config_negative_ttl: Duration,

    /// How long concurrent config misses are collected into one request to web.
    #[arg(long, env = "SILO_RELAY_CONFIG_BATCH_WINDOW", default_value = "5ms", value_parser = parse_duration)]
    pub config_batch_window: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port,...).
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: String,

    #[command(flatten)]
    pub kafka_security: silo_runtime::KafkaSecurityArgs,

    /// Prefix of the topic names (for regions sharing a broker).
    #[arg(long, env = "SILO_KAFKA_TOPIC_PREFIX", default_value = "")]
    pub kafka_topic_prefix: String,

    /// Longest wait for Kafka to acknowledge an event before answering 503.
    #[arg(long, env = "SILO_RELAY_KAFKA_DELIVERY_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub kafka_delivery_timeout: Duration,

    /// Producer batching delay (librdkafka linger.ms).
    #[arg(long, env = "SILO_RELAY_KAFKA_LINGER", default_value = "2ms", value_parser = parse_duration)]
    pub kafka_linger: Duration,

    /// How often rejection outcomes are written to the outcomes topic.
    #[arg(long, env = "SILO_RELAY_OUTCOMES_FLUSH_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub outcomes_flush_interval: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL for the project-config cache and rate-limit counters.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: String,

    /// PEM bundle of the CA(s) that sign a `rediss://` server's certificate (unset: the
    /// system's roots).
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,

    /// Prefix of every Redis key relay writes (config cache, quota counters).
    #[arg(long, env = "SILO_RELAY_REDIS_PREFIX", default_value = "relay:")]
    pub redis_prefix: String,

    /// Connect and response timeout of Redis calls.
    #[arg(long, env = "SILO_RELAY_REDIS_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub redis_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Largest request body in bytes, before and after decompression (larger: 413).
    #[arg(long, env = "SILO_RELAY_MAX_ENVELOPE_BYTES", default_value_t = 20 * 1024 * 1024)]
    pub max_envelope_bytes: usize,

    /// Largest single event in bytes (larger: 413).
    #[arg(long, env = "SILO_RELAY_MAX_EVENT_BYTES", default_value_t = 1024 * 1024)]
    pub max_event_bytes: usize,
}

impl Cli {
    /// Check values clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        let url = &self.upstream.upstream_url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "--upstream-url {url:?} must be the web API's base URL, e.g. http://web:9000"
            ));
        }
        crate::client_addr::parse_networks(&self.serve.trusted_proxies)
            .map_err(|e| format!("--trusted-proxies: {e}"))?;
        if self.upstream.relay_secret.is_empty() {
            return Err("RELAY_SHARED_SECRET is empty; set the secret shared with web".into());
        }
        if self.limits.max_event_bytes > self.limits.max_envelope_bytes {
            return Err(format!(
                "--max-event-bytes ({}) must not exceed --max-envelope-bytes ({})",
                self.limits.max_event_bytes, self.limits.max_envelope_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_flag_has_an_env_var() {
        for arg in Cli::command().get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            assert!(arg.get_env().is_some(), "flag --{id} has no env var");
        }
    }

    #[test]
    fn validates_upstream_and_limits() {
        let cli = Cli::try_parse_from([
            "relay",
            "--upstream-url",
            "http://web:9000",
            "--relay-secret",
            "s",
            "--kafka-brokers",
            "k:9092",
            "--redis-url",
            "redis://r",
        ])
        .unwrap();
        assert!(cli.validate().is_ok());
        assert_eq!(cli.kafka.kafka_delivery_timeout, Duration::from_secs(5));
        let mut bad = cli.clone();
        bad.upstream.upstream_url = "web:9000".into();
        assert!(bad.validate().unwrap_err().contains("base URL"));
        let mut bad = cli.clone();
        bad.limits.max_event_bytes = bad.limits.max_envelope_bytes + 1;
        assert!(bad.validate().is_err());
        let mut proxies = cli;
        proxies.serve.trusted_proxies = "10.0.0.0/8, 127.0.0.1".into();
        assert!(proxies.validate().is_ok());
        proxies.serve.trusted_proxies = "10.0.0.0/99".into();
        assert!(
            proxies
                .validate()
                .unwrap_err()
                .contains("--trusted-proxies")
        );
    }
}
