//! Signed RPC calls to another silo: `POST <address>/api/0/internal/rpc/<service>/<method>/`
//! with `{"meta":{},"args":...}`, answered `{"meta":{},"value":...}`.
//!
//! Each attempt has a timeout; a 503 or an unreachable silo is retried with doubling delays up
//! to the configured number of attempts. Other answers are final.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use silo_contract::rpc;
use silo_runtime::{Backoff, ContractHandle};

use super::metrics::{CrossSiloMetrics, RpcLabels};

/// Why an RPC call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("no RPC_SHARED_SECRET is configured, so RPC calls cannot be signed")]
    NoSecret,
    #[error("{target} is unavailable after {attempts} attempts: {detail}")]
    Unavailable {
        target: String,
        attempts: u32,
        detail: String,
    },
    #[error("{target} refused the RPC signature (RPC_SHARED_SECRET differs): {detail}")]
    Unauthorized { target: String, detail: String },
    #[error("{target} answered {status}: {detail}")]
    Rejected {
        target: String,
        status: StatusCode,
        detail: String,
    },
    #[error("{target} answered with an unreadable RPC reply: {detail}")]
    BadReply { target: String, detail: String },
}

#[derive(Serialize)]
struct Envelope<'a, A> {
    meta: serde_json::Value,
    args: &'a A,
}

#[derive(serde::Deserialize)]
struct Reply<T> {
    value: T,
}

/// Sends signed RPC requests with the first key of `RPC_SHARED_SECRET` (re-read on every
/// call, so a reloaded contract takes effect at once).
#[derive(Clone, Debug)]
pub struct RpcClient {
    contract: ContractHandle,
    metrics: Arc<CrossSiloMetrics>,
    http: reqwest::Client,
    timeout: Duration,
    attempts: u32,
}

impl RpcClient {
    pub fn new(
        contract: ContractHandle,
        timeout: Duration,
        attempts: u32,
        metrics: Arc<CrossSiloMetrics>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            contract,
            metrics,
            http,
            timeout,
            attempts: attempts.max(1),
        }
    }

    /// Call `service/method` at `base_url` (a region's address or the control address);
    /// `target` names the silo in errors (`region "de"`, `the control silo`).
    pub async fn call<A: Serialize, T: DeserializeOwned>(
        &self,
        target: &str,
        base_url: &str,
        service: &str,
        method: &str,
        args: &A,
    ) -> Result<T, RpcError> {
        let result = self.attempt(target, base_url, service, method, args).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(RpcError::NoSecret) => "no_secret",
            Err(RpcError::Unavailable { .. }) => "unavailable",
            Err(RpcError::Unauthorized { .. }) => "unauthorized",
            Err(RpcError::Rejected { .. }) => "rejected",
            Err(RpcError::BadReply { .. }) => "bad_reply",
        };
        self.metrics
            .rpc_calls
            .get_or_create(&RpcLabels {
                service: service.to_owned(),
                method: method.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        result
    }

    async fn attempt<A: Serialize, T: DeserializeOwned>(
        &self,
        target: &str,
        base_url: &str,
        service: &str,
        method: &str,
        args: &A,
    ) -> Result<T, RpcError> {
        let path = format!("{}{service}/{method}/", rpc::PATH_PREFIX);
        let body = serde_json::to_vec(&Envelope {
            meta: serde_json::json!({}),
            args,
        })
        .map_err(|e| RpcError::BadReply {
            target: target.to_owned(),
            detail: format!("cannot encode arguments: {e}"),
        })?;
        let url = format!("{}{path}", base_url.trim_end_matches('/'));
        let mut backoff = Backoff::new(Duration::from_secs(2));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let keys = self.contract.current().rpc_secrets.clone();
            let authorization =
                rpc::authorization(&keys, &path, &body).ok_or(RpcError::NoSecret)?;
            let sent = self
                .http
                .post(&url)
                .header("authorization", authorization)
                .header("content-type", "application/json")
                .timeout(self.timeout)
                .body(body.clone())
                .send()
                .await;
            let retryable = match sent {
                Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    detail_of(response).await
                }
                Ok(response) => return decode(target, response).await,
                Err(error) => format!("{error}"),
            };
            if attempt >= self.attempts {
                return Err(RpcError::Unavailable {
                    target: target.to_owned(),
                    attempts: attempt,
                    detail: retryable,
                });
            }
            let delay = backoff.next_delay();
            tracing::warn!(%url, attempt, retry_in = ?delay, detail = %retryable, "RPC call failed, retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

async fn detail_of(response: reqwest::Response) -> String {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
        .unwrap_or(text);
    format!("{status}: {detail}")
}

async fn decode<T: DeserializeOwned>(
    target: &str,
    response: reqwest::Response,
) -> Result<T, RpcError> {
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        return Err(RpcError::Unauthorized {
            target: target.to_owned(),
            detail: detail_of(response).await,
        });
    }
    if !status.is_success() {
        return Err(RpcError::Rejected {
            target: target.to_owned(),
            status,
            detail: detail_of(response).await,
        });
    }
    let bytes = response.bytes().await.map_err(|e| RpcError::BadReply {
        target: target.to_owned(),
        detail: e.to_string(),
    })?;
    serde_json::from_slice::<Reply<T>>(&bytes)
        .map(|r| r.value)
        .map_err(|e| RpcError::BadReply {
            target: target.to_owned(),
            detail: e.to_string(),
        })
}
