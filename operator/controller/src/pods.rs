//! Pod problems: why a silo's pod cannot run (image missing, crash loop, unschedulable), as the
//! kubelet and the scheduler report it, so that status names the cause instead of "waiting".
//!
//! ```text
//!   watch Pods (label managed-by=silo-operator) ─► pod_problem (pure) ─► index by (namespace, workload)
//!                                                     └─ problem appeared/changed/cleared ─► owner's queue
//! ```
//!
//! Only pods with a problem are kept, so the index stays small at any fleet size.
//!
//! A Region in a customer-provided cluster is not watched: each of its reconciles lists the
//! pods of its namespace there ([`list`]) into an index of its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use kube::api::{Api, ListParams};
use kube::core::ObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::labels;
use crate::stores::{Routes, child_config};

/// Container waiting reasons that mean the pod will not become ready by itself.
const WAITING_PROBLEMS: [&str; 8] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Why one pod cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub pod: String,
    /// The kubelet's or scheduler's reason, e.g. `ErrImageNeverPull`.
    pub reason: String,
    pub message: String,
}

/// The problem of `pod`, if the kubelet or scheduler reports one.
pub fn pod_problem(pod: &Pod) -> Option<Problem> {
    let status = pod.status.as_ref()?;
    for container in containers_of(status) {
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        if WAITING_PROBLEMS.contains(&reason) {
            return Some(Problem {
                pod: pod.name_any(),
                reason: reason.to_owned(),
                message: format!(
                    "container {}: {}",
                    container.name,
                    waiting.message.as_deref().unwrap_or(reason)
                ),
            });
        }
    }
    // A pod that ran to its end and failed (a migration Job's): the container's exit and its
    // termination message (the end of its log, see `terminationMessagePolicy`).
    if status.phase.as_deref() == Some("Failed") {
        for container in containers_of(status) {
            let Some(ended) = container.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
                continue;
            };
            if ended.exit_code != 0 {
                let said = ended.message.as_deref().unwrap_or_default().trim();
                return Some(Problem {
                    pod: pod.name_any(),
                    reason: ended.reason.clone().unwrap_or_else(|| "Error".to_owned()),
                    message: format!(
                        "container {} exited with {}: {}",
                        container.name,
                        ended.exit_code,
                        last_chars(said, 600)
                    ),
                });
            }
        }
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| Problem {
            pod: pod.name_any(),
            reason: c
                .reason
                .clone()
                .unwrap_or_else(|| "Unschedulable".to_owned()),
            message: c.message.clone().unwrap_or_default(),
        })
}

/// Init containers, then containers.
fn containers_of(status: &PodStatus) -> impl Iterator<Item = &ContainerStatus> {
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
}

/// The last `n` characters of `text` (where a log's cause usually is).
fn last_chars(text: &str, n: usize) -> &str {
    let count = text.chars().count();
    if count <= n {
        return text;
    }
    let start = text
        .char_indices()
        .nth(count - n)
        .map(|(i, _)| i)
        .unwrap_or_default();
    &text[start..]
}

/// (namespace, workload) -> pod name -> problem.
type Index = HashMap<(String, String), BTreeMap<String, Problem>>;

/// Problems of the operator's pods, by namespace and workload (= Deployment name).
#[derive(Clone, Debug, Default)]
pub struct PodProblems {
    index: Arc<Mutex<Index>>,
}

fn workload_key(meta: &ObjectMeta) -> Option<(String, String)> {
    let workload = meta.labels.as_ref()?.get(labels::NAME)?;
    Some((meta.namespace.clone()?, workload.clone()))
}

impl PodProblems {
    fn lock(&self) -> MutexGuard<'_, Index> {
        // Entries are replaced whole; a panic elsewhere cannot leave one half-written.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The first problem of a pod of Deployment `name` in `namespace`.
    pub fn of(&self, namespace: &str, name: &str) -> Option<Problem> {
        let index = self.lock();
        let pods = index.get(&(namespace.to_owned(), name.to_owned()))?;
        pods.values().next().cloned()
    }

    /// Record `pod` as it is now (`None`: deleted); true when its problem changed.
    pub fn update(&self, pod: &Pod, deleted: bool) -> bool {
        let Some(key) = workload_key(&pod.metadata) else {
            return false;
        };
        let problem = if deleted { None } else { pod_problem(pod) };
        let name = pod.name_any();
        let mut index = self.lock();
        let pods = index.entry(key.clone()).or_default();
        let changed = match problem {
            Some(p) => pods.insert(name, p.clone()) != Some(p),
            None => pods.remove(&name).is_some(),
        };
        if pods.is_empty() {
            index.remove(&key);
        }
        changed
    }

    /// Replace the whole index with `fresh`, built from a (re-)list of every pod.
    fn replace(&self, fresh: PodProblems) {
        let rebuilt = std::mem::take(&mut *fresh.lock());
        *self.lock() = rebuilt;
    }
}

/// The problems of the operator's pods in `namespace`, listed once (for a Region in a
/// customer-provided cluster, through that cluster's client).
pub async fn list(client: &Client, namespace: &str) -> Result<PodProblems, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().labels(&labels::managed_selector());
    let problems = PodProblems::default();
    for pod in api.list(&params).await?.items {
        problems.update(&pod, false);
    }
    Ok(problems)
}

/// Watch the operator's pods, keep `problems` current and queue the owner (by its label) of
/// a pod whose problem appeared, changed or cleared. Nothing of a pod is kept but its problem:
/// a re-list builds a fresh index pod by pod (not a buffer of every listed Pod, which at a
/// thousand Regions is the largest thing the operator would ever hold).
pub async fn watch(client: Client, problems: PodProblems, mut routes: Routes) {
    let api: Api<Pod> = Api::all(client);
    let config = child_config();
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut listing = PodProblems::default();
    // Metadata of the listed pods with a problem: their owners are told once the list is done.
    let mut owners: Vec<ObjectMeta> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(pod)) => {
                if problems.update(&pod, false) {
                    routes.route_labels(&pod.metadata).await;
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                if problems.update(&pod, true) {
                    routes.route_labels(&pod.metadata).await;
                }
            }
            Ok(watcher::Event::Init) => {
                listing = PodProblems::default();
                owners.clear();
            }
            Ok(watcher::Event::InitApply(pod)) => {
                if listing.update(&pod, false) {
                    owners.push(routing_meta(&pod.metadata));
                }
            }
            Ok(watcher::Event::InitDone) => {
                problems.replace(std::mem::take(&mut listing));
                routes.synced.listed("Pod");
                // Owners of pods with problems learn about them; the rest are unaffected.
                for meta in std::mem::take(&mut owners) {
                    routes.route_labels(&meta).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying with backoff"),
        }
    }
}

/// What routing a pod to its owner reads: namespace and labels.
fn routing_meta(meta: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        namespace: meta.namespace.clone(),
        labels: meta.labels.clone(),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus,
    };

    fn pod(name: &str, waiting: Option<&str>, unschedulable: bool) -> Pod {
        let container = ContainerStatus {
            name: "web".into(),
            state: Some(ContainerState {
                waiting: waiting.map(|reason| ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message: Some(format!("{reason} detail")),
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("region-us".into()),
                labels: Some(BTreeMap::from([(labels::NAME.into(), "web".into())])),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                container_statuses: Some(vec![container]),
                conditions: unschedulable.then(|| {
                    vec![PodCondition {
                        type_: "PodScheduled".into(),
                        status: "False".into(),
                        reason: Some("Unschedulable".into()),
                        message: Some("0/1 nodes are available".into()),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn reports_image_and_crash_problems_but_not_normal_start() {
        let missing = pod_problem(&pod("a", Some("ErrImageNeverPull"), false)).unwrap();
        assert_eq!(missing.reason, "ErrImageNeverPull");
        assert!(missing.message.contains("container web"), "{missing:?}");
        assert_eq!(
            pod_problem(&pod("b", Some("CrashLoopBackOff"), false)).map(|p| p.reason),
            Some("CrashLoopBackOff".to_owned())
        );
        assert_eq!(
            pod_problem(&pod("c", Some("ContainerCreating"), false)),
            None
        );
        assert_eq!(pod_problem(&pod("d", None, false)), None);
        assert_eq!(
            pod_problem(&pod("e", None, true)).map(|p| p.reason),
            Some("Unschedulable".to_owned())
        );
    }

    #[test]
    fn a_failed_pod_names_the_exit_and_the_end_of_its_log() {
        use k8s_openapi::api::core::v1::ContainerStateTerminated;
        let mut failed = pod("migrate-1", None, false);
        let status = failed.status.as_mut().unwrap();
        status.container_statuses.as_mut().unwrap()[0].state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 1,
                reason: Some("Error".into()),
                message: Some(format!(
                    "{}migrate failed: password authentication failed for user \"silo\"\n",
                    "x".repeat(2000)
                )),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        });
        // Not yet failed for good (a restarting container): no problem from its exit.
        assert_eq!(pod_problem(&failed), None);
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let problem = pod_problem(&failed).unwrap();
        assert_eq!(problem.reason, "Error");
        assert!(
            problem
                .message
                .ends_with("password authentication failed for user \"silo\""),
            "{problem:?}"
        );
        assert!(problem.message.starts_with("container web exited with 1: "));
        assert!(problem.message.len() < 700);
    }

    #[test]
    fn index_tracks_problems_and_reports_changes_only() {
        let problems = PodProblems::default();
        let broken = pod("web-1", Some("ImagePullBackOff"), false);
        assert!(problems.update(&broken, false));
        assert!(
            !problems.update(&broken, false),
            "same problem again is no change"
        );
        assert_eq!(
            problems.of("region-us", "web").map(|p| p.pod),
            Some("web-1".to_owned())
        );
        assert!(problems.of("region-us", "relay").is_none());
        assert!(
            problems.update(&pod("web-1", None, false), false),
            "cleared"
        );
        assert!(problems.of("region-us", "web").is_none());
        assert!(!problems.update(&pod("web-2", None, false), false));
        let listed = PodProblems::default();
        assert!(listed.update(&pod("web-3", Some("CrashLoopBackOff"), false), false));
        problems.replace(listed);
        assert_eq!(
            problems.of("region-us", "web").map(|p| p.reason),
            Some("CrashLoopBackOff".to_owned())
        );
        assert!(problems.update(&pod("web-3", None, false), true), "deleted");
        assert!(problems.of("region-us", "web").is_none());
    }
}
