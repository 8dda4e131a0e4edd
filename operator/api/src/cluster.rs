//! Where a Region runs: the operator's own cluster, or a customer-provided cluster reached
//! through a kubeconfig Secret (Cluster API format: key `value`).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Annotation on a Region: `"true"` lets a Region whose cluster is unreachable be deleted
/// without deleting its objects in that cluster (they are abandoned there).
pub const ABANDON_REMOTE_ANNOTATION: &str = "silo.dev/abandon-remote";
/// Annotation on a kubeconfig Secret: when its token expires (RFC 3339), written by
/// `silo-operator onboard`.
pub const TOKEN_EXPIRES_ANNOTATION: &str = "silo.dev/token-expires-at";
/// Key of the kubeconfig in the Secret (as Cluster API writes it).
pub const KUBECONFIG_KEY: &str = "value";
/// Secret type Cluster API gives kubeconfig Secrets (accepted, not required).
pub const KUBECONFIG_SECRET_TYPE: &str = "cluster.x-k8s.io/secret";
/// Request timeout when `requestTimeoutSeconds` is not set.
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: i32 = 5;
/// Namespace prefix when `namespacePrefix` is not set.
pub const DEFAULT_NAMESPACE_PREFIX: &str = "region-";

/// A customer-provided cluster the Region runs in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// Name of a Secret in the operator's namespace holding a kubeconfig under key `value`
    /// (Cluster API's format; type `cluster.x-k8s.io/secret` is accepted, not required).
    /// `silo-operator onboard` writes it. A changed Secret (rotated credentials) is used from
    /// the next request on.
    #[schemars(length(min = 1, max = 253))]
    pub kubeconfig_secret: String,
    /// Prefix of the Region's namespace in that cluster: the namespace is
    /// `<namespacePrefix><region name>`. Default `region-`. Must match what the cluster was
    /// onboarded with (the operator's identity may only use that namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 22))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][-a-z0-9]*$')").message("namespacePrefix must be lowercase letters, digits and '-', starting with a letter or digit (e.g. acme-)"))]
    pub namespace_prefix: Option<String>,
    /// Longest wait for one request to that cluster, in seconds (1..60, default 5). A slow
    /// cluster then only delays its own Region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 60))]
    pub request_timeout_seconds: Option<i32>,
}

impl ClusterRef {
    /// The namespace of Region `region` in this cluster.
    pub fn namespace_for(&self, region: &str) -> String {
        format!(
            "{}{region}",
            self.namespace_prefix
                .as_deref()
                .unwrap_or(DEFAULT_NAMESPACE_PREFIX)
        )
    }
}

/// What the operator knows of a Region's cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The API server the kubeconfig points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The resourceVersion of the kubeconfig Secret last used: after a rotation, the new
    /// credentials are in use once this shows the Secret's new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_version: Option<String>,
    /// When the credentials of the kubeconfig Secret expire (its `silo.dev/token-expires-at`
    /// annotation). Renew them with `silo-operator onboard rotate` before then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_expire_at: Option<String>,
    /// Permissions the operator needs in that cluster that its identity lacks (from a
    /// SelfSubjectAccessReview per permission), e.g. `create deployments.apps in region-acme`.
    /// Empty when the identity can do everything the operator needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_permissions: Vec<String>,
}
