//! Fleet rollouts against a real cluster (kwok nodes), the operator running as the chart's
//! ServiceAccount: 20 Regions in 3 groups (a canary, 10 at most 3 at a time, the rest),
//! soak 5 s. A watcher follows the ControlPlane and every Region over the whole run and checks
//! order, concurrency and that each Region moves once per version; a version whose pods never
//! become Ready (the kwok stage `e2e/cluster/kwok/unpullable-version.yaml`) fails its canary
//! only, then is rolled back; manual approval, pause and resume, a Region added and one
//! deleted mid-rollout; and the operator SIGKILLed at 10 points of a rollout.
//!
//! Takes over the cluster's silo resources (deletes existing Regions/ControlPlanes first).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures::StreamExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use silo_api::{ControlPlane, Region, RolloutPhase, RolloutStatus};

const CP: &str = "it-rollout";
const CONTROL_NS: &str = "it-rollout-control";
const UNPULLABLE: &str = "0.0.0-unpullable";
const TIMEOUT: Duration = Duration::from_secs(300);

fn control_plane() -> ControlPlane {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "ControlPlane",
        "metadata": {"name": CP},
        "spec": {
            "version": "0.1.0",
            "namespace": CONTROL_NS,
            "rollout": {
                "groups": [
                    {"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}, "maxConcurrency": 1, "minSuccessTime": "5s"},
                    {"name": "early", "selector": {"matchLabels": {"tier": "early"}}, "maxConcurrency": 3, "minSuccessTime": "5s"},
                ],
                "defaultGroup": {"maxConcurrency": 5, "minSuccessTime": "5s"},
                "progressDeadline": "30s",
            },
        }
    }))
    .expect("ControlPlane fixture")
}

fn region(i: usize) -> Region {
    let tier = match i {
        0 => Some("canary"),
        1..=10 | 20 => Some("early"),
        _ => None,
    };
    let labels: BTreeMap<&str, &str> = tier.map(|t| ("tier", t)).into_iter().collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "Region",
        "metadata": {"name": name(i), "labels": labels},
        "spec": {"snowflakeId": 4000 + i},
    }))
    .expect("Region fixture")
}

fn name(i: usize) -> String {
    format!("ro-{i:02}")
}

fn group_of(region: &str) -> &'static str {
    match region
        .strip_prefix("ro-")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(0) => "canary",
        Some(1..=10 | 20) => "early",
        _ => "default",
    }
}

/// What the watcher saw.
#[derive(Default, Debug)]
struct Record {
    /// Every change of a Region's desired version, in order, per Region.
    desired: BTreeMap<String, Vec<String>>,
    /// Regions as they first entered `inFlight` for a target, in order.
    started: BTreeMap<String, Vec<String>>,
    /// Most Regions in flight at once per (target, group).
    peak: BTreeMap<(String, String), i32>,
    /// Violations, reported at the end.
    problems: Vec<String>,
    /// Start times (ms) of Regions that entered flight, per target.
    start_times: Vec<(String, String, i64)>,
    /// The control silo's running version changes, with the ledger's done count then.
    control: Vec<(String, i32, i32)>,
}

fn caps() -> BTreeMap<&'static str, i32> {
    [("canary", 1), ("early", 3), ("default", 5)].into()
}

fn watch(client: &Client) -> Arc<Mutex<Record>> {
    let record = Arc::new(Mutex::new(Record::default()));
    let cps: Api<ControlPlane> = Api::all(client.clone());
    let regions: Api<Region> = Api::all(client.clone());
    let r = record.clone();
    tokio::spawn(async move {
        let mut stream = watcher(cps, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        let mut running: Option<String> = None;
        while let Some(Ok(cp)) = stream.next().await {
            let Some(status) = cp.status else { continue };
            let mut rec = r.lock().expect("record");
            if let Some(l) = &status.rollout {
                for g in &l.groups {
                    let flying = g.upgrading + g.soaking + g.unreachable;
                    let cap = caps().get(g.name.as_str()).copied().unwrap_or(0);
                    if flying > cap {
                        rec.problems.push(format!(
                            "{}: group {} had {flying} in flight",
                            l.target_version, g.name
                        ));
                    }
                    let peak = rec
                        .peak
                        .entry((l.target_version.clone(), g.name.clone()))
                        .or_default();
                    *peak = (*peak).max(flying);
                }
                for step in &l.in_flight {
                    let started = rec.started.entry(l.target_version.clone()).or_default();
                    if !started.contains(&step.name) {
                        started.push(step.name.clone());
                        let ms = step.started.0.as_millisecond();
                        rec.start_times
                            .push((l.target_version.clone(), step.name.clone(), ms));
                    }
                }
            }
            if status.running_version != running {
                running = status.running_version.clone();
                let (done, total) = status
                    .rollout
                    .as_ref()
                    .map_or((0, 0), |l| (l.done, l.total));
                rec.control
                    .push((running.clone().unwrap_or_default(), done, total));
            }
        }
    });
    let r = record.clone();
    tokio::spawn(async move {
        let mut stream = watcher(regions, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(region)) = stream.next().await {
            let Some(desired) = region
                .status
                .as_ref()
                .and_then(|s| s.desired_version.clone())
            else {
                continue;
            };
            let mut rec = r.lock().expect("record");
            let history = rec.desired.entry(region.name_any()).or_default();
            if history.last() != Some(&desired) {
                history.push(desired);
            }
        }
    });
    record
}

struct Fleet {
    cps: Api<ControlPlane>,
    regions: Api<Region>,
}

impl Fleet {
    async fn ledger(&self) -> Option<RolloutStatus> {
        self.cps.get(CP).await.ok()?.status?.rollout
    }

    async fn patch_rollout(&self, rollout: serde_json::Value) {
        self.cps
            .patch(
                CP,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"rollout": rollout}})),
            )
            .await
            .expect("patch spec.rollout");
    }

    async fn set_version(&self, version: &str) {
        self.cps
            .patch(
                CP,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"version": version}})),
            )
            .await
            .expect("patch spec.version");
    }

    /// Wait until the ledger of `version` satisfies `done`.
    async fn wait_ledger(
        &self,
        what: &str,
        version: &str,
        done: impl Fn(&RolloutStatus) -> bool,
    ) -> RolloutStatus {
        wait_for(what, TIMEOUT, || async {
            let l = self.ledger().await.ok_or("no ledger yet")?;
            if l.target_version == version && done(&l) {
                Ok(l)
            } else {
                Err(format!(
                    "{:?} {}: {} (done {}/{})",
                    l.phase, l.target_version, l.message, l.done, l.total
                ))
            }
        })
        .await
    }

    /// Wait until the rollout of `version` is complete and the control silo runs it.
    async fn wait_complete(&self, version: &str) -> RolloutStatus {
        wait_for(
            &format!("the rollout of {version} to complete"),
            TIMEOUT,
            || async {
                let cp = self.cps.get(CP).await.map_err(|e| e.to_string())?;
                let status = cp.status.unwrap_or_default();
                let l = status.rollout.ok_or("no ledger yet")?;
                let running = status.running_version;
                if l.target_version == version
                    && l.phase == RolloutPhase::Complete
                    && running.as_deref() == Some(version)
                {
                    Ok(l)
                } else {
                    Err(format!(
                        "{:?} {}: {} (done {}/{}), control runs {running:?}",
                        l.phase, l.target_version, l.message, l.done, l.total
                    ))
                }
            },
        )
        .await
    }

    async fn desired_versions(&self) -> BTreeMap<String, Option<String>> {
        let list = self
            .regions
            .list(&Default::default())
            .await
            .expect("list regions");
        list.items
            .into_iter()
            .map(|r| (r.name_any(), r.status.and_then(|s| s.desired_version)))
            .collect()
    }
}

/// Every Region entered flight in group order, never above a group's cap, and each moved to
/// `version` exactly once (its desired-version history ends in one step to it).
fn check_rollout(rec: &Record, version: &str, expected: usize) {
    check_rollout_capped(rec, version, expected, &caps());
}

/// [`check_rollout`] against the caps the strategy had for `version`.
fn check_rollout_capped(
    rec: &Record,
    version: &str,
    expected: usize,
    caps: &BTreeMap<&'static str, i32>,
) {
    assert!(rec.problems.is_empty(), "{:?}", rec.problems);
    let started = rec.started.get(version).cloned().unwrap_or_default();
    assert_eq!(
        started.len(),
        expected,
        "started for {version}: {started:?}"
    );
    let order: Vec<usize> = started
        .iter()
        .map(|n| {
            ["canary", "early", "default"]
                .iter()
                .position(|g| *g == group_of(n))
                .unwrap_or(9)
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "groups out of order for {version}: {started:?}"
    );
    for (&group, &cap) in caps {
        let peak = rec
            .peak
            .get(&(version.to_owned(), group.to_owned()))
            .copied()
            .unwrap_or(0);
        assert!(
            peak <= cap && peak >= 1,
            "{version}: group {group} peaked at {peak} (cap {cap})"
        );
    }
    for name in &started {
        let history = &rec.desired[name];
        let moves = history.iter().filter(|v| *v == version).count();
        assert_eq!(
            moves, 1,
            "{name} moved to {version} {moves} times: {history:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_follow_the_strategy_and_survive_restarts() {
    let admin = admin_client().await;
    install_crds(&admin).await;
    install_rbac(&admin).await;
    clean_slate(&admin).await;
    let sa = service_account_kubeconfig(&admin).await;
    // One replica without leader election: a restart resumes at once (the lease has its own
    // test in leader.rs).
    let flags = ["--leader-elect=false"];
    let mut operator = Some(Operator::start_with(&sa, "rollout-it", &flags).await);
    let fleet = Fleet {
        cps: Api::all(admin.clone()),
        regions: Api::all(admin.clone()),
    };
    let record = watch(&admin);

    // Rejected by the API server, naming the field.
    let mut bad = control_plane();
    bad.spec.rollout.groups[1].settings.max_concurrency =
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("150%".into());
    let refused = fleet
        .cps
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("150% accepted");
    assert!(
        refused
            .to_string()
            .contains("maxConcurrency must be a number >= 1 or a percentage"),
        "{refused}"
    );
    bad.spec.rollout.groups[1].settings.max_concurrency =
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0);
    let refused = fleet
        .cps
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("0 accepted");
    assert!(refused.to_string().contains("maxConcurrency"), "{refused}");

    fleet
        .cps
        .create(&PostParams::default(), &control_plane())
        .await
        .expect("create ControlPlane");
    for i in 0..20 {
        fleet
            .regions
            .create(&PostParams::default(), &region(i))
            .await
            .expect("create Region");
    }
    let first = fleet.wait_complete("0.1.0").await;
    assert_eq!(first.total, 20);
    wait_for("every Region Ready at 0.1.0", TIMEOUT, || async {
        let list = fleet
            .regions
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let waiting: Vec<String> = list
            .items
            .iter()
            .filter(|r| !r.is_ready())
            .map(|r| r.name_any())
            .collect();
        waiting
            .is_empty()
            .then_some(())
            .ok_or_else(|| format!("not Ready: {waiting:?}"))
    })
    .await;

    // 1. A version rolls out group by group; the control silo follows the last Region.
    fleet.set_version("0.2.0").await;
    let l = fleet.wait_complete("0.2.0").await;
    assert_eq!((l.done, l.total), (20, 20));
    {
        let rec = record.lock().expect("record");
        check_rollout(&rec, "0.2.0", 20);
        let control = rec
            .control
            .iter()
            .find(|(v, ..)| v == "0.2.0")
            .expect("control moved to 0.2.0");
        assert_eq!(
            (control.1, control.2),
            (20, 20),
            "control moved before every Region: {control:?}"
        );
    }

    // 2. A version whose pods never become Ready fails its canary only and stops.
    fleet.set_version(UNPULLABLE).await;
    let failed = fleet
        .wait_ledger("the unpullable version to fail", UNPULLABLE, |l| {
            l.phase == RolloutPhase::Failed
        })
        .await;
    assert_eq!(failed.failed.len(), 1, "{failed:?}");
    assert_eq!(failed.failed[0].name, name(0));
    assert_eq!(failed.failed[0].reason, "ProgressDeadlineExceeded");
    let desired = fleet.desired_versions().await;
    for (region, version) in &desired {
        let want = if *region == name(0) {
            UNPULLABLE
        } else {
            "0.2.0"
        };
        assert_eq!(version.as_deref(), Some(want), "{region}");
    }
    let cp = fleet.cps.get(CP).await.expect("get ControlPlane");
    assert_eq!(
        cp.status.and_then(|s| s.running_version).as_deref(),
        Some("0.2.0")
    );

    // 3. Rollback returns the canary to the previous version.
    fleet
        .patch_rollout(serde_json::json!({"onFailure": "Rollback"}))
        .await;
    fleet
        .wait_ledger("the rollback", UNPULLABLE, |l| {
            l.phase == RolloutPhase::RolledBack
        })
        .await;
    wait_for("the canary Ready at 0.2.0 again", TIMEOUT, || async {
        let r = fleet
            .regions
            .get(&name(0))
            .await
            .map_err(|e| e.to_string())?;
        let running = r.status.as_ref().and_then(|s| s.running_version.clone());
        (r.is_ready() && running.as_deref() == Some("0.2.0"))
            .then_some(())
            .ok_or_else(|| format!("{running:?}"))
    })
    .await;
    fleet
        .patch_rollout(serde_json::json!({"onFailure": "Pause"}))
        .await;

    // 4. A manual gate, pause and resume, a Region added and one deleted mid-rollout.
    let manual = serde_json::json!({"groups": [
        {"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}, "maxConcurrency": 1, "minSuccessTime": "5s"},
        {"name": "early", "selector": {"matchLabels": {"tier": "early"}}, "maxConcurrency": 3, "minSuccessTime": "5s", "approval": "Manual"},
    ]});
    fleet.patch_rollout(manual).await;
    fleet.set_version("0.3.0").await;
    let waiting = fleet
        .wait_ledger("the early group to wait for approval", "0.3.0", |l| {
            l.phase == RolloutPhase::WaitingForApproval
        })
        .await;
    assert!(
        waiting.message.contains("\"0.3.0/early\""),
        "{}",
        waiting.message
    );
    assert_eq!(waiting.groups[1].pending, 10);
    assert_eq!(waiting.groups[1].approved, Some(false));
    fleet
        .patch_rollout(serde_json::json!({"approvals": ["0.3.0/early"]}))
        .await;
    fleet
        .wait_ledger("the early group to start", "0.3.0", |l| {
            l.groups[1].upgrading + l.groups[1].soaking > 0
        })
        .await;
    fleet
        .patch_rollout(serde_json::json!({"paused": true}))
        .await;
    let paused = fleet
        .wait_ledger("the paused rollout to drain", "0.3.0", |l| {
            l.phase == RolloutPhase::Paused && l.in_flight.is_empty()
        })
        .await;
    let paused_at = paused
        .update_time
        .as_ref()
        .map(|t| t.0.as_millisecond())
        .unwrap_or_default();
    assert!(paused.groups[1].pending > 0, "{paused:?}");
    fleet
        .regions
        .create(&PostParams::default(), &region(20))
        .await
        .expect("create Region 20");
    fleet
        .regions
        .delete(&name(15), &DeleteParams::default())
        .await
        .expect("delete Region 15");
    fleet
        .patch_rollout(serde_json::json!({"paused": false}))
        .await;
    let resumed_at = k8s_openapi::jiff::Timestamp::now().as_millisecond();
    let l = fleet.wait_complete("0.3.0").await;
    assert_eq!((l.done, l.total), (20, 20), "{l:?}");
    assert!(l.upgraded.contains(&name(20)) && !l.upgraded.contains(&name(15)));
    {
        let rec = record.lock().expect("record");
        check_rollout(&rec, "0.3.0", 20);
        let during: Vec<_> = rec
            .start_times
            .iter()
            .filter(|(v, _, ms)| v == "0.3.0" && *ms > paused_at && *ms < resumed_at)
            .collect();
        assert!(
            during.is_empty(),
            "Regions started while paused: {during:?}"
        );
    }

    // 5. The operator SIGKILLed at 10 points of a rollout, restarted each time. One Region at
    // a time in the early group and two in the default one: 16 waves, so that the rollout
    // offers more than 10 distinct points however fast the operator resumes.
    let one_by_one = serde_json::json!({
        "groups": [
            {"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}, "maxConcurrency": 1, "minSuccessTime": "5s"},
            {"name": "early", "selector": {"matchLabels": {"tier": "early"}}, "maxConcurrency": 1, "minSuccessTime": "5s", "approval": "Manual"},
        ],
        "defaultGroup": {"maxConcurrency": 2, "minSuccessTime": "5s"},
        "approvals": ["0.3.0/early", "0.4.0/early"],
    });
    fleet.patch_rollout(one_by_one).await;
    fleet.set_version("0.4.0").await;
    let mut last = String::new();
    let mut kills = 0;
    for kill in 0..10 {
        let progress = fleet
            .wait_ledger(&format!("progress before kill {kill}"), "0.4.0", |l| {
                let at = format!("{:?}/{:?}/{}", l.in_flight, l.upgraded, l.done);
                at != last || l.phase == RolloutPhase::Complete
            })
            .await;
        last = format!(
            "{:?}/{:?}/{}",
            progress.in_flight, progress.upgraded, progress.done
        );
        if progress.phase == RolloutPhase::Complete {
            break;
        }
        let pid = operator.as_ref().map(Operator::pid).expect("operator");
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        drop(operator.take());
        kills += 1;
        operator = Some(Operator::start_with(&sa, &format!("rollout-it-{kill}"), &flags).await);
    }
    assert_eq!(kills, 10, "the rollout completed before 10 kills");
    let l = fleet.wait_complete("0.4.0").await;
    assert_eq!((l.done, l.total), (20, 20));
    {
        let rec = record.lock().expect("record");
        let caps = [("canary", 1), ("early", 1), ("default", 2)].into();
        check_rollout_capped(&rec, "0.4.0", 20, &caps);
    }
    // Leave the cluster as other suites expect it: no fleet of this test's.
    clean_slate(&admin).await;
}
