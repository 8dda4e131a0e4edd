//! The fleet rollout as the reconcilers see it: Regions read into planner views, the planner
//! step for the ControlPlane, each Region's version from the ledger, Events and metrics of
//! the rollout, and the task that re-runs exactly the Regions a ledger write moved.
//!
//! ```text
//!   Region store ─► views ─┐
//!   ControlPlane ──────────┴─► silo_rollout::step ─► ledger (status.rollout) + control version
//!   ControlPlane watch ─► moves task ─► silo_rollout::moved ─► Regions to reconcile
//!   ledger ─► assignment ─► Region reconciler builds that version
//! ```

use std::collections::BTreeMap;

use futures::SinkExt;
use futures::channel::mpsc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use silo_api::conditions::{self, reason};
use silo_api::{ControlPlane, Region, RegionStatus, RolloutStatus};
use silo_rollout::{Assignment, Plan, RegionView, Snapshot, Strategy, StrategyError};

use crate::metrics::Metrics;
use crate::stores::Stores;

/// Ready reasons after which a Region cannot reach its version without a change of it.
const HARD_FAILURES: [&str; 1] = [reason::MIGRATION_FAILED];
/// Ready reason of a Region whose cluster cannot be reached.
pub const CLUSTER_UNREACHABLE: &str = "ClusterUnreachable";

/// The planner's view of every live Region. Suspended Regions are left alone like pinned
/// ones (the operator does not change their objects).
pub fn views(stores: &Stores) -> Vec<RegionView> {
    stores
        .regions
        .state()
        .iter()
        .filter(|r| r.meta().deletion_timestamp.is_none())
        .map(|r| view(r))
        .collect()
}

fn view(region: &Region) -> RegionView {
    let status = region
        .status
        .as_ref()
        .filter(|s| s.observed_generation == region.metadata.generation);
    let ready = region.ready_condition().filter(|_| status.is_some());
    let failure = ready
        .filter(|c| c.status == "False" && HARD_FAILURES.contains(&c.reason.as_str()))
        .map(|c| (c.reason.clone(), c.message.clone()));
    RegionView {
        name: region.name_any(),
        labels: region.labels().clone(),
        category: region.spec.category,
        pinned: region.spec.version.is_some() || region.spec.suspend,
        rollout: status.and_then(|s| s.rollout.clone()),
        failure,
        unreachable: ready.is_some_and(|c| c.reason == CLUSTER_UNREACHABLE),
        reachable_since: reachable_transition(status, "True"),
        unreachable_since: reachable_transition(status, "False"),
    }
}

/// When the Region's `ClusterReachable` condition turned to `status`, if it is so now.
fn reachable_transition(status: Option<&RegionStatus>, status_now: &str) -> Option<Time> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::CLUSTER_REACHABLE && c.status == status_now)
        .map(|c| c.last_transition_time.clone())
}

/// One planner step for `cp`.
pub fn plan(cp: &ControlPlane, stores: &Stores, now: Time) -> Result<Plan, StrategyError> {
    let strategy = Strategy::from_spec(&cp.spec.rollout)?;
    let views = views(stores);
    let status = cp.status.as_ref();
    Ok(silo_rollout::step(&Snapshot {
        now,
        version: &cp.spec.version,
        strategy: &strategy,
        ledger: status.and_then(|s| s.rollout.as_ref()),
        control_running: status.and_then(|s| s.running_version.as_deref()),
        regions: &views,
    }))
}

/// The version the control silo keeps while the strategy is unusable: what the last ledger
/// gave it.
pub fn held_control_version(cp: &ControlPlane) -> String {
    let ledger = cp.status.as_ref().and_then(|s| s.rollout.as_ref());
    match ledger {
        Some(l) if l.phase == silo_api::RolloutPhase::Complete => l.target_version.clone(),
        Some(l) => l
            .previous_version
            .clone()
            .unwrap_or_else(|| l.target_version.clone()),
        None => cp.spec.version.clone(),
    }
}

/// The version `region` is built at: its pin, what the ledger gives it, or (no ledger yet)
/// what it last ran, a new Region the fleet's version.
pub fn assignment(region: &Region, cp: &ControlPlane) -> Assignment {
    if let Some(pin) = &region.spec.version {
        return Assignment {
            version: pin.clone(),
            started: None,
        };
    }
    let ledger = cp.status.as_ref().and_then(|s| s.rollout.as_ref());
    silo_rollout::version_for(ledger, &region.name_any()).unwrap_or_else(|| Assignment {
        version: region
            .status
            .as_ref()
            .and_then(|s| s.desired_version.clone())
            .unwrap_or_else(|| cp.spec.version.clone()),
        started: None,
    })
}

/// Publish the step's Events on the ControlPlane.
pub async fn publish(recorder: &Recorder, cp: &ControlPlane, plan: &Plan) {
    for e in &plan.events {
        let event = Event {
            type_: if e.warning() {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason().to_owned(),
            note: Some(e.to_string().chars().take(1000).collect()),
            action: "Rollout".to_owned(),
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, &cp.object_ref(&())).await {
            tracing::warn!(%error, "publishing rollout event failed");
        }
        tracing::info!(reason = e.reason(), "{e}");
    }
}

/// Regions by rollout state, and the rollout's duration, as gauges.
pub fn record(metrics: &Metrics, ledger: &RolloutStatus) {
    let mut states: BTreeMap<&'static str, i64> = BTreeMap::new();
    for g in &ledger.groups {
        for (state, n) in [
            ("pending", g.pending),
            ("upgrading", g.upgrading),
            ("soaking", g.soaking),
            ("done", g.done),
            ("failed", g.failed),
            ("unreachable", g.unreachable),
        ] {
            *states.entry(state).or_default() += i64::from(n);
        }
    }
    let count = |list: &[String]| i64::try_from(list.len()).unwrap_or(i64::MAX);
    states.insert("pinned", count(&ledger.pinned));
    states.insert("deferred", count(&ledger.deferred));
    for (state, n) in states {
        metrics.rollout_regions(state, n);
    }
    if let Some(start) = &ledger.start_time {
        let end = ledger
            .completion_time
            .as_ref()
            .map_or_else(k8s_openapi::jiff::Timestamp::now, |t| t.0);
        let seconds = (end.as_millisecond() - start.0.as_millisecond()) as f64 / 1000.0;
        metrics.rollout_seconds.set(seconds.max(0.0));
    }
}

/// Re-run the Regions each ControlPlane ledger write moved (all of them when it is a new
/// target or the unlisted Regions' version changed). Fed by the ControlPlane watch after the
/// store holds the new object, so the Regions read the ledger that moved them.
pub async fn moves_task(
    mut ledgers: mpsc::UnboundedReceiver<Option<RolloutStatus>>,
    mut regions: mpsc::Sender<ObjectRef<Region>>,
    mut regions_all: mpsc::Sender<()>,
) {
    use futures::StreamExt;
    let mut last: Option<RolloutStatus> = None;
    while let Some(ledger) = ledgers.next().await {
        if ledger == last {
            continue;
        }
        let moved = match &ledger {
            Some(new) => silo_rollout::moved(last.as_ref(), new),
            None => None,
        };
        match moved {
            Some(names) => {
                for name in names {
                    if regions.send(ObjectRef::new(&name)).await.is_err() {
                        return;
                    }
                }
            }
            // A full channel already holds a pending "reconcile all".
            None => {
                let _ = regions_all.try_send(());
            }
        }
        last = ledger;
    }
}

#[cfg(test)]
mod tests {
    use silo_api::GroupStatus;

    use super::*;

    #[test]
    fn the_gauge_counts_regions_by_state_with_deferred_ones_apart() {
        let metrics = Metrics::register(&mut prometheus_client::registry::Registry::default());
        let group = |name: &str, upgrading, unreachable| GroupStatus {
            name: name.into(),
            total: 5,
            upgrading,
            unreachable,
            ..GroupStatus::default()
        };
        let ledger = RolloutStatus {
            groups: vec![group("canary", 1, 0), group("rest", 2, 2)],
            deferred: vec!["ru-acme".into()],
            pinned: vec!["eu-pinned".into()],
            ..RolloutStatus::default()
        };
        record(&metrics, &ledger);
        let gauge = |state| {
            metrics
                .rollout_regions
                .get_or_create(&crate::metrics::RolloutLabels { state })
                .get()
        };
        assert_eq!(
            [
                gauge("upgrading"),
                gauge("unreachable"),
                gauge("deferred"),
                gauge("pinned")
            ],
            [3, 2, 1, 1]
        );
    }

    fn region(conditions: serde_json::Value) -> Region {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "silo.dev/v1alpha1",
            "kind": "Region",
            "metadata": {"name": "acme", "generation": 2},
            "spec": {"snowflakeId": 1},
            "status": {"observedGeneration": 2, "conditions": conditions},
        }))
        .expect("Region fixture")
    }

    fn condition(type_: &str, status: &str, reason: &str, at: &str) -> serde_json::Value {
        serde_json::json!({
            "type": type_, "status": status, "reason": reason, "message": "",
            "lastTransitionTime": at,
        })
    }

    #[test]
    fn a_remote_region_is_unreachable_or_reachable_since_its_cluster_last_changed() {
        let down = view(&region(serde_json::json!([
            condition(
                "Ready",
                "False",
                CLUSTER_UNREACHABLE,
                "2026-01-01T00:00:00Z"
            ),
            condition(
                "ClusterReachable",
                "False",
                "Refused",
                "2026-01-01T00:02:00Z"
            ),
        ])));
        assert!(down.unreachable);
        assert_eq!(down.reachable_since, None);
        let since = down.unreachable_since.map(|t| t.0.to_string());
        assert_eq!(since.as_deref(), Some("2026-01-01T00:02:00Z"));
        let back = view(&region(serde_json::json!([
            condition("Ready", "False", "Progressing", "2026-01-01T00:00:00Z"),
            condition(
                "ClusterReachable",
                "True",
                "Reachable",
                "2026-01-01T00:05:00Z"
            ),
        ])));
        assert!(!back.unreachable);
        assert_eq!(back.unreachable_since, None);
        let since = back.reachable_since.map(|t| t.0.to_string());
        assert_eq!(since.as_deref(), Some("2026-01-01T00:05:00Z"));
        let local = view(&region(serde_json::json!([condition(
            "Ready",
            "True",
            "Available",
            "2026-01-01T00:00:00Z"
        )])));
        assert_eq!((local.unreachable, local.reachable_since), (false, None));
    }
}
