//! Webhook delivery: POST JSON, retry transient failures with backoff, give up on the rest.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use silo_runtime::{Backoff, Shutdown};

/// How a delivery ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A 2xx answer after `attempts` tries.
    Delivered { attempts: i32 },
    /// A permanent refusal, or every try failed; `error` is the last reason.
    Failed { attempts: i32, error: String },
    /// Shutdown arrived between tries; the notification stays pending.
    Interrupted { attempts: i32 },
}

/// Whether an HTTP status is worth retrying: server errors, timeouts and rate limits.
pub fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.as_u16() == 425
}

#[derive(Clone, Debug)]
pub struct Webhook {
    client: reqwest::Client,
    max_attempts: i32,
    max_backoff: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct ClientError(#[source] reqwest::Error);

impl Webhook {
    pub fn new(
        timeout: Duration,
        max_attempts: i32,
        max_backoff: Duration,
    ) -> Result<Self, ClientError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("silo-postprocess/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError)?;
        Ok(Webhook {
            client,
            max_attempts: max_attempts.max(1),
            max_backoff,
        })
    }

    pub async fn deliver(&self, url: &str, body: &Value, shutdown: &Shutdown) -> Delivery {
        let mut backoff = Backoff::new(self.max_backoff);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (error, retry) = match self.client.post(url).json(body).send().await {
                Ok(response) if response.status().is_success() => {
                    return Delivery::Delivered { attempts };
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    let text: String = text.chars().take(200).collect();
                    (
                        format!("webhook answered {status}: {text}"),
                        retryable(status),
                    )
                }
                Err(e) => (format!("webhook request failed: {e}"), true),
            };
            tracing::warn!(%url, attempts, %error, retry, "webhook delivery failed");
            if !retry || attempts >= self.max_attempts {
                return Delivery::Failed { attempts, error };
            }
            if !backoff.wait(shutdown).await {
                return Delivery::Interrupted { attempts };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_transient_statuses() {
        for s in [500, 502, 503, 408, 429, 425] {
            assert!(retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 404, 410, 413] {
            assert!(!retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}
