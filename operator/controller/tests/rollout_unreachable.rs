//! A fleet rollout with a customer cluster unreachable mid-rollout, on two real clusters: the
//! management cluster (`SILO_KUBECONFIG`, kwok nodes, the operator runs as the chart's
//! ServiceAccount) and the customer cluster (`SILO_KUBECONFIG_2`, reached only with the
//! identity `silo-operator onboard` made).
//!
//! Five local Regions and one onboarded into the customer cluster: a canary group, then the
//! rest (at most 2 at a time, behind a manual approval). A first version rolls out with every
//! cluster up (the baseline). For the second, the customer API server is stopped while the
//! rollout waits for the approval; once approved, the local Regions go on, the remote one is
//! counted `unreachable` in `ControlPlane.status.rollout` (not failed) and, unreachable for
//! longer than `progressDeadline`, deferred: its group finishes without it, but the control
//! silo stays at the old version and the rollout does not complete; the API server is started
//! again and the remote Region is upgraded and the rollout completes. A watcher follows the
//! ControlPlane and every Region over the whole run: concurrency (deferred Regions hold no
//! slot), no failure, each Region moved once.
//!
//! Takes over the management cluster's silo resources; uses only namespace `region-ru-acme` of
//! the customer cluster; stops and starts its API server (`e2e/cluster/apiserver.sh`).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::customer::{
    Outage, cluster_name, condition, customer_client, customer_kubeconfig, delete_namespace,
    onboard,
};
use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use silo_api::{ControlPlane, Region, RolloutPhase, RolloutStatus};

const CP: &str = "it-rollout-unreachable";
const CONTROL_NS: &str = "it-ru-control";
const REMOTE: &str = "ru-acme";
const REMOTE_NS: &str = "region-ru-acme";
const CANARY: &str = "ru-canary";
const LOCALS: [&str; 4] = ["ru-l1", "ru-l2", "ru-l3", "ru-l4"];
/// Long enough for the customer cluster's own controllers to resume after its API server
/// restarts (client-go reflectors back off up to a minute): about 90 s measured here.
const DEADLINE: Duration = Duration::from_secs(150);
const TIMEOUT: Duration = Duration::from_secs(300);

fn caps() -> BTreeMap<&'static str, i32> {
    [("canary", 1), ("default", 2)].into()
}

fn control_plane() -> ControlPlane {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "ControlPlane",
        "metadata": {"name": CP},
        "spec": {
            "version": "0.1.0",
            "namespace": CONTROL_NS,
            "control": {"externalAddress": "https://control.it.example"},
            "rollout": {
                "groups": [
                    {"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}, "maxConcurrency": 1, "minSuccessTime": "5s"},
                ],
                "defaultGroup": {"maxConcurrency": 2, "minSuccessTime": "5s", "approval": "Manual"},
                "maxFailures": 0,
                "progressDeadline": format!("{}s", DEADLINE.as_secs()),
                "approvals": ["0.2.0/default"],
            },
        }
    }))
    .expect("ControlPlane fixture")
}

fn local_region(name: &str, id: i32) -> Region {
    let labels: BTreeMap<&str, &str> = (name == CANARY)
        .then_some(("tier", "canary"))
        .into_iter()
        .collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "Region",
        "metadata": {"name": name, "labels": labels},
        "spec": {"snowflakeId": id},
    }))
    .expect("Region fixture")
}

fn group_of(region: &str) -> &'static str {
    if region == CANARY {
        "canary"
    } else {
        "default"
    }
}

/// What the watcher saw.
#[derive(Default, Debug)]
struct Record {
    /// Every change of a Region's desired version, in order, per Region.
    desired: BTreeMap<String, Vec<String>>,
    /// When a Region was first seen in flight, and first seen upgraded, per (target, Region).
    entered: BTreeMap<(String, String), Instant>,
    upgraded: BTreeMap<(String, String), Instant>,
    /// Regions in the order they first entered flight, per target.
    order: BTreeMap<String, Vec<String>>,
    /// Most Regions in flight at once per (target, group), and most counted unreachable.
    peak: BTreeMap<(String, String), i32>,
    unreachable: BTreeMap<String, i32>,
    /// When the ledger of a target first said Complete.
    complete: BTreeMap<String, Instant>,
    /// Whether the remote Region's last seen Ready reason is `ClusterUnreachable`, and when
    /// it last stopped being so.
    remote_down: bool,
    remote_back: Option<Instant>,
    /// Violations, reported at the end.
    problems: Vec<String>,
}

fn check_ledger(rec: &mut Record, l: &RolloutStatus) {
    let target = l.target_version.clone();
    if l.previous_version.is_none() {
        return; // the fleet's first version: nothing rolls out
    }
    let now = Instant::now();
    for g in &l.groups {
        // Deferred Regions hold no slot of their group.
        let deferred = l.deferred.iter().filter(|n| group_of(n) == g.name).count();
        let flying = g.upgrading + g.soaking + g.unreachable - deferred as i32;
        let cap = caps().get(g.name.as_str()).copied().unwrap_or(0);
        if flying > cap {
            rec.problems
                .push(format!("{target}: group {} had {flying} in flight", g.name));
        }
        let peak = rec
            .peak
            .entry((target.clone(), g.name.clone()))
            .or_default();
        *peak = (*peak).max(flying);
        let down = rec.unreachable.entry(target.clone()).or_default();
        *down = (*down).max(g.unreachable);
    }
    if !l.failed.is_empty() || l.phase == RolloutPhase::Failed {
        rec.problems
            .push(format!("{target}: {:?} failed {:?}", l.phase, l.failed));
    }
    for step in &l.in_flight {
        let key = (target.clone(), step.name.clone());
        if let std::collections::btree_map::Entry::Vacant(e) = rec.entered.entry(key) {
            e.insert(now);
            rec.order
                .entry(target.clone())
                .or_default()
                .push(step.name.clone());
        }
    }
    for name in &l.upgraded {
        let key = (target.clone(), name.clone());
        if !rec.upgraded.contains_key(&key) {
            if name == REMOTE && rec.remote_down {
                rec.problems.push(format!(
                    "{target}: {REMOTE} listed upgraded while its cluster is unreachable"
                ));
            }
            rec.upgraded.insert(key, now);
        }
    }
    if l.phase == RolloutPhase::Complete && !rec.complete.contains_key(&target) {
        if !l.upgraded.iter().any(|n| n == REMOTE) {
            rec.problems
                .push(format!("{target}: complete without {REMOTE}: {l:?}"));
        }
        rec.complete.insert(target, now);
    }
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
        while let Some(Ok(cp)) = stream.next().await {
            if let Some(l) = cp.status.and_then(|s| s.rollout) {
                check_ledger(&mut r.lock().expect("record"), &l);
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
            let mut rec = r.lock().expect("record");
            if region.name_any() == REMOTE {
                let down = region
                    .ready_condition()
                    .is_some_and(|c| c.reason == "ClusterUnreachable");
                if rec.remote_down && !down {
                    rec.remote_back = Some(Instant::now());
                }
                rec.remote_down = down;
            }
            let Some(desired) = region.status.and_then(|s| s.desired_version) else {
                continue;
            };
            let history = rec.desired.entry(region.metadata.name.unwrap_or_default());
            let history = history.or_default();
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
    async fn patch_spec(&self, spec: serde_json::Value) {
        self.cps
            .patch(
                CP,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await
            .expect("patch the ControlPlane's spec");
    }

    /// Wait until the ControlPlane's status satisfies `done` (ledger, control's version).
    async fn wait_status(
        &self,
        what: &str,
        done: impl Fn(&RolloutStatus, Option<&str>) -> bool,
    ) -> RolloutStatus {
        wait_for(what, TIMEOUT, || async {
            let cp = self.cps.get(CP).await.map_err(|e| e.to_string())?;
            let status = cp.status.unwrap_or_default();
            let l = status.rollout.ok_or("no ledger yet")?;
            let running = status.running_version;
            if done(&l, running.as_deref()) {
                Ok(l)
            } else {
                Err(format!(
                    "{:?} {}: {} (done {}/{}, in flight {:?}), control runs {running:?}",
                    l.phase,
                    l.target_version,
                    l.message,
                    l.done,
                    l.total,
                    l.in_flight.iter().map(|s| &s.name).collect::<Vec<_>>()
                ))
            }
        })
        .await
    }

    async fn wait_complete(&self, version: &str) -> RolloutStatus {
        self.wait_status(&format!("the rollout of {version} to complete"), |l, c| {
            l.target_version == version && l.phase == RolloutPhase::Complete && c == Some(version)
        })
        .await
    }

    async fn wait_region(&self, name: &str, what: &str, check: impl Fn(&Region) -> bool) {
        wait_for(&format!("Region {name}: {what}"), TIMEOUT, || async {
            let r = self.regions.get(name).await.map_err(|e| e.to_string())?;
            if check(&r) {
                Ok(())
            } else {
                Err(format!("{:?}", r.status.as_ref().map(|s| &s.conditions)))
            }
        })
        .await;
    }
}

/// Every Region moved to `version` exactly once, in group order, within the caps.
fn check_rollout(rec: &Record, version: &str) {
    assert!(rec.problems.is_empty(), "{:#?}", rec.problems);
    let order = rec.order.get(version).cloned().unwrap_or_default();
    assert_eq!(order.len(), 6, "started for {version}: {order:?}");
    assert_eq!(group_of(&order[0]), "canary", "the canary first: {order:?}");
    for (group, cap) in caps() {
        let peak = rec
            .peak
            .get(&(version.to_owned(), group.to_owned()))
            .copied()
            .unwrap_or(0);
        assert!(
            (1..=cap).contains(&peak),
            "{version}: group {group} peaked at {peak} (cap {cap})"
        );
    }
    for name in &order {
        let history = &rec.desired[name];
        let moves = history.iter().filter(|v| *v == version).count();
        assert_eq!(
            moves, 1,
            "{name} moved to {version} {moves} times: {history:?}"
        );
        assert!(
            rec.upgraded
                .contains_key(&(version.to_owned(), name.clone())),
            "{name} never listed upgraded for {version}"
        );
    }
    assert!(
        order[1..].iter().all(|n| group_of(n) == "default"),
        "groups out of order for {version}: {order:?}"
    );
}

/// The reasons of the Events about the ControlPlane.
async fn control_plane_events(admin: &Client) -> Result<Vec<String>, String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(admin.clone());
    let selector = format!("regarding.name={CP}");
    let list = events
        .list(&kube::api::ListParams::default().fields(&selector))
        .await
        .map_err(|e| e.to_string())?;
    Ok(list.items.into_iter().filter_map(|e| e.reason).collect())
}

/// Seconds between two instants the watcher or the test took.
fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_cluster_unreachable_mid_rollout_is_deferred_and_upgraded_on_return() {
    let management_path = kubeconfig_path();
    let customer_path = customer_kubeconfig();
    let customer_name = cluster_name(&customer_path);
    let admin = admin_client().await;
    let customer = customer_client().await;
    install_crds(&admin).await;
    install_rbac(&admin).await;
    clean_slate(&admin).await;
    delete_namespace(&customer, REMOTE_NS).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let _ = secrets
        .delete(&format!("{REMOTE}-kubeconfig"), &DeleteParams::default())
        .await;
    let sa = service_account_kubeconfig(&admin).await;
    let _operator = Operator::start_with(
        &sa,
        "operator-rollout-unreachable",
        &[
            "--leader-elect=false",
            "--cluster-resync",
            "3s",
            "--cluster-max-backoff",
            "4s",
        ],
    )
    .await;
    let fleet = Fleet {
        cps: Api::all(admin.clone()),
        regions: Api::all(admin.clone()),
    };
    let record = watch(&admin);

    fleet
        .cps
        .create(&PostParams::default(), &control_plane())
        .await
        .expect("create ControlPlane");
    for (i, name) in std::iter::once(CANARY).chain(LOCALS).enumerate() {
        fleet
            .regions
            .create(&PostParams::default(), &local_region(name, 3600 + i as i32))
            .await
            .unwrap_or_else(|e| panic!("create Region {name}: {e}"));
    }
    let m = management_path.to_string_lossy().into_owned();
    let c = customer_path.to_string_lossy().into_owned();
    onboard(&[
        "--kubeconfig",
        c.as_str(),
        "--management-kubeconfig",
        m.as_str(),
        "--region",
        REMOTE,
        "--snowflake-id",
        "3610",
        "--address",
        "https://ru-acme.it.example",
        "--apply",
    ]);
    fleet.wait_complete("0.1.0").await;
    for name in std::iter::once(CANARY).chain(LOCALS).chain([REMOTE]) {
        fleet.wait_region(name, "Ready", Region::is_ready).await;
    }

    // 1. The baseline: a version rolls out with every cluster up.
    let baseline_start = Instant::now();
    fleet
        .patch_spec(serde_json::json!({"version": "0.2.0"}))
        .await;
    let l = fleet.wait_complete("0.2.0").await;
    let baseline_end = Instant::now();
    assert_eq!((l.done, l.total), (6, 6), "{l:?}");

    // 2. The next version waits for the approval of the default group; meanwhile the
    // customer API server stops.
    fleet
        .patch_spec(serde_json::json!({"version": "0.3.0"}))
        .await;
    let waiting = fleet
        .wait_status("the default group to wait for approval", |l, _| {
            l.target_version == "0.3.0" && l.phase == RolloutPhase::WaitingForApproval
        })
        .await;
    assert_eq!(waiting.upgraded, [CANARY], "{waiting:?}");
    let outage = Outage::begin(&customer_name);
    let stopped = Instant::now();
    fleet
        .wait_region(REMOTE, "Ready=False ClusterUnreachable", |r| {
            condition(r, "Ready").is_some_and(|c| c.reason == "ClusterUnreachable")
                && condition(r, "ClusterReachable").is_some_and(|c| c.status == "False")
        })
        .await;
    let approved = Instant::now();
    fleet
        .patch_spec(
            serde_json::json!({"rollout": {"approvals": ["0.2.0/default", "0.3.0/default"]}}),
        )
        .await;

    // 3. The local Regions go on; the remote one is started last, counted unreachable, not
    // failed; past progressDeadline it is deferred: its group finishes without it, the control
    // silo waits for it and the rollout does not complete.
    let stuck = fleet
        .wait_status(
            "the local Regions upgraded and the remote one deferred past progressDeadline",
            |l, _| {
                let remote = l.in_flight.iter().find(|s| s.name == REMOTE);
                let overdue = remote.is_some_and(|s| {
                    let since = k8s_openapi::jiff::Timestamp::now().as_millisecond()
                        - s.started.0.as_millisecond();
                    since > DEADLINE.as_millis() as i64 + 5000
                });
                l.target_version == "0.3.0"
                    && LOCALS.iter().all(|n| l.upgraded.iter().any(|u| u == n))
                    && l.groups.iter().any(|g| g.unreachable == 1)
                    && l.deferred == [REMOTE]
                    && overdue
            },
        )
        .await;
    assert_eq!(stuck.phase, RolloutPhase::Progressing, "{stuck:?}");
    assert!(stuck.failed.is_empty(), "{:?}", stuck.failed);
    assert_eq!((stuck.done, stuck.total), (5, 6), "{stuck:?}");
    let default = &stuck.groups[1];
    assert_eq!(
        (default.unreachable, default.done, default.failed),
        (1, 4, 0),
        "{default:?}"
    );
    // It holds no slot: its group finished without it, and the control silo waits for it.
    assert!(
        stuck
            .message
            .starts_with("every region group is done; the control silo stays at 0.2.0")
            && stuck.message.contains(REMOTE),
        "{}",
        stuck.message
    );
    wait_for(
        "a RolloutRegionDeferred Event on the ControlPlane",
        Duration::from_secs(30),
        || async {
            let reasons = control_plane_events(&admin).await?;
            reasons
                .iter()
                .any(|r| r == "RolloutRegionDeferred")
                .then_some(())
                .ok_or_else(|| format!("{reasons:?}"))
        },
    )
    .await;
    let cp = fleet.cps.get(CP).await.expect("get ControlPlane");
    assert_eq!(
        cp.status.and_then(|s| s.running_version).as_deref(),
        Some("0.2.0"),
        "the control silo does not run ahead of the unreachable Region"
    );
    {
        let rec = record.lock().expect("record");
        let order = &rec.order["0.3.0"];
        assert_eq!(
            order.last().map(String::as_str),
            Some(REMOTE),
            "the unreachable Region starts after the reachable ones: {order:?}"
        );
    }

    // 4. The customer API server answers again: the remote Region upgrades, the rollout
    // completes.
    let restart = Instant::now();
    drop(outage);
    let back = Instant::now();
    let l = fleet.wait_complete("0.3.0").await;
    let complete = Instant::now();
    assert_eq!((l.done, l.total), (6, 6), "{l:?}");
    fleet
        .wait_region(REMOTE, "Ready at 0.3.0", |r| {
            r.is_ready()
                && r.status.as_ref().and_then(|s| s.running_version.as_deref()) == Some("0.3.0")
        })
        .await;

    {
        let rec = record.lock().expect("record");
        check_rollout(&rec, "0.2.0");
        check_rollout(&rec, "0.3.0");
        assert_eq!(
            rec.unreachable.get("0.3.0"),
            Some(&1),
            "{:?}",
            rec.unreachable
        );
        assert_eq!(
            rec.unreachable.get("0.2.0"),
            Some(&0),
            "{:?}",
            rec.unreachable
        );
        let key = |v: &str, n: &str| (v.to_owned(), n.to_owned());
        let remote_upgraded = rec.upgraded[&key("0.3.0", REMOTE)];
        assert!(
            remote_upgraded > back,
            "the remote Region was listed upgraded before its cluster answered again"
        );
        // Figures.
        let baseline_remote = secs(
            rec.entered[&key("0.2.0", REMOTE)],
            rec.upgraded[&key("0.2.0", REMOTE)],
        );
        let after_return = secs(back, remote_upgraded);
        let reachable = rec.remote_back.expect("the remote Region reachable again");
        assert!(reachable >= restart, "reachable again before the restart");
        println!(
            "FIGURE remote Region: reachable in its status {:.1}s after the customer API server answered again (--cluster-max-backoff 4s), upgraded {after_return:.1}s after (the customer cluster's own controllers resume first; soak 5s), against {baseline_remote:.1}s from its move to upgraded with every cluster up: ratio {:.2}",
            secs(back, reachable),
            after_return / baseline_remote
        );
        let last_local = |v: &str| {
            LOCALS
                .into_iter()
                .filter_map(|n| rec.upgraded.get(&key(v, n)))
                .max()
                .copied()
                .expect("local Regions upgraded")
        };
        let group_start = std::iter::once(REMOTE)
            .chain(LOCALS)
            .filter_map(|n| rec.entered.get(&key("0.2.0", n)))
            .min()
            .copied()
            .expect("the default group started");
        let baseline_group = secs(group_start, last_local("0.2.0"));
        let outage_group = secs(approved, last_local("0.3.0"));
        println!(
            "FIGURE local Regions of the remote one's group: all 4 upgraded {outage_group:.1}s after the approval with the customer cluster down, {baseline_group:.1}s after the group started with every cluster up: ratio {:.2}",
            outage_group / baseline_group
        );
        println!(
            "FIGURE rollout: {:.1}s from version change to complete with every cluster up; with the outage {:.1}s from the cluster's return to complete (outage {:.1}s, of which {:.1}s after the approval)",
            secs(baseline_start, baseline_end),
            secs(back, complete),
            secs(stopped, back),
            secs(approved, back)
        );
    }

    // Leave both clusters as other suites expect them: the remote Region deleted with its
    // namespace there, no fleet of this test's.
    fleet
        .regions
        .delete(REMOTE, &DeleteParams::default())
        .await
        .expect("delete the remote Region");
    wait_for("the remote Region to be released", TIMEOUT, || async {
        match fleet
            .regions
            .get_opt(REMOTE)
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(r) => Err(format!("{:?}", r.status.map(|s| s.conditions))),
        }
    })
    .await;
    delete_namespace(&customer, REMOTE_NS).await;
    clean_slate(&admin).await;
}
