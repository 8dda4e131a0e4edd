//! Isolation of a silo namespace: its ServiceAccount (no token, no RBAC) and its two
//! NetworkPolicies.
//!
//! ```text
//!   silo-isolation (every pod): deny all but  ingress from the namespace's own pods
//!                                             egress to the namespace's own pods, DNS,
//!                                             the other silos' web, the external stores
//!   silo-ingress (relay, web):  ingress from the ingress path and from the other silos
//! ```
//!
//! A region reaches the control silo's web (outbox, RPC) and is reached by it (API gateway,
//! RPC); regions never reach each other. The control silo's policies are the mirror image.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use silo_api::{NetworkPolicySettings, Workload};

use super::Owner;
use crate::labels;

/// Name of every silo's ServiceAccount (one per namespace: `system:serviceaccount:<ns>:silo`).
pub const SERVICE_ACCOUNT: &str = "silo";
/// The policy covering every pod of a silo namespace.
pub const ISOLATION_POLICY: &str = "silo-isolation";
/// The policy admitting the ingress path and the other silos to relay and web.
pub const INGRESS_POLICY: &str = "silo-ingress";

/// Which side of the fleet a namespace is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A region silo: talks to the control silo only.
    Region,
    /// The control silo: talks to every region's web.
    Control,
    /// Control and one region in one namespace: no other silo to talk to.
    Monolith,
}

/// What the policies of one namespace are built from.
#[derive(Clone, Debug)]
pub struct Isolation<'a> {
    pub side: Side,
    pub settings: &'a NetworkPolicySettings,
    /// Namespace of the control silo (SILOED).
    pub control_namespace: &'a str,
    /// Egress the silo needs beyond the fleet: its external stores, the control silo's
    /// `controlEgress`.
    pub egress: Vec<NetworkPolicyEgressRule>,
}

/// The silo's ServiceAccount: the identity of all its pods, with no API token mounted and no
/// role bound to it.
pub fn service_account(owner: &Owner, namespace: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: owner.meta(Some(namespace), SERVICE_ACCOUNT, "service-account"),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// `silo-isolation` and `silo-ingress` of `namespace`.
pub fn network_policies(
    owner: &Owner,
    namespace: &str,
    isolation: &Isolation<'_>,
) -> [NetworkPolicy; 2] {
    [
        isolation_policy(owner, namespace, isolation),
        ingress_policy(owner, namespace, isolation),
    ]
}

fn isolation_policy(owner: &Owner, namespace: &str, isolation: &Isolation<'_>) -> NetworkPolicy {
    let own_pods = || NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    };
    let mut egress = vec![NetworkPolicyEgressRule {
        to: Some(vec![own_pods()]),
        ports: None,
    }];
    egress.extend(isolation.settings.dns.iter().cloned());
    match isolation.side {
        Side::Region => egress.push(NetworkPolicyEgressRule {
            to: Some(vec![control_web(isolation.control_namespace)]),
            ports: Some(vec![tcp(web_port())]),
        }),
        Side::Control => egress.push(NetworkPolicyEgressRule {
            to: Some(vec![region_pods(Some(Workload::Web))]),
            ports: Some(vec![tcp(web_port())]),
        }),
        Side::Monolith => {}
    }
    egress.extend(isolation.egress.iter().cloned());
    NetworkPolicy {
        metadata: owner.meta(Some(namespace), ISOLATION_POLICY, "network-policy"),
        spec: Some(NetworkPolicySpec {
            // Every pod of the namespace, stores and migration Jobs included.
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![own_pods()]),
                ports: None,
            }]),
            egress: Some(egress),
        }),
    }
}

fn ingress_policy(owner: &Owner, namespace: &str, isolation: &Isolation<'_>) -> NetworkPolicy {
    let served: Vec<Workload> = match isolation.side {
        Side::Region | Side::Monolith => vec![Workload::Relay, Workload::Web],
        Side::Control => vec![Workload::Web],
    };
    let ports: Vec<NetworkPolicyPort> = served
        .iter()
        .filter_map(|w| w.service_port())
        .map(tcp)
        .collect();
    let mut ingress = Vec::new();
    if !isolation.settings.ingress.is_empty() {
        ingress.push(NetworkPolicyIngressRule {
            from: Some(isolation.settings.ingress.clone()),
            ports: Some(ports),
        });
    }
    match isolation.side {
        // The control silo's gateway and RPC client call the region's web.
        Side::Region => ingress.push(NetworkPolicyIngressRule {
            from: Some(vec![control_web(isolation.control_namespace)]),
            ports: Some(vec![tcp(web_port())]),
        }),
        // Regions call control's web (outbox, RPC) from any of their pods.
        Side::Control => ingress.push(NetworkPolicyIngressRule {
            from: Some(vec![region_pods(None)]),
            ports: Some(vec![tcp(web_port())]),
        }),
        Side::Monolith => {}
    }
    NetworkPolicy {
        metadata: owner.meta(Some(namespace), INGRESS_POLICY, "network-policy"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: labels::NAME.to_owned(),
                    operator: "In".to_owned(),
                    values: Some(served.iter().map(|w| w.name().to_owned()).collect()),
                }]),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(ingress),
            egress: None,
        }),
    }
}

fn web_port() -> i32 {
    Workload::Web.service_port().unwrap_or(8000)
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some("TCP".to_owned()),
        port: Some(IntOrString::Int(port)),
        end_port: None,
    }
}

fn workload_selector(workload: Workload) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            labels::NAME.to_owned(),
            workload.name().to_owned(),
        )])),
        ..LabelSelector::default()
    }
}

/// The control silo's web pods.
fn control_web(control_namespace: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                control_namespace.to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        pod_selector: Some(workload_selector(Workload::Web)),
        ip_block: None,
    }
}

/// Pods of every region namespace (namespaces carrying the `silo.dev/region` label the
/// operator gives them), of one workload or all.
fn region_pods(workload: Option<Workload>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: labels::REGION.to_owned(),
                operator: "Exists".to_owned(),
                values: None,
            }]),
            ..LabelSelector::default()
        }),
        pod_selector: Some(workload.map(workload_selector).unwrap_or_default()),
        ip_block: None,
    }
}
