//! Isolation of a silo namespace: its ServiceAccount and NetworkPolicies.

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use serde_json::json;

use super::*;

fn policies(set: &DesiredSet) -> Vec<&NetworkPolicy> {
    set.children
        .iter()
        .filter_map(|c| match c {
            Child::NetworkPolicy(p) => Some(p.as_ref()),
            _ => None,
        })
        .collect()
}

fn policy<'a>(set: &'a DesiredSet, name: &str) -> &'a NetworkPolicy {
    policies(set)
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no NetworkPolicy {name}"))
}

/// The policy as JSON, for assertions on its shape.
fn json_of(p: &NetworkPolicy) -> serde_json::Value {
    serde_json::to_value(p.spec.as_ref().unwrap()).unwrap()
}

fn region_with(name: &str, id: i32, spec: serde_json::Value) -> Arc<Region> {
    let mut r = (*region(name, id, 1)).clone();
    let mut value = serde_json::to_value(&r.spec).unwrap();
    json_merge(&mut value, spec);
    r.spec = serde_json::from_value(value).unwrap();
    Arc::new(r)
}

fn json_merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                json_merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

#[test]
fn every_pod_of_a_region_runs_as_its_service_account_without_a_token() {
    let us = region("us", 1, 1);
    let set = build_for(&us, std::slice::from_ref(&us));
    let Some(Child::ServiceAccount(sa)) = set
        .children
        .iter()
        .find(|c| c.kind() == ChildKind::ServiceAccount)
    else {
        panic!("no ServiceAccount")
    };
    assert_eq!(sa.metadata.name.as_deref(), Some(SERVICE_ACCOUNT));
    assert_eq!(sa.metadata.namespace.as_deref(), Some("region-us"));
    assert_eq!(sa.automount_service_account_token, Some(false));
    let specs = set
        .deployments()
        .map(|d| d.spec.as_ref().unwrap().template.spec.clone().unwrap())
        .chain(
            set.stateful_sets()
                .map(|s| s.spec.as_ref().unwrap().template.spec.clone().unwrap()),
        )
        .chain(
            set.job()
                .map(|j| j.spec.as_ref().unwrap().template.spec.clone().unwrap()),
        );
    let mut pods = 0;
    for spec in specs {
        assert_eq!(spec.service_account_name.as_deref(), Some(SERVICE_ACCOUNT));
        assert_eq!(spec.automount_service_account_token, Some(false));
        pods += 1;
    }
    assert_eq!(pods, 4 + 3 + 1, "workloads, stores and the migration Job");
    // The ServiceAccount exists before any pod that runs as it.
    let position = |kind| set.children.iter().position(|c| c.kind() == kind);
    assert!(position(ChildKind::ServiceAccount) < position(ChildKind::Deployment));
    assert!(position(ChildKind::ServiceAccount) < position(ChildKind::StatefulSet));
}

#[test]
fn a_region_denies_everything_but_its_own_pods_dns_and_the_control_silo() {
    let us = region("us", 1, 1);
    let set = build_for(&us, std::slice::from_ref(&us));
    assert_eq!(policies(&set).len(), 2);
    let isolation = json_of(policy(&set, ISOLATION_POLICY));
    assert_eq!(isolation["podSelector"], json!({}), "every pod");
    assert_eq!(isolation["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        isolation["ingress"],
        json!([{"from": [{"podSelector": {}}]}]),
        "ingress only from the namespace's own pods"
    );
    assert_eq!(
        isolation["egress"],
        json!([
            {"to": [{"podSelector": {}}]},
            {"to": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}
            }]},
            {"to": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "silo-control"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "web"}}
            }], "ports": [{"port": 8000, "protocol": "TCP"}]}
        ])
    );
    let ingress = json_of(policy(&set, INGRESS_POLICY));
    assert_eq!(
        ingress["podSelector"],
        json!({"matchExpressions": [
            {"key": "app.kubernetes.io/name", "operator": "In", "values": ["relay", "web"]}
        ]})
    );
    assert_eq!(ingress["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        ingress["ingress"],
        json!([
            {"from": [{"namespaceSelector": {"matchLabels": {"silo.dev/ingress": "true"}}}],
             "ports": [{"port": 3000, "protocol": "TCP"}, {"port": 8000, "protocol": "TCP"}]},
            {"from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "silo-control"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "web"}}
            }], "ports": [{"port": 8000, "protocol": "TCP"}]}
        ])
    );
    // Nothing names another region: a region cannot reach its neighbours.
    let specs: Vec<_> = policies(&set).iter().map(|p| json_of(p)).collect();
    let text = serde_json::to_string(&specs).unwrap();
    assert!(!text.contains("silo.dev/region"), "{text}");
}

#[test]
fn external_stores_add_their_egress_rules_as_given() {
    let de = region_with(
        "de",
        2,
        json!({"infrastructure": {
            "postgres": {"external": {
                "secretName": "de-db",
                "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}],
                            "ports": [{"port": 5432, "protocol": "TCP"}]}]
            }},
            "kafka": {"external": {
                "secretName": "de-kafka",
                "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": "streams"}}}]}]
            }}
        }}),
    );
    let set = build_for(&de, std::slice::from_ref(&de));
    let egress = json_of(policy(&set, ISOLATION_POLICY))["egress"].clone();
    let rules = egress.as_array().unwrap();
    assert_eq!(rules.len(), 5, "{egress}");
    assert_eq!(
        rules[3],
        json!({"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}],
               "ports": [{"port": 5432, "protocol": "TCP"}]})
    );
    assert_eq!(
        rules[4],
        json!({"to": [{"namespaceSelector": {"matchLabels": {"team": "streams"}}}]})
    );
}

#[test]
fn suspended_or_disabled_policies_are_not_built_but_the_identity_is() {
    let us = region_with("us", 1, json!({"suspendNetworkPolicies": true}));
    let set = build_for(&us, std::slice::from_ref(&us));
    assert!(policies(&set).is_empty());
    assert!(
        set.children
            .iter()
            .any(|c| c.kind() == ChildKind::ServiceAccount)
    );

    let mut cp = (*control_plane(Mode::Siloed)).clone();
    cp.spec.network_policies.enabled = false;
    let set = build_alone(&cp, &region("us", 1, 1), &managed(&silo_api::Store::ALL));
    assert!(policies(&set).is_empty());
}

#[test]
fn the_control_silo_mirrors_the_regions() {
    let mut cp = (*control_plane(Mode::Siloed)).clone();
    cp.spec.network_policies.control_egress = serde_json::from_value(json!([
        {"to": [{"ipBlock": {"cidr": "198.51.100.7/32"}}], "ports": [{"port": 5432}]}
    ]))
    .unwrap();
    let cp = Arc::new(cp);
    let set = build_control_for(&cp);
    let regions_web: NetworkPolicyPeer = serde_json::from_value(json!({
        "namespaceSelector": {"matchExpressions": [{"key": "silo.dev/region", "operator": "Exists"}]},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "web"}}
    }))
    .unwrap();
    let isolation = policy(&set, ISOLATION_POLICY);
    let egress = isolation.spec.as_ref().unwrap().egress.clone().unwrap();
    assert_eq!(
        egress.len(),
        4,
        "own pods, DNS, regions' web, controlEgress"
    );
    assert_eq!(egress[2].to, Some(vec![regions_web]));
    assert_eq!(
        serde_json::to_value(&egress[3]).unwrap(),
        json!({"to": [{"ipBlock": {"cidr": "198.51.100.7/32"}}], "ports": [{"port": 5432}]})
    );
    let ingress = json_of(policy(&set, INGRESS_POLICY));
    assert_eq!(
        ingress["podSelector"]["matchExpressions"][0]["values"],
        json!(["web"])
    );
    assert_eq!(
        ingress["ingress"][1],
        json!({"from": [{
            "namespaceSelector": {"matchExpressions": [{"key": "silo.dev/region", "operator": "Exists"}]},
            "podSelector": {}
        }], "ports": [{"port": 8000, "protocol": "TCP"}]})
    );
}

#[test]
fn the_monolith_admits_the_ingress_path_to_relay_and_web_only() {
    let cp = control_plane(Mode::Monolith);
    let validated = validate::validate_control_plane(&cp, std::slice::from_ref(&cp)).unwrap();
    let fleet = FleetContext::new(&cp);
    let entry = monolith_directory_entry(&validated, "local");
    let directory = PublishedDirectory::of(&RegionDirectory::new(vec![entry]).unwrap());
    let set = build_monolith(
        &validated,
        &fleet,
        &directory,
        &managed(&silo_api::Store::ALL),
        CONVERGED,
    );
    let isolation = json_of(policy(&set, ISOLATION_POLICY));
    assert_eq!(
        isolation["egress"].as_array().unwrap().len(),
        2,
        "own pods, DNS"
    );
    let ingress = json_of(policy(&set, INGRESS_POLICY));
    assert_eq!(ingress["ingress"].as_array().unwrap().len(), 1);
}

#[test]
fn no_ingress_path_leaves_only_the_other_silos() {
    let mut cp = (*control_plane(Mode::Siloed)).clone();
    cp.spec.network_policies.ingress = Vec::new();
    let set = build_alone(&cp, &region("us", 1, 1), &managed(&silo_api::Store::ALL));
    let ingress = json_of(policy(&set, INGRESS_POLICY));
    assert_eq!(ingress["ingress"].as_array().unwrap().len(), 1, "{ingress}");
}
