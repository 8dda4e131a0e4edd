//! What goes wrong in a Region, and what is kept, on the real node:
//! - a store whose volume cannot be provisioned is named in `InfrastructureReady` with the
//!   scheduler's reason, and nothing of that region runs (no migration Job, no Deployment);
//! - a release whose migrations fail stops at its Job (`MigrationFailed`, naming the Job) while
//!   the previous version keeps serving; going back makes the region Ready again;
//! - `retainOnDelete` keeps the stores' volumes, with their data, after the Region is gone.
//!
//! Needs what `regions.rs` needs, plus the `workload-next` image (`e2e/images/build.sh all`).

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use silo_api::Region;
use silo_e2e_pods::fleet;
use silo_e2e_pods::scenario::Scenario;
use silo_e2e_pods::wait::{self, Check};
use silo_e2e_pods::{Error, StepContext, operator, stores};

const CONTROL_PLANE: &str = "e2e-failures";
const CONTROL_NS: &str = "e2e-failures-control";
const READY: Duration = fleet::READY;
const VERSION_LABEL: &str = "app.kubernetes.io/version";

fn unexpected(message: impl Into<String>) -> Error {
    Error::Unexpected(message.into())
}

/// Each Deployment of `namespace` with its pod template's version and available replicas.
async fn deployments(
    client: &Client,
    namespace: &str,
) -> Result<Vec<(String, String, i32)>, Error> {
    let list = Api::<Deployment>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .step("list Deployments")?;
    Ok(list
        .items
        .iter()
        .map(|d| {
            let version = d
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.as_ref())
                .and_then(|l| l.get(VERSION_LABEL).cloned())
                .unwrap_or_default();
            let available = d
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0);
            (d.name_any(), version, available)
        })
        .collect())
}

/// Whether a file named `name` lies in `dir` or up to three levels below it.
fn holds_file(dir: &Path, name: &str, depth: u32) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            depth > 0 && holds_file(&path, name, depth - 1)
        } else {
            e.file_name() == name
        }
    })
}

/// Set `volumes` to reclaim policy Delete (the provisioner removes their data); wait until
/// they are gone.
async fn hand_back(client: &Client, released: &[PersistentVolume]) -> Result<(), Error> {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for pv in released {
        volumes
            .patch(
                &pv.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}})),
            )
            .await
            .step("hand a retained volume back")?;
    }
    Ok(
        wait::until("the retained volumes to be deleted", READY, || async {
            let mut left = Vec::new();
            for pv in released {
                if volumes.get_opt(&pv.name_any()).await?.is_some() {
                    left.push(pv.name_any());
                }
            }
            Ok(if left.is_empty() {
                Check::Done(())
            } else {
                Check::Pending(format!("{left:?}"))
            })
        })
        .await?,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_failures_are_named_and_nothing_is_lost() -> Result<(), Error> {
    let scenario = Scenario::start().await?;
    let (client, tools, settings) = (scenario.client.clone(), &scenario.tools, &scenario.settings);
    let regions: Api<Region> = Api::all(client.clone());
    // Volumes an earlier, interrupted run retained.
    hand_back(&client, &stores::volumes_of(&client, "region-kept").await?).await?;
    let tag = settings.image_tag.clone();
    fleet::apply_control_plane(&client, settings, CONTROL_PLANE, "SILOED", CONTROL_NS, &tag)
        .await?;

    // 1. A Postgres volume that cannot be provisioned (no such StorageClass): the store and the
    //    scheduler's reason are named, the other stores come up, nothing else of it starts.
    fleet::apply_region_spec(
        &client,
        "stuck",
        json!({
            "snowflakeId": 21,
            "infrastructure": {"postgres": {"managed": {"storageClassName": "no-such-class"}}},
        }),
    )
    .await?;
    let kept_spec = |version: Option<&str>| {
        let mut spec = json!({"snowflakeId": 22, "infrastructure": {"retainOnDelete": true}});
        if let Some(v) = version {
            spec["version"] = json!(v);
        }
        spec
    };
    fleet::apply_region_spec(&client, "kept", kept_spec(None)).await?;
    let stuck = fleet::wait_region_condition(
        &client,
        "stuck",
        "InfrastructureReady",
        "False, naming postgres as unschedulable and no other store",
        READY,
        |c| {
            c.status == "False"
                && c.reason == "StoreNotReady"
                && c.message
                    .contains("postgres is not ready (pod postgres-0: Unschedulable")
                && !c.message.contains("redis is not ready")
                && !c.message.contains("kafka is not ready")
        },
    )
    .await?;
    println!("stuck: InfrastructureReady=False: {}", stuck.message);
    assert!(
        stuck.message.contains("PersistentVolumeClaim"),
        "the scheduler's message says what it waits for: {}",
        stuck.message
    );
    let region = regions.get("stuck").await.step("get Region stuck")?;
    let conditions = &region.status.as_ref().expect("status").conditions;
    let condition = |t: &str| conditions.iter().find(|c| c.type_ == t).cloned();
    assert_eq!(
        condition("Ready").map(|c| c.status).as_deref(),
        Some("False")
    );
    assert_eq!(
        condition("MigrationsComplete").map(|c| c.reason).as_deref(),
        Some("WaitingForInfrastructure"),
        "{conditions:?}"
    );

    // 2. Region kept becomes Ready; a release whose migration check fails (the database holds
    //    a migration whose file that release changed) stops at its Job.
    fleet::wait_region_ready(&client, "kept", READY)
        .await
        .map_err(|e| unexpected(format!("{e}\noperator log:\n{}", operator::logs(tools))))?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "region-stuck");
    let stuck_jobs = jobs.list(&ListParams::default()).await.step("list jobs")?;
    assert!(
        stuck_jobs.items.is_empty(),
        "no migration runs on stores that are not ready: {:?}",
        stuck_jobs
            .items
            .iter()
            .map(|j| j.name_any())
            .collect::<Vec<_>>()
    );
    assert!(
        deployments(&client, "region-stuck").await?.is_empty(),
        "no workload of stuck starts"
    );
    let changed = stores::psql(
        tools,
        "region-kept",
        "with changed as (update _sqlx_migrations set checksum = '\\x00' \
         where version = (select max(version) from _sqlx_migrations) returning version) \
         select version from changed",
    )?;
    assert!(
        changed.parse::<i64>().is_ok(),
        "one migration row was changed: {changed}"
    );
    let before = fleet::pod_identities(&client, "region-kept").await?;
    let next = format!("{tag}-next");
    fleet::apply_region_spec(&client, "kept", kept_spec(Some(&next))).await?;
    let failed = fleet::wait_region_condition(
        &client,
        "kept",
        "MigrationsComplete",
        "False, MigrationFailed",
        READY,
        |c| c.status == "False" && c.reason == "MigrationFailed",
    )
    .await
    .map_err(|e| unexpected(format!("{e}\noperator log:\n{}", operator::logs(tools))))?;
    println!(
        "kept at {next}: MigrationsComplete=False: {}",
        failed.message
    );
    let job = format!("migrate-{next}");
    assert!(
        failed.message.contains(&job),
        "names the Job: {}",
        failed.message
    );
    assert!(
        failed
            .message
            .contains(&format!("version {tag} keeps serving")),
        "{}",
        failed.message
    );
    let log = tools.kubectl(&[
        "logs",
        "-n",
        "region-kept",
        &format!("job/{job}"),
        "-c",
        "migrate",
    ])?;
    assert!(
        log.contains(&changed),
        "the Job's log names the migration {changed}: {log}"
    );
    let region = regions.get("kept").await.step("get Region kept")?;
    assert!(!region.is_ready(), "a failed migration is not Ready");
    let status = region.status.as_ref().expect("status");
    assert_eq!(status.running_version.as_deref(), Some(tag.as_str()));
    let workloads = deployments(&client, "region-kept").await?;
    assert_eq!(workloads.len(), 4, "{workloads:?}");
    for (name, version, available) in &workloads {
        assert_eq!(version, &tag, "{name} stays on the previous version");
        assert!(
            *available >= 1,
            "{name} keeps serving: {available} available"
        );
    }
    assert_eq!(
        before,
        fleet::pod_identities(&client, "region-kept").await?,
        "no workload pod was replaced for a release whose migration failed"
    );
    let web = tools.port_forward("region-kept", "svc/web", 8000).await?;
    let ready = reqwest::get(format!("{}/readyz", web.url))
        .await
        .map_err(|e| unexpected(format!("GET /readyz: {e}")))?;
    assert!(
        ready.status().is_success(),
        "kept's web serves: {}",
        ready.status()
    );
    drop(web);

    // Going back to the version that runs: Ready again, nothing rolled.
    fleet::apply_region_spec(&client, "kept", kept_spec(None)).await?;
    fleet::wait_region_ready(&client, "kept", READY).await?;
    assert_eq!(
        before,
        fleet::pod_identities(&client, "region-kept").await?,
        "going back to the running version replaced no pod"
    );

    // 3. retainOnDelete: the volumes stay (Released, Retain) with the stores' data.
    let claimed = stores::volumes_of(&client, "region-kept").await?;
    let phases: Vec<_> = claimed
        .iter()
        .map(|pv| pv.status.as_ref().and_then(|s| s.phase.clone()))
        .collect();
    assert!(
        phases.iter().all(|p| p.as_deref() == Some("Bound")),
        "{phases:?}"
    );
    assert_eq!(claimed.len(), 3, "kept's stores claim three volumes");
    regions
        .delete("kept", &DeleteParams::default())
        .await
        .step("delete Region kept")?;
    fleet::wait_namespace_gone(&client, "region-kept").await?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let released = wait::until("kept's volumes to be Released", READY, || async {
        let mut out = Vec::new();
        for pv in &claimed {
            match volumes.get_opt(&pv.name_any()).await? {
                Some(v)
                    if v.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released") =>
                {
                    out.push(v)
                }
                other => {
                    return Ok(Check::Pending(format!(
                        "{}: {:?}",
                        pv.name_any(),
                        other.and_then(|v| v.status)
                    )));
                }
            }
        }
        Ok(Check::Done(out))
    })
    .await?;
    for pv in &released {
        let spec = pv.spec.as_ref().expect("spec");
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Retain"),
            "{}",
            pv.name_any()
        );
    }
    let postgres = released
        .iter()
        .find(|pv| {
            stores::claim(pv)
                .and_then(|c| c.name.as_deref())
                .is_some_and(|n| n.ends_with("postgres-0"))
        })
        .ok_or_else(|| unexpected("no retained volume of postgres-0"))?;
    // On the local real node a hostPath volume is a directory of this machine.
    if std::env::var_os("SILO_REAL_NODE").is_some() {
        let path = postgres
            .spec
            .as_ref()
            .and_then(|s| s.host_path.as_ref())
            .map(|h| h.path.clone())
            .ok_or_else(|| unexpected("the retained volume is no hostPath volume"))?;
        assert!(
            holds_file(Path::new(&path), "PG_VERSION", 3),
            "the retained volume {path} holds the Postgres data directory"
        );
    }
    println!(
        "retained after deleting Region kept: {:?}",
        released.iter().map(|pv| pv.name_any()).collect::<Vec<_>>()
    );
    // Give the volumes back (Delete: the provisioner removes their data).
    hand_back(&client, &released).await?;

    // 4. A Region that never got its stores deletes cleanly.
    regions
        .delete("stuck", &DeleteParams::default())
        .await
        .step("delete Region stuck")?;
    fleet::wait_namespace_gone(&client, "region-stuck").await?;
    operator::still_ready(&client).await?;
    fleet::clean_fleet(&client).await?;
    Ok(())
}
