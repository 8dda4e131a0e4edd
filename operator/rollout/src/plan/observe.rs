//! Observation of the Regions the ledger moved: where each one in flight stands (done,
//! soaking, upgrading, unreachable and perhaps deferred, failed), and which Regions sent back
//! serve the previous version again. Every time comes from status: the move's start in the
//! ledger, the Region's own rollout status and its `ClusterReachable` transition.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use silo_api::{FailedRegion, RegionStep};

use super::{Event, RegionView, Step};
use crate::time;

/// Where one Region in flight stands.
enum Observed {
    Done,
    Soaking {
        until: i64,
    },
    Upgrading {
        deadline: i64,
    },
    /// Its cluster cannot be reached; from `defer_at` on it is deferred.
    Unreachable {
        defer_at: i64,
    },
    Failed {
        reason: String,
        message: String,
    },
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
    if let Some(v) = view.filter(|v| v.unreachable) {
        // Deferred once unreachable for progressDeadline, counted from the move, or from
        // when its cluster stopped answering if that came later.
        let down = v.unreachable_since.as_ref().map_or(i64::MIN, time::millis);
        let defer_at = time::add(time::millis(&step.started).max(down), deadline);
        return Observed::Unreachable { defer_at };
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

impl Step<'_> {
    /// Move Regions in flight that are done or failed; defer those whose cluster has not
    /// answered for longer than `progressDeadline`.
    pub(super) fn observe_in_flight(&mut self, live: &HashMap<&str, &RegionView>) {
        let target = self.l.target_version.clone();
        let deadline = self.s.strategy.progress_deadline;
        let now = time::millis(&self.s.now);
        let mut still = Vec::new();
        for step in std::mem::take(&mut self.l.in_flight) {
            let group = self.group_of.get(step.name.as_str()).copied().unwrap_or(0);
            let soak = self.s.strategy.groups[group].min_success_time;
            let view = live.get(step.name.as_str()).copied();
            let deferred = self.l.deferred.contains(&step.name);
            match observe(view, &step, &target, soak, deadline, &self.s.now) {
                Observed::Done => {
                    self.l.deferred.retain(|n| *n != step.name);
                    self.l.upgraded.push(step.name);
                }
                Observed::Soaking { until } => {
                    self.wake_at(until);
                    self.soaking.insert(step.name.clone());
                    still.push(step);
                }
                Observed::Upgrading { deadline } => {
                    self.wake_at(deadline);
                    still.push(step);
                }
                Observed::Unreachable { defer_at } => {
                    if !deferred && now >= defer_at {
                        self.events.push(Event::RegionDeferred {
                            region: step.name.clone(),
                            group: self.s.strategy.groups[group].name.clone(),
                            deadline,
                        });
                        self.l.deferred.push(step.name.clone());
                    } else if !deferred {
                        self.wake_at(defer_at);
                    }
                    self.unreachable.insert(step.name.clone());
                    still.push(step);
                }
                Observed::Failed { reason, message } => {
                    self.l.deferred.retain(|n| *n != step.name);
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
        self.l.deferred.sort();
    }

    /// Regions sent back are dropped from `reverting` once they serve the previous version.
    pub(super) fn observe_reverting(&mut self, live: &HashMap<&str, &RegionView>, previous: &str) {
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
}
