//! One planning step: observe the Regions in flight, then start, pause, fail or roll back.
//!
//! ```text
//!   Snapshot (ledger, Regions' views, strategy, now)
//!     ─► ledger::forget (gone, pinned) ─► observe (in flight: done, soaking, failed,
//!        unreachable ─► deferred past progressDeadline; reverting: back)
//!     ─► progress (next starts, or why none) | fail | roll_back
//!     ─► ledger::count (per group, GroupFinished) ─► Plan
//! ```

mod event;
mod ledger;
mod observe;
mod progress;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use silo_api::{Category, OnFailure, RegionRollout, RolloutPhase, RolloutStatus};

pub use event::Event;

use crate::strategy::Strategy;
use crate::time;

/// What the planner needs to know of one Region.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub category: Category,
    /// `spec.version` is set: the rollout leaves the Region alone.
    pub pinned: bool,
    /// The Region's own rollout status, from a status written for its current generation.
    pub rollout: Option<RegionRollout>,
    /// Why the Region cannot reach its version without a change of it (reason, message),
    /// e.g. its migration Job failed.
    pub failure: Option<(String, String)>,
    /// The cluster the Region runs in cannot be reached.
    pub unreachable: bool,
    /// Since when the cluster of a Region in another cluster answers (its `ClusterReachable`
    /// condition turned True). A move's `progressDeadline` runs from this when it is later
    /// than the move: time the cluster could not be reached does not count against it.
    pub reachable_since: Option<Time>,
    /// Since when the cluster of an unreachable Region has not answered (its
    /// `ClusterReachable` condition turned False). A Region in flight is deferred once
    /// `progressDeadline` has passed since the later of this and its move.
    pub unreachable_since: Option<Time>,
}

/// Everything one step reads.
#[derive(Clone, Debug)]
pub struct Snapshot<'a> {
    pub now: Time,
    /// `ControlPlane.spec.version`.
    pub version: &'a str,
    pub strategy: &'a Strategy,
    /// The last ledger written (`ControlPlane.status.rollout`).
    pub ledger: Option<&'a RolloutStatus>,
    /// The version the control silo runs.
    pub control_running: Option<&'a str>,
    /// Every live Region (not being deleted).
    pub regions: &'a [RegionView],
}

/// What one step decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub ledger: RolloutStatus,
    /// The version to build the control silo at: the target once every region group is done.
    pub control_version: String,
    pub events: Vec<Event>,
    /// When to step again if nothing changes before (a soak or a deadline ends).
    pub recheck: Option<Duration>,
    /// Groups of `spec.rollout.groups` that match no Region.
    pub empty_groups: Vec<String>,
}

/// Work state of one step.
struct Step<'a> {
    s: &'a Snapshot<'a>,
    l: RolloutStatus,
    events: Vec<Event>,
    recheck: Option<i64>,
    /// Region names per group, sorted.
    members: Vec<Vec<&'a str>>,
    group_of: HashMap<&'a str, usize>,
    soaking: BTreeSet<String>,
    unreachable: BTreeSet<String>,
}

impl Step<'_> {
    fn wake_at(&mut self, at: i64) {
        self.recheck = Some(self.recheck.map_or(at, |r| r.min(at)));
    }

    fn set_phase(&mut self, phase: RolloutPhase, message: String, event: Option<Event>) {
        if self.l.phase != phase
            && let Some(event) = event
        {
            self.events.push(event);
        }
        self.l.phase = phase;
        self.l.message = message;
    }
}

/// One planning step. Pure: the same snapshot gives the same plan.
pub fn step(s: &Snapshot<'_>) -> Plan {
    let mut events = Vec::new();
    let mut l = match s.ledger {
        Some(l) if l.target_version == s.version => l.clone(),
        Some(l) => {
            // A new version: the fleet's last complete version is what the rest keeps running.
            let previous = match l.phase {
                RolloutPhase::Complete => Some(l.target_version.clone()),
                _ => l
                    .previous_version
                    .clone()
                    .or(Some(l.target_version.clone())),
            };
            ledger::fresh(s.version, previous, &s.now)
        }
        None => ledger::fresh(s.version, s.control_running.map(str::to_owned), &s.now),
    };
    let is_new = s.ledger.is_none_or(|old| old.target_version != s.version);
    if is_new && let Some(previous) = &l.previous_version {
        events.push(Event::Started {
            target: s.version.to_owned(),
            previous: previous.clone(),
        });
    }
    let live: HashMap<&str, &RegionView> = s.regions.iter().map(|r| (r.name.as_str(), r)).collect();
    l.pinned = s
        .regions
        .iter()
        .filter(|r| r.pinned)
        .map(|r| r.name.clone())
        .collect();
    l.pinned.sort();
    let mut members: Vec<Vec<&str>> = vec![Vec::new(); s.strategy.groups.len()];
    let mut group_of = HashMap::new();
    let mut sorted: Vec<&RegionView> = s.regions.iter().filter(|r| !r.pinned).collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for r in sorted {
        let k = s.strategy.group_of(&r.labels, r.category);
        members[k].push(r.name.as_str());
        group_of.insert(r.name.as_str(), k);
    }
    let empty_groups = s.strategy.groups[..s.strategy.spec_groups]
        .iter()
        .zip(&members)
        .filter(|(_, m)| m.is_empty())
        .map(|(g, _)| g.name.clone())
        .collect();
    let mut st = Step {
        s,
        l,
        events,
        recheck: None,
        members,
        group_of,
        soaking: BTreeSet::new(),
        unreachable: BTreeSet::new(),
    };
    st.forget(&live);
    match st.l.previous_version.clone() {
        // Nothing to roll out from (the fleet's first version, or back to the version the
        // unfinished rollout started from): every Region runs the target.
        None => {
            st.l.in_flight.clear();
            st.l.reverting.clear();
            st.l.phase = RolloutPhase::Complete;
            st.l.message = format!("every Region runs {}", st.l.target_version);
        }
        Some(_) if st.l.phase == RolloutPhase::Complete => {}
        Some(previous) => {
            st.observe_in_flight(&live);
            st.observe_reverting(&live, &previous);
            let total = st.group_of.len();
            let budget = s.strategy.max_failures.of(total);
            let failed = st.l.failed.len();
            match st.l.phase {
                RolloutPhase::RollingBack | RolloutPhase::RolledBack => st.roll_back(false),
                _ if failed > budget && s.strategy.on_failure == OnFailure::Rollback => {
                    st.events.push(Event::RollbackStarted { failed, budget });
                    st.roll_back(true);
                }
                _ if failed > budget => st.set_phase(
                    RolloutPhase::Failed,
                    format!(
                        "{failed} Regions failed (maxFailures {budget}); no new Region starts: change spec.version to a fixed version, or raise spec.rollout.maxFailures to go on"
                    ),
                    Some(Event::Stopped { failed, budget }),
                ),
                _ => st.progress(),
            }
        }
    }
    st.count();
    // The update time moves only with the rest of the ledger (no write for a mere step).
    let unchanged = s.ledger.is_some_and(|old| {
        RolloutStatus {
            update_time: old.update_time.clone(),
            ..st.l.clone()
        } == *old
    });
    st.l.update_time = match (unchanged, s.ledger) {
        (true, Some(old)) => old.update_time.clone(),
        _ => Some(s.now.clone()),
    };
    let control_version = match st.l.phase {
        RolloutPhase::UpgradingControl | RolloutPhase::Complete => st.l.target_version.clone(),
        _ => {
            st.l.previous_version
                .clone()
                .unwrap_or_else(|| st.l.target_version.clone())
        }
    };
    let recheck = st.recheck.map(|at| time::until(&s.now, at));
    Plan {
        ledger: st.l,
        control_version,
        events: st.events,
        recheck,
        empty_groups,
    }
}
