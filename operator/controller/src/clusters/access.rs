//! What the operator's identity must be allowed in a customer-provided cluster, as RBAC rules
//! (what `silo-operator onboard` grants) and as access reviews (what status verifies).
//!
//! ```text
//!   needs(namespace) ─► onboarding: Role (namespace: read-write kinds, pods read-only)
//!                    │              + ClusterRole (named namespace, classes)
//!                    └► review: one SelfSubjectAccessReview per permission ─► missing list
//! ```
//!
//! Every rule, and why it is needed:
//! - in the Region's namespace only (a Role): `get list create patch delete` on ConfigMaps
//!   (region directory), Secrets (RPC secret copy, generated secrets, store credentials),
//!   Services, ServiceAccounts (the pods' own account), Deployments and StatefulSets
//!   (workloads and managed stores), Jobs (migrations) and NetworkPolicies (isolation):
//!   server-side apply is a `patch` (and a `create` for a new object), drift and status
//!   are read by `list`, pruning is `delete`, generated secrets are a `create`;
//! - in the Region's namespace only, read only: `get list` on Pods: status names why a pod
//!   cannot run (image pull, crash loop, unschedulable), and a password rotation waits until
//!   no pod started with the old password is left before it retires it;
//! - cluster-wide, restricted by name to the Region's namespace (a ClusterRole): `get patch
//!   delete` on that Namespace: the operator labels it, reads it and deletes it with the
//!   Region. Creating namespaces is not granted: onboarding creates it with the admin
//!   credentials, so the identity cannot create any other namespace;
//! - cluster-wide, read only: `list` StorageClasses, to give the managed stores a volume
//!   from the default class (without it they use an emptyDir).

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::Client;
use kube::api::{Api, PostParams};

/// Resources in the Region's namespace: (API group, resource).
pub const NAMESPACED: [(&str, &str); 8] = [
    ("", "configmaps"),
    ("", "secrets"),
    ("", "services"),
    ("", "serviceaccounts"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("batch", "jobs"),
    ("networking.k8s.io", "networkpolicies"),
];
/// Verbs on them.
pub const NAMESPACED_VERBS: [&str; 5] = ["get", "list", "create", "patch", "delete"];
/// Resources in the Region's namespace the operator only reads: (API group, resource).
pub const NAMESPACED_READ: [(&str, &str); 1] = [("", "pods")];
/// Verbs on them.
pub const READ_VERBS: [&str; 2] = ["get", "list"];
/// Verbs on the Region's own Namespace object.
pub const NAMESPACE_VERBS: [&str; 3] = ["get", "patch", "delete"];

/// One permission the operator needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    /// Namespace of a namespaced permission.
    pub namespace: Option<String>,
    /// The one object a cluster-scoped permission is restricted to.
    pub name: Option<String>,
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let resource = if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        write!(f, "{} {resource}", self.verb)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, " in {ns}")?;
        }
        Ok(())
    }
}

/// Every permission the operator needs for a Region whose namespace is `namespace`.
pub fn needs(namespace: &str) -> Vec<Need> {
    let in_namespace = |resources: &[(&'static str, &'static str)], verbs: &[&'static str]| {
        resources
            .iter()
            .flat_map(|&(group, resource)| {
                verbs.iter().map(move |&verb| Need {
                    verb,
                    group,
                    resource,
                    namespace: Some(namespace.to_owned()),
                    name: None,
                })
            })
            .collect::<Vec<_>>()
    };
    let mut needs = in_namespace(&NAMESPACED, &NAMESPACED_VERBS);
    needs.extend(in_namespace(&NAMESPACED_READ, &READ_VERBS));
    for verb in NAMESPACE_VERBS {
        needs.push(Need {
            verb,
            group: "",
            resource: "namespaces",
            namespace: None,
            name: Some(namespace.to_owned()),
        });
    }
    needs.push(Need {
        verb: "list",
        group: "storage.k8s.io",
        resource: "storageclasses",
        namespace: None,
        name: None,
    });
    needs
}

/// The rules of the Role in the Region's namespace: one per API group and set of verbs.
pub fn namespace_rules() -> Vec<PolicyRule> {
    let mut rules = rules_of(&NAMESPACED, &NAMESPACED_VERBS);
    rules.extend(rules_of(&NAMESPACED_READ, &READ_VERBS));
    rules
}

/// One rule per API group of `resources`, each granting `verbs`.
fn rules_of(resources: &[(&str, &str)], verbs: &[&str]) -> Vec<PolicyRule> {
    let mut groups: Vec<&str> = resources.iter().map(|(g, _)| *g).collect();
    groups.dedup();
    groups
        .into_iter()
        .map(|group| PolicyRule {
            api_groups: Some(vec![group.to_owned()]),
            resources: Some(
                resources
                    .iter()
                    .filter(|(g, _)| *g == group)
                    .map(|(_, r)| (*r).to_owned())
                    .collect(),
            ),
            verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
            ..PolicyRule::default()
        })
        .collect()
}

/// The rules of the ClusterRole: the Region's Namespace by name, StorageClasses read-only.
pub fn cluster_rules(namespace: &str) -> Vec<PolicyRule> {
    vec![
        PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["namespaces".to_owned()]),
            resource_names: Some(vec![namespace.to_owned()]),
            verbs: NAMESPACE_VERBS.iter().map(|v| (*v).to_owned()).collect(),
            ..PolicyRule::default()
        },
        PolicyRule {
            api_groups: Some(vec!["storage.k8s.io".to_owned()]),
            resources: Some(vec!["storageclasses".to_owned()]),
            verbs: vec!["list".to_owned()],
            ..PolicyRule::default()
        },
    ]
}

/// Ask the cluster, as the operator's identity, which of the needed permissions it lacks.
pub async fn missing(client: &Client, namespace: &str) -> Result<Vec<String>, kube::Error> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut missing = Vec::new();
    for need in needs(namespace) {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(need.verb.to_owned()),
                    group: Some(need.group.to_owned()),
                    resource: Some(need.resource.to_owned()),
                    namespace: need.namespace.clone(),
                    name: need.name.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = api.create(&PostParams::default(), &review).await?;
        if !answer.status.is_some_and(|s| s.allowed) {
            missing.push(need.to_string());
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_cover_every_kind_and_name_the_namespace() {
        let needs = needs("region-acme");
        assert_eq!(needs.len(), 8 * 5 + 2 + 3 + 1);
        assert!(
            needs
                .iter()
                .any(|n| n.to_string() == "list pods in region-acme")
        );
        assert!(
            !needs
                .iter()
                .any(|n| n.resource == "pods" && n.verb != "get" && n.verb != "list")
        );
        assert_eq!(needs[0].to_string(), "get configmaps in region-acme",);
        assert!(
            needs
                .iter()
                .any(|n| n.to_string() == "delete namespaces region-acme")
        );
        assert!(
            needs
                .iter()
                .any(|n| n.to_string() == "create deployments.apps in region-acme")
        );
    }

    #[test]
    fn the_namespace_rule_is_restricted_by_name() {
        let rules = cluster_rules("region-acme");
        assert_eq!(
            rules[0].resource_names.as_deref(),
            Some(&["region-acme".to_owned()][..])
        );
        assert!(!rules[0].verbs.contains(&"create".to_owned()));
        let rules = namespace_rules();
        assert_eq!(rules.len(), 5);
        let pods = rules
            .iter()
            .find(|r| {
                r.resources
                    .as_ref()
                    .is_some_and(|r| r.contains(&"pods".to_owned()))
            })
            .expect("a rule for pods");
        assert_eq!(pods.verbs, vec!["get".to_owned(), "list".to_owned()]);
        assert_eq!(pods.resources.as_ref().map(Vec::len), Some(1));
    }
}
