//! `ControlPlane`: the fleet-wide release and the control silo.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::infrastructure::{ControlInfrastructure, PublicUrls};
use crate::network::NetworkPolicySettings;
use crate::pods::PodSettings;
use crate::region::Endpoints;
use crate::rollout::{RolloutSpec, RolloutStatus};
use crate::rpc_rotation::{RpcSecretRotationRequest, RpcSecretRotationStatus};

/// How the fleet is laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    /// A control silo plus one region silo per Region.
    #[default]
    Siloed,
    /// Control and one region (`monolithRegion`) served by one set of workloads in one namespace.
    Monolith,
}

/// The control silo's own settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlSpec {
    /// Pods of the control-silo web Deployment. Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// Secret (in the control namespace) whose key holds the control database URL, passed to
    /// the control web pods as `DATABASE_URL`. Unset: the operator runs a Postgres for the
    /// control silo in its namespace (sized by `infrastructure.postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseRef>,
    /// Externally reachable URL of the control silo's internal API, for Regions in
    /// customer-provided clusters (`Region.spec.cluster`): their pods get it as
    /// `SENTRY_CONTROL_ADDRESS` instead of the in-cluster address, which they cannot reach.
    /// Required as soon as one Region has `spec.cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(r"self.matches('^https?://[^/ ]+(/.*)?$') && !self.matches('^https?://[^/:]*[.]svc([.:/].*)?$')").message("control.externalAddress must be an http(s) URL reachable from other clusters (not a cluster-internal .svc address), e.g. https://control.sentry.example.com"))]
    pub external_address: Option<String>,
}

/// Where a database URL is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key in the Secret holding the URL. Defaults to `url`.
    #[serde(default = "default_url_key")]
    pub key: String,
}

fn default_url_key() -> String {
    "url".to_owned()
}

/// The fleet: which release every region runs, from which image, and how silos are laid out.
/// The operator manages exactly one ControlPlane.
// Each printer column repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "silo.dev",
    version = "v1alpha1",
    kind = "ControlPlane",
    plural = "controlplanes",
    shortname = "cp",
    category = "silo",
    status = "ControlPlaneStatus",
    derive = "PartialEq",
    doc = "The fleet's control plane: release version, workload image and silo mode.",
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".spec.version",
        description = "Release every region runs unless pinned"
    ),
    printcolumn(
        name = "Rollout",
        type_ = "string",
        json_path = ".status.rollout.phase",
        description = "Where the rollout of the version stands"
    ),
    printcolumn(
        name = "Upgraded",
        type_ = "integer",
        json_path = ".status.rollout.done",
        description = "Regions at the version"
    ),
    printcolumn(
        name = "Of",
        type_ = "integer",
        json_path = ".status.rollout.total",
        description = "Regions the rollout concerns (pinned ones excluded)"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        description = "SILOED or MONOLITH"
    ),
    printcolumn(
        name = "Regions-Ready",
        type_ = "integer",
        json_path = ".status.regionsReady",
        description = "Regions that are Ready"
    ),
    printcolumn(
        name = "Regions",
        type_ = "integer",
        json_path = ".status.regions",
        description = "Regions in the fleet"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the control silo is ready"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneSpec {
    /// The release every region runs unless it pins its own `version`; also the image tag.
    #[schemars(length(min = 1, max = 128))]
    pub version: String,
    /// Workload image repository, without tag; the tag is the version.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// `SILOED` (control silo + region silos) or `MONOLITH` (one namespace serving both).
    #[serde(default)]
    pub mode: Mode,
    /// In MONOLITH mode the region the monolith serves; in SILOED mode the fallback region
    /// for requests without an organization (`SENTRY_MONOLITH_REGION`). Defaults to `monolith`
    /// in MONOLITH mode and to unset in SILOED mode. While no Region of that name exists,
    /// requests without an organization are refused (503) and `Ready` says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 40))]
    pub monolith_region: Option<String>,
    /// Namespace of the control silo (SILOED) or of the monolith (MONOLITH).
    #[serde(default = "default_namespace")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Control-silo replicas and database.
    #[serde(default)]
    pub control: ControlSpec,
    /// Image pull policy and node placement of every pod of the fleet (workloads and stores).
    #[serde(default)]
    pub pods: PodSettings,
    /// NetworkPolicies of every silo namespace: default deny, the silo's own pods, DNS, the
    /// ingress path and the other silos (see `networkPolicies.ingress`).
    #[serde(default)]
    pub network_policies: NetworkPolicySettings,
    /// Images of the managed stores, and the control silo's (or monolith's) own stores.
    #[serde(default)]
    pub infrastructure: ControlInfrastructure,
    /// Public URL templates of the API, ingest and the control gateway.
    #[serde(default)]
    pub urls: PublicUrls,
    /// How a change of `version` reaches the fleet: groups, waves, soak, failure budget,
    /// pause, approvals and rollback. Progress is in `status.rollout`.
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// Snowflake ids retired by deleted Regions (see `status.retiredSnowflakeIds`) that may be
    /// used again: a Region with such an id is deployed instead of being refused with
    /// `RetiredSnowflakeId`. List one only when no id generated with it can still exist or
    /// matter. Removing an id again retires it for Regions that do not run yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4096), inner(range(min = 0, max = 4095)))]
    pub released_snowflake_ids: Vec<i32>,
    /// Rotate the fleet's `RPC_SHARED_SECRET` (the key silos sign cross-silo RPC with): a new
    /// key is first accepted by every silo, then signs, then the old key is dropped, each step
    /// once every silo's pods run the previous one. Progress is in `status.rpcSecretRotation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_rpc_secret: Option<RpcSecretRotationRequest>,
}

fn default_image() -> String {
    "ghcr.io/silo-dev/silo".to_owned()
}

fn default_namespace() -> String {
    "silo-control".to_owned()
}

/// Observed state of the ControlPlane.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `WorkloadsReady` and `Reconciled`, each with a reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Number of Regions in the fleet.
    #[serde(default)]
    pub regions: i32,
    /// Number of Regions whose `Ready` condition is True.
    #[serde(default)]
    pub regions_ready: i32,
    /// The version the control silo (or monolith) runs once available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_version: Option<String>,
    /// Where the control silo (or monolith) is reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    /// The rollout ledger of `spec.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// Snowflake ids of deleted Regions, by id, with the name of the Region that held it. Ids
    /// generated by a region embed its snowflake id, so a retired id is not given to another
    /// Region (it reports `RetiredSnowflakeId`) unless it is listed in
    /// `spec.releasedSnowflakeIds`. Written by the operator when a Region that held its id is
    /// deleted; entries are never removed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retired_snowflake_ids: BTreeMap<String, String>,
    /// The last rotation of `RPC_SHARED_SECRET` asked through `spec.rotateRpcSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_secret_rotation: Option<RpcSecretRotationStatus>,
}

impl ControlPlaneSpec {
    /// The full image reference for `version`.
    pub fn image_for(&self, version: &str) -> String {
        format!("{}:{}", self.image, version)
    }

    /// The monolith region name in effect.
    pub fn effective_monolith_region(&self) -> Option<&str> {
        match (self.mode, self.monolith_region.as_deref()) {
            (_, Some(name)) => Some(name),
            (Mode::Monolith, None) => Some("monolith"),
            (Mode::Siloed, None) => None,
        }
    }
}
