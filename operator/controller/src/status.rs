//! Status: conditions from reconcile outcomes, workload readiness from the Deployment store,
//! status writes only when something changed, and Events on `Ready` transitions.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::labels;
use crate::pods::PodProblems;
use crate::records::{DeploymentRecord, StatefulSetRecord};

/// A condition as the reconciler decided it, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl Verdict {
    pub fn new(type_: &'static str, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            ok,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// Turn verdicts into conditions, keeping `lastTransitionTime` of conditions whose status
/// did not change.
pub fn conditions(
    verdicts: &[Verdict],
    previous: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    verdicts
        .iter()
        .map(|v| {
            let status = if v.ok { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c.type_ == v.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: v.type_.to_owned(),
                status: status.to_owned(),
                reason: v.reason.clone(),
                message: v.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// Why the workloads are not all available: a condition reason and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// `Progressing`, or the reason a pod cannot run (`ErrImageNeverPull`, `CrashLoopBackOff`...).
    pub reason: String,
    pub message: String,
}

/// Whether every desired Deployment is Available at the desired spec; otherwise which not,
/// and why, when one of their pods cannot run.
///
/// The message names the Deployments (and the problems of their pods) only: it changes when
/// one of them becomes available or a pod's problem changes, not on every replica count, so a
/// rollout costs few status writes. Details go to the log.
pub fn deployments_ready<'a>(
    desired: impl Iterator<Item = &'a Deployment>,
    store: &Store<DeploymentRecord>,
    problems: &PodProblems,
) -> Result<(), Waiting> {
    let mut waiting = Vec::new();
    let mut reason = None;
    for want in desired {
        let name = want.name_any();
        let ns = want.namespace().unwrap_or_default();
        let want_hash = want.annotations().get(labels::SPEC_HASH);
        let why = match store.get(&ObjectRef::new(&name).within(&ns)) {
            None => Err("not created yet".to_owned()),
            Some(have) if have.meta.spec_hash.as_ref() != want_hash => {
                Err("update not yet observed".to_owned())
            }
            Some(have) => deployment_available(&have),
        };
        if let Err(why) = why {
            tracing::debug!(namespace = %ns, deployment = %name, %why, "deployment not ready");
            match problems.of(&ns, &name) {
                Some(problem) => {
                    reason.get_or_insert(problem.reason.clone());
                    waiting.push(format!(
                        "{name} (pod {}: {}: {})",
                        problem.pod,
                        problem.reason,
                        truncate(&problem.message, 300)
                    ));
                }
                None => waiting.push(name),
            }
        }
    }
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(Waiting {
            reason: reason.unwrap_or_else(|| silo_api::conditions::reason::PROGRESSING.to_owned()),
            message: format!(
                "waiting for Deployments to become available: {}",
                waiting.join(", ")
            ),
        })
    }
}

/// Available at its latest generation with every replica updated.
pub fn deployment_available(d: &DeploymentRecord) -> Result<(), String> {
    let Some(status) = d.state.status.as_ref() else {
        return Err("no status yet".to_owned());
    };
    if status.observed_generation < d.meta.generation {
        return Err("rollout not observed yet".to_owned());
    }
    let want = d.state.want;
    let updated = status.updated;
    let available = status.available;
    // Pods of every revision: while old ones remain, `available` may count only old pods (a
    // new pod that cannot start leaves the old one serving), so the rollout is not done.
    let total = status.replicas;
    if updated < want || available < want || total > updated {
        return Err(format!(
            "{available}/{want} available, {updated}/{want} updated, {} old",
            total.saturating_sub(updated)
        ));
    }
    if !d.state.available_condition && want > 0 {
        return Err("Available condition not True".to_owned());
    }
    Ok(())
}

/// A store's StatefulSet has its one pod ready at the latest generation and revision.
pub fn stateful_set_ready(s: &StatefulSetRecord) -> Result<(), String> {
    let Some(status) = s.state.status.as_ref() else {
        return Err("no status yet".to_owned());
    };
    if status.observed_generation < s.meta.generation {
        return Err("update not observed yet".to_owned());
    }
    let want = s.state.want;
    let ready = status.ready;
    let updated = status.updated;
    if ready < want || updated < want || !s.state.revision_done {
        return Err(format!("{ready}/{want} ready, {updated}/{want} updated"));
    }
    Ok(())
}

/// The `Ready` status of a condition list (`None` when absent).
pub fn ready_status(conditions: &[Condition]) -> Option<bool> {
    conditions
        .iter()
        .find(|c| c.type_ == silo_api::conditions::READY)
        .map(|c| c.status == "True")
}

/// Whether a change of `Ready` is worth an Event: a flip, or a first verdict other than
/// "still progressing" (a new object rolling out is expected, not a warning).
pub fn is_transition(before: Option<bool>, ready: &Verdict) -> bool {
    match before {
        Some(was) => was != ready.ok,
        None => ready.ok || ready.reason != silo_api::conditions::reason::PROGRESSING,
    }
}

/// Publish an Event when `Ready` flipped, or first appeared with a verdict worth reporting.
pub async fn publish_transition<K>(
    recorder: &Recorder,
    obj: &K,
    before: Option<bool>,
    ready: &Verdict,
) where
    K: Resource<DynamicType = ()>,
{
    if !is_transition(before, ready) {
        return;
    }
    let event = Event {
        type_: if ready.ok {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: ready.reason.clone(),
        note: Some(truncate(&ready.message, 1000)),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing event failed");
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};

    fn deployment(generation: i64, observed: i64, available: i32) -> DeploymentRecord {
        DeploymentRecord::from(Deployment {
            metadata: kube::core::ObjectMeta {
                generation: Some(generation),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                replicas: Some(available),
                updated_replicas: Some(available),
                available_replicas: Some(available),
                conditions: Some(vec![DeploymentCondition {
                    type_: "Available".into(),
                    status: if available > 0 { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn a_store_is_ready_with_its_pod_ready_at_the_latest_revision() {
        use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
        let sts = |ready: i32, current: &str| StatefulSet {
            metadata: kube::core::ObjectMeta {
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(1),
                ..Default::default()
            }),
            status: Some(StatefulSetStatus {
                observed_generation: Some(2),
                replicas: 1,
                ready_replicas: Some(ready),
                updated_replicas: Some(1),
                current_revision: Some(current.into()),
                update_revision: Some("r2".into()),
                ..Default::default()
            }),
        };
        let ready = |s: StatefulSet| stateful_set_ready(&StatefulSetRecord::from(s));
        assert!(ready(sts(1, "r2")).is_ok());
        assert!(ready(sts(0, "r2")).is_err());
        assert!(ready(sts(1, "r1")).is_err());
        assert!(ready(StatefulSet::default()).is_err());
    }

    #[test]
    fn available_only_at_latest_generation() {
        assert!(deployment_available(&deployment(2, 2, 1)).is_ok());
        assert!(deployment_available(&deployment(3, 2, 1)).is_err());
        assert!(deployment_available(&deployment(2, 2, 0)).is_err());
    }

    #[test]
    fn an_old_pod_still_serving_is_no_finished_rollout() {
        // The new pod exists (updated 1) but cannot start; the old one keeps `available` at 1.
        let mut rolling = deployment(2, 2, 1);
        if let Some(status) = rolling.state.status.as_mut() {
            status.replicas = 2;
        }
        let why = deployment_available(&rolling).unwrap_err();
        assert!(why.contains("1 old"), "{why}");
    }

    #[test]
    fn a_new_object_still_progressing_is_no_event() {
        let progressing = Verdict::new("Ready", false, "Progressing", "waiting");
        let failed = Verdict::new("Ready", false, "ApplyFailed", "forbidden");
        let ready = Verdict::new("Ready", true, "Ready", "ok");
        assert!(!is_transition(None, &progressing));
        assert!(is_transition(None, &failed));
        assert!(is_transition(None, &ready));
        assert!(is_transition(Some(false), &ready));
        assert!(is_transition(Some(true), &progressing));
        assert!(!is_transition(Some(false), &progressing));
    }

    #[test]
    fn transition_time_kept_while_status_holds() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let v = Verdict::new("Ready", false, "Progressing", "waiting");
        let first = conditions(std::slice::from_ref(&v), &[], Some(1), t0);
        let again = conditions(std::slice::from_ref(&v), &first, Some(1), t1);
        assert_eq!(again[0].last_transition_time, Time(t0));
        let flipped = conditions(
            &[Verdict::new("Ready", true, "Ready", "ok")],
            &again,
            Some(1),
            t1,
        );
        assert_eq!(flipped[0].last_transition_time, Time(t1));
        assert_eq!(ready_status(&flipped), Some(true));
    }
}
