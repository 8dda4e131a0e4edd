//! Namespace selectors of NetworkPolicy rules that match no namespace, on a real cluster with
//! the operator running as the chart's ServiceAccount: the ControlPlane's ingress path and a
//! Region's external-store egress each give `NetworkPoliciesValid=False` naming the field and
//! the label query, and turn True by themselves once a namespace carries the label.
//!
//! Takes over the cluster's silo resources (deletes existing Regions/ControlPlanes first).

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use silo_api::{ControlPlane, Region};

const TIMEOUT: Duration = Duration::from_secs(120);
const CONTROL_PLANE: &str = "it-netsel";
const CONTROL_NS: &str = "it-netsel-control";
const REGION: &str = "it-netsel-ext";
const SECRET: &str = "it-netsel-postgres";
/// Namespaces the test labels: the ingress path's and the external database's.
const INGRESS_NS: &str = "it-netsel-ingress";
const DATABASE_NS: &str = "it-netsel-db";
const INGRESS_LABEL: &str = "silo.dev/it-netsel-ingress";
const DATABASE_LABEL: &str = "silo.dev/it-netsel-db";

/// Label `namespace` with `key=value` (creating it when missing).
async fn label_namespace(client: &kube::Client, namespace: &str, key: &str, value: &str) {
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": namespace, "labels": {key: value}},
    }))
    .expect("Namespace fixture");
    Api::<Namespace>::all(client.clone())
        .patch(
            namespace,
            &PatchParams::apply("silo-tests").force(),
            &Patch::Apply(&ns),
        )
        .await
        .expect("label the namespace");
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Wait until `get` reports `NetworkPoliciesValid` with `status` and a message containing
/// `needle`; returns the message.
async fn wait_network_condition<F, Fut>(what: &str, status: &str, needle: &str, get: F) -> String
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<Condition>>,
{
    wait_for(what, TIMEOUT, || {
        let conditions = get();
        async move {
            let conditions = conditions.await;
            let found = condition(&conditions, "NetworkPoliciesValid");
            match found {
                Some(c) if c.status == status && c.message.contains(needle) => {
                    Ok(c.message.clone())
                }
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_that_match_nothing_are_named_until_a_namespace_matches() {
    let admin = admin_client().await;
    install_crds(&admin).await;
    install_rbac(&admin).await;
    clean_slate(&admin).await;
    let sa_kubeconfig = service_account_kubeconfig(&admin).await;
    let _operator = Operator::start(&sa_kubeconfig, "operator-netsel-it").await;
    // Label values of this run only: namespaces labelled by an earlier run match nothing.
    let run = format!(
        "run-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis()
    );
    let control_planes: Api<ControlPlane> = Api::all(admin.clone());
    let regions: Api<Region> = Api::all(admin.clone());

    // 1. The ingress path selects namespaces labelled for this run: none yet.
    let cp: ControlPlane = serde_json::from_value(serde_json::json!({
        "apiVersion": "silo.dev/v1alpha1", "kind": "ControlPlane",
        "metadata": {"name": CONTROL_PLANE},
        "spec": {
            "version": "0.1.0", "namespace": CONTROL_NS,
            "networkPolicies": {"ingress": [
                {"namespaceSelector": {"matchLabels": {INGRESS_LABEL: run}}},
            ]},
        },
    }))
    .expect("ControlPlane fixture");
    control_planes
        .create(&PostParams::default(), &cp)
        .await
        .expect("create the ControlPlane");
    let cp_conditions = || {
        let api = control_planes.clone();
        async move {
            api.get(CONTROL_PLANE)
                .await
                .ok()
                .and_then(|cp| cp.status)
                .map(|s| s.conditions)
                .unwrap_or_default()
        }
    };
    let field = format!(
        "spec.networkPolicies.ingress[0].namespaceSelector ({INGRESS_LABEL}={run}) matches no namespace"
    );
    let message = wait_network_condition(
        "ControlPlane NetworkPoliciesValid=False naming the ingress selector",
        "False",
        &field,
        &cp_conditions,
    )
    .await;
    assert!(message.contains("kubectl label namespace"), "{message}");
    println!("ControlPlane: {message}");

    // 2. A Region whose external Postgres is reached through a namespace selector that
    //    matches nothing.
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": OPERATOR_NAMESPACE},
        "stringData": {"uri": "postgres://silo:secret@postgres.it-netsel-db.svc:5432/silo"},
    }))
    .expect("Secret fixture");
    Api::<Secret>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
        .patch(
            SECRET,
            &PatchParams::apply("silo-tests").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("apply the external Postgres Secret");
    let region: Region = serde_json::from_value(serde_json::json!({
        "apiVersion": "silo.dev/v1alpha1", "kind": "Region",
        "metadata": {"name": REGION},
        "spec": {
            "snowflakeId": 3201,
            "infrastructure": {"postgres": {"external": {
                "secretName": SECRET,
                "egress": [{
                    "to": [{"namespaceSelector": {"matchLabels": {DATABASE_LABEL: run}}}],
                    "ports": [{"port": 5432, "protocol": "TCP"}],
                }],
            }}},
        },
    }))
    .expect("Region fixture");
    regions
        .create(&PostParams::default(), &region)
        .await
        .expect("create the Region");
    let region_conditions = || {
        let api = regions.clone();
        async move {
            api.get(REGION)
                .await
                .ok()
                .and_then(|r| r.status)
                .map(|s| s.conditions)
                .unwrap_or_default()
        }
    };
    let field = format!(
        "spec.infrastructure.postgres.external.egress[0].to[0].namespaceSelector ({DATABASE_LABEL}={run}) matches no namespace"
    );
    let message = wait_network_condition(
        "Region NetworkPoliciesValid=False naming the store's egress selector",
        "False",
        &field,
        &region_conditions,
    )
    .await;
    println!("Region: {message}");

    // 3. Labelling the namespaces clears both, without touching the ControlPlane or Region.
    label_namespace(&admin, INGRESS_NS, INGRESS_LABEL, &run).await;
    label_namespace(&admin, DATABASE_NS, DATABASE_LABEL, &run).await;
    wait_network_condition(
        "ControlPlane NetworkPoliciesValid=True once a namespace is labelled",
        "True",
        "matches a namespace",
        &cp_conditions,
    )
    .await;
    wait_network_condition(
        "Region NetworkPoliciesValid=True once the database's namespace is labelled",
        "True",
        "matches a namespace",
        &region_conditions,
    )
    .await;

    // A Region that suspends its policies has no such condition.
    regions
        .patch(
            REGION,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"suspendNetworkPolicies": true}})),
        )
        .await
        .expect("suspend the Region's policies");
    wait_for(
        "the Region's NetworkPoliciesValid to go with its policies",
        TIMEOUT,
        || {
            let conditions = region_conditions();
            async move {
                let conditions = conditions.await;
                match condition(&conditions, "NetworkPoliciesValid") {
                    None if condition(&conditions, "Ready").is_some() => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
    clean_slate(&admin).await;
}
