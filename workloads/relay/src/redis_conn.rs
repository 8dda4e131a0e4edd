//! One lazily connected, self-reconnecting Redis connection shared by the config cache and the
//! rate limiter. Relay starts (and serves what it can) while Redis is still unreachable.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid Redis URL: {0}")]
    Url(#[source] redis::RedisError),
    #[error("Redis unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
}

pub struct RedisHandle {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    conn: Mutex<Option<ConnectionManager>>,
}

impl RedisHandle {
    /// `prefix` namespaces every key relay writes (`relay:` by default).
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, RedisError> {
        Ok(Self {
            client: redis::Client::open(url).map_err(RedisError::Url)?,
            prefix: prefix.to_owned(),
            timeout,
            conn: Mutex::new(None),
        })
    }

    /// A connection; connects on first use (and after a failed first attempt).
    pub async fn conn(&self) -> Result<ConnectionManager, RedisError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(RedisError::Unavailable)?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// `name` under this relay's key prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut conn = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(RedisError::Unavailable)
    }
}
