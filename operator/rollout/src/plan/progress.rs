//! What a step does once the Regions in flight are observed: start the next Regions of the
//! first unfinished group within its concurrency (or say why none starts), move the control
//! silo after the last group, or send Regions back on a rollback.

use std::collections::HashSet;

use silo_api::{RegionStep, RolloutPhase};

use super::ledger::{Place, finished, places};
use super::{Event, Step};

/// At most this many Region names in a message; the rest are counted.
const NAMES_SHOWN: usize = 10;

/// `a, b, c` or `a, b, ... and 3 more`.
fn names(list: &[String]) -> String {
    let shown = list[..list.len().min(NAMES_SHOWN)].join(", ");
    match list.len().saturating_sub(NAMES_SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

impl Step<'_> {
    /// `; deferred ...: names` when the ledger defers Regions, else nothing.
    fn deferred_note(&self) -> String {
        if self.l.deferred.is_empty() {
            return String::new();
        }
        format!(
            "; deferred (cluster unreachable for longer than progressDeadline, no slot held, they upgrade when it answers): {}",
            names(&self.l.deferred)
        )
    }

    /// Start Regions of the first unfinished group, within its concurrency.
    pub(super) fn progress(&mut self) {
        let places = places(&self.l);
        let Some(k) = (0..self.members.len()).find(|&k| !finished(&self.members[k], &places))
        else {
            return self.control_step();
        };
        let group = &self.s.strategy.groups[k];
        let name = group.name.clone();
        let started = self.members[k].iter().any(|n| places.contains_key(n));
        if self.s.strategy.paused {
            let n = places.values().filter(|p| **p == Place::InFlight).count();
            let note = self.deferred_note();
            return self.set_phase(
                RolloutPhase::Paused,
                format!(
                    "paused by spec.rollout.paused in group {name}; {n} Regions in flight finish{note}"
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
        // Deferred Regions hold no slot.
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
        let waiting = pending.len() - starting;
        let message = if flying == 0 && waiting == 0 {
            // Unfinished with nothing to start nor in flight: only deferred Regions are left
            // and none of the group upgraded.
            let target = &self.l.target_version;
            let deferred: Vec<String> = self
                .l
                .deferred
                .iter()
                .filter(|n| self.group_of.get(n.as_str()) == Some(&k))
                .cloned()
                .collect();
            format!(
                "group {name} waits: no Region of it is upgraded at {target} yet and the rest are deferred, their cluster unreachable for longer than progressDeadline: {}; the group goes on once one of them upgrades (the version must prove itself in the group first)",
                names(&deferred)
            )
        } else {
            format!(
                "group {name}: {flying} of at most {cap} Regions upgrading, {waiting} waiting{}",
                self.deferred_note()
            )
        };
        self.set_phase(RolloutPhase::Progressing, message, None);
    }

    /// Every region group is done: the control silo follows, once no Region is deferred
    /// (control never runs ahead of a region).
    fn control_step(&mut self) {
        let target = self.l.target_version.clone();
        if !self.l.deferred.is_empty() {
            let previous = self.l.previous_version.clone().unwrap_or_default();
            return self.set_phase(
                RolloutPhase::Progressing,
                format!(
                    "every region group is done; the control silo stays at {previous} until the deferred Regions are upgraded (their cluster unreachable for longer than progressDeadline; they upgrade when it answers): {}",
                    names(&self.l.deferred)
                ),
                None,
            );
        }
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
    pub(super) fn roll_back(&mut self, entering: bool) {
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
        let moved = |n: &&str| {
            matches!(
                places.get(n),
                Some(Place::Upgraded | Place::InFlight | Place::Deferred)
            )
        };
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
                self.l.deferred.retain(|r| *r != n);
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
}
