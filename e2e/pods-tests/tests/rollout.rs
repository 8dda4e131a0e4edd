//! A fleet rollout over full Regions in real pods: two Regions (a canary, then the rest, one
//! at a time, soak 5 s) move from the workload image to its `-next` tag. Each Region moves only
//! after the one before it served the new version for the soak, its migration Job of that
//! version succeeded before its workloads moved, and the control silo moves last.
//!
//! Needs what `regions.rs` needs, plus the `workload-next` image (`e2e/images/build.sh all`).

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use silo_api::{ControlPlane, Region, RolloutPhase};
use silo_e2e_pods::scenario::Scenario;
use silo_e2e_pods::wait::{self, Check};
use silo_e2e_pods::{Error, StepContext, fleet, operator};

const CONTROL_PLANE: &str = "e2e-rollout";
const CONTROL_NS: &str = "e2e-rollout-control";
const REGIONS: [&str; 2] = ["ra", "rb"];

fn unexpected(message: impl Into<String>) -> Error {
    Error::Unexpected(message.into())
}

/// What the watcher saw of the ledger: each change of (in flight, upgraded), in order.
type Seen = Arc<Mutex<Vec<(Vec<String>, Vec<String>, Option<String>)>>>;

fn watch(client: &kube::Client) -> Seen {
    let seen: Seen = Arc::default();
    let out = seen.clone();
    let cps: Api<ControlPlane> = Api::all(client.clone());
    tokio::spawn(async move {
        let mut stream = watcher(cps, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(cp)) = stream.next().await {
            let Some(status) = cp.status else { continue };
            let Some(l) = status.rollout else { continue };
            let entry = (
                l.in_flight.iter().map(|r| r.name.clone()).collect(),
                l.upgraded.clone(),
                status.running_version.clone(),
            );
            let mut seen = out.lock().expect("seen");
            if seen.last() != Some(&entry) {
                seen.push(entry);
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_moves_full_regions_one_by_one_behind_their_migrations() -> Result<(), Error> {
    let scenario = Scenario::start().await?;
    let (client, tools, settings) = (scenario.client.clone(), &scenario.tools, &scenario.settings);
    let tag = settings.image_tag.clone();
    let next = format!("{tag}-next");

    fleet::apply_control_plane(&client, settings, CONTROL_PLANE, "SILOED", CONTROL_NS, &tag)
        .await?;
    let cps: Api<ControlPlane> = Api::all(client.clone());
    let merge = |v| Patch::Merge(v);
    cps.patch(
        CONTROL_PLANE,
        &PatchParams::default(),
        &merge(json!({"spec": {"rollout": {
            "groups": [{"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}, "maxConcurrency": 1, "minSuccessTime": "5s"}],
            "defaultGroup": {"maxConcurrency": 1, "minSuccessTime": "5s"},
            "progressDeadline": "10m",
        }}})),
    )
    .await
    .step("set spec.rollout")?;
    let regions: Api<Region> = Api::all(client.clone());
    for (i, name) in REGIONS.iter().enumerate() {
        fleet::apply_region(&client, name, 21 + i32::try_from(i).unwrap_or(0)).await?;
    }
    regions
        .patch(
            "ra",
            &PatchParams::default(),
            &merge(json!({"metadata": {"labels": {"tier": "canary"}}})),
        )
        .await
        .step("label the canary")?;
    for name in REGIONS {
        fleet::wait_region_ready(&client, name, fleet::READY)
            .await
            .map_err(|e| unexpected(format!("{e}\noperator log:\n{}", operator::logs(tools))))?;
    }
    fleet::wait_control_plane_ready(&client, CONTROL_PLANE, fleet::READY).await?;

    let seen = watch(&client);
    cps.patch(
        CONTROL_PLANE,
        &PatchParams::default(),
        &merge(json!({"spec": {"version": next}})),
    )
    .await
    .step("change spec.version")?;
    let started = std::time::Instant::now();
    wait::until(
        &format!("the rollout of {next} to complete"),
        fleet::READY * 2,
        || async {
            let cp = cps.get(CONTROL_PLANE).await?;
            let status = cp.status.unwrap_or_default();
            let Some(l) = status.rollout else {
                return Ok(Check::Pending("no ledger yet".to_owned()));
            };
            let done = l.target_version == next
                && l.phase == RolloutPhase::Complete
                && status.running_version.as_deref() == Some(next.as_str());
            Ok(if done {
                Check::Done(())
            } else {
                Check::Pending(format!(
                    "{:?}: {} (done {}/{})",
                    l.phase, l.message, l.done, l.total
                ))
            })
        },
    )
    .await
    .map_err(|e| unexpected(format!("{e}\noperator log:\n{}", operator::logs(tools))))?;
    println!(
        "figure: rollout of 2 full Regions (one at a time, soak 5 s) and the control silo: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Order and concurrency as the watcher saw the ledger.
    let seen = seen.lock().expect("seen").clone();
    for (in_flight, upgraded, control) in &seen {
        assert!(in_flight.len() <= 1, "two Regions in flight: {seen:?}");
        if in_flight.iter().any(|n| n == "rb") {
            assert!(
                upgraded.iter().any(|n| n == "ra"),
                "rb moved before the canary was done: {seen:?}"
            );
        }
        if control.as_deref() == Some(next.as_str()) {
            assert_eq!(
                upgraded.len(),
                2,
                "the control silo moved before every Region: {seen:?}"
            );
        }
    }
    assert!(
        seen.iter().any(|(f, ..)| f == &["ra".to_owned()]),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|(f, ..)| f == &["rb".to_owned()]),
        "{seen:?}"
    );

    // Each Region ran its migration Job of the new version before its workloads moved.
    for name in REGIONS {
        let ns = format!("region-{name}");
        let job = Api::<Job>::namespaced(client.clone(), &ns)
            .get(&format!("migrate-{next}"))
            .await
            .step("get the migration Job")?;
        let completed = job
            .status
            .as_ref()
            .and_then(|s| s.completion_time.clone())
            .ok_or_else(|| unexpected(format!("{ns}: migrate-{next} did not complete")))?;
        let region = regions.get(name).await.step("get the Region")?;
        let status = region.status.unwrap_or_default();
        assert_eq!(
            status.running_version.as_deref(),
            Some(next.as_str()),
            "{name}"
        );
        let available = status
            .rollout
            .and_then(|r| r.available_since)
            .ok_or_else(|| unexpected(format!("{name}: no availableSince")))?;
        assert!(
            completed.0 <= available.0,
            "{name}: workloads served {next} at {} before its migrations completed at {}",
            available.0,
            completed.0
        );
    }
    Ok(())
}
