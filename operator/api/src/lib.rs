//! The `silo.dev/v1alpha1` API: the custom resources a platform team writes.
//!
//! ```text
//!   Rust types (this crate) ──► crdgen ──► crds/*.yaml ──► kube-apiserver (schema + CEL rules)
//!        │
//!        └──► silo-operator reads specs, writes status with the same types
//! ```
//!
//! [`ControlPlane`] carries the fleet-wide release (version, image) and the silo mode;
//! one [`Region`] per region silo carries its identity (category, snowflake id) and sizing.
//! No I/O happens here: the operator does the reading and writing.

pub mod cluster;
pub mod conditions;
pub mod controlplane;
pub mod crdgen;
pub mod infrastructure;
pub mod network;
pub mod pods;
pub mod region;
pub mod rollout;
pub mod rpc_rotation;
pub mod workload;

pub use cluster::{ClusterRef, ClusterStatus};
pub use controlplane::{ControlPlane, ControlPlaneSpec, ControlPlaneStatus, ControlSpec, Mode};
pub use infrastructure::{
    ControlInfrastructure, ExternalStore, InfrastructureSpec, KafkaSasl, ManagedStore,
    PostgresSslMode, PublicUrls, SaslMechanism, Store, StoreImages, StoreSpec, StoreTls,
};
pub use network::NetworkPolicySettings;
pub use pods::{PodSettings, PullPolicy};
pub use region::{
    Category, CredentialRotationRequest, CredentialRotationStatus, Endpoints, Region, RegionSpec,
    RegionStatus, RotationPhase,
};
pub use rollout::{
    Approval, FailedRegion, GroupSettings, GroupStatus, OnFailure, RegionRollout, RegionStep,
    RolloutGroup, RolloutPhase, RolloutSpec, RolloutStatus,
};
pub use rpc_rotation::{RpcRotationPhase, RpcSecretRotationRequest, RpcSecretRotationStatus};
pub use workload::{Workload, WorkloadSpec, WorkloadsSpec};

/// The API group of every silo resource.
pub const GROUP: &str = "silo.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
