//! Network isolation of the silos: the fleet-wide NetworkPolicy settings on the ControlPlane.
//!
//! Every silo namespace gets two NetworkPolicies from the operator: `silo-isolation` (all
//! pods: deny by default; allow the namespace's own pods, DNS, the other silos' web and the
//! external stores) and `silo-ingress` (relay and web: allow the ingress path and the other
//! silos). What lies outside the fleet (the ingress path, DNS, the control silo's external
//! stores) is described here.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{NetworkPolicyEgressRule, NetworkPolicyPeer};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Label a namespace carries to belong to the default ingress path.
pub const INGRESS_NAMESPACE_LABEL: &str = "silo.dev/ingress";

/// Fleet-wide NetworkPolicy settings (`ControlPlane.spec.networkPolicies`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySettings {
    /// Generate NetworkPolicies in every silo namespace (default true). They take effect only
    /// where the cluster runs a policy engine (a CNI or controller that enforces
    /// NetworkPolicies). A single Region can suspend its own with `spec.suspendNetworkPolicies`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Where requests to relay (ingest) and web (API) come from: the pods of the ingress
    /// path (ingress controller, gateway, load-balancer proxies), as NetworkPolicy peers
    /// (`namespaceSelector`/`podSelector`, or `ipBlock`). Default: every pod in a namespace
    /// labelled `silo.dev/ingress: "true"`. An empty list admits no ingress path: only the
    /// other silos reach relay and web.
    #[serde(default = "default_ingress")]
    pub ingress: Vec<NetworkPolicyPeer>,
    /// Egress every silo pod needs to resolve names: the cluster DNS. Default: the pods
    /// labelled `k8s-app: kube-dns` in namespace `kube-system`, on any port (narrow it with
    /// `ports` where the DNS pods' port is known, e.g. 53/UDP and 53/TCP).
    #[serde(default = "default_dns")]
    pub dns: Vec<NetworkPolicyEgressRule>,
    /// Extra egress of the control silo's (or monolith's) pods, e.g. to an external control
    /// database outside the control namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub control_egress: Vec<NetworkPolicyEgressRule>,
}

impl Default for NetworkPolicySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            ingress: default_ingress(),
            dns: default_dns(),
            control_egress: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn match_labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..LabelSelector::default()
    }
}

fn default_ingress() -> Vec<NetworkPolicyPeer> {
    vec![NetworkPolicyPeer {
        namespace_selector: Some(match_labels(&[(INGRESS_NAMESPACE_LABEL, "true")])),
        ..NetworkPolicyPeer::default()
    }]
}

fn default_dns() -> Vec<NetworkPolicyEgressRule> {
    vec![NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(match_labels(&[(
                "kubernetes.io/metadata.name",
                "kube-system",
            )])),
            pod_selector: Some(match_labels(&[("k8s-app", "kube-dns")])),
            ..NetworkPolicyPeer::default()
        }]),
        ports: None,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_spec_gets_the_documented_defaults() {
        let settings: NetworkPolicySettings = serde_json::from_str("{}").unwrap();
        assert_eq!(settings, NetworkPolicySettings::default());
        assert!(settings.enabled);
        let ns = settings.ingress[0].namespace_selector.as_ref().unwrap();
        assert_eq!(
            ns.match_labels.as_ref().unwrap()[INGRESS_NAMESPACE_LABEL],
            "true"
        );
        let dns = settings.dns[0].to.as_ref().unwrap();
        assert_eq!(
            dns[0]
                .pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["k8s-app"],
            "kube-dns"
        );
    }

    #[test]
    fn an_empty_ingress_list_stays_empty() {
        let settings: NetworkPolicySettings =
            serde_json::from_str(r#"{"ingress": [], "enabled": false}"#).unwrap();
        assert!(settings.ingress.is_empty());
        assert!(!settings.enabled);
    }
}
