//! The Helm chart renders and the API server accepts every object (server-side dry run).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};

fn kubectl() -> String {
    std::env::var("SILO_KUBECTL").unwrap_or_else(|_| "kubectl".to_owned())
}

#[tokio::test]
async fn chart_renders_and_passes_server_side_dry_run() {
    let client = admin_client().await;
    install_rbac(&client).await; // creates the release namespace the dry run needs
    let rendered = render_chart(OPERATOR_NAMESPACE);
    for kind in [
        "CustomResourceDefinition",
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Lease",
        "Role",
        "RoleBinding",
        "PodDisruptionBudget",
    ] {
        assert!(
            rendered.contains(&format!("kind: {kind}")),
            "chart lacks a {kind}"
        );
    }
    let mut child = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl (source the cluster env file or set SILO_KUBECTL)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(rendered.as_bytes())
        .expect("feed the rendered chart");
    let output = child.wait_with_output().expect("kubectl finished");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "server-side dry run failed: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("deployment.apps/silo-operator serverside-applied (server dry run)"),
        "{stdout}"
    );

    // Least privilege: no wildcards, no verbs beyond what the operator sends.
    let roles: Vec<ClusterRole> = chart_objects(&rendered, "ClusterRole");
    let approver = roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("silo-operator-rollout-approver"))
        .expect("the chart ships the rollout approver role");
    assert_eq!(
        approver.rules.as_ref().map(|r| r[0].resources.clone()),
        Some(Some(vec!["controlplanes".to_owned()])),
        "approvers patch ControlPlanes only"
    );
    for rule in roles
        .iter()
        .filter(|r| r.metadata.name.as_deref() == Some(SERVICE_ACCOUNT))
        .flat_map(|r| r.rules.clone().unwrap_or_default())
    {
        for verb in &rule.verbs {
            assert!(
                ["list", "watch", "patch", "create", "delete"].contains(&verb.as_str()),
                "unexpected verb {verb} in {rule:?}"
            );
        }
        assert!(
            !rule.resources.unwrap_or_default().iter().any(|r| r == "*"),
            "wildcard resource"
        );
    }

    // Leader election: rights on the chart's own Lease only, two replicas, never a third pod.
    let roles: Vec<Role> = chart_objects(&rendered, "Role");
    let rules: Vec<_> = roles
        .iter()
        .flat_map(|r| r.rules.clone().unwrap_or_default())
        .collect();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["leases".to_owned()][..])
    );
    assert_eq!(
        rules[0].resource_names.as_deref(),
        Some(&["silo-operator".to_owned()][..])
    );
    assert_eq!(rules[0].verbs, ["get", "patch"]);
    let deployment = chart_objects::<Deployment>(&rendered, "Deployment")
        .pop()
        .expect("operator Deployment");
    let spec = deployment.spec.expect("Deployment spec");
    assert_eq!(spec.replicas, Some(2));
    let rolling = spec
        .strategy
        .and_then(|s| s.rolling_update)
        .expect("rolling update strategy");
    assert_eq!(
        rolling.max_surge,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
    );
}
