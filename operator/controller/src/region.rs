//! The Region reconciler: read -> validate -> build -> apply + prune -> status; a deleted
//! Region goes to its finalizer ([`cleanup`]: retire the snowflake id, remove the namespace,
//! wait until no directory lists the Region).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use silo_api::conditions::{self, reason};
use silo_api::{
    ClusterStatus, CredentialRotationStatus, Endpoints, Region, RegionRollout, RegionStatus, Store,
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

mod cleanup;

use cleanup::{cleanup, ensure_finalizer};

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
