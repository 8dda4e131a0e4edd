//! Fleet-wide pod settings: image pull policy and node placement of every workload pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// When the kubelet pulls the workload image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    /// Pull on every pod start.
    Always,
    /// Pull only when the node lacks the image.
    IfNotPresent,
    /// Never pull: the image must already be on the node (clusters without a registry,
    /// images loaded with `ctr images import` or `kind load`).
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// How every workload pod the operator creates (control silo, monolith, regions) is pulled
/// and placed. The same settings apply to the whole fleet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// Image pull policy of the workload containers. Unset: Kubernetes' default
    /// (`IfNotPresent` for a versioned tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Node labels a workload pod requires (`spec.nodeSelector` of every pod), e.g.
    /// `{"silo.dev/node": "real"}` to keep workloads on nodes that really run containers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints workload pods tolerate (`spec.tolerations` of every pod), e.g. the taint that
    /// reserves nodes for silo workloads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}
