//! Relay against real Postgres, Redis and Kafka (from `e2e/services/up.sh`) and the real `web`
//! binary as its project-config upstream.

mod client_addr;
mod common;
mod config_cache;
mod ingest;
mod kafka_outage;
mod redis_tls;
