//! Command-line flags (every one also read from the environment).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use silo_runtime::RuntimeArgs;
use silo_runtime::args::parse_duration;

#[derive(Clone, Debug, Parser)]
#[command(
    name = "consumers",
    about = "Consume ingest-events, store events grouped into issues, publish the eventstream"
)]
pub struct Args {
    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// Postgres URL of the region database.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Most Postgres connections this process opens.
    #[arg(long, env = "SILO_DB_MAX_CONNECTIONS", default_value_t = 8)]
    pub db_max_connections: u32,

    /// Apply pending database migrations at start (safe with several replicas).
    #[arg(long, env = "SILO_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,

    /// Kafka bootstrap servers (`host:port,...`).
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: String,

    #[command(flatten)]
    pub kafka_security: silo_runtime::KafkaSecurityArgs,

    /// Prefix of every topic name, for regions sharing a broker (`de.` -> `de.ingest-events`).
    #[arg(long, env = "SILO_KAFKA_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,

    /// Most messages stored in one transaction (one statement per step for the whole batch).
    #[arg(long, env = "SILO_CONSUMER_BATCH_SIZE", default_value_t = 100)]
    pub batch_size: usize,

    /// Longest wait for more messages after the first of a batch: what a quiet topic adds to
    /// latency (0s: only what is already fetched).
    #[arg(long, env = "SILO_CONSUMER_BATCH_WAIT", default_value = "5ms", value_parser = parse_duration)]
    pub batch_wait: Duration,

    /// Kafka consumer group.
    #[arg(long, env = "SILO_CONSUMER_GROUP", default_value = "ingest-consumers")]
    pub consumer_group: String,

    /// Kafka session timeout: how soon a crashed consumer's partitions move to another one.
    #[arg(long, env = "SILO_KAFKA_SESSION_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub session_timeout: Duration,

    /// Longest wait between retries while Postgres or Kafka is unavailable.
    #[arg(long, env = "SILO_RETRY_MAX_BACKOFF", default_value = "5s", value_parser = parse_duration)]
    pub retry_max_backoff: Duration,

    /// Address of the admin server (/healthz, /readyz, /metrics).
    #[arg(long, env = "SILO_ADMIN_ADDR", default_value = "0.0.0.0:9000")]
    pub admin_addr: SocketAddr,
}
