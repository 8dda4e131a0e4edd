//! A Region's finalizer: once the Region is deleted, its snowflake id is retired on the
//! ControlPlane, its volumes are kept when asked, its namespace (or, in a customer cluster,
//! what the operator wrote there) is removed, and the finalizer goes only once no directory
//! that keeps serving still lists the Region.
//!
//! ```text
//!  deleted Region ─► retire snowflake id ─► retain volumes? ─► delete namespace
//!     ─► wait: namespace gone, directories (local and reachable remote) without it
//!     ─► remove finalizer
//! ```

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use silo_api::{ControlPlane, Mode, Region};

use crate::build;
use crate::context::{Context, ReconcileError};
use crate::labels;
use crate::remote;
use crate::validate;

use super::write_status;

fn has_finalizer(region: &Region) -> bool {
    region
        .finalizers()
        .iter()
        .any(|f| f == labels::REGION_FINALIZER)
}

pub(super) async fn ensure_finalizer(region: &Region, ctx: &Context) -> Result<(), ReconcileError> {
    if has_finalizer(region) {
        return Ok(());
    }
    let mut finalizers = region.finalizers().to_vec();
    finalizers.push(labels::REGION_FINALIZER.to_owned());
    set_finalizers(ctx, region, finalizers).await
}

/// Replace the finalizer list; the resourceVersion makes a concurrent change fail (and retry)
/// instead of being overwritten.
async fn set_finalizers(
    ctx: &Context,
    region: &Region,
    finalizers: Vec<String>,
) -> Result<(), ReconcileError> {
    let name = region.name_any();
    let api: Api<Region> = Api::all(ctx.client.clone());
    let patch = json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": region.resource_version(),
        }
    });
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| ReconcileError::Finalizer { name, source })?;
    Ok(())
}

/// Directory ConfigMaps that will keep serving and do not yet hold `hash`: those of the
/// ControlPlane and of live, unsuspended Regions (in customer clusters: of those whose cluster
/// answers, see [`crate::clusters::directories`]). Regions being deleted themselves are skipped
/// (their directories are never rewritten and go away with their namespaces), so deleting many
/// Regions at once does not make each wait for all the others' namespaces.
fn stale_directories(ctx: &Context, deleted: &str, hash: &str) -> Vec<String> {
    let regions = ctx.stores.regions.state();
    // A healthy remote Region writes every resync; one silent for longer is not waited for.
    let remote_max_age =
        (3 * ctx.clusters.settings.resync.min(ctx.resync)).max(Duration::from_secs(60));
    let mut stale = ctx.clusters.directories.behind(
        regions.iter().map(AsRef::as_ref),
        deleted,
        hash,
        remote_max_age,
    );
    stale.extend(stale_local_directories(ctx, deleted, hash));
    stale
}

fn stale_local_directories(ctx: &Context, deleted: &str, hash: &str) -> Vec<String> {
    let siloed_control: Vec<String> = ctx
        .stores
        .control_planes
        .state()
        .iter()
        .filter(|cp| cp.spec.mode == Mode::Siloed)
        .map(|cp| cp.spec.namespace.clone())
        .collect();
    let skipped: HashSet<String> = ctx
        .stores
        .regions
        .state()
        .iter()
        .filter(|r| r.spec.suspend || r.meta().deletion_timestamp.is_some())
        .map(|r| labels::region_namespace(&r.name_any()))
        .collect();
    let own = labels::region_namespace(deleted);
    ctx.stores
        .configmaps
        .state()
        .iter()
        .filter(|cm| cm.meta.name == labels::DIRECTORY_CONFIGMAP)
        .filter_map(|cm| {
            let meta = &cm.meta;
            let ns = meta.namespace.clone()?;
            let relevant = (meta.region.is_some() && ns != own && !skipped.contains(&ns))
                || (meta.control_plane.is_some() && siloed_control.contains(&ns));
            let current = meta.directory_hash.as_ref().is_some_and(|h| h == hash);
            (relevant && !current).then_some(ns)
        })
        .collect()
}

/// Set reclaim policy `Retain` on the PersistentVolumes bound to the claims of `namespace`,
/// so that deleting the namespace keeps the data (the volumes stay `Released`).
async fn retain_volumes(ctx: &Context, namespace: &str) -> Result<(), ReconcileError> {
    let failed = |source| ReconcileError::Retain {
        namespace: namespace.to_owned(),
        source,
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let patch = json!({"spec": {"persistentVolumeReclaimPolicy": "Retain"}});
    for claim in claims.list(&ListParams::default()).await.map_err(failed)? {
        let Some(volume) = claim.spec.and_then(|s| s.volume_name) else {
            continue;
        };
        volumes
            .patch(&volume, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(failed)?;
        tracing::info!(%namespace, %volume, "volume kept: reclaim policy Retain");
    }
    Ok(())
}

/// The JSON merge patch of the ControlPlane's status that records `id` as retired by
/// `region`: one key, so that concurrent finalizers never lose each other's records. `None`
/// when `cp` already records it.
fn retirement_patch(cp: &ControlPlane, id: u16, region: &str) -> Option<serde_json::Value> {
    let key = id.to_string();
    let recorded = cp
        .status
        .as_ref()
        .and_then(|s| s.retired_snowflake_ids.get(&key));
    (recorded.map(String::as_str) != Some(region))
        .then(|| json!({"status": {"retiredSnowflakeIds": {key: region}}}))
}

/// When `region` holds its snowflake id (it is no duplicate, nor refused for a retired id),
/// record the id as retired in the active ControlPlane's status, so that no other Region takes
/// it once `region` is gone. `Ok(true)` once the store shows the record (or none is needed).
async fn retire_snowflake_id(region: &Region, ctx: &Context) -> Result<bool, ReconcileError> {
    let name = region.name_any();
    let Some(id) = validate::directory::current(&ctx.stores).held_id(region) else {
        return Ok(true);
    };
    let control_planes = ctx.stores.control_planes.state();
    let Ok(cp) = validate::active_control_plane(&control_planes) else {
        tracing::warn!(region = %name, snowflake_id = id, "no ControlPlane records the retired snowflake id; another Region may take it");
        return Ok(true);
    };
    let Some(patch) = retirement_patch(cp, id, &name) else {
        return Ok(true);
    };
    let cp_name = cp.name_any();
    let api: Api<ControlPlane> = Api::all(ctx.client.clone());
    let params = PatchParams {
        field_manager: Some(labels::RETIRED_IDS_FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch_status(&cp_name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|source| ReconcileError::Status {
            name: cp_name.clone(),
            source,
        })?;
    tracing::info!(region = %name, snowflake_id = id, controlplane = %cp_name, "snowflake id retired");
    Ok(false)
}

/// Finalizer: retire the snowflake id, delete the namespace, wait until it is gone and every
/// directory is updated, then release the Region.
pub(super) async fn cleanup(region: &Region, ctx: &Context) -> Result<Action, ReconcileError> {
    if !has_finalizer(region) {
        return Ok(Action::await_change());
    }
    let name = region.name_any();
    let ns = labels::region_namespace(&name);
    let wait = Action::requeue(Duration::from_secs(2));
    // First, while the Region still holds its id: once it is gone, the record alone keeps
    // the next Region with this id from taking it.
    let retired = retire_snowflake_id(region, ctx).await?;
    if region.is_remote() {
        let ns = region.namespace();
        if remote::abandons_remote(region) {
            tracing::warn!(region = %name, namespace = %ns, "abandoning the region's objects in its cluster");
        } else {
            match remote::delete_namespace(ctx, region, &ns).await {
                Ok(true) => {}
                Ok(false) => return Ok(wait),
                Err(down) => {
                    let verdicts = remote::delete_blocked(&down, &ns);
                    write_status(ctx, region, verdicts, None, false).await?;
                    return Ok(Action::requeue(down.retry));
                }
            }
        }
    } else if let Some(namespace) = ctx.stores.namespaces.get(&ObjectRef::new(&ns)) {
        if !namespace.meta.deleting {
            if region.spec.infrastructure.retain_on_delete {
                retain_volumes(ctx, &ns).await?;
            }
            let key = build::ChildKey {
                kind: build::ChildKind::Namespace,
                namespace: String::new(),
                name: ns.clone(),
            };
            ctx.applier.delete(&key).await?;
            tracing::info!(region = %name, namespace = %ns, "deleting region namespace");
        }
        return Ok(wait);
    }
    let directory = validate::directory::current(&ctx.stores);
    let hash = directory.published.hash.clone();
    let stale = stale_directories(ctx, &name, &hash);
    if !stale.is_empty() {
        tracing::info!(region = %name, waiting_for = stale.len(), "waiting for directories to drop the region");
        return Ok(wait);
    }
    if !retired {
        tracing::info!(region = %name, "waiting for the store to show the retired snowflake id");
        return Ok(wait);
    }
    let remaining = region
        .finalizers()
        .iter()
        .filter(|f| *f != labels::REGION_FINALIZER)
        .cloned()
        .collect();
    set_finalizers(ctx, region, remaining).await?;
    ctx.status_pacer.forget(&name);
    ctx.clusters.directories.forget(&name);
    tracing::info!(region = %name, "region cleaned up");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use silo_api::{ControlPlaneSpec, ControlPlaneStatus};

    use super::*;

    fn control_plane(retired: &[(&str, &str)]) -> ControlPlane {
        let spec: ControlPlaneSpec = serde_json::from_value(json!({ "version": "1.0.0" })).unwrap();
        let mut cp = ControlPlane::new("silo", spec);
        cp.status = Some(ControlPlaneStatus {
            retired_snowflake_ids: retired
                .iter()
                .map(|(id, r)| ((*id).to_owned(), (*r).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            ..ControlPlaneStatus::default()
        });
        cp
    }

    #[test]
    fn retirement_patch_adds_one_key_to_the_status() {
        let cp = control_plane(&[("7", "old")]);
        assert_eq!(
            retirement_patch(&cp, 3002, "it-de"),
            Some(json!({"status": {"retiredSnowflakeIds": {"3002": "it-de"}}}))
        );
    }

    #[test]
    fn retirement_patch_is_skipped_once_recorded() {
        let cp = control_plane(&[("3002", "it-de")]);
        assert_eq!(retirement_patch(&cp, 3002, "it-de"), None);
        // A released id taken by another Region names its last holder once that one is deleted.
        assert_eq!(
            retirement_patch(&cp, 3002, "it-dup"),
            Some(json!({"status": {"retiredSnowflakeIds": {"3002": "it-dup"}}}))
        );
        let mut no_status = cp.clone();
        no_status.status = None;
        assert!(retirement_patch(&no_status, 3002, "it-de").is_some());
    }
}
