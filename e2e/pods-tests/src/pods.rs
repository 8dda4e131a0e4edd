//! Pods that really run: Ready, on a node that runs containers, with an image id.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use silo_e2e_cluster::realnode::unscheduled_reason;

use crate::settings::REAL_NODE_LABEL;
use crate::wait::{self, Check};

/// Wait until a pod matching `selector` in `namespace` runs Ready on a real node; its name.
pub async fn wait_ready_on_real_node(
    client: &Client,
    namespace: &str,
    selector: &str,
    what: &str,
) -> Result<String, wait::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let nodes: Api<Node> = Api::all(client.clone());
    let params = ListParams::default().labels(selector);
    wait::until(what, Duration::from_secs(240), || async {
        let list = pods.list(&params).await?;
        for pod in &list.items {
            if let Check::Done(()) = ready_on_real_node(&nodes, pod).await? {
                return Ok(Check::Done(pod.name_any()));
            }
        }
        Ok(Check::Pending(describe(&list.items)))
    })
    .await
}

/// Done when `pod` is Ready, every container runs with a resolved image id, and its node is a
/// real one (labelled `silo.dev/node=real`, not a kwok node).
pub async fn ready_on_real_node(nodes: &Api<Node>, pod: &Pod) -> Result<Check<()>, kube::Error> {
    let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return Ok(Check::Pending(format!("{} not scheduled", pod.name_any())));
    };
    let status = pod.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let containers = status.container_statuses.unwrap_or_default();
    let running = !containers.is_empty()
        && containers.iter().all(|c| {
            c.ready
                && !c.image_id.is_empty()
                && c.state.as_ref().is_some_and(|s| s.running.is_some())
        });
    if !(ready && running) {
        return Ok(Check::Pending(describe(std::slice::from_ref(pod))));
    }
    let node = nodes.get(&node_name).await?;
    let real = node.labels().get(REAL_NODE_LABEL.0).map(String::as_str) == Some(REAL_NODE_LABEL.1)
        && !node.annotations().contains_key("kwok.x-k8s.io/node");
    if real {
        Ok(Check::Done(()))
    } else {
        Ok(Check::Pending(format!(
            "{} runs on {node_name}, which is not a real node",
            pod.name_any()
        )))
    }
}

/// One line per pod: phase, readiness and container states (for timeout messages).
pub fn describe(pods: &[Pod]) -> String {
    if pods.is_empty() {
        return "no pods".to_owned();
    }
    pods.iter()
        .map(|pod| {
            let status = pod.status.clone().unwrap_or_default();
            let containers: Vec<String> = status
                .container_statuses
                .iter()
                .flatten()
                .map(|c| {
                    let state = c.state.clone().unwrap_or_default();
                    let state = match (state.waiting, state.running, state.terminated) {
                        (Some(w), _, _) => format!(
                            "waiting {} {}",
                            w.reason.unwrap_or_default(),
                            w.message.unwrap_or_default()
                        ),
                        (_, Some(_), _) => "running".to_owned(),
                        (_, _, Some(t)) => format!("terminated exit {}", t.exit_code),
                        _ => "unknown".to_owned(),
                    };
                    format!(
                        "{}: {state}, ready={}, restarts={}",
                        c.name, c.ready, c.restart_count
                    )
                })
                .collect();
            format!(
                "{} on {} phase {} [{}]{}",
                pod.name_any(),
                pod.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_else(|| "-".into()),
                status.phase.unwrap_or_default(),
                containers.join("; "),
                match unscheduled_reason(pod) {
                    r if r.is_empty() => r,
                    r => format!(" {r}"),
                }
            )
        })
        .collect::<Vec<_>>()
        .join(" | ")
}
