//! The gateway's connections to regions: one pooled HTTP/1.1 client per process.
//!
//! ```text
//!  proxied request (absolute URI of the region, body already bounded)
//!    ─► http://  ─► hyper client: pooled keep-alive connections, TCP_NODELAY, no URL re-parse
//!       https:// ─► reqwest (rustls) for regions published behind TLS
//!    ◄─ response head within the timeout; the body streams through unbuffered
//! ```

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long an idle pooled connection to a region is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Why a region gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no response head within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Unreachable(String),
}

/// Pooled clients to the regions.
#[derive(Clone, Debug)]
pub struct Upstream {
    plain: Client<HttpConnector, Body>,
    tls: reqwest::Client,
}

impl Default for Upstream {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let plain = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        let tls = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(POOL_IDLE)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { plain, tls }
    }
}

impl Upstream {
    /// Send `request` (its URI absolute) and wait at most `timeout` for the response head.
    pub async fn send(
        &self,
        request: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<Body>, UpstreamError> {
        let unreachable =
            |error: &dyn std::fmt::Display| UpstreamError::Unreachable(error.to_string());
        if request.uri().scheme_str() == Some("http") {
            let answer = tokio::time::timeout(timeout, self.plain.request(request))
                .await
                .map_err(|_| UpstreamError::Timeout(timeout))?;
            return answer
                .map(|r| r.map(Body::new))
                .map_err(|e| unreachable(&e));
        }
        let request = request.map(|body| reqwest::Body::wrap_stream(body.into_data_stream()));
        let request = reqwest::Request::try_from(request).map_err(|e| unreachable(&e))?;
        let answer = tokio::time::timeout(timeout, self.tls.execute(request))
            .await
            .map_err(|_| UpstreamError::Timeout(timeout))?;
        let response = answer.map_err(|e| unreachable(&e))?;
        Ok(Response::from(response).map(Body::new))
    }
}
