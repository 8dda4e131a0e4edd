//! Connecting to Postgres and applying the embedded migrations.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

use crate::error::{Result, StoreError};

/// The migrations under `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// A `postgres://user:pass@host:port/db` URL.
    pub url: String,
    pub max_connections: u32,
    /// How long a query waits for a free (or new) connection before failing as unavailable.
    pub acquire_timeout: Duration,
    /// A connection idle at least this long is pinged before use ([`PING_AFTER_IDLE`]).
    pub ping_after_idle: Duration,
}

impl PoolSettings {
    pub fn new(url: impl Into<String>) -> Self {
        PoolSettings {
            url: url.into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            ping_after_idle: PING_AFTER_IDLE,
        }
    }
}

/// A pooled connection idle at least this long is pinged before it is handed out (one round
/// trip), so that one which died while idle (a Postgres restart, a proxy's idle timeout) is
/// replaced instead of failing a query. Connections in steady use go out without that round
/// trip: sqlx's default pings before every acquire, a third of the round trips of a pooled
/// single-statement query (sqlx also pings on every release, off the request's path).
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("invalid database URL (expected postgres://user:password@host:port/database): {0}")]
    Url(#[source] sqlx::Error),
}

/// Build a lazily connecting pool: the process starts even while the database is down, and
/// queries fail as unavailable (503) until it is back.
pub fn connect_lazy(settings: &PoolSettings) -> Result<PgPool, PoolError> {
    let options: PgConnectOptions = settings.url.parse().map_err(PoolError::Url)?;
    let ping_after_idle = settings.ping_after_idle;
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= ping_after_idle {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options))
}

/// Apply every pending migration. Safe to run concurrently from several processes: sqlx takes
/// an advisory lock for the duration.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await.map_err(StoreError::from)
}

/// A cheap round trip, for readiness checks.
pub async fn ping(pool: &PgPool) -> Result<()> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(StoreError::db("ping", None))
}
