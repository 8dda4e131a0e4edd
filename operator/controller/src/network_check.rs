//! Whether the namespace selectors of `ControlPlane.spec.networkPolicies` (the ingress path,
//! DNS, the control silo's extra egress) match any namespace: a selector that matches nothing
//! still gives valid NetworkPolicies, which then admit nothing through that rule, so it is
//! reported in status instead of passing silently.
//!
//! ```text
//!  spec.networkPolicies ─► selectors (field path, LabelSelector) ─► label query
//!     ─► list namespaces (limit 1) ─► NetworkPoliciesValid (False names each empty one)
//! ```

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Client;
use kube::api::{Api, ListParams};
use silo_api::NetworkPolicySettings;
use silo_api::conditions::{self, reason};

use crate::status::Verdict;

/// Every namespace selector of `settings`, with the field it comes from.
pub fn selectors(settings: &NetworkPolicySettings) -> Vec<(String, LabelSelector)> {
    let mut out = Vec::new();
    let mut peers = |field: String, peers: &[NetworkPolicyPeer]| {
        for (i, peer) in peers.iter().enumerate() {
            if let Some(selector) = &peer.namespace_selector {
                out.push((format!("{field}[{i}].namespaceSelector"), selector.clone()));
            }
        }
    };
    peers("spec.networkPolicies.ingress".into(), &settings.ingress);
    for (i, rule) in settings.dns.iter().enumerate() {
        peers(
            format!("spec.networkPolicies.dns[{i}].to"),
            rule.to.as_deref().unwrap_or_default(),
        );
    }
    for (i, rule) in settings.control_egress.iter().enumerate() {
        peers(
            format!("spec.networkPolicies.controlEgress[{i}].to"),
            rule.to.as_deref().unwrap_or_default(),
        );
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

/// The `NetworkPoliciesValid` verdict of `settings` (`None` when no policies are written).
pub async fn verdict(client: &Client, settings: &NetworkPolicySettings) -> Option<Verdict> {
    if !settings.enabled {
        return None;
    }
    let api: Api<Namespace> = Api::all(client.clone());
    let mut empty = Vec::new();
    for (field, selector) in selectors(settings) {
        let Ok(labels) = query(&selector) else {
            continue; // the API server refuses such policies; the apply reports it
        };
        let params = ListParams::default().labels(&labels).limit(1);
        match api.list_metadata(&params).await {
            Ok(list) if list.items.is_empty() => {
                empty.push(format!("{field} ({labels}) matches no namespace"));
            }
            Ok(_) => {}
            // Unknown this time; the next reconcile looks again.
            Err(error) => tracing::debug!(%error, %field, "listing namespaces failed"),
        }
    }
    Some(if empty.is_empty() {
        Verdict::new(
            conditions::NETWORK_POLICIES_VALID,
            true,
            reason::VALID,
            "every namespace selector of spec.networkPolicies matches a namespace",
        )
    } else {
        Verdict::new(
            conditions::NETWORK_POLICIES_VALID,
            false,
            reason::SELECTOR_MATCHES_NOTHING,
            format!(
                "{}: the NetworkPolicies admit nothing through those rules; label the namespaces (for the ingress path: kubectl label namespace <ns> silo.dev/ingress=true) or change the selectors",
                empty.join("; ")
            ),
        )
    })
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
