//! Composition root: build every component from the command line, serve, drain on SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use silo_runtime::admin::ReadyFlag;
use silo_runtime::{AdminState, ContractHandle, Readiness, Shutdown, admin_router, serve};
use tokio::task::JoinHandle;

use crate::cli::Cli;
use crate::client_addr::{TrustedProxies, parse_networks};
use crate::kafka::{EventProducer, KafkaSettings, ProduceError};
use crate::metrics::RelayMetrics;
use crate::outcomes::Outcomes;
use crate::project_config::{ConfigError, ConfigSettings, ProjectConfigs};
use crate::rate_limit::RateLimiter;
use crate::redis_conn::{RedisError, RedisHandle};
use crate::state::{Limits, RelayState};

#[derive(Debug, thiserror::Error)]
pub enum AppStartError {
    #[error(transparent)]
    Contract(#[from] silo_runtime::ContractLoadError),
    #[error(
        "relay serves the region silo, but SENTRY_SILO_MODE is {0}; run it with REGION or MONOLITH"
    )]
    WrongSilo(silo_contract::SiloMode),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Kafka(#[from] ProduceError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    KafkaSecurity(#[from] silo_runtime::KafkaSecurityError),
    #[error(transparent)]
    ProjectConfigs(#[from] ConfigError),
    #[error(transparent)]
    Serve(#[from] silo_runtime::ServeError),
}

/// Everything the handlers need plus what shutdown drains.
pub struct Components {
    pub state: Arc<RelayState>,
    pub redis: Arc<RedisHandle>,
    pub outcomes_task: JoinHandle<()>,
}

/// Build the components for `cli` (also used by tests and the benchmark).
pub fn build(
    cli: &Cli,
    registry: &mut Registry,
    shutdown: &Shutdown,
) -> Result<Components, AppStartError> {
    cli.validate().map_err(AppStartError::Config)?;
    let metrics = Arc::new(RelayMetrics::register(registry));
    let redis = Arc::new(RedisHandle::new(
        &cli.redis.redis_url,
        cli.redis.redis_ca_file.as_deref(),
        &cli.redis.redis_prefix,
        cli.redis.redis_timeout,
    )?);
    let producer = Arc::new(EventProducer::new(
        KafkaSettings {
            brokers: cli.kafka.kafka_brokers.clone(),
            delivery_timeout: cli.kafka.kafka_delivery_timeout,
            linger: cli.kafka.kafka_linger,
            topic_prefix: cli.kafka.kafka_topic_prefix.clone(),
            security: cli.kafka.kafka_security.client_settings()?,
        },
        metrics.clone(),
    )?);
    let configs = ProjectConfigs::start(
        ConfigSettings {
            upstream: cli.upstream.upstream_url.clone(),
            relay_id: cli.upstream.relay_id.clone(),
            secret: cli.upstream.relay_secret.clone(),
            ttl: cli.upstream.config_ttl,
            negative_ttl: cli.upstream.config_negative_ttl,
            batch_window: cli.upstream.config_batch_window,
            upstream_timeout: cli.upstream.upstream_timeout,
        },
        redis.clone(),
        metrics.clone(),
    )?;
    let (outcomes, outcomes_task) = Outcomes::start(
        producer.clone(),
        metrics.clone(),
        cli.kafka.outcomes_flush_interval,
        shutdown.clone(),
    );
    let state = Arc::new(RelayState {
        configs,
        limiter: RateLimiter::new(redis.clone()),
        producer,
        outcomes,
        metrics,
        limits: Limits {
            max_envelope_bytes: cli.limits.max_envelope_bytes,
            max_event_bytes: cli.limits.max_event_bytes,
        },
        trusted_proxies: TrustedProxies::new(
            parse_networks(&cli.serve.trusted_proxies).map_err(AppStartError::Config)?,
        ),
    });
    Ok(Components {
        state,
        redis,
        outcomes_task,
    })
}

/// Keep the `kafka` and `redis` readiness flags in line with periodic probes.
fn spawn_probes(components: &Components, kafka: ReadyFlag, redis: ReadyFlag, shutdown: Shutdown) {
    let producer = components.state.producer.clone();
    let redis_handle = components.redis.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = ticker.tick() => {}
            }
            let p = producer.clone();
            let ok = tokio::task::spawn_blocking(move || p.probe(Duration::from_secs(3)))
                .await
                .unwrap_or(false);
            kafka.set(ok);
            redis.set(redis_handle.ping().await.is_ok());
        }
    });
}

/// Run the `relay` binary.
pub async fn run(cli: Cli) -> Result<(), AppStartError> {
    silo_runtime::telemetry::init(&cli.runtime.log);
    let contract = ContractHandle::from_env()?;
    let mode = contract.current().mode;
    if !mode.serves_region() {
        return Err(AppStartError::WrongSilo(mode));
    }
    let shutdown = Shutdown::on_signals();
    contract.spawn_reloader(cli.runtime.directory_reload_interval, shutdown.clone());

    // Outcomes flush on their own token so they outlive the HTTP drain.
    let outcomes_stop = Shutdown::new();
    let mut registry = Registry::default();
    let components = build(&cli, &mut registry, &outcomes_stop)?;
    let readiness = Readiness::new();
    spawn_probes(
        &components,
        readiness.register("kafka"),
        readiness.register("redis"),
        shutdown.clone(),
    );
    let admin = admin_router(AdminState {
        registry: Arc::new(registry),
        readiness,
    });
    let api = crate::router::router(components.state.clone());
    tracing::info!(%mode, listen = %cli.serve.listen, upstream = %cli.upstream.upstream_url, "relay starting");
    let result = match cli.serve.admin_listen {
        Some(admin_addr) => {
            let admin_server = tokio::spawn(serve(admin_addr, admin, shutdown.clone()));
            let result = serve(cli.serve.listen, api, shutdown.clone()).await;
            shutdown.trigger();
            if let Ok(Err(error)) = admin_server.await {
                tracing::error!(%error, "admin server failed");
            }
            result
        }
        None => serve(cli.serve.listen, api.merge(admin), shutdown.clone()).await,
    };
    shutdown.trigger();
    drain(components, cli.runtime.shutdown_timeout, outcomes_stop).await;
    result?;
    tracing::info!("relay stopped");
    Ok(())
}

/// After the HTTP server stopped: write pending outcomes, then flush the producer.
async fn drain(components: Components, timeout: Duration, outcomes_stop: Shutdown) {
    outcomes_stop.trigger();
    if tokio::time::timeout(timeout, components.outcomes_task)
        .await
        .is_err()
    {
        tracing::warn!("outcomes not flushed before the shutdown timeout");
    }
    let producer = components.state.producer.clone();
    let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
}
