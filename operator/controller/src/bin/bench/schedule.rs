//! Where a rollout's time went: each Region's own upgrade under the rollout's load (move to
//! available at the target, from its status), and what an ideal scheduler would have made of
//! exactly those durations.
//!
//! ```text
//!  Regions (status.rollout: started, availableSince) ─► per group, in start order
//!    ─► upgrade under load (p50, p90) ─► ideal: every slot refilled the instant it frees,
//!       groups one after the other ─► rollout / ideal = the operator's scheduling overhead
//!       (slot hand-offs, group hand-offs, the restart, the control silo step)
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use kube::ResourceExt;
use silo_api::Region;
use silo_rollout::Strategy;

/// One Region's upgrade: when it was moved and how long until it served the target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Upgrade {
    pub group: usize,
    /// Milliseconds since the epoch.
    pub started: i64,
    pub took: Duration,
}

/// The split of the rollout's time.
#[derive(Debug, PartialEq)]
pub struct Schedule {
    pub regions: usize,
    pub upgrade_p50: Duration,
    pub upgrade_p90: Duration,
    /// The rollout of the measured upgrades with zero hand-off time.
    pub ideal: Duration,
}

/// The upgrades to `target` recorded in the Regions' statuses (pinned Regions excluded).
pub fn upgrades(regions: &[Region], strategy: &Strategy, target: &str) -> Vec<Upgrade> {
    regions
        .iter()
        .filter(|r| r.spec.version.is_none())
        .filter_map(|r| {
            let own = r.status.as_ref()?.rollout.as_ref()?;
            if own.version != target {
                return None;
            }
            let started = own.started.as_ref()?.0.as_millisecond();
            let available = own.available_since.as_ref()?.0.as_millisecond();
            Some(Upgrade {
                group: strategy.group_of(r.labels(), r.spec.category),
                started,
                took: Duration::from_millis(u64::try_from(available - started).unwrap_or(0)),
            })
        })
        .collect()
}

/// The upgrade time at quantile `q` of `sorted`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// The ideal rollout of `upgrades`: per group, in the order the Regions were started, each
/// takes the first free of the group's `maxConcurrency` slots for its upgrade plus the group's
/// soak; the next group starts when the last Region of this one is done.
pub fn analyse(upgrades: &[Upgrade], strategy: &Strategy) -> Schedule {
    let mut ideal = Duration::ZERO;
    for (k, group) in strategy.groups.iter().enumerate() {
        let mut members: Vec<&Upgrade> = upgrades.iter().filter(|u| u.group == k).collect();
        if members.is_empty() {
            continue;
        }
        members.sort_by_key(|u| u.started);
        let slots = group.concurrency(members.len()).max(1);
        let mut free: BinaryHeap<Reverse<Duration>> =
            std::iter::repeat_n(Reverse(Duration::ZERO), slots).collect();
        let mut end = Duration::ZERO;
        for u in members {
            let Reverse(at) = free.pop().unwrap_or(Reverse(Duration::ZERO));
            let done = at + u.took + group.min_success_time;
            end = end.max(done);
            free.push(Reverse(done));
        }
        ideal += end;
    }
    let mut took: Vec<Duration> = upgrades.iter().map(|u| u.took).collect();
    took.sort();
    Schedule {
        regions: upgrades.len(),
        upgrade_p50: quantile(&took, 0.5),
        upgrade_p90: quantile(&took, 0.9),
        ideal,
    }
}

#[cfg(test)]
mod tests {
    use silo_api::rollout::RolloutSpec;

    use super::*;

    fn strategy(concurrency: u32, soak_s: u64) -> Strategy {
        let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
            "defaultGroup": {"maxConcurrency": concurrency, "minSuccessTime": format!("{soak_s}s")},
        }))
        .expect("spec");
        Strategy::from_spec(&spec).expect("strategy")
    }

    fn up(group: usize, started: i64, secs: u64) -> Upgrade {
        Upgrade {
            group,
            started,
            took: Duration::from_secs(secs),
        }
    }

    #[test]
    fn slots_are_refilled_the_instant_they_free() {
        let s = strategy(2, 10);
        let last = s.groups.len() - 1;
        // Two slots: 2 s and 4 s upgrades free them at 12 s and 14 s; the third (1 s) runs
        // 12..23 s.
        let plan = analyse(&[up(last, 0, 2), up(last, 0, 4), up(last, 5, 1)], &s);
        assert_eq!(plan.ideal, Duration::from_secs(23));
        assert_eq!(plan.regions, 3);
        assert_eq!(plan.upgrade_p50, Duration::from_secs(2));
        assert_eq!(plan.upgrade_p90, Duration::from_secs(4));
    }

    #[test]
    fn groups_run_one_after_the_other() {
        let s = strategy(5, 10);
        assert!(s.groups.len() >= 2, "the default strategy has a last group");
        let plan = analyse(&[up(0, 0, 3), up(1, 20, 1)], &s);
        assert_eq!(plan.ideal, Duration::from_secs(13 + 11));
    }
}
