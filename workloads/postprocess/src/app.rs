//! The composition root: build every component from [`Args`] and run until shutdown.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use silo_kafka_consumer::{Config, KafkaSettings, Skeleton};
use silo_protocol::topics;
use silo_runtime::{ContractHandle, Shutdown};
use silo_store::{PoolSettings, connect_lazy};

use crate::args::Args;
use crate::metrics::Metrics;
use crate::webhook::{ClientError, Webhook};
use crate::worker::Worker;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Pool(#[from] silo_store::PoolError),
    #[error(transparent)]
    Consumer(#[from] silo_kafka_consumer::Error),
    #[error(transparent)]
    KafkaSecurity(#[from] silo_runtime::KafkaSecurityError),
    #[error(transparent)]
    Webhook(#[from] ClientError),
}

/// Run the post-processor until SIGTERM/SIGINT (or `shutdown`) and the drain finished (at most
/// `--shutdown-timeout` after shutdown fired).
pub async fn run(args: Args, contract: ContractHandle, shutdown: Shutdown) -> Result<(), AppError> {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let webhook = Webhook::new(
        args.webhook_timeout,
        args.webhook_max_attempts,
        args.retry_max_backoff,
    )?;

    let kafka_security = args.kafka_security.client_settings()?;
    let mut settings = PoolSettings::new(&args.database_url);
    settings.max_connections = args.db_max_connections;
    let config = Config {
        workload: "postprocess",
        errors: Arc::new(metrics.clone()),
        kafka: KafkaSettings {
            brokers: args.kafka_brokers.clone(),
            group: args.consumer_group.clone(),
            topic: topics::prefixed(&args.topic_prefix, topics::EVENTS),
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
    let worker = Worker {
        postgres: skeleton.postgres.clone(),
        webhook,
        base_url: args.public_url.clone(),
        metrics,
    };
    // The consumers own the schema; wait until it answers before evaluating anything.
    skeleton.run(false, &worker).await?;
    Ok(())
}
