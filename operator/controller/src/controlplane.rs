//! The ControlPlane reconciler: the control silo (SILOED) or the monolith (MONOLITH), and the
//! fleet's region counts in status.

use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use silo_api::conditions::{self, reason};
use silo_api::{ControlPlane, ControlPlaneStatus, Endpoints, Mode, Store};
use silo_contract::RegionDirectory;

use crate::build::{self, Gate};
use crate::context::{Context, ReconcileError};
use crate::labels;
use crate::network_check;
use crate::rollout;
use crate::rpc_rotation;
use crate::silo::{self, Source};
use crate::status::{self, Verdict};
use crate::validate::{self, FleetContext};

const CONTROLLER: &str = "controlplane";

/// Entry point for the controller runtime.
pub async fn reconcile(cp: Arc<ControlPlane>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if !ctx.leadership.is_leading() {
        // A standby keeps its stores warm; it reconciles everything once it leads.
        return Ok(Action::await_change());
    }
    let start = Instant::now();
    let result = reconcile_control_plane(&cp, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, start.elapsed());
    if result.is_ok() {
        ctx.backoff.succeeded(&key(&cp));
    }
    result
}

/// Retry a failed reconcile after a per-object exponential backoff.
pub fn error_policy(cp: Arc<ControlPlane>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(CONTROLLER, error.reason());
    let wait = ctx.backoff.failed(&key(&cp));
    tracing::warn!(controlplane = %cp.name_any(), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// How soon a waiting RPC key rotation looks at the silos again.
const ROTATION_RECHECK: std::time::Duration = std::time::Duration::from_secs(3);

fn key(cp: &ControlPlane) -> String {
    format!("ControlPlane/{}", cp.name_any())
}

/// Regions in the fleet and how many are Ready.
fn region_counts(ctx: &Context) -> (i32, i32) {
    let regions = ctx.stores.regions.state();
    let live = regions
        .iter()
        .filter(|r| r.meta().deletion_timestamp.is_none());
    let (total, ready) = live.fold((0, 0), |(t, r), region| {
        (t + 1, r + i32::from(region.is_ready()))
    });
    (total, ready)
}

async fn reconcile_control_plane(
    cp: &ControlPlane,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    if cp.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let all = ctx.stores.control_planes.state();
    let validated = match validate::validate_control_plane(cp, &all) {
        Ok(v) => v,
        Err(invalid) => {
            ctx.metrics.error(CONTROLLER, invalid.reason());
            let verdict = Verdict::new(
                conditions::READY,
                false,
                invalid.reason(),
                invalid.to_string(),
            );
            write_status(ctx, cp, vec![verdict], (0, 0), None, None, None).await?;
            return Ok(Action::await_change());
        }
    };
    let mut fleet = FleetContext::new(cp);
    fleet.rpc_hash =
        rpc_rotation::pod_hash(cp, ctx.stores.rpc_secret(&validated.namespace).as_deref());
    // The rollout decides which version the control silo runs: the target only once every
    // region group is done, so that control never runs ahead of a region.
    let (ledger, rollout_verdict, recheck) = step_rollout(cp, ctx, validated.mode).await;
    if validated.mode == Mode::Siloed {
        fleet.version = match &ledger {
            Some(plan) => plan.control_version.clone(),
            None => rollout::held_control_version(cp),
        };
    }
    let ledger = ledger.map(|plan| plan.ledger);
    let ns = validated.namespace.clone();
    let ci = &fleet.control_infrastructure;
    let postgres = match &validated.database {
        Some(db) => Source::Reference {
            secret: &db.secret_name,
            key: &db.key,
        },
        None => Source::Managed(&ci.postgres),
    };
    let mut sources = vec![(Store::Postgres, postgres)];
    if validated.mode == Mode::Monolith {
        sources.push((Store::Redis, Source::Managed(&ci.redis)));
        sources.push((Store::Kafka, Source::Managed(&ci.kafka)));
    }
    let infra = match silo::resolve(&ctx.stores, &ns, &sources, false) {
        Ok(infra) => infra,
        Err(invalid) => {
            write_status(
                ctx,
                cp,
                silo::external_invalid(&invalid),
                (0, 0),
                None,
                None,
                ledger,
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let directory = match validated.mode {
        Mode::Siloed => Ok(validate::directory::current(&ctx.stores).published.clone()),
        Mode::Monolith => {
            let region = fleet.monolith_region.clone().unwrap_or_default();
            let entry = build::monolith_directory_entry(&validated, &region);
            RegionDirectory::new(vec![entry])
                .map(|d| build::PublishedDirectory::of(&d))
                .map_err(|e| e.to_string())
        }
    };
    let directory = match directory {
        Ok(directory) => directory,
        Err(message) => {
            let verdict = Verdict::new(conditions::READY, false, reason::INVALID_SPEC, message);
            write_status(ctx, cp, vec![verdict], (0, 0), None, None, ledger).await?;
            return Ok(Action::await_change());
        }
    };
    let build = |gate: Gate<'_>| match validated.mode {
        Mode::Siloed => build::build_control(&validated, &fleet, &directory, &infra, gate),
        Mode::Monolith => build::build_monolith(&validated, &fleet, &directory, &infra, gate),
    };
    let counts_of_monolith = validated.mode == Mode::Monolith;
    let stores_only = build(Gate {
        run_job: false,
        workload_version: None,
    });
    let decision = silo::decide(
        &ctx.stores,
        &ctx.pod_problems,
        &ns,
        &fleet.version,
        &stores_only,
        &infra,
    );
    let set = build(Gate {
        run_job: decision.run_job,
        workload_version: decision.workload_version.as_deref(),
    });
    let endpoints = Endpoints {
        ingest: counts_of_monolith.then(|| {
            fleet.ingest_url_in(fleet.monolith_region.as_deref().unwrap_or_default(), &ns)
        }),
        api: Some(fleet.control_url()),
        internal: Some(fleet.control_address.clone()),
    };
    let applied = async {
        let mut report = ctx.applier.apply_set(&set).await?;
        ctx.applier
            .prune(labels::CONTROL_PLANE, &validated.name, &set, &mut report)
            .await?;
        Ok::<_, crate::apply::ApplyError>(report)
    }
    .await;
    if let Err(error) = applied {
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
        write_status(
            ctx,
            cp,
            verdicts,
            region_counts(ctx),
            None,
            Some(endpoints),
            ledger,
        )
        .await?;
        return Err(error.into());
    }
    let ready = status::deployments_ready(
        set.deployments(),
        &ctx.stores.deployments,
        &ctx.pod_problems,
    );
    let silo = if validated.mode == Mode::Siloed {
        "control silo"
    } else {
        "monolith"
    };
    let running = ready
        .is_ok()
        .then(|| decision.workload_version.clone())
        .flatten();
    let mut verdicts = silo::verdicts(silo, &decision, &infra, ready);
    let silo_ready = verdicts.first().is_some_and(|v| v.ok);
    let counts = if counts_of_monolith {
        (1, i32::from(silo_ready))
    } else {
        region_counts(ctx)
    };
    let unknown_monolith = match (validated.mode, fleet.monolith_region.as_deref()) {
        (Mode::Siloed, Some(region)) => {
            let fleet_directory = validate::directory::current(&ctx.stores);
            fleet_directory
                .directory
                .get(region)
                .is_none()
                .then(|| region.to_owned())
        }
        _ => None,
    };
    if let (true, Some(region)) = (silo_ready, unknown_monolith) {
        verdicts[0] = Verdict::new(
            conditions::READY,
            false,
            reason::UNKNOWN_MONOLITH_REGION,
            format!(
                "spec.monolithRegion {region:?} is not a Region of the fleet, so requests without an organization are refused; create that Region or change spec.monolithRegion"
            ),
        );
    }
    verdicts.extend(rollout_verdict);
    let network = network_check::verdict(&ctx.client, &cp.spec.network_policies).await;
    let network_recheck = network_check::recheck(network.as_ref());
    verdicts.extend(network);
    write_status(ctx, cp, verdicts, counts, running, Some(endpoints), ledger).await?;
    // A key rotation waits on every silo's Deployments, whose changes do not queue the
    // ControlPlane: look again soon while it waits.
    let rotation_recheck = match rpc_rotation::run(cp, ctx).await {
        Ok(true) => Some(ROTATION_RECHECK),
        Ok(false) => None,
        Err(error) => {
            tracing::warn!(%error, "RPC key rotation step failed; retrying");
            Some(ROTATION_RECHECK)
        }
    };
    let recheck = [recheck, rotation_recheck, network_recheck]
        .into_iter()
        .flatten()
        .min();
    Ok(Action::requeue(
        recheck.map_or(ctx.resync, |r| r.min(ctx.resync)),
    ))
}

/// One rollout step (SILOED mode): the plan, the `RolloutValid` verdict and when to step
/// again. Events of the step are published here; the ledger is written with the status.
async fn step_rollout(
    cp: &ControlPlane,
    ctx: &Context,
    mode: Mode,
) -> (
    Option<silo_rollout::Plan>,
    Option<Verdict>,
    Option<std::time::Duration>,
) {
    if mode != Mode::Siloed {
        return (None, None, None);
    }
    // The planner drops Regions it does not see from the ledger: until the Region watch has
    // listed them all (right after a start), the rollout holds where the ledger says.
    if ctx
        .stores
        .regions
        .wait_until_ready()
        .now_or_never()
        .is_none()
    {
        return (None, None, Some(std::time::Duration::from_secs(1)));
    }
    match rollout::plan(cp, &ctx.stores, k8s_openapi::jiff::Timestamp::now().into()) {
        Ok(plan) => {
            rollout::publish(&ctx.recorder, cp, &plan).await;
            rollout::record(&ctx.metrics, &plan.ledger);
            let verdict = if plan.empty_groups.is_empty() {
                Verdict::new(
                    conditions::ROLLOUT_VALID,
                    true,
                    reason::VALID,
                    "spec.rollout is usable",
                )
            } else {
                Verdict::new(
                    conditions::ROLLOUT_VALID,
                    false,
                    reason::EMPTY_ROLLOUT_GROUP,
                    format!(
                        "spec.rollout.groups {} match no Region (they are skipped); fix their selector or category",
                        plan.empty_groups.join(", ")
                    ),
                )
            };
            let recheck = plan.recheck;
            (Some(plan), Some(verdict), recheck)
        }
        Err(invalid) => {
            ctx.metrics.error(CONTROLLER, reason::INVALID_ROLLOUT);
            let verdict = Verdict::new(
                conditions::ROLLOUT_VALID,
                false,
                reason::INVALID_ROLLOUT,
                format!("{invalid}; the rollout holds where it is until spec.rollout is fixed"),
            );
            (None, Some(verdict), None)
        }
    }
}

async fn write_status(
    ctx: &Context,
    cp: &ControlPlane,
    verdicts: Vec<Verdict>,
    (regions, regions_ready): (i32, i32),
    running: Option<String>,
    endpoints: Option<Endpoints>,
    ledger: Option<silo_api::RolloutStatus>,
) -> Result<(), ReconcileError> {
    let previous = cp.status.clone().unwrap_or_default();
    let conditions = status::conditions(
        &verdicts,
        &previous.conditions,
        cp.meta().generation,
        k8s_openapi::jiff::Timestamp::now(),
    );
    let next = ControlPlaneStatus {
        observed_generation: cp.meta().generation,
        conditions,
        regions,
        regions_ready,
        running_version: running.or(previous.running_version.clone()),
        endpoints: endpoints.or(previous.endpoints.clone()),
        rollout: ledger.or(previous.rollout.clone()),
        // Never applied here: Region finalizers record retired ids under their own field
        // manager, and an apply without the field keeps them. The same for the RPC key
        // rotation's record.
        retired_snowflake_ids: Default::default(),
        rpc_secret_rotation: None,
    };
    let applied = ControlPlaneStatus {
        retired_snowflake_ids: Default::default(),
        rpc_secret_rotation: None,
        ..previous.clone()
    };
    if cp.status.is_some() && applied == next {
        return Ok(());
    }
    let name = cp.name_any();
    let api: Api<ControlPlane> = Api::all(ctx.client.clone());
    let patch = json!({
        "apiVersion": format!("{}/{}", silo_api::GROUP, silo_api::VERSION),
        "kind": "ControlPlane",
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
    if let Some(ready) = verdicts.iter().find(|v| v.type_ == conditions::READY) {
        status::publish_transition(
            &ctx.recorder,
            cp,
            status::ready_status(&previous.conditions),
            ready,
        )
        .await;
    }
    Ok(())
}
