//! From the ledger to each Region: the version it is built at, its own rollout status, and
//! which Regions a ledger change moves.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use silo_api::{RegionRollout, RolloutPhase, RolloutStatus};

/// The version a Region is built at and, while the rollout moves it, since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub version: String,
    pub started: Option<Time>,
}

/// The version of Regions the ledger does not list.
fn unlisted(l: &RolloutStatus) -> &str {
    match (&l.previous_version, l.phase) {
        (None, _) | (_, RolloutPhase::Complete) => &l.target_version,
        (Some(previous), _) => previous,
    }
}

fn rolling_back(l: &RolloutStatus) -> bool {
    matches!(
        l.phase,
        RolloutPhase::RollingBack | RolloutPhase::RolledBack
    )
}

/// Every Region the ledger lists, with its assignment.
fn listed(l: &RolloutStatus) -> HashMap<&str, Assignment> {
    let target = |started: Option<&Time>| Assignment {
        version: l.target_version.clone(),
        started: started.cloned(),
    };
    let mut out = HashMap::new();
    if unlisted(l) == l.target_version {
        return out;
    }
    let previous = l.previous_version.clone().unwrap_or_default();
    for name in &l.upgraded {
        out.insert(name.as_str(), target(None));
    }
    if !rolling_back(l) {
        for f in &l.failed {
            out.insert(f.name.as_str(), target(None));
        }
    }
    for r in &l.in_flight {
        out.insert(r.name.as_str(), target(Some(&r.started)));
    }
    for r in &l.reverting {
        out.insert(
            r.name.as_str(),
            Assignment {
                version: previous.clone(),
                started: Some(r.started.clone()),
            },
        );
    }
    out
}

/// The assignment of Region `name` under `ledger`; `None` without a ledger (the caller keeps
/// what the Region last ran, or the fleet's version for a new Region).
pub fn version_for(ledger: Option<&RolloutStatus>, name: &str) -> Option<Assignment> {
    let l = ledger?;
    let at = |version: &str, started: Option<&Time>| Assignment {
        version: version.to_owned(),
        started: started.cloned(),
    };
    let unlisted = unlisted(l);
    if unlisted == l.target_version {
        return Some(at(unlisted, None));
    }
    // The same precedence as `listed`: reverting over in flight over upgraded and failed.
    if let Some(r) = l.reverting.iter().find(|r| r.name == name) {
        let previous = l.previous_version.as_deref().unwrap_or_default();
        return Some(at(previous, Some(&r.started)));
    }
    if let Some(r) = l.in_flight.iter().find(|r| r.name == name) {
        return Some(at(&l.target_version, Some(&r.started)));
    }
    let moved = l.upgraded.iter().any(|r| r == name)
        || (!rolling_back(l) && l.failed.iter().any(|f| f.name == name));
    Some(at(if moved { &l.target_version } else { unlisted }, None))
}

/// Regions whose assignment differs between two ledgers: `None` means every Region.
pub fn moved(old: Option<&RolloutStatus>, new: &RolloutStatus) -> Option<Vec<String>> {
    let old = old?;
    if unlisted(old) != unlisted(new) {
        return None;
    }
    let (a, b) = (listed(old), listed(new));
    let mut names: Vec<String> = a
        .iter()
        .filter(|(n, x)| b.get(*n) != Some(x))
        .map(|(n, _)| (*n).to_owned())
        .chain(
            b.keys()
                .filter(|n| !a.contains_key(*n))
                .map(|n| (*n).to_owned()),
        )
        .collect();
    names.sort();
    Some(names)
}

/// A Region's own rollout status after a reconcile at `assignment`; `serving` when every
/// workload runs and serves that version. `available_since` survives only while the version
/// and start stay the same and the Region keeps serving.
pub fn region_rollout(
    previous: Option<&RegionRollout>,
    assignment: &Assignment,
    serving: bool,
    now: &Time,
) -> RegionRollout {
    let same_version = previous.filter(|p| p.version == assignment.version);
    let started = assignment
        .started
        .clone()
        .or_else(|| same_version.and_then(|p| p.started.clone()));
    let kept = same_version
        .filter(|p| p.started == started)
        .and_then(|p| p.available_since.clone());
    RegionRollout {
        version: assignment.version.clone(),
        started,
        available_since: serving.then(|| kept.unwrap_or_else(|| now.clone())),
    }
}

#[cfg(test)]
mod tests {
    use silo_api::{FailedRegion, RegionStep};

    use super::*;
    use crate::time;

    fn ledger(phase: RolloutPhase) -> RolloutStatus {
        RolloutStatus {
            target_version: "2".into(),
            previous_version: Some("1".into()),
            phase,
            upgraded: vec!["a".into()],
            in_flight: vec![RegionStep {
                name: "b".into(),
                started: time::at(1000),
            }],
            failed: vec![FailedRegion {
                name: "c".into(),
                reason: "ProgressDeadlineExceeded".into(),
                message: String::new(),
            }],
            ..Default::default()
        }
    }

    fn version(l: &RolloutStatus, name: &str) -> String {
        version_for(Some(l), name).expect("assignment").version
    }

    #[test]
    fn listed_regions_run_the_target_the_rest_the_previous_version() {
        let l = ledger(RolloutPhase::Progressing);
        assert_eq!(version(&l, "a"), "2");
        assert_eq!(
            version_for(Some(&l), "b").and_then(|a| a.started),
            Some(time::at(1000))
        );
        assert_eq!(
            version(&l, "c"),
            "2",
            "a failed Region stays where it failed"
        );
        assert_eq!(version(&l, "z"), "1");
        assert_eq!(version_for(None, "a"), None);
        let done = RolloutStatus {
            phase: RolloutPhase::Complete,
            ..l.clone()
        };
        assert_eq!(
            version(&done, "z"),
            "2",
            "after the rollout new Regions start at the target"
        );
        let first = RolloutStatus {
            previous_version: None,
            ..l
        };
        assert_eq!(version(&first, "z"), "2");
    }

    #[test]
    fn rolling_back_sends_failed_and_reverting_regions_to_the_previous_version() {
        let mut l = ledger(RolloutPhase::RollingBack);
        l.reverting.push(RegionStep {
            name: "a".into(),
            started: time::at(5000),
        });
        l.upgraded.clear();
        assert_eq!(version(&l, "c"), "1");
        assert_eq!(
            version_for(Some(&l), "a").and_then(|a| a.started),
            Some(time::at(5000))
        );
        assert_eq!(version(&l, "a"), "1");
        assert_eq!(version(&l, "b"), "2");
    }

    #[test]
    fn moved_names_only_regions_whose_assignment_changed() {
        let old = ledger(RolloutPhase::Progressing);
        let mut new = old.clone();
        new.in_flight.clear();
        new.upgraded.push("b".into());
        new.in_flight.push(RegionStep {
            name: "d".into(),
            started: time::at(2000),
        });
        assert_eq!(
            moved(Some(&old), &new),
            Some(vec!["b".to_owned(), "d".to_owned()])
        );
        assert_eq!(moved(Some(&old), &old), Some(vec![]));
        let complete = RolloutStatus {
            phase: RolloutPhase::Complete,
            ..new.clone()
        };
        assert_eq!(
            moved(Some(&new), &complete),
            None,
            "every unlisted Region moves"
        );
        assert_eq!(moved(None, &new), None);
        let back = RolloutStatus {
            phase: RolloutPhase::RollingBack,
            ..old.clone()
        };
        assert_eq!(moved(Some(&old), &back), Some(vec!["c".to_owned()]));
    }

    #[test]
    fn available_since_is_kept_only_while_the_same_move_keeps_serving() {
        let move_at = |ms| Assignment {
            version: "2".into(),
            started: Some(time::at(ms)),
        };
        let first = region_rollout(None, &move_at(1000), false, &time::at(1500));
        assert_eq!(first.available_since, None);
        assert_eq!(first.started, Some(time::at(1000)));
        let up = region_rollout(Some(&first), &move_at(1000), true, &time::at(2000));
        assert_eq!(up.available_since, Some(time::at(2000)));
        let still = region_rollout(Some(&up), &move_at(1000), true, &time::at(9000));
        assert_eq!(still.available_since, Some(time::at(2000)));
        // Listed as upgraded: no start in the ledger any more, the Region's own is kept.
        let done = Assignment {
            version: "2".into(),
            started: None,
        };
        assert_eq!(
            region_rollout(Some(&still), &done, true, &time::at(9500)),
            still
        );
        let down = region_rollout(Some(&still), &move_at(1000), false, &time::at(9600));
        assert_eq!(down.available_since, None);
        // Moved again (a new start): a status from before the move no longer counts.
        let again = region_rollout(Some(&still), &move_at(8000), true, &time::at(9700));
        assert_eq!(again.available_since, Some(time::at(9700)));
    }
}
