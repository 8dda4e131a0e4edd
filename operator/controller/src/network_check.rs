//! Whether the namespace selectors of `ControlPlane.spec.networkPolicies` (the ingress path,
//! DNS, the control silo's extra egress) and of a Region's external stores
//! (`spec.infrastructure.<store>.external.egress`) match any namespace: a selector that
//! matches nothing still gives valid NetworkPolicies, which then admit nothing through that
//! rule, so it is reported in status instead of passing silently.
//!
//! ```text
//!  spec.networkPolicies | spec.infrastructure ─► selectors (field path, LabelSelector)
//!     ─► label query ─► list namespaces (limit 1) of the cluster the policies go to
//!     ─► NetworkPoliciesValid (False names each empty one)
//! ```

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::{NetworkPolicyEgressRule, NetworkPolicyPeer};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Client;
use kube::api::{Api, ListParams};
use silo_api::conditions::{self, reason};
use silo_api::{InfrastructureSpec, NetworkPolicySettings, Store};

use crate::status::Verdict;

/// How soon status is checked again while a selector matches nothing: labelling a namespace
/// queues no reconcile, so the condition clears by looking again.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(20);

/// When to look again after `verdict`: soon while it is false.
pub fn recheck(verdict: Option<&Verdict>) -> Option<std::time::Duration> {
    verdict.is_some_and(|v| !v.ok).then_some(RECHECK)
}

/// The namespace selectors of `peers`, named `<field>[i].namespaceSelector`.
fn peer_selectors(
    field: &str,
    peers: &[NetworkPolicyPeer],
    out: &mut Vec<(String, LabelSelector)>,
) {
    for (i, peer) in peers.iter().enumerate() {
        if let Some(selector) = &peer.namespace_selector {
            out.push((format!("{field}[{i}].namespaceSelector"), selector.clone()));
        }
    }
}

/// The namespace selectors of egress `rules`, named `<field>[i].to[j].namespaceSelector`.
fn egress_selectors(
    field: &str,
    rules: &[NetworkPolicyEgressRule],
    out: &mut Vec<(String, LabelSelector)>,
) {
    for (i, rule) in rules.iter().enumerate() {
        peer_selectors(
            &format!("{field}[{i}].to"),
            rule.to.as_deref().unwrap_or_default(),
            out,
        );
    }
}

/// Every namespace selector of `settings`, with the field it comes from.
pub fn selectors(settings: &NetworkPolicySettings) -> Vec<(String, LabelSelector)> {
    let mut out = Vec::new();
    peer_selectors("spec.networkPolicies.ingress", &settings.ingress, &mut out);
    egress_selectors("spec.networkPolicies.dns", &settings.dns, &mut out);
    egress_selectors(
        "spec.networkPolicies.controlEgress",
        &settings.control_egress,
        &mut out,
    );
    out
}

/// Every namespace selector of a Region's external stores' egress, with its field.
pub fn region_selectors(infrastructure: &InfrastructureSpec) -> Vec<(String, LabelSelector)> {
    let mut out = Vec::new();
    for store in Store::ALL {
        if let Some(external) = &infrastructure.get(store).external {
            egress_selectors(
                &format!("spec.infrastructure.{}.external.egress", store.name()),
                &external.egress,
                &mut out,
            );
        }
    }
    out
}

/// The label query of `selector` (`a=b,c in (d,e),!f`), as the API server takes it.
pub fn query(selector: &LabelSelector) -> Result<String, String> {
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        terms.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => return Err(format!("unknown operator {other:?}")),
        });
    }
    Ok(terms.join(","))
}

/// The selectors of `selectors` that match no namespace of `client`'s cluster, each as
/// `<field> (<query>) matches no namespace`. A failed list counts as matching (unknown this
/// time; the next reconcile looks again).
async fn matching_nothing(client: &Client, selectors: Vec<(String, LabelSelector)>) -> Vec<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut empty = Vec::new();
    for (field, selector) in selectors {
        let Ok(labels) = query(&selector) else {
            continue; // the API server refuses such policies; the apply reports it
        };
        let params = ListParams::default().labels(&labels).limit(1);
        match api.list_metadata(&params).await {
            Ok(list) if list.items.is_empty() => {
                empty.push(format!("{field} ({labels}) matches no namespace"));
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, %field, "listing namespaces failed"),
        }
    }
    empty
}

/// `NetworkPoliciesValid` from the selectors that match nothing (`empty`): true with `fine`,
/// else false naming each, then `consequence`.
fn verdict_of(empty: &[String], fine: &str, consequence: &str) -> Verdict {
    if empty.is_empty() {
        Verdict::new(
            conditions::NETWORK_POLICIES_VALID,
            true,
            reason::VALID,
            fine,
        )
    } else {
        Verdict::new(
            conditions::NETWORK_POLICIES_VALID,
            false,
            reason::SELECTOR_MATCHES_NOTHING,
            format!("{}: {consequence}", empty.join("; ")),
        )
    }
}

/// The `NetworkPoliciesValid` verdict of `settings` (`None` when no policies are written).
pub async fn verdict(client: &Client, settings: &NetworkPolicySettings) -> Option<Verdict> {
    if !settings.enabled {
        return None;
    }
    let empty = matching_nothing(client, selectors(settings)).await;
    Some(verdict_of(
        &empty,
        "every namespace selector of spec.networkPolicies matches a namespace",
        "the NetworkPolicies admit nothing through those rules; label the namespaces (for the ingress path: kubectl label namespace <ns> silo.dev/ingress=true) or change the selectors",
    ))
}

/// A Region's `NetworkPoliciesValid` verdict: whether the namespace selectors of its external
/// stores' egress match a namespace of the cluster it runs in (`client`). `None` when its
/// NetworkPolicies are not written (`policies` false) or no such selector exists.
pub async fn region_verdict(
    client: &Client,
    policies: bool,
    infrastructure: &InfrastructureSpec,
) -> Option<Verdict> {
    let selectors = region_selectors(infrastructure);
    if !policies || selectors.is_empty() {
        return None;
    }
    let empty = matching_nothing(client, selectors).await;
    Some(verdict_of(
        &empty,
        "every namespace selector of the external stores' egress matches a namespace",
        "the region's pods cannot reach that store; label the store's namespace or change the selector",
    ))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    #[test]
    fn the_default_settings_name_their_selectors() {
        let fields: Vec<String> = selectors(&NetworkPolicySettings::default())
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert!(
            fields.contains(&"spec.networkPolicies.ingress[0].namespaceSelector".to_owned()),
            "{fields:?}"
        );
        assert!(
            fields
                .iter()
                .any(|f| f.starts_with("spec.networkPolicies.dns[0].to[")),
            "{fields:?}"
        );
    }

    #[test]
    fn a_regions_external_egress_selectors_are_named_by_field() {
        let infrastructure: InfrastructureSpec = serde_json::from_value(serde_json::json!({
            "postgres": {"external": {"secretName": "db", "egress": [
                {"to": [{"ipBlock": {"cidr": "10.1.0.0/16"}},
                        {"namespaceSelector": {"matchLabels": {"team": "data"}}}]},
            ]}},
            "kafka": {"external": {"secretName": "events", "egress": [
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kafka"}}}]},
            ]}},
        }))
        .unwrap();
        let found: Vec<(String, String)> = region_selectors(&infrastructure)
            .into_iter()
            .map(|(field, selector)| (field, query(&selector).unwrap()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "spec.infrastructure.postgres.external.egress[0].to[1].namespaceSelector"
                        .to_owned(),
                    "team=data".to_owned()
                ),
                (
                    "spec.infrastructure.kafka.external.egress[0].to[0].namespaceSelector"
                        .to_owned(),
                    "kubernetes.io/metadata.name=kafka".to_owned()
                ),
            ]
        );
        assert!(region_selectors(&InfrastructureSpec::default()).is_empty());
    }

    #[test]
    fn selectors_become_label_queries() {
        let selector = LabelSelector {
            match_labels: Some([("silo.dev/ingress".to_owned(), "true".to_owned())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["edge".into(), "lb".into()]),
                },
                LabelSelectorRequirement {
                    key: "legacy".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(
            query(&selector).unwrap(),
            "silo.dev/ingress=true,tier in (edge,lb),!legacy"
        );
        assert_eq!(query(&LabelSelector::default()).unwrap(), "");
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: "Near".into(),
                values: None,
            }]),
            ..LabelSelector::default()
        };
        assert!(query(&bad).is_err());
    }
}
