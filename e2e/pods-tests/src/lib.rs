//! End-to-end scenarios in real pods, on the local cluster's real node or on kind.
//!
//! ```text
//!  settings (env: image tag, pull policy, Postgres image, node placement)
//!     --> helm upgrade --install charts/silo-operator (operator pod, chart RBAC)
//!     --> Postgres pod + Secret in the control namespace --> ControlPlane (control.database)
//!     --> operator --> control web Deployment --> real container (probes pass)
//!     --> kubectl port-forward --> /api/0/... answered by the real binary
//!     --> kubectl logs / exec --> delete ControlPlane --> pods exit on SIGTERM
//! ```
//!
//! Regions (`fleet`): ControlPlane + Regions with managed stores --> Ready --> organization
//! through the control gateway --> events from the official SDK into the region's relay.
//!
//! Everything is reached through the API server (port-forward, logs, exec): no test connects
//! to a pod or Service address.

pub mod fleet;
pub mod kubectl;
pub mod operator;
pub mod pods;
pub mod postgres;
pub mod probe;
pub mod scenario;
pub mod settings;
pub mod stores;
pub mod tls;

pub use silo_e2e_cluster::StepContext;
pub use silo_e2e_cluster::wait::{self, Check};

/// A failed step of a scenario.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cluster(#[from] silo_e2e_cluster::cluster::Error),
    #[error(transparent)]
    Wait(#[from] wait::Error),
    /// A Kubernetes API call failed (`StepContext::step` names the step).
    #[error(transparent)]
    Step(#[from] silo_e2e_cluster::Error),
    #[error("{0}")]
    Tool(#[from] kubectl::ToolError),
    #[error("{0}")]
    Unexpected(String),
}
