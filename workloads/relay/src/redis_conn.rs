//! One lazily connected, self-reconnecting Redis connection shared by the config cache and the
//! rate limiter. Relay starts (and serves what it can) while Redis is still unreachable.

use std::path::Path;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid Redis URL: {0}")]
    Url(#[source] redis::RedisError),
    #[error("cannot read the Redis CA bundle {path}: {source}")]
    CaFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    /// `prefix` namespaces every key relay writes (`relay:` by default); `ca_file` is the PEM
    /// bundle a `rediss://` server's certificate is checked against (else the system roots).
    pub fn new(
        url: &str,
        ca_file: Option<&Path>,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self, RedisError> {
        let client = match ca_file {
            None => redis::Client::open(url),
            Some(path) => {
                let root_cert = std::fs::read(path).map_err(|source| RedisError::CaFile {
                    path: path.to_owned(),
                    source,
                })?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                redis::Client::build_with_tls(url, certificates)
            }
        }
        .map_err(RedisError::Url)?;
        Ok(Self {
            client,
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
