//! The operator installed by Helm from the locally built image, and removed again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};

use crate::kubectl::{OnDrop, Tools};
use crate::pods::wait_ready_on_real_node;
use crate::settings::Settings;
use crate::{Error, StepContext};

/// Release name and namespace of the operator under test.
pub const RELEASE: &str = "silo-e2e";
pub const NAMESPACE: &str = "silo-e2e-system";

fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../charts/silo-operator")
}

fn json(value: serde_json::Value) -> String {
    value.to_string()
}

/// `helm upgrade --install` the chart with the built operator image on the real nodes; the
/// returned guard uninstalls it. Returns once the operator pod is Ready (its watches synced),
/// with the time that took (a second replica is the standby).
pub async fn install(
    client: &Client,
    tools: &Tools,
    settings: &Settings,
) -> Result<(OnDrop, Duration), Error> {
    // A release left by an interrupted run would keep reconciling: start clean.
    let _ = tools.helm(&["uninstall", RELEASE, "-n", NAMESPACE, "--wait"]);
    let started = Instant::now();
    tools.helm(&[
        "upgrade",
        "--install",
        RELEASE,
        &chart().display().to_string(),
        "-n",
        NAMESPACE,
        "--create-namespace",
        // Its own ServiceAccount and ClusterRole names: the operator's integration tests apply
        // the chart's RBAC under the default names without Helm.
        "--set",
        &format!("serviceAccount.name={RELEASE}-operator"),
        "--set",
        &format!("image.tag={}", settings.image_tag),
        "--set",
        &format!("image.pullPolicy={}", settings.pull_policy),
        "--set-json",
        &format!(
            "nodeSelector={}",
            json(serde_json::json!(settings.node_selector()))
        ),
        "--set-json",
        &format!(
            "tolerations={}",
            json(serde_json::json!(settings.tolerations()))
        ),
    ])?;
    let uninstall = {
        let tools = tools.clone();
        OnDrop::new(move || {
            if let Err(e) = tools.helm(&["uninstall", RELEASE, "-n", NAMESPACE, "--wait"]) {
                eprintln!("uninstalling the operator release failed: {e}");
            }
        })
    };
    wait_ready_on_real_node(
        client,
        NAMESPACE,
        "app.kubernetes.io/name=silo-operator",
        "the operator pod to be Ready on a real node",
    )
    .await?;
    Ok((uninstall, started.elapsed()))
}

/// The operator pods' logs, leader and standby, each line prefixed with its pod (for failure
/// messages).
pub fn logs(tools: &Tools) -> String {
    tools
        .kubectl(&[
            "logs",
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/name=silo-operator",
            "--prefix",
            "--tail",
            "40",
        ])
        .unwrap_or_else(|e| e.to_string())
}

/// Fail when the operator pod is not running (e.g. it crashed during the scenario).
pub async fn still_ready(client: &Client) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=silo-operator"))
        .await
        .step("list operator pods")?;
    let restarts: i32 = list
        .items
        .iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    if restarts > 0 {
        return Err(Error::Unexpected(format!(
            "the operator container restarted {restarts} time(s)"
        )));
    }
    Ok(())
}
