//! Checks that the local cluster from `e2e/cluster/up.sh` behaves like a real Kubernetes.
//!
//! ```text
//! SILO_KUBECONFIG / SILO_KUBECONFIG_2 --> cluster::connect --> kube::Client
//!     --> TestNamespace (generated name, deleted and awaited at the end)
//!     --> scenario (Deployment rollout/scale/delete, CRD with a CEL rule,
//!                   ServiceAccount token limited by RBAC, pods on the real node)
//!     --> wait::until polls the API server with a deadline until it reports the expected state
//! ```
//!
//! The scenarios live in the library so one cluster or two clusters at once can run them.

pub mod cluster;
pub mod crd;
pub mod deployment;
pub mod namespace;
pub mod realnode;
pub mod token;
pub mod wait;

/// Failure of a scenario, with the step that failed.
#[derive(thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cluster(#[from] cluster::Error),
    #[error(transparent)]
    Wait(#[from] wait::Error),
    #[error("{step}: {source}")]
    Kube {
        step: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Unexpected(String),
}

// Test harnesses print a returned error with `Debug`; show the readable message instead.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Attach the step being performed to a `kube::Error`.
pub trait StepContext<T> {
    fn step(self, step: impl Into<String>) -> Result<T, Error>;
}

impl<T> StepContext<T> for Result<T, kube::Error> {
    fn step(self, step: impl Into<String>) -> Result<T, Error> {
        self.map_err(|source| Error::Kube {
            step: step.into(),
            source,
        })
    }
}
