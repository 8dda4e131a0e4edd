//! The composition root: build every component from [`Args`] and run until shutdown.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use silo_protocol::topics;
use silo_runtime::{AdminState, ContractHandle, Readiness, Shutdown, admin_router, serve};
use silo_store::{PoolSettings, connect_lazy};

use crate::args::Args;
use crate::metrics::Metrics;
use crate::worker::Worker;
use silo_runtime::Backoff;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(
        "consumers serve region data; SENTRY_SILO_MODE={0} is a control silo, use REGION or MONOLITH"
    )]
    WrongSilo(&'static str),
    #[error(transparent)]
    Pool(#[from] silo_store::PoolError),
    #[error("cannot create the Kafka {what} for brokers {brokers}: {source}")]
    Kafka {
        what: &'static str,
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
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

/// Run the consumers until SIGTERM/SIGINT (or `shutdown`) and the drain finished.
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

    let mut consumer_config = ClientConfig::new();
    consumer_config
        .set("bootstrap.servers", &args.kafka_brokers)
        .set("group.id", &args.consumer_group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("allow.auto.create.topics", "true")
        .set(
            "session.timeout.ms",
            args.session_timeout.as_millis().to_string(),
        );
    let consumer: StreamConsumer = consumer_config
        .create()
        .map_err(kafka_error("consumer", &args.kafka_brokers))?;
    let mut producer_config = ClientConfig::new();
    producer_config
        .set("bootstrap.servers", &args.kafka_brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "30000");
    let producer: FutureProducer = producer_config
        .create()
        .map_err(kafka_error("producer", &args.kafka_brokers))?;

    let admin = admin_router(AdminState {
        registry: Arc::new(registry),
        readiness,
    });
    let admin_task = tokio::spawn(serve(args.admin_addr, admin, shutdown.clone()));

    // The schema must exist before the first event; wait for the database without consuming.
    let mut backoff = Backoff::new(args.retry_max_backoff);
    loop {
        let ready = if args.migrate {
            silo_store::migrate(&pool).await
        } else {
            silo_store::ping(&pool).await
        };
        match ready {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(%error, "database not ready; retrying");
                if !backoff.wait(&shutdown).await {
                    return finish(admin_task).await;
                }
            }
        }
    }
    postgres_ready.set(true);

    let ingest_topic = topics::prefixed(&args.topic_prefix, topics::INGEST_EVENTS);
    consumer
        .subscribe(&[&ingest_topic])
        .map_err(kafka_error("subscription", &args.kafka_brokers))?;
    tracing::info!(topic = %ingest_topic, group = %args.consumer_group, "consuming");

    let worker = Worker {
        pool,
        producer,
        events_topic: topics::prefixed(&args.topic_prefix, topics::EVENTS),
        metrics,
        postgres_ready,
        max_backoff: args.retry_max_backoff,
        shutdown: shutdown.clone(),
    };
    crate::consumer::run(
        consumer,
        worker,
        args.batch_size.max(1),
        kafka_ready,
        shutdown.clone(),
    )
    .await;
    tracing::info!("consumer stopped");
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

fn kafka_error(
    what: &'static str,
    brokers: &str,
) -> impl FnOnce(rdkafka::error::KafkaError) -> AppError {
    let brokers = brokers.to_owned();
    move |source| AppError::Kafka {
        what,
        brokers,
        source,
    }
}
