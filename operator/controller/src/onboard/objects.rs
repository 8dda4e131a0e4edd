//! The objects onboarding writes, built without a client: the identity in the customer
//! cluster, the kubeconfig Secret in the management cluster, and the Region to apply.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;
use silo_api::cluster::{KUBECONFIG_KEY, KUBECONFIG_SECRET_TYPE, TOKEN_EXPIRES_ANNOTATION};

use crate::clusters::access;

/// Field manager of every onboarding write.
pub const MANAGER: &str = "silo-onboard";
/// Label naming the Region an onboarding object serves.
pub const FOR_REGION: &str = "silo.dev/onboarded-region";

/// Names of one Region's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub region: String,
    /// The Region's namespace in the customer cluster.
    pub namespace: String,
    /// Where the ServiceAccount and its token anchors live in the customer cluster.
    pub identity_namespace: String,
}

impl Identity {
    /// ServiceAccount, Role, ClusterRole and their bindings share this name.
    pub fn name(&self) -> String {
        format!("silo-operator-{}", self.region)
    }

    fn meta(&self, namespace: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            labels: Some(BTreeMap::from([
                (FOR_REGION.to_owned(), self.region.clone()),
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    MANAGER.to_owned(),
                ),
            ])),
            ..ObjectMeta::default()
        }
    }

    pub fn namespaces(&self) -> Vec<Namespace> {
        let mut region = self.meta(None, &self.namespace);
        // The operator manages the Region's namespace from then on (it labels it like its
        // own and deletes it with the Region).
        if let Some(labels) = region.labels.as_mut() {
            labels.insert(
                crate::labels::MANAGED_BY.to_owned(),
                crate::labels::MANAGED_BY_VALUE.to_owned(),
            );
        }
        vec![
            Namespace {
                metadata: self.meta(None, &self.identity_namespace),
                ..Namespace::default()
            },
            Namespace {
                metadata: region,
                ..Namespace::default()
            },
        ]
    }

    pub fn service_account(&self) -> ServiceAccount {
        ServiceAccount {
            metadata: self.meta(Some(&self.identity_namespace), &self.name()),
            // The operator reads no API token from a pod of this account; tokens are requested.
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        }
    }

    fn subjects(&self) -> Vec<Subject> {
        vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: self.name(),
            namespace: Some(self.identity_namespace.clone()),
            ..Subject::default()
        }]
    }

    /// The Role in the Region's namespace (see [`access`] for every rule).
    pub fn role(&self) -> Role {
        Role {
            metadata: self.meta(Some(&self.namespace), "silo-operator"),
            rules: Some(access::namespace_rules()),
        }
    }

    pub fn role_binding(&self) -> RoleBinding {
        RoleBinding {
            metadata: self.meta(Some(&self.namespace), "silo-operator"),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".to_owned()),
                kind: "Role".to_owned(),
                name: "silo-operator".to_owned(),
            },
            subjects: Some(self.subjects()),
        }
    }

    /// The ClusterRole: the Region's Namespace by name and StorageClasses read-only.
    pub fn cluster_role(&self) -> ClusterRole {
        ClusterRole {
            metadata: self.meta(None, &self.name()),
            rules: Some(access::cluster_rules(&self.namespace)),
            ..ClusterRole::default()
        }
    }

    pub fn cluster_role_binding(&self) -> ClusterRoleBinding {
        ClusterRoleBinding {
            metadata: self.meta(None, &self.name()),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".to_owned()),
                kind: "ClusterRole".to_owned(),
                name: self.name(),
            },
            subjects: Some(self.subjects()),
        }
    }

    /// The Secret a token is bound to: deleting it invalidates the token at once.
    pub fn token_anchor(&self, serial: &str) -> Secret {
        Secret {
            metadata: self.meta(
                Some(&self.identity_namespace),
                &format!("{}-token-{serial}", self.name()),
            ),
            type_: Some("Opaque".to_owned()),
            ..Secret::default()
        }
    }
}

/// A kubeconfig with one cluster, one token user and one context.
pub fn kubeconfig(
    region: &str,
    server: &str,
    ca_data: Option<&str>,
    insecure: bool,
    token: &str,
) -> String {
    let mut cluster = json!({ "server": server });
    if let Some(ca) = ca_data {
        cluster["certificate-authority-data"] = json!(ca);
    }
    if insecure {
        cluster["insecure-skip-tls-verify"] = json!(true);
    }
    let name = format!("silo-{region}");
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": name, "cluster": cluster }],
        "users": [{ "name": name, "user": { "token": token } }],
        "contexts": [{ "name": name, "context": { "cluster": name, "user": name } }],
        "current-context": name,
    });
    serde_yaml::to_string(&config).unwrap_or_default()
}

/// The kubeconfig Secret of the management cluster (Cluster API format).
pub fn kubeconfig_secret(
    name: &str,
    namespace: &str,
    region: &str,
    kubeconfig: &str,
    expires_at: &str,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (FOR_REGION.to_owned(), region.to_owned()),
                (
                    "cluster.x-k8s.io/cluster-name".to_owned(),
                    region.to_owned(),
                ),
            ])),
            annotations: Some(BTreeMap::from([(
                TOKEN_EXPIRES_ANNOTATION.to_owned(),
                expires_at.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some(KUBECONFIG_SECRET_TYPE.to_owned()),
        data: Some(BTreeMap::from([(
            KUBECONFIG_KEY.to_owned(),
            ByteString(kubeconfig.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// What the Region to apply says.
#[derive(Clone, Debug)]
pub struct RegionInput<'a> {
    pub region: &'a str,
    pub snowflake_id: i32,
    pub address: &'a str,
    pub secret: &'a str,
    pub namespace_prefix: Option<&'a str>,
}

/// The Region running in the onboarded cluster.
pub fn region(input: &RegionInput<'_>) -> serde_json::Value {
    let mut cluster = json!({ "kubeconfigSecret": input.secret });
    if let Some(prefix) = input.namespace_prefix {
        cluster["namespacePrefix"] = json!(prefix);
    }
    json!({
        "apiVersion": format!("{}/{}", silo_api::GROUP, silo_api::VERSION),
        "kind": "Region",
        "metadata": { "name": input.region },
        "spec": {
            "category": "SINGLE_TENANT",
            "snowflakeId": input.snowflake_id,
            "address": input.address,
            "cluster": cluster,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            region: "acme".into(),
            namespace: "region-acme".into(),
            identity_namespace: "silo-system".into(),
        }
    }

    #[test]
    fn the_role_binds_the_service_account_in_the_region_namespace_only() {
        let id = identity();
        let binding = id.role_binding();
        assert_eq!(binding.metadata.namespace.as_deref(), Some("region-acme"));
        let subject = &binding.subjects.unwrap()[0];
        assert_eq!(subject.name, "silo-operator-acme");
        assert_eq!(subject.namespace.as_deref(), Some("silo-system"));
        assert_eq!(
            id.cluster_role().rules.unwrap()[0].resource_names,
            Some(vec!["region-acme".to_owned()])
        );
    }

    #[test]
    fn the_kubeconfig_parses_and_the_secret_has_the_cluster_api_shape() {
        let text = kubeconfig("acme", "https://127.0.0.1:6443", Some("Q0E="), false, "t0k");
        let parsed = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("silo-acme"));
        let secret = kubeconfig_secret(
            "acme-kubeconfig",
            "silo-system",
            "acme",
            &text,
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(secret.type_.as_deref(), Some("cluster.x-k8s.io/secret"));
        assert!(secret.data.unwrap().contains_key("value"));
    }

    #[test]
    fn the_region_names_its_secret_and_address() {
        let r = region(&RegionInput {
            region: "acme",
            snowflake_id: 42,
            address: "https://acme.example.com",
            secret: "acme-kubeconfig",
            namespace_prefix: None,
        });
        let parsed: silo_api::Region = serde_json::from_value(r).unwrap();
        assert_eq!(
            parsed.spec.cluster.unwrap().kubeconfig_secret,
            "acme-kubeconfig"
        );
    }
}
