//! The composition root: build every component from [`Args`] and run until shutdown.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use rdkafka::ClientConfig;
use rdkafka::producer::FutureProducer;
use silo_kafka_consumer::{Config, KafkaSettings, Skeleton};
use silo_protocol::topics;
use silo_runtime::{ContractHandle, Shutdown};
use silo_store::{PoolSettings, connect_lazy};

use crate::args::Args;
use crate::metrics::Metrics;
use crate::worker::Worker;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Pool(#[from] silo_store::PoolError),
    #[error(transparent)]
    Consumer(#[from] silo_kafka_consumer::Error),
    #[error(transparent)]
    KafkaSecurity(#[from] silo_runtime::KafkaSecurityError),
}

/// Run the consumers until SIGTERM/SIGINT (or `shutdown`) and the drain finished (at most
/// `--shutdown-timeout` after shutdown fired).
pub async fn run(args: Args, contract: ContractHandle, shutdown: Shutdown) -> Result<(), AppError> {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);

    let kafka_security = args.kafka_security.client_settings()?;
    let mut settings = PoolSettings::new(&args.database_url);
    settings.max_connections = args.db_max_connections;
    let config = Config {
        workload: "consumers",
        errors: Arc::new(metrics.clone()),
        kafka: KafkaSettings {
            brokers: args.kafka_brokers.clone(),
            group: args.consumer_group.clone(),
            topic: topics::prefixed(&args.topic_prefix, topics::INGEST_EVENTS),
            session_timeout: args.session_timeout,
            batch_size: args.batch_size,
            batch_wait: args.batch_wait,
            security: kafka_security.clone(),
        },
        pool: connect_lazy(&settings)?,
        admin_addr: args.admin_addr,
        retry_max_backoff: args.retry_max_backoff,
        directory_reload_interval: args.runtime.directory_reload_interval,
        shutdown_timeout: args.runtime.shutdown_timeout,
    };
    let skeleton = Skeleton::start(config, &contract, registry, shutdown.clone())?;

    let mut producer_config = ClientConfig::new();
    for (key, value) in &kafka_security {
        producer_config.set(*key, value);
    }
    let producer: FutureProducer = producer_config
        .set("bootstrap.servers", &args.kafka_brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "30000")
        .create()
        .map_err(silo_kafka_consumer::Error::kafka(
            "producer",
            &args.kafka_brokers,
        ))?;
    let worker = Worker {
        postgres: skeleton.postgres.clone(),
        producer,
        events_topic: topics::prefixed(&args.topic_prefix, topics::EVENTS),
        outcomes_topic: topics::prefixed(&args.topic_prefix, topics::OUTCOMES),
        metrics,
    };
    skeleton.run(args.migrate, &worker).await?;
    Ok(())
}
