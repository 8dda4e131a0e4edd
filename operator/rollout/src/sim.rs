//! A simulated fleet driven by the planner: Regions become available some time after they are
//! moved (never at a broken version, nor while their cluster cannot be reached), the ledger is
//! the only memory between steps, and the checks run on every step.

use std::collections::BTreeMap;

use silo_api::{Category, RegionRollout, RolloutPhase, RolloutSpec, RolloutStatus};

use crate::assignment::{region_rollout, version_for};
use crate::plan::{Event, RegionView, Snapshot, step};
use crate::strategy::Strategy;
use crate::time;

mod deferred;
mod unreachable;

const TICK: i64 = 500;

struct SimRegion {
    view: RegionView,
    /// What its reconciler built last: version and start of the move.
    built: Option<(String, Option<i64>)>,
    /// When it was built at its current version.
    built_at: i64,
    /// Versions it was built at, in order.
    history: Vec<String>,
}

struct Fleet {
    now: i64,
    spec: RolloutSpec,
    version: String,
    ledger: Option<RolloutStatus>,
    control_running: Option<String>,
    regions: Vec<SimRegion>,
    /// Milliseconds from a build to available.
    delay: i64,
    broken: Option<String>,
    events: Vec<Event>,
    /// Most Regions in flight at once, per group name.
    peak: BTreeMap<String, usize>,
    /// The order Regions were first moved to the target.
    started: Vec<String>,
}

impl Fleet {
    fn new(spec: serde_json::Value, regions: &[(&str, &[(&str, &str)])]) -> Self {
        let mut fleet = Self {
            now: 1_000_000,
            spec: serde_json::from_value(spec).expect("rollout spec"),
            version: "1".into(),
            ledger: None,
            control_running: None,
            regions: Vec::new(),
            delay: 1500,
            broken: None,
            events: Vec::new(),
            peak: BTreeMap::new(),
            started: Vec::new(),
        };
        for (name, labels) in regions {
            fleet.add(name, labels);
        }
        // Version 1 everywhere, as on a first install.
        fleet.run_until(
            |f| {
                f.ledger
                    .as_ref()
                    .is_some_and(|l| l.phase == RolloutPhase::Complete)
                    && f.all_serving()
            },
            100,
        );
        fleet.events.clear();
        fleet.started.clear();
        fleet
    }

    fn add(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.regions.push(SimRegion {
            view: RegionView {
                name: name.into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
                category: Category::MultiTenant,
                pinned: false,
                rollout: None,
                failure: None,
                unreachable: false,
                reachable_since: None,
                unreachable_since: None,
            },
            built: None,
            built_at: 0,
            history: Vec::new(),
        });
    }

    fn all_serving(&self) -> bool {
        self.regions.iter().all(|r| {
            r.view
                .rollout
                .as_ref()
                .is_some_and(|o| o.available_since.is_some())
        })
    }

    /// Each Region's reconciler: build at the assignment, report availability.
    fn reconcile_regions(&mut self) {
        let now = time::at(self.now);
        for r in &mut self.regions {
            if r.view.pinned {
                continue;
            }
            let a = version_for(self.ledger.as_ref(), &r.view.name).unwrap_or(crate::Assignment {
                version: self.version.clone(),
                started: None,
            });
            if r.view.unreachable {
                // Nothing can be built there; its reconciler reports it not serving.
                let previous = r.view.rollout.clone();
                r.view.rollout = Some(region_rollout(previous.as_ref(), &a, false, &now));
                continue;
            }
            let key = (a.version.clone(), a.started.as_ref().map(time::millis));
            let rebuilt = r.built.as_ref().map(|b| &b.0) != Some(&a.version);
            if rebuilt {
                r.built_at = self.now;
                r.history.push(a.version.clone());
            }
            if r.built.as_ref() != Some(&key) {
                r.built = Some(key);
            }
            let serving =
                Some(&a.version) != self.broken.as_ref() && self.now >= r.built_at + self.delay;
            let previous: Option<RegionRollout> = r.view.rollout.clone();
            r.view.rollout = Some(region_rollout(previous.as_ref(), &a, serving, &now));
        }
    }

    /// The ControlPlane reconciler: one planner step, the control silo follows its version.
    fn plan(&mut self) {
        let strategy = Strategy::from_spec(&self.spec).expect("strategy");
        let views: Vec<RegionView> = self.regions.iter().map(|r| r.view.clone()).collect();
        let plan = step(&Snapshot {
            now: time::at(self.now),
            version: &self.version,
            strategy: &strategy,
            ledger: self.ledger.as_ref(),
            control_running: self.control_running.as_deref(),
            regions: &views,
        });
        // The control silo is available at once in this model.
        self.control_running = Some(plan.control_version.clone());
        for f in &plan.ledger.in_flight {
            if !self.started.contains(&f.name) && plan.ledger.target_version != "1" {
                self.started.push(f.name.clone());
            }
        }
        for (k, g) in plan.ledger.groups.iter().enumerate() {
            // Deferred Regions hold no slot.
            let deferred = plan
                .ledger
                .deferred
                .iter()
                .filter_map(|n| self.regions.iter().find(|r| r.view.name == *n))
                .filter(|r| strategy.group_of(&r.view.labels, r.view.category) == k)
                .count();
            let flying = (g.upgrading + g.soaking + g.unreachable) as usize - deferred;
            let peak = self.peak.entry(g.name.clone()).or_default();
            *peak = (*peak).max(flying);
            assert!(
                flying <= strategy.groups[k].concurrency(g.total as usize),
                "group {} has {flying} in flight: {:?}",
                g.name,
                plan.ledger
            );
        }
        self.events.extend(plan.events);
        self.ledger = Some(plan.ledger);
    }

    fn tick(&mut self) {
        self.reconcile_regions();
        self.plan();
        self.now += TICK;
    }

    fn run_until(&mut self, done: impl Fn(&Fleet) -> bool, max_ticks: usize) {
        for _ in 0..max_ticks {
            if done(self) {
                return;
            }
            self.tick();
        }
        panic!("not reached after {max_ticks} ticks: {:#?}", self.ledger);
    }

    fn phase(&self) -> RolloutPhase {
        self.ledger.as_ref().map(|l| l.phase).unwrap_or_default()
    }

    /// The cluster of Region `name` stops (or starts again) answering now.
    fn set_reachable(&mut self, name: &str, reachable: bool) {
        let now = time::at(self.now);
        let r = self
            .regions
            .iter_mut()
            .find(|r| r.view.name == name)
            .expect("region");
        r.view.unreachable = !reachable;
        r.view.reachable_since = reachable.then(|| now.clone());
        r.view.unreachable_since = (!reachable).then_some(now);
    }

    fn region(&self, name: &str) -> &SimRegion {
        self.regions
            .iter()
            .find(|r| r.view.name == name)
            .expect("region")
    }
}

fn three_groups(extra: serde_json::Value) -> serde_json::Value {
    let mut spec = serde_json::json!({
        "groups": [
            {"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}, "maxConcurrency": 1, "minSuccessTime": "5s"},
            {"name": "early", "selector": {"matchLabels": {"tier": "early"}}, "maxConcurrency": 3, "minSuccessTime": "5s"},
        ],
        "defaultGroup": {"maxConcurrency": 4, "minSuccessTime": "5s"},
        "progressDeadline": "20s",
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

fn twenty() -> Vec<(String, &'static [(&'static str, &'static str)])> {
    (0..20)
        .map(|i| {
            let labels: &[(&str, &str)] = match i {
                0 => &[("tier", "canary")],
                1..=10 => &[("tier", "early")],
                _ => &[],
            };
            (format!("r{i:02}"), labels)
        })
        .collect()
}

fn fleet(extra: serde_json::Value) -> Fleet {
    let regions = twenty();
    let refs: Vec<(&str, &[(&str, &str)])> =
        regions.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    Fleet::new(three_groups(extra), &refs)
}

fn complete(f: &Fleet) -> bool {
    f.phase() == RolloutPhase::Complete
        && f.ledger
            .as_ref()
            .is_some_and(|l| l.target_version == f.version)
}

#[test]
fn a_version_rolls_out_group_by_group_within_concurrency() {
    let mut f = fleet(serde_json::json!({}));
    assert!(
        f.regions.iter().all(|r| r.history == ["1"]),
        "first version everywhere at once"
    );
    f.version = "2".into();
    f.run_until(complete, 400);
    // Order: the canary first, then the early group, then the rest.
    assert_eq!(f.started[0], "r00");
    let group = |n: &str| match n {
        "r00" => 0,
        n if n <= "r10" => 1,
        _ => 2,
    };
    let groups: Vec<i32> = f.started.iter().map(|n| group(n)).collect();
    assert!(
        groups.windows(2).all(|w| w[0] <= w[1]),
        "groups started out of order: {:?}",
        f.started
    );
    assert_eq!(f.started.len(), 20);
    assert_eq!(f.peak["canary"], 1);
    assert_eq!(f.peak["early"], 3);
    assert_eq!(f.peak["default"], 4);
    // Every Region moved exactly once, the control silo last.
    assert!(
        f.regions.iter().all(|r| r.history == ["1", "2"]),
        "{:?}",
        f.regions.iter().map(|r| &r.history).collect::<Vec<_>>()
    );
    let l = f.ledger.as_ref().expect("ledger");
    assert_eq!((l.done, l.total), (20, 20));
    assert_eq!(l.previous_version.as_deref(), Some("1"));
    assert!(l.completion_time.is_some());
    let reasons: Vec<&str> = f.events.iter().map(Event::reason).collect();
    assert_eq!(reasons.first(), Some(&"RolloutStarted"));
    assert_eq!(reasons.last(), Some(&"RolloutComplete"));
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == "RolloutGroupStarted")
            .count(),
        3
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == "RolloutGroupFinished")
            .count(),
        3
    );
}

#[test]
fn soak_holds_the_slot_and_the_next_group() {
    let mut f = fleet(serde_json::json!({}));
    f.version = "2".into();
    // The canary becomes available 1.5 s after its move and must soak 5 s.
    f.run_until(
        |f| {
            f.region("r00")
                .view
                .rollout
                .as_ref()
                .is_some_and(|r| r.version == "2" && r.available_since.is_some())
        },
        20,
    );
    let available = f.now;
    f.run_until(|f| f.started.len() > 1, 40);
    assert!(
        f.now - available >= 5000,
        "the early group started {} ms after the canary was available",
        f.now - available
    );
}

#[test]
fn a_broken_version_fails_the_canary_and_stops() {
    let mut f = fleet(serde_json::json!({}));
    f.version = "2".into();
    f.broken = Some("2".into());
    f.run_until(|f| f.phase() == RolloutPhase::Failed, 100);
    // Let time pass: nothing else starts.
    for _ in 0..40 {
        f.tick();
    }
    assert_eq!(f.started, ["r00"]);
    let l = f.ledger.as_ref().expect("ledger");
    assert_eq!(l.failed.len(), 1);
    assert_eq!(l.failed[0].reason, "ProgressDeadlineExceeded");
    assert_eq!(
        f.control_running.as_deref(),
        Some("1"),
        "control never runs ahead of a region"
    );
    assert!(f.events.iter().any(|e| matches!(
        e,
        Event::Stopped {
            failed: 1,
            budget: 0
        }
    )));
    // A fixed version rolls out from the last good one.
    f.version = "3".into();
    f.broken = None;
    f.run_until(complete, 400);
    assert_eq!(
        f.ledger
            .as_ref()
            .and_then(|l| l.previous_version.as_deref()),
        Some("1")
    );
    // The canary moves straight from the failed version to the fix.
    assert_eq!(f.region("r00").history, ["1", "2", "3"]);
    assert_eq!(f.region("r05").history, ["1", "3"]);
}

#[test]
fn a_failure_budget_lets_the_rollout_go_on() {
    let mut f = fleet(serde_json::json!({"maxFailures": 1}));
    f.version = "2".into();
    f.broken = Some("2".into());
    f.run_until(|f| f.phase() == RolloutPhase::Failed, 200);
    // The canary failed within the budget; the first early wave fails too and stops it.
    let l = f.ledger.as_ref().expect("ledger");
    assert_eq!(l.failed.len(), 4, "{:?}", l.failed);
    assert_eq!(f.started.len(), 4);
}

#[test]
fn rollback_returns_moved_regions_last_group_first() {
    let mut f = fleet(serde_json::json!({"onFailure": "Rollback", "maxFailures": 1}));
    f.version = "2".into();
    // Good for the canary and early groups, then broken for the rest.
    f.run_until(
        |f| {
            f.ledger
                .as_ref()
                .is_some_and(|l| l.groups.get(1).is_some_and(|g| g.done == 10))
        },
        400,
    );
    f.broken = Some("2".into());
    f.run_until(|f| f.phase() == RolloutPhase::RolledBack, 400);
    assert!(
        f.regions
            .iter()
            .all(|r| r.history.last().map(String::as_str) == Some("1"))
    );
    assert_eq!(f.control_running.as_deref(), Some("1"));
    let early = &f.region("r05").history;
    assert_eq!(early, &["1", "2", "1"]);
    assert!(
        f.events
            .iter()
            .any(|e| matches!(e, Event::RollbackStarted { budget: 1, .. }))
    );
    assert!(f.events.contains(&Event::RolledBack));
}

#[test]
fn pause_holds_new_starts_and_lets_in_flight_regions_finish() {
    let mut f = fleet(serde_json::json!({}));
    f.version = "2".into();
    f.run_until(|f| f.started.len() >= 3, 100);
    f.spec.paused = true;
    f.tick();
    assert_eq!(f.phase(), RolloutPhase::Paused);
    let started = f.started.len();
    for _ in 0..60 {
        f.tick();
    }
    assert_eq!(f.started.len(), started, "no start while paused");
    assert!(
        f.ledger.as_ref().is_some_and(|l| l.in_flight.is_empty()),
        "in-flight Regions finished"
    );
    f.spec.paused = false;
    f.run_until(complete, 400);
}

#[test]
fn a_manual_group_waits_for_its_approval() {
    let mut f = fleet(serde_json::json!({}));
    f.spec.groups[1].settings.approval = silo_api::Approval::Manual;
    f.version = "2".into();
    f.run_until(|f| f.phase() == RolloutPhase::WaitingForApproval, 100);
    assert!(
        f.ledger
            .as_ref()
            .is_some_and(|l| l.message.contains("\"2/early\"")),
        "{:?}",
        f.ledger
    );
    for _ in 0..20 {
        f.tick();
    }
    assert_eq!(f.started, ["r00"]);
    f.spec.approvals.push("1/early".into());
    f.tick();
    assert_eq!(
        f.started,
        ["r00"],
        "an approval of another version does not count"
    );
    f.spec.approvals.push("2/early".into());
    f.run_until(complete, 400);
}

#[test]
fn regions_added_and_deleted_mid_rollout_are_planned_and_dropped() {
    let mut f = fleet(serde_json::json!({}));
    f.version = "2".into();
    f.run_until(|f| f.started.len() >= 3, 100);
    f.add("r99", &[("tier", "early")]);
    f.regions.retain(|r| r.view.name != "r15");
    f.run_until(complete, 400);
    let l = f.ledger.as_ref().expect("ledger");
    assert_eq!((l.done, l.total), (20, 20));
    assert!(l.upgraded.contains(&"r99".to_owned()));
    assert!(!l.upgraded.contains(&"r15".to_owned()));
    assert_eq!(f.region("r99").history, ["1", "2"]);
}

#[test]
fn a_status_written_before_the_move_does_not_count() {
    let mut f = fleet(serde_json::json!({}));
    f.version = "2".into();
    f.plan();
    let l = f.ledger.clone().expect("ledger");
    assert_eq!(l.in_flight[0].name, "r00");
    // The canary's status says it has served version 2 for long, from an earlier move.
    f.regions[0].view.rollout = Some(RegionRollout {
        version: "2".into(),
        started: Some(time::at(5)),
        available_since: Some(time::at(10)),
    });
    f.now += 10_000;
    f.plan();
    let l = f.ledger.as_ref().expect("ledger");
    assert_eq!(l.upgraded.len(), 0, "{l:?}");
    assert_eq!(l.in_flight.len(), 1);
}

#[test]
fn pinned_regions_are_left_alone_and_listed() {
    let mut f = fleet(serde_json::json!({}));
    f.regions[3].view.pinned = true;
    f.version = "2".into();
    f.run_until(complete, 400);
    let l = f.ledger.as_ref().expect("ledger");
    assert_eq!(l.pinned, ["r03"]);
    assert_eq!(l.total, 19);
    assert_eq!(f.region("r03").history, ["1"]);
}

#[test]
fn groups_that_match_nothing_are_reported() {
    let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
        "groups": [{"name": "nowhere", "selector": {"matchLabels": {"tier": "gone"}}}],
    }))
    .expect("spec");
    let strategy = Strategy::from_spec(&spec).expect("strategy");
    let plan = step(&Snapshot {
        now: time::at(0),
        version: "1",
        strategy: &strategy,
        ledger: None,
        control_running: None,
        regions: &[],
    });
    assert_eq!(plan.empty_groups, ["nowhere"]);
}
