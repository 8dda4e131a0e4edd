//! The Region reconciler: read -> validate -> build -> apply + prune -> status, and the
//! finalizer that retires the Region's snowflake id, removes the namespace and waits until no
//! directory lists the Region.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use silo_api::conditions::{self, reason};
use silo_api::{
    ClusterStatus, ControlPlane, CredentialRotationStatus, Endpoints, Mode, Region, RegionRollout,
    RegionStatus, Store,
};

use crate::apply::Applier;
use crate::build::{self, DesiredSet, Gate};
use crate::context::{Context, ReconcileError};
use crate::labels;
use crate::network_check;
use crate::pacing;
use crate::remote;
use crate::rollout;
use crate::rotation;
use crate::silo::{self, Source};
use crate::status::{self, Verdict};
use crate::validate::{self, FleetContext, FleetDirectory, ValidateError, ValidatedRegion};

const CONTROLLER: &str = "region";
/// How often a Region with a password rotation under way is looked at again.
const ROTATION_POLL: Duration = Duration::from_secs(2);

/// Entry point for the controller runtime.
pub async fn reconcile(region: Arc<Region>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if !ctx.leadership.is_leading() {
        // A standby keeps its stores warm; it reconciles everything once it leads.
        return Ok(Action::await_change());
    }
    let start = Instant::now();
    let result = reconcile_region(&region, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, start.elapsed());
    if result.is_ok() {
        ctx.backoff.succeeded(&key(&region));
    }
    result
}

/// Retry a failed reconcile after a per-object exponential backoff.
pub fn error_policy(region: Arc<Region>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(CONTROLLER, error.reason());
    let wait = ctx.backoff.failed(&key(&region));
    tracing::warn!(region = %region.name_any(), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

fn key(region: &Region) -> String {
    format!("Region/{}", region.name_any())
}

/// Everything read for one reconcile, validated.
struct Plan {
    region: ValidatedRegion,
    /// The version the rollout gives the Region (also `region.version`).
    assignment: silo_rollout::Assignment,
    fleet: FleetContext,
    directory: Arc<FleetDirectory>,
    rpc_secrets: String,
}

/// Read the fleet from the stores and validate `region` against it.
fn plan(region: &Region, ctx: &Context) -> Result<Plan, ValidateError> {
    let control_planes = ctx.stores.control_planes.state();
    let cp = validate::active_control_plane(&control_planes)?;
    let fleet = FleetContext::new(cp);
    let directory = validate::directory::current(&ctx.stores);
    let mut validated = validate::validate_region(region, &fleet, &directory)?;
    // A Region in another cluster reaches the control silo at its external address.
    let mut fleet = if region.is_remote() {
        fleet.for_remote()
    } else {
        fleet
    };
    let assignment = rollout::assignment(region, cp);
    validated.version = assignment.version.clone();
    let rpc_secrets = ctx.stores.rpc_secret(&cp.spec.namespace).ok_or_else(|| {
        ValidateError::WaitingForRpcSecret {
            control_plane: cp.name_any(),
        }
    })?;
    fleet.rpc_hash = crate::rpc_rotation::pod_hash(cp, Some(&rpc_secrets));
    Ok(Plan {
        region: validated,
        assignment,
        fleet,
        directory,
        rpc_secrets,
    })
}

async fn reconcile_region(region: &Region, ctx: &Context) -> Result<Action, ReconcileError> {
    if region.meta().deletion_timestamp.is_some() {
        return cleanup(region, ctx).await;
    }
    ensure_finalizer(region, ctx).await?;
    if region.spec.suspend {
        let verdict = Verdict::new(
            conditions::READY,
            false,
            reason::SUSPENDED,
            "spec.suspend is true: the operator leaves this region's objects as they are",
        );
        write_status(ctx, region, vec![verdict], None, false).await?;
        return Ok(Action::await_change());
    }
    let plan = match plan(region, ctx) {
        Ok(plan) => plan,
        Err(invalid) => {
            ctx.metrics.error(CONTROLLER, invalid.reason());
            let verdict = Verdict::new(
                conditions::READY,
                false,
                invalid.reason(),
                invalid.to_string(),
            );
            write_status(ctx, region, vec![verdict], None, false).await?;
            // Waiting on other objects: their changes re-trigger this Region.
            return Ok(Action::await_change());
        }
    };
    let ns = plan.region.namespace.clone();
    let infra_spec = &plan.region.infrastructure;
    let sources = [
        (Store::Postgres, Source::Spec(&infra_spec.postgres)),
        (Store::Redis, Source::Spec(&infra_spec.redis)),
        (Store::Kafka, Source::Spec(&infra_spec.kafka)),
    ];
    let mut desired = Desired {
        version: plan.region.version.clone(),
        namespace: ns.clone(),
        address: plan
            .directory
            .directory
            .get(&plan.region.name)
            .map(|r| r.address.clone()),
        endpoints: Endpoints {
            ingest: Some(plan.fleet.ingest_url(&plan.region.name)),
            api: Some(plan.fleet.api_url(&plan.region.name)),
            internal: Some(build::region_address(&ns)),
        },
        running: None,
        rollout: None,
        cluster: None,
        credentials: None,
    };
    let previous_rollout = region.status.as_ref().and_then(|s| s.rollout.as_ref());
    let now: Time = k8s_openapi::jiff::Timestamp::now().into();
    let not_serving = silo_rollout::region_rollout(previous_rollout, &plan.assignment, false, &now);
    let target = match remote::target(ctx, region, &ns).await {
        Ok(target) => target,
        Err(down) => return unreachable(ctx, region, desired, not_serving, down).await,
    };
    let mut cluster_verdicts = Vec::new();
    if let Some(cluster) = &target.cluster {
        desired.cluster = Some(remote::cluster_status(cluster, &ns));
        cluster_verdicts =
            remote::cluster_verdicts(cluster, &ns, ctx.credentials_warn_before, now.0);
        cluster_verdicts.push(remote::directory_verdict(&plan.directory.cluster_internal));
    }
    let infra = match silo::resolve(&target.stores, &ns, &sources, infra_spec.retain_on_delete) {
        Ok(infra) => infra,
        Err(invalid) => {
            ctx.metrics
                .error(CONTROLLER, reason::EXTERNAL_SECRET_INVALID);
            desired.running = region
                .status
                .as_ref()
                .and_then(|s| s.running_version.clone());
            desired.rollout = Some(not_serving);
            let mut verdicts = silo::external_invalid(&invalid);
            verdicts.extend(cluster_verdicts);
            write_status(ctx, region, verdicts, Some(desired), false).await?;
            // The Secret's watch re-runs every Region when it changes.
            return Ok(Action::await_change());
        }
    };
    let build = |gate: Gate<'_>| {
        let set = build::build_region(
            &plan.region,
            &plan.fleet,
            &plan.directory.published,
            &plan.rpc_secrets,
            &infra,
            gate,
        );
        // The Region does not exist in its customer's cluster to own anything there (the
        // hashes stores_ready compares are those of the objects written there).
        if target.cluster.is_some() {
            set.detached()
        } else {
            set
        }
    };
    let stores_only = build(Gate {
        run_job: false,
        workload_version: None,
    });
    let decision = silo::decide(
        &target.stores,
        &target.pod_problems,
        &ns,
        &plan.region.version,
        &stores_only,
        &infra,
    );
    let previous_credentials = region
        .status
        .as_ref()
        .map(|s| s.credentials.as_slice())
        .unwrap_or_default();
    let rotation = rotation::execute::prepare(
        &target.applier.client,
        &target.stores,
        &ns,
        &infra,
        region.spec.rotate_credentials.as_ref(),
        previous_credentials,
        now.clone(),
    )
    .await?;
    let mut set = build(Gate {
        run_job: decision.run_job,
        workload_version: decision.workload_version.as_deref(),
    });
    build::push_rotation(
        &mut set,
        &build::RotationContext {
            owner: &plan.region.owner,
            namespace: &ns,
            images: &plan.fleet.images,
            pods: &plan.fleet.pods,
        },
        &rotation.decision.jobs,
        rotation.revision.as_deref(),
    );
    // The rotation's objects too (detaching is idempotent).
    let set = if target.cluster.is_some() {
        set.detached()
    } else {
        set
    };
    let applied = apply(&target.applier, &plan.region.name, &set).await;
    let applied = match applied {
        Ok(()) => rotation::execute::run_steps(
            &target.applier.client,
            &target.stores,
            &ns,
            &rotation.decision.steps,
        )
        .await
        .map_err(ReconcileError::from),
        Err(error) => Err(error),
    };
    match applied {
        Ok(()) => {
            if target.cluster.is_some() {
                ctx.clusters
                    .directories
                    .written(&plan.region.name, &plan.directory.published.hash);
            }
            let ready = status::deployments_ready(
                set.deployments(),
                &target.stores.deployments,
                &target.pod_problems,
            );
            if ready.is_ok() {
                desired.running = decision.workload_version.clone();
            } else {
                desired.running = region
                    .status
                    .as_ref()
                    .and_then(|s| s.running_version.clone());
            }
            let mut verdicts = silo::verdicts("region silo", &decision, &infra, ready);
            let serving = verdicts.first().is_some_and(|v| v.ok)
                && desired.running.as_deref() == Some(desired.version.as_str());
            desired.rollout = Some(silo_rollout::region_rollout(
                previous_rollout,
                &plan.assignment,
                serving,
                &now,
            ));
            verdicts.push(upgrading(&desired));
            let network = network_check::region_verdict(
                &target.applier.client,
                plan.fleet.network.enabled && !plan.region.suspend_network_policies,
                infra_spec,
            )
            .await;
            let network_recheck = network_check::recheck(network.as_ref());
            verdicts.extend(network);
            verdicts.extend(cluster_verdicts);
            verdicts.extend(rotation.decision.verdict.clone());
            desired.credentials = Some(rotation.decision.status.clone());
            // A rotation step changes the status (not only messages): never held back.
            let held = write_status(ctx, region, verdicts, Some(desired), true).await?;
            // Drift in a remote cluster is found by listing it again (it is not watched).
            let resync = match target.cluster {
                Some(_) => ctx.clusters.settings.resync.min(ctx.resync),
                None => ctx.resync,
            };
            let next = held.map_or(resync, |h| h.min(resync));
            let next = network_recheck.map_or(next, |r| r.min(next));
            if rotation.decision.in_flight {
                // Pods going away and Jobs finishing are watched, but a rotation is worth a
                // prompt look.
                return Ok(Action::requeue(next.min(ROTATION_POLL)));
            }
            Ok(Action::requeue(next))
        }
        Err(error) => {
            if let Some(down) = error.kube_error().and_then(|e| target.write_failed(e, ctx)) {
                return unreachable(ctx, region, desired, not_serving, down).await;
            }
            let verdicts = vec![
                Verdict::new(
                    conditions::READY,
                    false,
                    reason::APPLY_FAILED,
                    error.to_string(),
                ),
                Verdict::new(
                    conditions::RECONCILED,
                    false,
                    reason::APPLY_FAILED,
                    error.to_string(),
                ),
            ];
            desired.running = region
                .status
                .as_ref()
                .and_then(|s| s.running_version.clone());
            desired.rollout = Some(not_serving);
            write_status(ctx, region, verdicts, Some(desired), false).await?;
            Err(error)
        }
    }
}

/// Write the status of a Region whose cluster cannot be used now; only this Region waits, and
/// it is tried again after the cluster's backoff.
async fn unreachable(
    ctx: &Context,
    region: &Region,
    mut desired: Desired,
    not_serving: RegionRollout,
    down: remote::Unreachable,
) -> Result<Action, ReconcileError> {
    ctx.metrics.error(CONTROLLER, reason::CLUSTER_UNREACHABLE);
    tracing::warn!(region = %region.name_any(), error = %down.error, retry_in = ?down.retry, "cluster unreachable");
    let previous = region.status.clone().unwrap_or_default();
    desired.running = previous.running_version.clone();
    desired.rollout = Some(not_serving);
    let known = previous.cluster.clone().unwrap_or_default();
    desired.cluster = Some(ClusterStatus {
        server: down.server.clone(),
        missing_permissions: down
            .missing
            .clone()
            .unwrap_or(known.missing_permissions.clone()),
        ..known
    });
    let verdicts = remote::unreachable_verdicts(&down);
    write_status(ctx, region, verdicts, Some(desired), false).await?;
    Ok(Action::requeue(down.retry))
}

async fn apply(applier: &Applier, name: &str, set: &DesiredSet) -> Result<(), ReconcileError> {
    let mut report = applier.apply_set(set).await?;
    applier
        .prune(labels::REGION, name, set, &mut report)
        .await?;
    if report.written > 0 || report.deleted > 0 {
        tracing::info!(
            region = name,
            written = report.written,
            deleted = report.deleted,
            "reconciled children"
        );
    }
    Ok(())
}

/// What the region should run, for status.
struct Desired {
    version: String,
    namespace: String,
    address: Option<String>,
    endpoints: Endpoints,
    /// The version every workload runs and serves, when they do.
    running: Option<String>,
    /// The Region's part of the rollout.
    rollout: Option<RegionRollout>,
    /// The customer-provided cluster, for a Region with `spec.cluster`.
    cluster: Option<ClusterStatus>,
    /// `status.credentials` (`None`: as it was).
    credentials: Option<Vec<CredentialRotationStatus>>,
}

/// `Upgrading`: whether the Region still moves to the version the rollout gives it.
fn upgrading(desired: &Desired) -> Verdict {
    match desired.running.as_deref() {
        Some(running) if running == desired.version => Verdict::new(
            conditions::UPGRADING,
            false,
            reason::UP_TO_DATE,
            format!("every workload runs {running}"),
        ),
        running => Verdict::new(
            conditions::UPGRADING,
            true,
            reason::UPGRADING,
            format!(
                "moving to {} (running: {})",
                desired.version,
                running.unwrap_or("nothing yet")
            ),
        ),
    }
}

/// Write the status when it changed; with `pace`, a change of condition messages alone is held
/// back while the last write is recent (see [`crate::pacing`]): `Some(wait)` says when to
/// reconcile again to write it.
async fn write_status(
    ctx: &Context,
    region: &Region,
    verdicts: Vec<Verdict>,
    desired: Option<Desired>,
    pace: bool,
) -> Result<Option<Duration>, ReconcileError> {
    let previous = region.status.clone().unwrap_or_default();
    let conditions = status::conditions(
        &verdicts,
        &previous.conditions,
        region.meta().generation,
        k8s_openapi::jiff::Timestamp::now(),
    );
    let ready = verdicts.iter().find(|v| v.type_ == conditions::READY);
    let next = RegionStatus {
        observed_generation: region.meta().generation,
        desired_version: desired.as_ref().map(|d| d.version.clone()),
        running_version: match &desired {
            Some(d) => d.running.clone(),
            None => previous.running_version.clone(),
        },
        namespace: desired.as_ref().map(|d| d.namespace.clone()),
        endpoints: desired.as_ref().map(|d| d.endpoints.clone()),
        rollout: match &desired {
            Some(d) => d.rollout.clone(),
            None => previous.rollout.clone(),
        },
        cluster: match &desired {
            Some(d) => d.cluster.clone(),
            None => previous.cluster.clone(),
        },
        credentials: desired
            .as_ref()
            .and_then(|d| d.credentials.clone())
            .unwrap_or_else(|| previous.credentials.clone()),
        address: desired.and_then(|d| d.address),
        conditions,
    };
    if region.status.as_ref() == Some(&next) {
        return Ok(None);
    }
    let name = region.name_any();
    let messages_only = pace
        && pacing::messages_only(&previous.conditions, &next.conditions)
        && RegionStatus {
            conditions: previous.conditions.clone(),
            ..next.clone()
        } == previous;
    if let Some(wait) = ctx.status_pacer.hold(&name, messages_only) {
        return Ok(Some(wait));
    }
    let api: Api<Region> = Api::all(ctx.client.clone());
    let patch = json!({
        "apiVersion": format!("{}/{}", silo_api::GROUP, silo_api::VERSION),
        "kind": "Region",
        "status": next,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(labels::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| ReconcileError::Status {
        name: name.clone(),
        source,
    })?;
    ctx.status_pacer.written(&name);
    remote::publish_warnings(ctx, region, &previous.conditions, &verdicts).await;
    if let Some(ready) = ready {
        status::publish_transition(
            &ctx.recorder,
            region,
            status::ready_status(&previous.conditions),
            ready,
        )
        .await;
    }
    Ok(None)
}

fn has_finalizer(region: &Region) -> bool {
    region
        .finalizers()
        .iter()
        .any(|f| f == labels::REGION_FINALIZER)
}

async fn ensure_finalizer(region: &Region, ctx: &Context) -> Result<(), ReconcileError> {
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
        .filter(|cm| cm.metadata.name.as_deref() == Some(labels::DIRECTORY_CONFIGMAP))
        .filter_map(|cm| {
            let ns = cm.metadata.namespace.clone()?;
            let labels = cm.metadata.labels.as_ref()?;
            let relevant =
                (labels.contains_key(labels::REGION) && ns != own && !skipped.contains(&ns))
                    || (labels.contains_key(labels::CONTROL_PLANE) && siloed_control.contains(&ns));
            let current = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(labels::DIRECTORY_HASH))
                .is_some_and(|h| h == hash);
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
async fn cleanup(region: &Region, ctx: &Context) -> Result<Action, ReconcileError> {
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
        if namespace.metadata.deletion_timestamp.is_none() {
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
