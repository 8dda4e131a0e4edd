//! The frame of a consumer workload: everything but its handler, built in one place.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use silo_runtime::admin::ReadyFlag;
use silo_runtime::{
    AdminState, ContractHandle, Readiness, ServeError, Shutdown, admin_router, serve,
};
use silo_store::PgPool;
use tokio::task::JoinHandle;

use crate::CountErrors;
use crate::batches::{self, Handler};
use crate::postgres::Postgres;
use crate::settings::KafkaSettings;

/// Why a consumer workload could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{workload} serves region data; SENTRY_SILO_MODE={mode} is a control silo, use REGION or MONOLITH"
    )]
    WrongSilo {
        workload: &'static str,
        mode: &'static str,
    },
    #[error("cannot create the Kafka {what} for brokers {brokers}: {source}")]
    Kafka {
        what: &'static str,
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error(transparent)]
    Serve(#[from] ServeError),
}

impl Error {
    /// Maps a librdkafka error creating `what` (`consumer`, `producer`, …) for `brokers`.
    pub fn kafka(what: &'static str, brokers: &str) -> impl FnOnce(KafkaError) -> Error {
        let brokers = brokers.to_owned();
        move |source| Error::Kafka {
            what,
            brokers,
            source,
        }
    }
}

/// What the skeleton is built from.
#[derive(Clone, Debug)]
pub struct Config {
    /// The workload's name, for logs and errors (`consumers`, `postprocess`).
    pub workload: &'static str,
    /// The workload's `errors` metric.
    pub errors: Arc<dyn CountErrors>,
    pub kafka: KafkaSettings,
    pub pool: PgPool,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub admin_addr: SocketAddr,
    /// Longest wait between retries of Kafka and Postgres.
    pub retry_max_backoff: Duration,
    /// How often the contract (region directory) file is re-read.
    pub directory_reload_interval: Duration,
    /// Once shutdown fired, how long the drain may take before the workload gives up on it.
    pub shutdown_timeout: Duration,
}

/// A started consumer workload waiting for its handler: the contract reloader and the
/// admin server run, the consumer exists but is not subscribed yet.
pub struct Skeleton {
    /// The region database, for the handler's queries.
    pub postgres: Postgres,
    workload: &'static str,
    kafka: KafkaSettings,
    consumer: StreamConsumer,
    kafka_ready: ReadyFlag,
    admin: JoinHandle<Result<(), ServeError>>,
    shutdown_timeout: Duration,
    shutdown: Shutdown,
}

impl Skeleton {
    /// Refuse a control silo, start the contract reloader, create the consumer and serve
    /// the admin endpoints (with `registry`, where the workload registered its metrics, and
    /// the readiness flags `postgres` and `kafka`).
    pub fn start(
        config: Config,
        contract: &ContractHandle,
        registry: Registry,
        shutdown: Shutdown,
    ) -> Result<Skeleton, Error> {
        let mode = contract.current().mode;
        if !mode.serves_region() {
            return Err(Error::WrongSilo {
                workload: config.workload,
                mode: mode.as_str(),
            });
        }
        contract.spawn_reloader(config.directory_reload_interval, shutdown.clone());
        let readiness = Readiness::new();
        let postgres_ready = readiness.register("postgres");
        let kafka_ready = readiness.register("kafka");
        let consumer = config
            .kafka
            .stream_consumer()
            .map_err(Error::kafka("consumer", &config.kafka.brokers))?;
        let admin = admin_router(AdminState {
            registry: Arc::new(registry),
            readiness,
        });
        let admin = tokio::spawn(serve(config.admin_addr, admin, shutdown.clone()));
        Ok(Skeleton {
            postgres: Postgres {
                pool: config.pool,
                ready: postgres_ready,
                errors: config.errors,
                max_backoff: config.retry_max_backoff,
                shutdown: shutdown.clone(),
            },
            workload: config.workload,
            kafka: config.kafka,
            consumer,
            kafka_ready,
            admin,
            shutdown_timeout: config.shutdown_timeout,
            shutdown,
        })
    }

    /// Wait for the database (migrating it first when `migrate`), subscribe, and consume
    /// with `handler` until shutdown; then commit what finished and stop the admin server.
    /// Once shutdown fired, all this gets at most the shutdown timeout ([`drain_within`]).
    pub async fn run<H: Handler>(self, migrate: bool, handler: &H) -> Result<(), Error> {
        let (timeout, shutdown) = (self.shutdown_timeout, self.shutdown.clone());
        drain_within(timeout, &shutdown, self.consume(migrate, handler))
            .await
            .unwrap_or(Ok(()))
    }

    async fn consume<H: Handler>(self, migrate: bool, handler: &H) -> Result<(), Error> {
        // The schema must exist before the first message; wait without consuming.
        if !self.postgres.wait_until_ready(migrate).await {
            return self.stop().await;
        }
        self.consumer
            .subscribe(&[&self.kafka.topic])
            .map_err(Error::kafka("subscription", &self.kafka.brokers))?;
        tracing::info!(topic = %self.kafka.topic, group = %self.kafka.group, "consuming");
        batches::run(
            &self.consumer,
            handler,
            &*self.postgres.errors,
            batches::BatchLimits {
                size: self.kafka.batch_size,
                wait: self.kafka.batch_wait,
            },
            self.postgres.max_backoff,
            &self.kafka_ready,
            &self.shutdown,
        )
        .await;
        tracing::info!(workload = self.workload, "consumer stopped");
        self.stop().await
    }

    /// Shut down and wait for the admin server.
    async fn stop(self) -> Result<(), Error> {
        self.shutdown.trigger();
        match self.admin.await {
            Ok(result) => result.map_err(Error::from),
            Err(error) => {
                tracing::warn!(%error, "admin server task ended abnormally");
                Ok(())
            }
        }
    }
}

/// `run`, but once `shutdown` fired the drain gets at most `timeout`: `None` when the
/// deadline cut it off.
pub async fn drain_within<T>(
    timeout: Duration,
    shutdown: &Shutdown,
    run: impl Future<Output = T>,
) -> Option<T> {
    let deadline = async {
        shutdown.wait().await;
        tokio::time::sleep(timeout).await;
    };
    tokio::select! {
        result = run => Some(result),
        () = deadline => {
            tracing::warn!(?timeout, "draining took longer than the shutdown timeout; exiting");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_drain_is_cut_off_at_the_deadline() {
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let stuck = std::future::pending::<()>();
        let started = tokio::time::Instant::now();
        let result = drain_within(Duration::from_millis(50), &shutdown, stuck).await;
        assert_eq!(result, None);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_finished_run_is_returned() {
        let shutdown = Shutdown::new();
        let result = drain_within(Duration::from_millis(1), &shutdown, async { 7 }).await;
        assert_eq!(result, Some(7));
    }
}
