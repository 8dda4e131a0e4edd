//! One planning step: observe the Regions in flight, then start, pause, fail or roll back.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use silo_api::{
    Category, FailedRegion, GroupStatus, OnFailure, RegionRollout, RegionStep, RolloutPhase,
    RolloutStatus,
};

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

/// Something worth an Event on the ControlPlane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Started {
        target: String,
        previous: String,
    },
    GroupStarted {
        group: String,
    },
    GroupFinished {
        group: String,
    },
    RegionFailed {
        region: String,
        reason: String,
        message: String,
    },
    Paused,
    WaitingForApproval {
        group: String,
    },
    Stopped {
        failed: usize,
        budget: usize,
    },
    RollbackStarted {
        failed: usize,
        budget: usize,
    },
    RolledBack,
    Complete {
        target: String,
    },
}

impl Event {
    /// The Event's reason (CamelCase).
    pub fn reason(&self) -> &'static str {
        match self {
            Event::Started { .. } => "RolloutStarted",
            Event::GroupStarted { .. } => "RolloutGroupStarted",
            Event::GroupFinished { .. } => "RolloutGroupFinished",
            Event::RegionFailed { .. } => "RolloutRegionFailed",
            Event::Paused => "RolloutPaused",
            Event::WaitingForApproval { .. } => "RolloutWaitingForApproval",
            Event::Stopped { .. } => "RolloutFailed",
            Event::RollbackStarted { .. } => "RolloutRollingBack",
            Event::RolledBack => "RolloutRolledBack",
            Event::Complete { .. } => "RolloutComplete",
        }
    }

    /// Whether the Event is a Warning rather than Normal.
    pub fn warning(&self) -> bool {
        matches!(
            self,
            Event::RegionFailed { .. } | Event::Stopped { .. } | Event::RollbackStarted { .. }
        )
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Started { target, previous } => {
                write!(f, "rolling out {target} (from {previous})")
            }
            Event::GroupStarted { group } => write!(f, "group {group} started"),
            Event::GroupFinished { group } => write!(f, "group {group} finished"),
            Event::RegionFailed {
                region,
                reason,
                message,
            } => write!(f, "region {region} failed to upgrade: {reason}: {message}"),
            Event::Paused => write!(f, "paused (spec.rollout.paused): no new Region starts"),
            Event::WaitingForApproval { group } => write!(f, "group {group} waits for approval"),
            Event::Stopped { failed, budget } => write!(
                f,
                "{failed} Regions failed (maxFailures {budget}): no new Region starts"
            ),
            Event::RollbackStarted { failed, budget } => write!(
                f,
                "{failed} Regions failed (maxFailures {budget}): rolling back"
            ),
            Event::RolledBack => write!(f, "every moved Region runs the previous version again"),
            Event::Complete { target } => {
                write!(f, "every Region and the control silo run {target}")
            }
        }
    }
}

/// Where one Region in flight stands.
enum Observed {
    Done,
    Soaking { until: i64 },
    Upgrading { deadline: i64 },
    Unreachable,
    Failed { reason: String, message: String },
}

fn observe(
    view: Option<&RegionView>,
    step: &RegionStep,
    target: &str,
    soak: Duration,
    deadline: Duration,
    now: &Time,
) -> Observed {
    // Only a status written after the move counts: same version, same start.
    let own = view.and_then(|v| {
        v.rollout
            .as_ref()
            .filter(|r| r.version == target && r.started.as_ref() == Some(&step.started))
    });
    if let Some(since) = own.and_then(|r| r.available_since.as_ref()) {
        let from = time::millis(since).max(time::millis(&step.started));
        let until = time::add(from, soak);
        return if time::millis(now) >= until {
            Observed::Done
        } else {
            Observed::Soaking { until }
        };
    }
    if view.is_some_and(|v| v.unreachable) {
        return Observed::Unreachable;
    }
    if let (Some(_), Some((reason, message))) = (own, view.and_then(|v| v.failure.as_ref())) {
        return Observed::Failed {
            reason: reason.clone(),
            message: message.clone(),
        };
    }
    // The deadline runs from the move, or from the cluster's return when that came later.
    let back = view
        .and_then(|v| v.reachable_since.as_ref())
        .map_or(i64::MIN, time::millis);
    let at = time::add(time::millis(&step.started).max(back), deadline);
    if time::millis(now) >= at {
        return Observed::Failed {
            reason: "ProgressDeadlineExceeded".to_owned(),
            message: format!(
                "not available at {target} within progressDeadline ({}s)",
                deadline.as_secs()
            ),
        };
    }
    Observed::Upgrading { deadline: at }
}

/// The ledger of a rollout that starts now.
fn fresh(target: &str, previous: Option<String>, now: &Time) -> RolloutStatus {
    RolloutStatus {
        target_version: target.to_owned(),
        previous_version: previous.filter(|p| p != target),
        start_time: Some(now.clone()),
        ..Default::default()
    }
}

/// Which list of the ledger names a Region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    InFlight,
    Failed,
    Upgraded,
}

type Places<'l> = HashMap<&'l str, Place>;

/// Every Region the ledger moved, by name (a name in two lists counts as the later one here:
/// upgraded over failed over in flight).
fn places(l: &RolloutStatus) -> Places<'_> {
    let in_flight = l
        .in_flight
        .iter()
        .map(|r| (r.name.as_str(), Place::InFlight));
    let failed = l.failed.iter().map(|r| (r.name.as_str(), Place::Failed));
    let upgraded = l.upgraded.iter().map(|r| (r.as_str(), Place::Upgraded));
    in_flight.chain(failed).chain(upgraded).collect()
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

    fn group_started(&self, k: usize, places: &Places<'_>) -> bool {
        self.members[k].iter().any(|n| places.contains_key(n))
    }

    fn group_finished(&self, k: usize, places: &Places<'_>) -> bool {
        self.members[k]
            .iter()
            .all(|n| matches!(places.get(n), Some(Place::Upgraded | Place::Failed)))
    }

    /// Drop Regions that are gone or pinned from every list.
    fn forget(&mut self, live: &HashMap<&str, &RegionView>) {
        let keep = |n: &str| live.get(n).is_some_and(|v| !v.pinned);
        self.l.in_flight.retain(|r| keep(&r.name));
        self.l.upgraded.retain(|r| keep(r));
        self.l.failed.retain(|r| keep(&r.name));
        self.l.reverting.retain(|r| keep(&r.name));
    }

    /// Move Regions in flight that are done or failed.
    fn observe_in_flight(&mut self, live: &HashMap<&str, &RegionView>) {
        let target = self.l.target_version.clone();
        let deadline = self.s.strategy.progress_deadline;
        let mut still = Vec::new();
        for step in std::mem::take(&mut self.l.in_flight) {
            let group = self.group_of.get(step.name.as_str()).copied().unwrap_or(0);
            let soak = self.s.strategy.groups[group].min_success_time;
            let view = live.get(step.name.as_str()).copied();
            match observe(view, &step, &target, soak, deadline, &self.s.now) {
                Observed::Done => self.l.upgraded.push(step.name),
                Observed::Soaking { until } => {
                    self.wake_at(until);
                    self.soaking.insert(step.name.clone());
                    still.push(step);
                }
                Observed::Upgrading { deadline } => {
                    self.wake_at(deadline);
                    still.push(step);
                }
                Observed::Unreachable => {
                    self.unreachable.insert(step.name.clone());
                    still.push(step);
                }
                Observed::Failed { reason, message } => {
                    self.events.push(Event::RegionFailed {
                        region: step.name.clone(),
                        reason: reason.clone(),
                        message: message.clone(),
                    });
                    self.l.failed.push(FailedRegion {
                        name: step.name,
                        reason,
                        message,
                    });
                }
            }
        }
        self.l.in_flight = still;
    }

    /// Regions sent back are dropped from `reverting` once they serve the previous version.
    fn observe_reverting(&mut self, live: &HashMap<&str, &RegionView>, previous: &str) {
        self.l.reverting.retain(|step| {
            let back = live
                .get(step.name.as_str())
                .and_then(|v| v.rollout.as_ref())
                .is_some_and(|r| {
                    r.version == previous
                        && r.started.as_ref() == Some(&step.started)
                        && r.available_since.is_some()
                });
            !back
        });
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

    /// Start Regions of the first unfinished group, within its concurrency.
    fn progress(&mut self) {
        let places = places(&self.l);
        let Some(k) = (0..self.members.len()).find(|&k| !self.group_finished(k, &places)) else {
            return self.control_step();
        };
        let group = &self.s.strategy.groups[k];
        let name = group.name.clone();
        let started = self.group_started(k, &places);
        if self.s.strategy.paused {
            let n = self.l.in_flight.len();
            return self.set_phase(
                RolloutPhase::Paused,
                format!(
                    "paused by spec.rollout.paused in group {name}; {n} Regions in flight finish"
                ),
                Some(Event::Paused),
            );
        }
        if !started && !self.s.strategy.approved(group, &self.l.target_version) {
            let approval = format!("{}/{name}", self.l.target_version);
            return self.set_phase(
                RolloutPhase::WaitingForApproval,
                format!(
                    "group {name} waits for approval: add {approval:?} to spec.rollout.approvals"
                ),
                Some(Event::WaitingForApproval { group: name }),
            );
        }
        let size = self.members[k].len();
        let cap = group.concurrency(size);
        let members = &self.members[k];
        let in_flight = members
            .iter()
            .filter(|n| places.get(*n) == Some(&Place::InFlight))
            .count();
        let mut pending: Vec<&str> = members
            .iter()
            .copied()
            .filter(|n| !places.contains_key(n))
            .collect();
        drop(places);
        // Regions whose cluster answers go first: one that cannot be reached would hold a slot
        // without moving. It starts when no reachable one waits, and is counted unreachable.
        let down: HashSet<&str> = self
            .s
            .regions
            .iter()
            .filter(|r| r.unreachable)
            .map(|r| r.name.as_str())
            .collect();
        pending.sort_by_key(|n| down.contains(n));
        let starting = cap.saturating_sub(in_flight).min(pending.len());
        if starting > 0 && !started {
            self.events.push(Event::GroupStarted {
                group: name.clone(),
            });
        }
        for n in &pending[..starting] {
            self.l.in_flight.push(RegionStep {
                name: (*n).to_owned(),
                started: self.s.now.clone(),
            });
        }
        self.l.in_flight.sort_by(|a, b| a.name.cmp(&b.name));
        let flying = in_flight + starting;
        self.set_phase(
            RolloutPhase::Progressing,
            format!(
                "group {name}: {flying} of at most {cap} Regions upgrading, {} waiting",
                pending.len() - starting
            ),
            None,
        );
    }

    /// Every region group is done: the control silo follows.
    fn control_step(&mut self) {
        let target = self.l.target_version.clone();
        if self.s.control_running == Some(target.as_str()) {
            self.l.completion_time = Some(self.s.now.clone());
            self.set_phase(
                RolloutPhase::Complete,
                format!("every Region and the control silo run {target}"),
                Some(Event::Complete { target }),
            );
        } else {
            self.set_phase(
                RolloutPhase::UpgradingControl,
                format!("every region group is done; the control silo is moving to {target}"),
                None,
            );
        }
    }

    /// Send Regions back to the previous version: failed ones at once, then the moved ones
    /// of the last group that still has some, at most its `maxConcurrency` at a time.
    fn roll_back(&mut self, entering: bool) {
        let now = self.s.now.clone();
        // Failed Regions go back at once when the rollback starts: they do not serve the
        // target anyway.
        if entering {
            for f in &self.l.failed {
                self.l.reverting.push(RegionStep {
                    name: f.name.clone(),
                    started: now.clone(),
                });
            }
        }
        let places = places(&self.l);
        let moved = |n: &&str| matches!(places.get(n), Some(Place::Upgraded | Place::InFlight));
        let last = (0..self.members.len())
            .rev()
            .find(|&k| self.members[k].iter().any(moved));
        if let Some(k) = last {
            let cap = self.s.strategy.groups[k].concurrency(self.members[k].len());
            let slots = cap.saturating_sub(self.l.reverting.len());
            let sending: Vec<String> = self.members[k]
                .iter()
                .filter(|n| moved(n))
                .take(slots)
                .map(|n| (*n).to_owned())
                .collect();
            drop(places);
            for n in sending {
                self.l.upgraded.retain(|r| *r != n);
                self.l.in_flight.retain(|r| r.name != n);
                self.l.reverting.push(RegionStep {
                    name: n,
                    started: now.clone(),
                });
            }
        }
        self.l.reverting.sort_by(|a, b| a.name.cmp(&b.name));
        let previous = self.l.previous_version.clone().unwrap_or_default();
        if self.l.reverting.is_empty() && self.l.upgraded.is_empty() && self.l.in_flight.is_empty()
        {
            self.set_phase(
                RolloutPhase::RolledBack,
                format!("every moved Region runs {previous} again; change spec.version to roll out a fix"),
                Some(Event::RolledBack),
            );
        } else {
            let n = self.l.reverting.len();
            self.l.phase = RolloutPhase::RollingBack;
            self.l.message = format!("rolling back to {previous}: {n} Regions moving back");
        }
    }

    fn count(&mut self) {
        let places = places(&self.l);
        let mut groups = Vec::with_capacity(self.members.len());
        for (k, members) in self.members.iter().enumerate() {
            let group = &self.s.strategy.groups[k];
            let mut g = GroupStatus {
                name: group.name.clone(),
                total: i32::try_from(members.len()).unwrap_or(i32::MAX),
                approved: group
                    .manual
                    .then(|| self.s.strategy.approved(group, &self.l.target_version)),
                ..Default::default()
            };
            for n in members {
                let counter = match places.get(n) {
                    Some(Place::Upgraded) => &mut g.done,
                    Some(Place::Failed) => &mut g.failed,
                    _ if self.unreachable.contains(*n) => &mut g.unreachable,
                    _ if self.soaking.contains(*n) => &mut g.soaking,
                    Some(Place::InFlight) => &mut g.upgrading,
                    None => &mut g.pending,
                };
                *counter += 1;
            }
            groups.push(g);
        }
        drop(places);
        // Compare with the last ledger: a group whose Regions are now all done or failed.
        let before = self
            .s
            .ledger
            .filter(|l| l.target_version == self.l.target_version);
        for g in &groups {
            let was_finished = before
                .and_then(|l| l.groups.iter().find(|o| o.name == g.name))
                .is_some_and(|o| o.done + o.failed == o.total);
            if g.total > 0 && g.done + g.failed == g.total && !was_finished {
                self.events.push(Event::GroupFinished {
                    group: g.name.clone(),
                });
            }
        }
        self.l.groups = groups;
        self.l.done = i32::try_from(self.l.upgraded.len()).unwrap_or(i32::MAX);
        self.l.total = i32::try_from(self.group_of.len()).unwrap_or(i32::MAX);
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
            fresh(s.version, previous, &s.now)
        }
        None => fresh(s.version, s.control_running.map(str::to_owned), &s.now),
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
