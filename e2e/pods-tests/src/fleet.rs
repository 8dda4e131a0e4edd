//! A fleet in real pods: ControlPlane and Regions with managed stores, their conditions, the
//! bootstrap token, and what runs in a silo's namespace.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use silo_api::{ControlPlane, Region};

use crate::settings::Settings;
use crate::wait::{self, Check};
use crate::{Error, StepContext};

const MANAGER: &str = "silo-e2e-pods";

/// Server-side apply a ControlPlane with managed stores from the local images.
pub async fn apply_control_plane(
    client: &Client,
    settings: &Settings,
    name: &str,
    mode: &str,
    namespace: &str,
    version: &str,
) -> Result<ControlPlane, Error> {
    let cp: ControlPlane = serde_json::from_value(json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "ControlPlane",
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "mode": mode,
            "namespace": namespace,
            "pods": settings.pods(),
            "infrastructure": {"images": settings.store_images()},
        },
    }))
    .map_err(|e| Error::Unexpected(e.to_string()))?;
    Ok(Api::<ControlPlane>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&cp),
        )
        .await
        .step("apply the ControlPlane")?)
}

/// Server-side apply Region `name` (all stores managed).
pub async fn apply_region(client: &Client, name: &str, snowflake_id: i32) -> Result<(), Error> {
    let region: Region = serde_json::from_value(json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "Region",
        "metadata": {"name": name},
        "spec": {"snowflakeId": snowflake_id},
    }))
    .map_err(|e| Error::Unexpected(e.to_string()))?;
    Api::<Region>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&region),
        )
        .await
        .step("apply a Region")?;
    Ok(())
}

/// When condition `type_` of `conditions` became True, if it is True.
pub fn true_since(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<Timestamp> {
    conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.last_transition_time.0)
}

/// Wait until Region `name` is Ready at its current generation; the conditions on failure.
pub async fn wait_region_ready(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<Region, Error> {
    let regions: Api<Region> = Api::all(client.clone());
    Ok(
        wait::until(&format!("Region {name} to be Ready"), timeout, || async {
            let region = regions.get(name).await?;
            if region.is_ready() {
                return Ok(Check::Done(region));
            }
            let conditions: Vec<String> = region
                .status
                .iter()
                .flat_map(|s| s.conditions.iter())
                .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                .collect();
            Ok(Check::Pending(conditions.join(" | ")))
        })
        .await?,
    )
}

/// Wait until the ControlPlane is Ready at its current generation.
pub async fn wait_control_plane_ready(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<ControlPlane, Error> {
    let cps: Api<ControlPlane> = Api::all(client.clone());
    Ok(wait::until(
        &format!("ControlPlane {name} to be Ready"),
        timeout,
        || async {
            let cp = cps.get(name).await?;
            let status = cp.status.clone().unwrap_or_default();
            let current = status.observed_generation == cp.metadata.generation;
            let ready = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .cloned();
            Ok(match ready {
                Some(c) if current && c.status == "True" => Check::Done(cp),
                other => Check::Pending(format!("{other:?}")),
            })
        },
    )
    .await?)
}

/// The value of `key` of Secret `name` in `namespace`.
pub async fn secret_value(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<String, Error> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .step("read a Secret")?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .ok_or_else(|| Error::Unexpected(format!("Secret {namespace}/{name} has no key {key}")))
}

/// Pod name -> (uid, restarts summed over containers) of every pod in `namespace`.
pub async fn pod_identities(
    client: &Client,
    namespace: &str,
) -> Result<BTreeMap<String, (String, i32)>, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods.list(&ListParams::default()).await.step("list pods")?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| {
            // Finished migration Job pods are not serving pods.
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .map(|p| {
            let restarts = p
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .map(|c| c.restart_count)
                .sum();
            (
                p.metadata.name.clone().unwrap_or_default(),
                (p.metadata.uid.clone().unwrap_or_default(), restarts),
            )
        })
        .collect())
}

/// Running pods in `namespace` matching `selector`, as `name@node`.
pub async fn running_pods(
    client: &Client,
    namespace: &str,
    selector: &str,
) -> Result<Vec<(String, String)>, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .step("list pods")?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| {
            (
                p.metadata.name.clone().unwrap_or_default(),
                p.spec.and_then(|s| s.node_name).unwrap_or_default(),
            )
        })
        .collect())
}
