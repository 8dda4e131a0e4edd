//! A customer-provided cluster in tests: its kubeconfig (`SILO_KUBECONFIG_2`), a client for
//! it, onboarding with the operator binary's `onboard`, and stopping its API server for an
//! outage (`e2e/cluster/apiserver.sh`); and the fleet those tests manage beside it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::api::{Api, DeleteParams};
use silo_api::{ControlPlane, Region};

use super::{client_from, repo_root, wait_for};

/// The customer cluster's admin kubeconfig; panics with instructions when none is set.
pub fn customer_kubeconfig() -> PathBuf {
    let path = std::env::var_os("SILO_KUBECONFIG_2")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "this test needs a second cluster: run `e2e/cluster/up.sh silo-2` and set SILO_KUBECONFIG_2 to the kubeconfig it prints"
            )
        });
    assert!(
        path.exists(),
        "SILO_KUBECONFIG_2 {} does not exist",
        path.display()
    );
    path
}

/// A cluster-admin client of the customer cluster.
pub async fn customer_client() -> Client {
    client_from(&customer_kubeconfig()).await
}

/// The cluster's name: its state directory (`.../clusters/<name>/kubeconfig`).
pub fn cluster_name(kubeconfig: &Path) -> String {
    kubeconfig
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .expect("kubeconfig lives in the cluster's state directory")
}

fn apiserver(action: &str, cluster: &str) {
    let status = Command::new(repo_root().join("e2e/cluster/apiserver.sh"))
        .args([cluster, action])
        .status()
        .expect("run e2e/cluster/apiserver.sh");
    assert!(status.success(), "apiserver.sh {cluster} {action} failed");
}

/// Starts the customer API server again when dropped, so that a failing test never leaves the
/// shared cluster without one.
pub struct Outage<'a>(&'a str);

impl Outage<'_> {
    pub fn begin(cluster: &str) -> Outage<'_> {
        apiserver("stop", cluster);
        Outage(cluster)
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        // No panic here: this may run while a failed assertion unwinds.
        let started = Command::new(repo_root().join("e2e/cluster/apiserver.sh"))
            .args([self.0, "start"])
            .status()
            .is_ok_and(|s| s.success());
        if !started {
            eprintln!("starting the API server of {} again failed", self.0);
        }
    }
}

/// Run `silo-operator onboard` with `args`; panics when it fails.
pub fn onboard(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_silo-operator"))
        .arg("onboard")
        .args(args)
        .output()
        .expect("run silo-operator onboard");
    eprintln!(
        "onboard {args:?}:\n{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(output.status.success(), "onboard {args:?} failed");
}

/// The Region's condition of `type_`.
pub fn condition<'a>(r: &'a Region, type_: &str) -> Option<&'a Condition> {
    r.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Delete namespace `name` of the customer cluster (left by an earlier run) and wait until
/// it is gone.
pub async fn delete_namespace(customer: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(customer.clone());
    let _ = namespaces.delete(name, &DeleteParams::default()).await;
    wait_for(
        &format!("namespace {name} of the customer cluster to be gone"),
        Duration::from_secs(120),
        || {
            let namespaces = namespaces.clone();
            async move {
                match namespaces.get_opt(name).await.map_err(|e| e.to_string())? {
                    None => Ok(()),
                    Some(_) => Err("still terminating".to_owned()),
                }
            }
        },
    )
    .await;
}

/// How long the customer-cluster tests wait for a Region or cluster to settle.
pub const CUSTOMER_TIMEOUT: Duration = Duration::from_secs(300);
/// The control silo's namespace in those tests.
const CONTROL_NS: &str = "it-control";

/// A SILOED ControlPlane whose control silo is reachable from customer clusters.
pub fn control_plane() -> ControlPlane {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "ControlPlane",
        "metadata": {"name": "it-silo"},
        "spec": {
            "version": "0.1.0",
            "namespace": CONTROL_NS,
            "control": {"externalAddress": "https://control.it.example"},
        }
    }))
    .expect("ControlPlane fixture")
}

/// A Region in the management cluster.
pub fn local_region(name: &str, id: i32) -> Region {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "Region",
        "metadata": {"name": name},
        "spec": {"snowflakeId": id}
    }))
    .expect("Region fixture")
}

/// Wait until Region `name` passes `check` (its conditions are the last state reported).
pub async fn wait_region<F>(regions: &Api<Region>, name: &str, what: &str, check: F) -> Region
where
    F: Fn(&Region) -> bool,
{
    wait_for(&format!("Region {name}: {what}"), CUSTOMER_TIMEOUT, || {
        let regions = regions.clone();
        let check = &check;
        async move {
            let r = regions.get(name).await.map_err(|e| e.to_string())?;
            if check(&r) {
                Ok(r)
            } else {
                Err(format!("{:?}", r.status.as_ref().map(|s| &s.conditions)))
            }
        }
    })
    .await
}
