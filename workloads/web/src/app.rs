//! Composition root: build every component from the command line, then serve or migrate.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use silo_runtime::{AdminState, ContractHandle, Readiness, Shutdown, admin_router, serve};
use silo_store::{PgPool, PoolSettings, StoreError};
use tokio::time::Instant;

use crate::auth::ALL_SCOPES;
use crate::cli::{Cli, Command};
use crate::control::{CrossSilo, CrossSiloMetrics};
use crate::metrics::WebMetrics;
use crate::state::{AppState, Settings};

/// Why the process could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppStartError {
    #[error(transparent)]
    Contract(#[from] silo_runtime::ContractLoadError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Pool(#[from] silo_store::PoolError),
    #[error("{what} failed: {source}")]
    Database {
        what: &'static str,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Serve(#[from] silo_runtime::ServeError),
}

/// Run the `web` binary.
pub async fn run(mut cli: Cli) -> Result<(), AppStartError> {
    silo_runtime::telemetry::init(&cli.runtime.log);
    let contract = ContractHandle::from_env()?;
    if matches!(cli.command, Some(Command::Regions)) {
        println!("{}", contract.current().directory.to_json());
        return Ok(());
    }
    let pool = silo_store::connect_lazy(&PoolSettings {
        url: cli.database.database_url.clone(),
        max_connections: cli.database.database_max_connections,
        acquire_timeout: cli.database.database_acquire_timeout,
        ping_after_idle: cli.database.database_ping_after_idle,
    })?;
    let wait = cli.database.database_wait;
    match cli.command.take().unwrap_or(Command::Serve) {
        Command::Migrate => {
            retry_unavailable("migrations", wait, || silo_store::migrate(&pool)).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Serve => serve_api(cli, contract, pool).await,
        // Answered above, before any database work.
        Command::Regions => Ok(()),
    }
}

async fn serve_api(cli: Cli, contract: ContractHandle, pool: PgPool) -> Result<(), AppStartError> {
    cli.serve.validate().map_err(AppStartError::Config)?;
    let wait = cli.database.database_wait;
    if cli.serve.migrate_on_start {
        retry_unavailable("migrations", wait, || silo_store::migrate(&pool)).await?;
    }
    if let Some(token) = cli.serve.bootstrap_token.as_deref() {
        let scopes: Vec<String> = ALL_SCOPES.iter().map(|s| (*s).to_owned()).collect();
        retry_unavailable("storing the bootstrap token", wait, || {
            silo_store::api_tokens::upsert(&pool, token, "bootstrap", &scopes)
        })
        .await?;
    }

    let shutdown = Shutdown::on_signals();
    contract.spawn_reloader(cli.runtime.directory_reload_interval, shutdown.clone());
    let mode = contract.current().mode;

    let mut registry = Registry::default();
    let metrics = Arc::new(WebMetrics::register(&mut registry));
    let cross = CrossSilo::new(
        contract.clone(),
        cli.cross.settings(),
        Arc::new(CrossSiloMetrics::register(&mut registry)),
    );
    crate::control::outbox::spawn(pool.clone(), cross.clone(), mode, shutdown.clone());
    let readiness = Readiness::new();
    spawn_database_probe(
        pool.clone(),
        readiness.register("postgres"),
        shutdown.clone(),
    );
    let admin = admin_router(AdminState {
        registry: Arc::new(registry),
        readiness,
    });

    let state = AppState {
        pool,
        mode,
        settings: Arc::new(Settings {
            relay_public_url: cli.serve.relay_public_url.trim_end_matches('/').to_owned(),
            relay_secret: cli.serve.relay_secret.filter(|s| !s.is_empty()),
            public_url: cli.serve.public_url,
        }),
        metrics,
        cross,
    };
    let api = crate::router::app_router(state);
    tracing::info!(%mode, listen = %cli.serve.listen, "web starting");
    match cli.serve.admin_listen {
        Some(admin_addr) => {
            let admin_server = tokio::spawn(serve(admin_addr, admin, shutdown.clone()));
            let result = serve(cli.serve.listen, api, shutdown.clone()).await;
            shutdown.trigger();
            if let Ok(Err(error)) = admin_server.await {
                tracing::error!(%error, "admin server failed");
            }
            result?;
        }
        None => serve(cli.serve.listen, api.merge(admin), shutdown).await?,
    }
    tracing::info!("web stopped");
    Ok(())
}

/// Run `op` until it succeeds, retrying while the database is unreachable for up to `wait`.
async fn retry_unavailable<T, F, Fut>(
    what: &'static str,
    wait: Duration,
    mut op: F,
) -> Result<T, AppStartError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + wait;
    let mut delay = Duration::from_millis(200);
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_unavailable() && Instant::now() < deadline => {
                tracing::warn!(%error, what, retry_in = ?delay, "database unavailable, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(source) => return Err(AppStartError::Database { what, source }),
        }
    }
}

/// Keep the `postgres` readiness flag in line with a periodic ping.
fn spawn_database_probe(pool: PgPool, flag: silo_runtime::admin::ReadyFlag, shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = ticker.tick() => {}
            }
            let ok = silo_store::ping(&pool).await.is_ok();
            flag.set(ok);
        }
    });
}
