//! The ledger's lists read back and written: which list names each Region, whether a group
//! is finished, the Regions dropped from the plan, and the per-group counts.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use silo_api::{GroupStatus, RolloutStatus};

use super::{Event, RegionView, Step};

/// The ledger of a rollout that starts now.
pub(super) fn fresh(target: &str, previous: Option<String>, now: &Time) -> RolloutStatus {
    RolloutStatus {
        target_version: target.to_owned(),
        previous_version: previous.filter(|p| p != target),
        start_time: Some(now.clone()),
        ..Default::default()
    }
}

/// Which list of the ledger names a Region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    /// In flight, holding a slot of its group.
    InFlight,
    /// In flight and listed in `deferred`: no slot held.
    Deferred,
    Failed,
    Upgraded,
}

pub(super) type Places<'l> = HashMap<&'l str, Place>;

/// Every Region the ledger moved, by name (a name in two lists counts as the later one here:
/// upgraded over failed over in flight).
pub(super) fn places(l: &RolloutStatus) -> Places<'_> {
    let in_flight = l.in_flight.iter().map(|r| {
        let place = if l.deferred.contains(&r.name) {
            Place::Deferred
        } else {
            Place::InFlight
        };
        (r.name.as_str(), place)
    });
    let failed = l.failed.iter().map(|r| (r.name.as_str(), Place::Failed));
    let upgraded = l.upgraded.iter().map(|r| (r.as_str(), Place::Upgraded));
    in_flight.chain(failed).chain(upgraded).collect()
}

/// Whether a group of these `members` is finished: each of them upgraded, failed or
/// deferred, and, when some are deferred, at least one upgraded (the version proved itself
/// in the group before the group goes on without them).
pub(super) fn finished(members: &[&str], places: &Places<'_>) -> bool {
    let mut deferred = false;
    let mut upgraded = false;
    for n in members {
        match places.get(n) {
            Some(Place::Upgraded) => upgraded = true,
            Some(Place::Failed) => {}
            Some(Place::Deferred) => deferred = true,
            Some(Place::InFlight) | None => return false,
        }
    }
    upgraded || !deferred
}

impl Step<'_> {
    /// Drop Regions that are gone or pinned from every list.
    pub(super) fn forget(&mut self, live: &HashMap<&str, &RegionView>) {
        let keep = |n: &str| live.get(n).is_some_and(|v| !v.pinned);
        self.l.in_flight.retain(|r| keep(&r.name));
        self.l.upgraded.retain(|r| keep(r));
        self.l.failed.retain(|r| keep(&r.name));
        self.l.reverting.retain(|r| keep(&r.name));
        self.l.deferred.retain(|r| keep(r));
    }

    /// Per-group counts and totals; a `GroupFinished` Event for each group that finished
    /// since the last ledger.
    pub(super) fn count(&mut self) {
        // Only Regions still in flight can be deferred (not those sent back or dropped).
        let in_flight = &self.l.in_flight;
        self.l
            .deferred
            .retain(|n| in_flight.iter().any(|r| r.name == *n));
        self.l.deferred.sort();
        self.l.deferred.dedup();
        let now = places(&self.l);
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
                let counter = match now.get(n) {
                    Some(Place::Upgraded) => &mut g.done,
                    Some(Place::Failed) => &mut g.failed,
                    _ if self.unreachable.contains(*n) => &mut g.unreachable,
                    _ if self.soaking.contains(*n) => &mut g.soaking,
                    Some(Place::InFlight | Place::Deferred) => &mut g.upgrading,
                    None => &mut g.pending,
                };
                *counter += 1;
            }
            groups.push(g);
        }
        // Compare with the last ledger: a group that is finished now and was not then.
        let before = self
            .s
            .ledger
            .filter(|l| l.target_version == self.l.target_version)
            .map(places);
        for (members, g) in self.members.iter().zip(&groups) {
            let was_finished = before.as_ref().is_some_and(|b| finished(members, b));
            if !members.is_empty() && finished(members, &now) && !was_finished {
                self.events.push(Event::GroupFinished {
                    group: g.name.clone(),
                });
            }
        }
        drop(now);
        self.l.groups = groups;
        self.l.done = i32::try_from(self.l.upgraded.len()).unwrap_or(i32::MAX);
        self.l.total = i32::try_from(self.group_of.len()).unwrap_or(i32::MAX);
    }
}
