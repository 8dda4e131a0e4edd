//! What every reconcile gets: the client, the stores, the applier, metrics, events, backoff,
//! the cluster registry.

use std::time::Duration;

use kube::Client;
use kube::runtime::events::Recorder;

use crate::apply::{Applier, ApplyError};
use crate::backoff::Backoff;
use crate::clusters::Registry;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::pacing::StatusPacer;
use crate::pods::PodProblems;
use crate::stores::Stores;

/// Shared state of both controllers.
pub struct Context {
    pub client: Client,
    pub stores: Stores,
    /// Why pods of a silo cannot run, for status.
    pub pod_problems: PodProblems,
    pub applier: Applier,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub backoff: Backoff,
    /// Re-check interval for settled objects (reads only the in-memory stores).
    pub resync: Duration,
    /// Spaces out Region status writes that only change condition messages.
    pub status_pacer: StatusPacer,
    /// Reconciles act only while this replica holds the leader lease.
    pub leadership: Leadership,
    /// Clients of the customer-provided clusters Regions run in.
    pub clusters: Registry,
    /// How long before its credentials expire a remote Region warns.
    pub credentials_warn_before: Duration,
}

/// A reconcile step that talked to the API server failed; retried with per-object backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("writing the status of {name} failed: {source}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("keeping the volumes of namespace {namespace} (retainOnDelete) failed: {source}")]
    Retain {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Rotation(#[from] crate::rotation::execute::RotationError),
    #[error("updating the finalizer of {name} failed: {source}")]
    Finalizer {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl ReconcileError {
    /// The API error behind a failed write, if it was one.
    pub fn kube_error(&self) -> Option<&kube::Error> {
        match self {
            ReconcileError::Apply(
                ApplyError::Apply { source, .. }
                | ApplyError::Create { source, .. }
                | ApplyError::Delete { source, .. },
            ) => Some(source),
            ReconcileError::Status { source, .. }
            | ReconcileError::Retain { source, .. }
            | ReconcileError::Finalizer { source, .. } => Some(source),
            ReconcileError::Rotation(_) => None,
        }
    }

    /// The metric/condition reason of this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Apply(_) => silo_api::conditions::reason::APPLY_FAILED,
            ReconcileError::Status { .. } => "StatusFailed",
            ReconcileError::Finalizer { .. } => "FinalizerFailed",
            ReconcileError::Retain { .. } => "RetainFailed",
            ReconcileError::Rotation(_) => "RotationFailed",
        }
    }
}
