//! Process plumbing every silo workload shares.
//!
//! ```text
//!  env ──► SiloContract::from_env ──► ContractHandle ──(poll file, reload)──► watch::Receiver
//!  SIGTERM/SIGINT ──► shutdown::Shutdown (CancellationToken) ──► servers, consumers drain
//!  components ──► Readiness flags ─┐
//!  typed metrics ──► Registry ─────┴──► admin_router: /healthz /readyz /metrics
//!  failed request ──► RequestId ──► log line + answer to the client
//! ```

pub mod admin;
pub mod args;
pub mod backoff;
pub mod contract;
pub mod kafka_security;
pub mod request_id;
pub mod serve;
pub mod shutdown;
pub mod telemetry;

pub use admin::{AdminState, Readiness, admin_router};
pub use args::{LogArgs, RuntimeArgs};
pub use backoff::Backoff;
pub use contract::{ContractHandle, ContractLoadError};
pub use kafka_security::{KafkaSecurityArgs, KafkaSecurityError};
pub use request_id::RequestId;
pub use serve::{ServeError, serve};
pub use shutdown::Shutdown;
