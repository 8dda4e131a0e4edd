//! The composition root: build every component from [`Args`] and run until shutdown.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use silo_protocol::topics;
use silo_runtime::{AdminState, Backoff, ContractHandle, Readiness, Shutdown, admin_router, serve};
use silo_store::{PoolSettings, connect_lazy};

use crate::args::Args;
use crate::metrics::Metrics;
use crate::webhook::{ClientError, Webhook};
use crate::worker::Worker;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(
        "postprocess serves region data; SENTRY_SILO_MODE={0} is a control silo, use REGION or MONOLITH"
    )]
    WrongSilo(&'static str),
    #[error(transparent)]
    Pool(#[from] silo_store::PoolError),
    #[error("cannot set up the Kafka consumer for brokers {brokers}: {source}")]
    Kafka {
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error(transparent)]
    Webhook(#[from] ClientError),
    #[error(transparent)]
    Serve(#[from] silo_runtime::ServeError),
}

/// [`run`], but once shutdown fired the drain gets at most `--shutdown-timeout`.
pub async fn run_with_drain_deadline(
    args: Args,
    contract: ContractHandle,
    shutdown: Shutdown,
) -> Result<(), AppError> {
    let timeout = args.runtime.shutdown_timeout;
    let deadline = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.wait().await;
            tokio::time::sleep(timeout).await;
        }
    };
    tokio::select! {
        result = run(args, contract, shutdown) => result,
        () = deadline => {
            tracing::warn!(?timeout, "draining took longer than the shutdown timeout; exiting");
            Ok(())
        }
    }
}

/// Run the post-processor until SIGTERM/SIGINT (or `shutdown`) and the drain finished.
pub async fn run(args: Args, contract: ContractHandle, shutdown: Shutdown) -> Result<(), AppError> {
    let mode = contract.current().mode;
    if !mode.serves_region() {
        return Err(AppError::WrongSilo(mode.as_str()));
    }
    contract.spawn_reloader(args.runtime.directory_reload_interval, shutdown.clone());

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let readiness = Readiness::new();
    let postgres_ready = readiness.register("postgres");
    let kafka_ready = readiness.register("kafka");

    let mut settings = PoolSettings::new(&args.database_url);
    settings.max_connections = args.db_max_connections;
    let pool = connect_lazy(&settings)?;
    let webhook = Webhook::new(
        args.webhook_timeout,
        args.webhook_max_attempts,
        args.retry_max_backoff,
    )?;
    let kafka_error = |source| AppError::Kafka {
        brokers: args.kafka_brokers.clone(),
        source,
    };
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka_brokers)
        .set("group.id", &args.consumer_group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("allow.auto.create.topics", "true")
        .set(
            "session.timeout.ms",
            args.session_timeout.as_millis().to_string(),
        )
        .create()
        .map_err(kafka_error)?;

    let admin = admin_router(AdminState {
        registry: Arc::new(registry),
        readiness,
    });
    let admin_task = tokio::spawn(serve(args.admin_addr, admin, shutdown.clone()));

    // The consumers own the schema; wait until it answers before evaluating anything.
    let mut backoff = Backoff::new(args.retry_max_backoff);
    while let Err(error) = silo_store::ping(&pool).await {
        tracing::warn!(%error, "database not ready; retrying");
        if !backoff.wait(&shutdown).await {
            return finish(admin_task).await;
        }
    }
    postgres_ready.set(true);

    let topic = topics::prefixed(&args.topic_prefix, topics::EVENTS);
    consumer.subscribe(&[&topic]).map_err(kafka_error)?;
    tracing::info!(%topic, group = %args.consumer_group, "consuming");

    let worker = Worker {
        pool,
        webhook,
        base_url: args.public_url.clone(),
        metrics,
        postgres_ready,
        max_backoff: args.retry_max_backoff,
        shutdown: shutdown.clone(),
    };
    crate::consumer::run(consumer, worker, kafka_ready, shutdown.clone()).await;
    tracing::info!("postprocess stopped");
    shutdown.trigger();
    finish(admin_task).await
}

async fn finish(
    admin: tokio::task::JoinHandle<Result<(), silo_runtime::ServeError>>,
) -> Result<(), AppError> {
    match admin.await {
        Ok(result) => result.map_err(AppError::from),
        Err(error) => {
            tracing::warn!(%error, "admin server task ended abnormally");
            Ok(())
        }
    }
}
