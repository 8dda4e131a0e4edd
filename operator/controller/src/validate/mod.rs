//! Validate: turn what was read (ControlPlanes, Regions, the RPC secret) into typed, checked
//! input for the build step. Pure: the same input always gives the same answer.

use std::sync::Arc;

use kube::{Resource, ResourceExt};
use silo_api::conditions::reason;
use silo_api::controlplane::DatabaseRef;
use silo_api::{
    Category, ControlInfrastructure, ControlPlane, InfrastructureSpec, Mode, NetworkPolicySettings,
    PodSettings, PublicUrls, Region, StoreImages, WorkloadsSpec,
};
use silo_contract::validate_region_name;

use crate::build::{self, Owner};
use crate::labels;

pub mod directory;

pub use directory::{FleetDirectory, Refused, Retired, Silos, fleet_directory};

/// Why a resource cannot be reconciled as it is; each message says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidateError {
    #[error(
        "no ControlPlane exists; create one (see examples/controlplane.yaml) to give the fleet a version and image"
    )]
    NoControlPlane,
    #[error(
        "ControlPlane {active} manages the fleet; {ignored} is ignored. Delete the extra ControlPlane"
    )]
    MultipleControlPlanes { active: String, ignored: String },
    #[error(
        "ControlPlane {control_plane} runs in MONOLITH mode, which deploys no region silos; set its mode to SILOED to run this Region"
    )]
    MonolithMode { control_plane: String },
    #[error(
        "snowflakeId {id} is already used by Region {other}; snowflake ids are immutable, so delete this Region and create it again with an unused id"
    )]
    DuplicateSnowflakeId { id: u16, other: String },
    #[error(
        "snowflakeId {id} is retired: it was held by Region {holder}, now deleted, and the ids generated there embed it. Pick an unused id (snowflake ids are immutable: delete this Region and create it again), or add {id} to the ControlPlane's spec.releasedSnowflakeIds to reuse it knowingly"
    )]
    RetiredSnowflakeId { id: u16, holder: String },
    #[error("{0}")]
    InvalidName(String),
    #[error("snowflakeId {0} is outside 0..4095")]
    SnowflakeRange(i32),
    #[error(
        "the RPC secret of ControlPlane {control_plane} does not exist yet; it is created by the operator, retrying"
    )]
    WaitingForRpcSecret { control_plane: String },
    #[error(
        "spec.address {address:?} cannot be listed in the region directory ({problem}); set it to the http:// or https:// base URL of the region's web service, or remove it to use the derived address. Until then the Region is left out of every directory and not deployed"
    )]
    InvalidAddress { address: String, problem: String },
    #[error(
        "Region {region} runs in another cluster (spec.cluster) but ControlPlane {control_plane} has no spec.control.externalAddress; set it to the control silo's URL as reachable from that cluster, so that the region's pods can reach it"
    )]
    NoExternalControlAddress {
        region: String,
        control_plane: String,
    },
    #[error("{kind} {name} has no uid yet; it cannot own objects")]
    MissingUid { kind: &'static str, name: String },
}

impl ValidateError {
    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ValidateError::NoControlPlane | ValidateError::WaitingForRpcSecret { .. } => {
                reason::NO_CONTROL_PLANE
            }
            ValidateError::MultipleControlPlanes { .. } => reason::MULTIPLE_CONTROL_PLANES,
            ValidateError::MonolithMode { .. } => reason::MONOLITH_MODE,
            ValidateError::DuplicateSnowflakeId { .. } => reason::DUPLICATE_SNOWFLAKE_ID,
            ValidateError::RetiredSnowflakeId { .. } => reason::RETIRED_SNOWFLAKE_ID,
            ValidateError::InvalidAddress { .. } => reason::INVALID_ADDRESS,
            ValidateError::InvalidName(_)
            | ValidateError::NoExternalControlAddress { .. }
            | ValidateError::SnowflakeRange(_)
            | ValidateError::MissingUid { .. } => reason::INVALID_SPEC,
        }
    }
}

/// Creation order: older first, then by name (deterministic tie-break).
pub(crate) fn age_key<K: Resource>(obj: &K) -> (Option<k8s_openapi::jiff::Timestamp>, String) {
    let meta = obj.meta();
    (
        meta.creation_timestamp.as_ref().map(|t| t.0),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The ControlPlane that manages the fleet: the oldest one.
pub fn active_control_plane(all: &[Arc<ControlPlane>]) -> Result<&ControlPlane, ValidateError> {
    all.iter()
        .filter(|cp| cp.meta().deletion_timestamp.is_none())
        .min_by_key(|cp| age_key(cp.as_ref()))
        .map(AsRef::as_ref)
        .ok_or(ValidateError::NoControlPlane)
}

/// A ControlPlane checked to be the active one.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedControlPlane {
    pub name: String,
    pub namespace: String,
    pub mode: Mode,
    pub replicas: i32,
    pub database: Option<DatabaseRef>,
    pub owner: Owner,
}

/// Check that `cp` is the active ControlPlane and ready to own objects.
pub fn validate_control_plane(
    cp: &ControlPlane,
    all: &[Arc<ControlPlane>],
) -> Result<ValidatedControlPlane, ValidateError> {
    let active = active_control_plane(all)?;
    if active.name_any() != cp.name_any() {
        return Err(ValidateError::MultipleControlPlanes {
            active: active.name_any(),
            ignored: cp.name_any(),
        });
    }
    let reference = cp
        .controller_owner_ref(&())
        .ok_or_else(|| ValidateError::MissingUid {
            kind: "ControlPlane",
            name: cp.name_any(),
        })?;
    if let Some(region) = &cp.spec.monolith_region {
        validate_region_name(region)
            .map_err(|e| ValidateError::InvalidName(format!("spec.monolithRegion: {e}")))?;
    }
    Ok(ValidatedControlPlane {
        name: cp.name_any(),
        namespace: cp.spec.namespace.clone(),
        mode: cp.spec.mode,
        replicas: cp.spec.control.replicas.unwrap_or(1),
        database: cp.spec.control.database.clone(),
        owner: Owner {
            reference,
            label: (labels::CONTROL_PLANE, cp.name_any()),
        },
    })
}

/// What every silo needs from the ControlPlane.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetContext {
    pub control_plane: String,
    pub mode: Mode,
    pub image_repo: String,
    pub version: String,
    pub control_address: String,
    /// `spec.control.externalAddress`: the control address of Regions in other clusters.
    pub external_control_address: Option<String>,
    /// `SENTRY_MONOLITH_REGION` of every pod: `spec.monolithRegion` as written, also while
    /// no Region of that name is listed (e.g. it was deleted). The ControlPlane then reports
    /// `UnknownMonolithRegion`, and the pods, which accept a directory without it, answer
    /// requests without an organization with 503 instead of sending them to another region.
    /// Dropping or replacing the value would restart every pod of the fleet and silently
    /// place new organizations in a region nobody chose.
    pub monolith_region: Option<String>,
    /// Pull policy and placement of every workload pod.
    pub pods: PodSettings,
    /// Images of the managed stores.
    pub images: StoreImages,
    /// Public URL templates.
    pub urls: PublicUrls,
    /// The control silo's (or monolith's) store settings.
    pub control_infrastructure: ControlInfrastructure,
    /// Namespace of the control silo (or the monolith).
    pub control_namespace: String,
    /// NetworkPolicy settings of every silo namespace.
    pub network: NetworkPolicySettings,
    /// Hash of the `RPC_SHARED_SECRET` list on pod templates, once the fleet's key has been
    /// rotated (a change rolls every silo; see `rpc_rotation`); `None` before any rotation.
    pub rpc_hash: Option<String>,
}

impl FleetContext {
    /// Derive the fleet context from the active ControlPlane.
    pub fn new(cp: &ControlPlane) -> Self {
        Self {
            control_plane: cp.name_any(),
            mode: cp.spec.mode,
            image_repo: cp.spec.image.clone(),
            version: cp.spec.version.clone(),
            control_address: build::control_address(&cp.spec.namespace),
            external_control_address: cp.spec.control.external_address.clone(),
            monolith_region: cp.spec.effective_monolith_region().map(str::to_owned),
            pods: cp.spec.pods.clone(),
            images: cp.spec.infrastructure.images.clone(),
            urls: cp.spec.urls.clone(),
            control_infrastructure: cp.spec.infrastructure.clone(),
            control_namespace: cp.spec.namespace.clone(),
            network: cp.spec.network_policies.clone(),
            rpc_hash: None,
        }
    }

    /// Public base URL of `region`'s API (default: its in-cluster web address).
    pub fn api_url(&self, region: &str) -> String {
        match &self.urls.api {
            Some(template) => PublicUrls::expand(template, region),
            None => build::region_address(&labels::region_namespace(region)),
        }
    }

    /// Public base URL of `region`'s ingest, the DSN host (default: its in-cluster relay).
    pub fn ingest_url(&self, region: &str) -> String {
        self.ingest_url_in(region, &labels::region_namespace(region))
    }

    /// [`Self::ingest_url`] for a region served from `namespace` (the monolith's).
    pub fn ingest_url_in(&self, region: &str, namespace: &str) -> String {
        match &self.urls.ingest {
            Some(template) => PublicUrls::expand(template, region),
            None => build::relay_address(namespace),
        }
    }

    /// Public base URL of the control silo's API gateway (default: its in-cluster address).
    pub fn control_url(&self) -> String {
        self.urls
            .control
            .clone()
            .unwrap_or_else(|| self.control_address.clone())
    }

    /// The fleet as a Region in another cluster sees it: the control silo at its external
    /// address.
    pub fn for_remote(&self) -> Self {
        Self {
            control_address: self
                .external_control_address
                .clone()
                .unwrap_or_else(|| self.control_address.clone()),
            ..self.clone()
        }
    }

    /// Full image reference for `version`.
    pub fn image_for(&self, version: &str) -> String {
        format!("{}:{}", self.image_repo, version)
    }
}

/// A Region checked against the fleet, ready to build.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedRegion {
    pub name: String,
    pub namespace: String,
    pub category: Category,
    pub snowflake_id: u16,
    /// Effective version: the Region's pin or the ControlPlane's version.
    pub version: String,
    pub workloads: WorkloadsSpec,
    pub infrastructure: InfrastructureSpec,
    /// `spec.suspendNetworkPolicies`: build no NetworkPolicies for this region.
    pub suspend_network_policies: bool,
    pub owner: Owner,
}

/// Check `region` against the fleet: a usable name, id and address, an id nobody older holds
/// and no deleted Region held (unless released), and a SILOED ControlPlane.
pub fn validate_region(
    region: &Region,
    fleet: &FleetContext,
    directory: &FleetDirectory,
) -> Result<ValidatedRegion, ValidateError> {
    let name = region.name_any();
    validate_region_name(&name).map_err(|e| ValidateError::InvalidName(e.to_string()))?;
    let snowflake_id = u16::try_from(region.spec.snowflake_id)
        .ok()
        .filter(|id| *id <= silo_contract::region::MAX_SNOWFLAKE_ID)
        .ok_or(ValidateError::SnowflakeRange(region.spec.snowflake_id))?;
    if let Some(refused) = directory.refused.get(&name) {
        return Err(ValidateError::InvalidAddress {
            address: refused.address.clone(),
            problem: refused.problem.clone(),
        });
    }
    if let Some((id, holder)) = directory.retired.get(&name) {
        return Err(ValidateError::RetiredSnowflakeId {
            id: *id,
            holder: holder.clone(),
        });
    }
    if let Some((id, other)) = directory.duplicates.get(&name) {
        return Err(ValidateError::DuplicateSnowflakeId {
            id: *id,
            other: other.clone(),
        });
    }
    if fleet.mode == Mode::Monolith {
        return Err(ValidateError::MonolithMode {
            control_plane: fleet.control_plane.clone(),
        });
    }
    if region.is_remote() && fleet.external_control_address.is_none() {
        return Err(ValidateError::NoExternalControlAddress {
            region: name,
            control_plane: fleet.control_plane.clone(),
        });
    }
    let reference = region
        .controller_owner_ref(&())
        .ok_or_else(|| ValidateError::MissingUid {
            kind: "Region",
            name: name.clone(),
        })?;
    Ok(ValidatedRegion {
        namespace: region.namespace(),
        category: region.spec.category,
        snowflake_id,
        version: region
            .spec
            .version
            .clone()
            .unwrap_or_else(|| fleet.version.clone()),
        workloads: region.spec.workloads.clone(),
        infrastructure: region.spec.infrastructure.clone(),
        suspend_network_policies: region.spec.suspend_network_policies,
        owner: Owner {
            reference,
            label: (labels::REGION, name.clone()),
        },
        name,
    })
}
