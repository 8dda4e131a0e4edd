//! Serve an axum router until shutdown.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}; is another process using the port?")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server on {addr} failed: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Bind `addr` and serve `router` until `shutdown` fires, then finish in-flight requests.
pub async fn serve(addr: SocketAddr, router: Router, shutdown: Shutdown) -> Result<(), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %local, "listening");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.wait().await })
    .await
    .map_err(|source| ServeError::Serve {
        addr: local,
        source,
    })
}
