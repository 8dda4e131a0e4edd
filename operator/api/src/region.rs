//! `Region`: one region silo (namespace `region-<name>` running the four workloads).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cluster::{ClusterRef, ClusterStatus};
use crate::infrastructure::InfrastructureSpec;
use crate::rollout::RegionRollout;
use crate::workload::WorkloadsSpec;

/// Who a region serves; written to the region directory as `category`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Category {
    /// Shared by many customers.
    MultiTenant,
    /// Dedicated to one customer.
    SingleTenant,
}

impl From<Category> for silo_contract::RegionCategory {
    fn from(category: Category) -> Self {
        match category {
            Category::MultiTenant => silo_contract::RegionCategory::MultiTenant,
            Category::SingleTenant => silo_contract::RegionCategory::SingleTenant,
        }
    }
}

/// A region silo. The operator creates namespace `region-<name>` with Deployments `relay`,
/// `consumers`, `web` and `postprocess`, Services `relay` and `web`, and the region directory.
// Each printer column repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "silo.dev",
    version = "v1alpha1",
    kind = "Region",
    plural = "regions",
    shortname = "rg",
    category = "silo",
    status = "RegionStatus",
    derive = "PartialEq",
    doc = "A region silo: an isolated namespace running relay, consumers, web and postprocess for one region.",
    validation = Rule::new("self.metadata.name.size() <= 40 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must be a lowercase DNS label of at most 40 characters (letters, digits, '-'), so that namespace region-<name> is valid"),
    printcolumn(name = "Category", type_ = "string", json_path = ".spec.category", description = "MULTI_TENANT or SINGLE_TENANT"),
    printcolumn(name = "Snowflake", type_ = "integer", json_path = ".spec.snowflakeId", description = "Snowflake id of the region", priority = 1),
    printcolumn(name = "Desired", type_ = "string", json_path = ".status.desiredVersion", description = "Version the region should run"),
    printcolumn(name = "Running", type_ = "string", json_path = ".status.runningVersion", description = "Version every workload runs"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the region is ready"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", description = "Why the region is (not) ready", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(r"!has(self.cluster) || (has(self.address) && !self.address.matches('^https?://[^/:]*[.]svc([.:/].*)?$'))").message("a Region with spec.cluster runs in another cluster: set spec.address to a URL reachable from the other clusters (not a cluster-internal .svc address), e.g. https://acme.sentry.example.com"))]
pub struct RegionSpec {
    /// Who the region serves: `MULTI_TENANT` (shared) or `SINGLE_TENANT` (one customer).
    #[serde(default = "default_category")]
    pub category: Category,
    /// The region's snowflake id (0..4095), embedded in every id it generates. Unique across
    /// all Regions and immutable once set.
    #[schemars(range(min = 0, max = 4095))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("snowflakeId is immutable: ids already generated embed it; create a new Region instead"))]
    pub snowflake_id: i32,
    /// Base URL of the region's web service, as listed in the region directory: an `http://`
    /// or `https://` URL without spaces. Derived from the namespace when absent
    /// (`http://web.region-<name>.svc:8000`). Required for a Region with `cluster`: the
    /// externally reachable address it publishes (a cluster-internal `.svc` address is
    /// refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(r"self.matches('^https?://\\S+$')").message("spec.address must be an http:// or https:// URL without spaces (the base URL of the region's web service); omit it to use http://web.region-<name>.svc:8000"))]
    pub address: Option<String>,
    /// Pins the release this region runs; defaults to the ControlPlane's `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub version: Option<String>,
    /// Whether users may pick this region for new organizations (directory `visible`).
    #[serde(default = "default_visible")]
    pub visible: bool,
    /// Replicas and resources per workload.
    #[serde(default)]
    pub workloads: WorkloadsSpec,
    /// Postgres, Redis and Kafka of the region: each `managed` (run by the operator in the
    /// region's namespace, the default) or `external` (a Secret in the operator's namespace).
    #[serde(default)]
    pub infrastructure: InfrastructureSpec,
    /// When true the operator stops changing this region's objects (they keep running as they
    /// are). A Region created suspended has no silo yet and is not listed in the region
    /// directory until it is resumed.
    #[serde(default)]
    pub suspend: bool,
    /// When true the operator removes this region's NetworkPolicies (`silo-isolation`,
    /// `silo-ingress`), so its pods accept connections from anywhere and reach anything, as
    /// without a policy engine. For troubleshooting a suspected policy problem; set it back to
    /// false to isolate the region again.
    #[serde(default)]
    pub suspend_network_policies: bool,
    /// The cluster the region runs in. Absent: the operator's own cluster. Set: a
    /// customer-provided cluster reached through a kubeconfig Secret (see `silo-operator
    /// onboard`); the Region's objects are applied there, and only this Region degrades
    /// (`ClusterReachable=False`) when that cluster cannot be reached. Annotate the Region
    /// `silo.dev/abandon-remote: "true"` to delete it while its cluster is unreachable
    /// (its objects there are left behind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.cluster is immutable: moving a region between clusters would leave its data behind; create a new Region instead"))]
    pub cluster: Option<ClusterRef>,
    /// Asks for a rotation of managed stores' passwords: the operator sets a new password in
    /// the store while the old one still works, updates the connection Secret, rolls every
    /// workload, and only then retires the old password. Each new `token` rotates once; the
    /// same token again is a no-op. Progress is in `status.credentials` and the
    /// `CredentialsRotated` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_credentials: Option<CredentialRotationRequest>,
}

/// `spec.rotateCredentials`: which managed stores to rotate, and the request's token.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRotationRequest {
    /// Any string naming this request (a date, a ticket): a new value rotates again.
    #[schemars(length(min = 1, max = 63))]
    pub token: String,
    /// Stores to rotate (`postgres`, `redis`); empty: every managed store with credentials
    /// (external stores rotate at their owner, Kafka has no password).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<String>,
}

fn default_category() -> Category {
    Category::MultiTenant
}

fn default_visible() -> bool {
    true
}

/// Observed state of a Region.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (all of the following), `InfrastructureReady`, `MigrationsComplete`,
    /// `WorkloadsReady` and `Reconciled`, each with a reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The version the region should run (its pin, or the ControlPlane's version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_version: Option<String>,
    /// The version all four workloads run and serve, once they are available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_version: Option<String>,
    /// The namespace holding the region's workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The internal address published in the region directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Where the region is reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    /// This Region's part of the fleet rollout: its version, when it was moved there and since
    /// when it serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RegionRollout>,
    /// The customer-provided cluster of a Region with `spec.cluster`: its API server, when
    /// its credentials expire and which needed permissions its identity lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatus>,
    /// Per managed store, the last password rotation asked through `spec.rotateCredentials`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<CredentialRotationStatus>,
}

/// Phases of one store's password rotation, in order.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum RotationPhase {
    /// Asked for; the new password is being set in the store (the old one still works).
    Requested,
    /// The store accepts both passwords and the connection Secret holds the new one: the
    /// workloads roll.
    NewCredentialSet,
    /// No pod that read the old password is left; the old one is being retired.
    Rolled,
    /// The old password no longer authenticates: done.
    OldRetired,
}

/// One store's password rotation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRotationStatus {
    /// `postgres` or `redis`.
    pub store: String,
    /// The `spec.rotateCredentials.token` this rotation handles.
    pub token: String,
    pub phase: RotationPhase,
    /// The login the connection Secret holds (Postgres alternates two logins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// When this token was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the old password was retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// What the rotation waits for, or why it stopped.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// How clients reach a silo.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// Base URL of ingest: the host of every DSN of the region (relay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<String>,
    /// Public base URL of the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// In-cluster address of web (what the region directory lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal: Option<String>,
}

impl Region {
    /// The `Ready` condition, if any.
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == crate::conditions::READY)
        })
    }

    /// Whether the Region runs in a customer-provided cluster (`spec.cluster`).
    pub fn is_remote(&self) -> bool {
        self.spec.cluster.is_some()
    }

    /// The Region's namespace in the cluster it runs in.
    pub fn namespace(&self) -> String {
        let name = self.metadata.name.clone().unwrap_or_default();
        match &self.spec.cluster {
            Some(cluster) => cluster.namespace_for(&name),
            None => format!("{}{name}", crate::cluster::DEFAULT_NAMESPACE_PREFIX),
        }
    }

    /// Whether `Ready` is `True` for the current generation.
    pub fn is_ready(&self) -> bool {
        let current =
            self.status.as_ref().and_then(|s| s.observed_generation) == self.metadata.generation;
        current && self.ready_condition().is_some_and(|c| c.status == "True")
    }
}
