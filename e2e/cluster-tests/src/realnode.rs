//! The real node of `e2e/cluster/up.sh --real-node`: pods that really run.
//!
//! ```text
//! SILO_REAL_NODE, SILO_BUSYBOX_IMAGE (the cluster's env file) --> RealNode
//!     --> Deployment "echo" (busybox `nc` server) pinned to the node by nodeSelector + toleration
//!     --> Ready on the node, with an image ID and a containerd container ID
//!     --> kubectl logs / exec / port-forward through the API server and the kubelet
//!     --> client pods: Service DNS name (CoreDNS + kube-proxy), kubernetes.default.svc
//! ```
//!
//! The kwok nodes stay where every other pod goes: the node's taint keeps pods without the
//! toleration off it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Node, Pod, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    Service, ServicePort, ServiceSpec, TCPSocketAction, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{ListParams, LogParams, ObjectMeta, PostParams};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::wait::{self, Check};
use crate::{Error, StepContext};

/// Label and taint key of the real node; pods that run there select and tolerate it.
pub const NODE_KEY: &str = "silo.dev/node";
pub const NODE_VALUE: &str = "real";

/// Starting a container from an imported image takes seconds; the deadline allows a busy machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a kubectl command may take.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

/// What the echo server answers every connection with.
pub const GREETING: &str = "hello from silo";
/// Printed by the echo container when it starts (read back with `kubectl logs`).
pub const STARTED: &str = "echo server started";
pub const ECHO_PORT: i32 = 8080;

const APP_LABEL: &str = "app.kubernetes.io/name";

/// The real node and the test image imported into its containerd.
#[derive(Clone, Debug)]
pub struct RealNode {
    pub name: String,
    pub image: String,
}

impl RealNode {
    /// From `SILO_REAL_NODE` and `SILO_BUSYBOX_IMAGE`; an error says how to start the cluster.
    pub fn from_env() -> Result<Self, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let hint = "start the cluster with `e2e/cluster/up.sh --real-node`, import the test image \
                    with `e2e/cluster/load-images.sh \"$SILO_BUSYBOX_IMAGE_ARCHIVE\"` and source \
                    <state dir>/clusters/silo/env (state dir: $SILO_STATE_DIR or ~/.local/state/silo)";
        let name = var("SILO_REAL_NODE").ok_or_else(|| {
            Error::Unexpected(format!(
                "SILO_REAL_NODE is not set, so there is no real node to test: {hint}"
            ))
        })?;
        let image = var("SILO_BUSYBOX_IMAGE").ok_or_else(|| {
            Error::Unexpected(format!(
                "SILO_BUSYBOX_IMAGE is not set (the busybox test image on the real node): {hint}"
            ))
        })?;
        Ok(Self { name, image })
    }

    /// Check the node is a real kubelet on containerd, Ready, labelled and tainted as expected.
    pub async fn check_node(&self, client: &kube::Client) -> Result<String, Error> {
        let node = Api::<Node>::all(client.clone())
            .get(&self.name)
            .await
            .step(format!("get node {}", self.name))?;
        let labels = node.metadata.labels.clone().unwrap_or_default();
        if labels.get(NODE_KEY).map(String::as_str) != Some(NODE_VALUE) {
            return Err(Error::Unexpected(format!(
                "node {} lacks the label {NODE_KEY}={NODE_VALUE}: {labels:?}",
                self.name
            )));
        }
        let tainted = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| {
                t.iter().any(|t| {
                    t.key == NODE_KEY
                        && t.value.as_deref() == Some(NODE_VALUE)
                        && t.effect == "NoSchedule"
                })
            });
        if !tainted {
            return Err(Error::Unexpected(format!(
                "node {} lacks the taint {NODE_KEY}={NODE_VALUE}:NoSchedule",
                self.name
            )));
        }
        let status = node.status.unwrap_or_default();
        let ready = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let runtime = status
            .node_info
            .map(|i| i.container_runtime_version)
            .unwrap_or_default();
        if !ready || !runtime.starts_with("containerd://") {
            return Err(Error::Unexpected(format!(
                "node {} is not a Ready kubelet on containerd (Ready={ready}, runtime {runtime:?})",
                self.name
            )));
        }
        Ok(runtime)
    }

    fn tolerations(&self) -> Vec<Toleration> {
        vec![Toleration {
            key: Some(NODE_KEY.to_owned()),
            operator: Some("Equal".to_owned()),
            value: Some(NODE_VALUE.to_owned()),
            effect: Some("NoSchedule".to_owned()),
            ..Toleration::default()
        }]
    }

    fn node_selector() -> BTreeMap<String, String> {
        [(NODE_KEY.to_owned(), NODE_VALUE.to_owned())].into()
    }

    fn container(&self, name: &str, script: &str) -> Container {
        Container {
            name: name.to_owned(),
            image: Some(self.image.clone()),
            // Imported into containerd; nothing is ever pulled.
            image_pull_policy: Some("Never".to_owned()),
            command: Some(vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]),
            resources: Some(ResourceRequirements {
                requests: Some(
                    [
                        ("cpu".to_owned(), Quantity("10m".to_owned())),
                        ("memory".to_owned(), Quantity("8Mi".to_owned())),
                    ]
                    .into(),
                ),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        }
    }

    /// A Deployment of one busybox `nc` server on the real node answering [`GREETING`] on
    /// [`ECHO_PORT`], Ready once the port accepts connections.
    pub fn echo_deployment(&self, name: &str) -> Deployment {
        let labels: BTreeMap<String, String> = [(APP_LABEL.to_owned(), name.to_owned())].into();
        let script = format!("echo {STARTED}; exec nc -ll -p {ECHO_PORT} -e echo {GREETING}");
        let mut container = self.container("echo", &script);
        container.ports = Some(vec![ContainerPort {
            container_port: ECHO_PORT,
            name: Some("echo".to_owned()),
            ..ContainerPort::default()
        }]);
        container.readiness_probe = Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(ECHO_PORT),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(1),
            ..Probe::default()
        });
        Deployment {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![container],
                        node_selector: Some(Self::node_selector()),
                        tolerations: Some(self.tolerations()),
                        // nc runs as PID 1 and ignores SIGTERM; do not wait for it long.
                        termination_grace_period_seconds: Some(1),
                        ..PodSpec::default()
                    }),
                },
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }
    }

    /// A pod on the real node that runs `script` once (restartPolicy Never).
    pub fn job_pod(&self, name: &str, script: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![self.container("run", script)],
                node_selector: Some(Self::node_selector()),
                tolerations: Some(self.tolerations()),
                restart_policy: Some("Never".to_owned()),
                termination_grace_period_seconds: Some(1),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }
}

/// A ClusterIP Service `name` on port 80 in front of the echo Deployment of the same name.
pub fn echo_service(name: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some([(APP_LABEL.to_owned(), name.to_owned())].into()),
            ports: Some(vec![ServicePort {
                port: 80,
                target_port: Some(IntOrString::Int(ECHO_PORT)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// What a running pod on the real node looked like.
#[derive(Debug)]
pub struct RunningPod {
    pub name: String,
    pub ip: String,
    pub image_id: String,
    pub container_id: String,
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waiting reason of the first container that is not running (ErrImageNeverPull, ...).
fn waiting_reason(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.iter().find_map(|c| c.state.as_ref()?.waiting.clone()))
        .map(|w| {
            format!(
                "{} {}",
                w.reason.unwrap_or_default(),
                w.message.unwrap_or_default()
            )
        })
        .unwrap_or_default()
}

/// The scheduler's reason a pod has no node yet (its `PodScheduled=False` message, e.g. "0/5
/// nodes are available: 1 node(s) had untolerated taint ..."), or a note that the scheduler
/// has not looked at it; empty once the pod is bound.
pub fn unscheduled_reason(pod: &Pod) -> String {
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some()
    {
        return String::new();
    }
    let scheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    match scheduled {
        Some(c) if c.status == "False" => format!(
            "unschedulable: {} {}",
            c.reason.as_deref().unwrap_or_default(),
            c.message.as_deref().unwrap_or_default()
        ),
        Some(_) => String::new(),
        None => "no PodScheduled condition: the scheduler has not tried this pod (is it running?)"
            .to_owned(),
    }
}

/// Wait until exactly one live pod with `app.kubernetes.io/name=<app>` is Ready.
pub async fn wait_ready_pod(client: &kube::Client, ns: &str, app: &str) -> Result<Pod, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = ListParams::default().labels(&format!("{APP_LABEL}={app}"));
    let pod = wait::until(
        &format!("one Ready pod of deployment {ns}/{app}"),
        START_TIMEOUT,
        || async {
            let live: Vec<Pod> = pods
                .list(&selector)
                .await?
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            Ok(match live.as_slice() {
                [pod] if pod_ready(pod) => Check::Done(pod.clone()),
                [pod] => Check::Pending(format!(
                    "pod {} phase {:?} on {:?} {}{}",
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    pod.status.as_ref().and_then(|s| s.phase.clone()),
                    pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                    waiting_reason(pod),
                    unscheduled_reason(pod)
                )),
                other => Check::Pending(format!("{} live pods", other.len())),
            })
        },
    )
    .await?;
    Ok(pod)
}

/// The facts that show a pod really runs on `node`: bound there, an image ID and a containerd
/// container ID (kwok reports neither), a pod IP outside kwok's fake range.
pub fn running_on(pod: &Pod, node: &str) -> Result<RunningPod, Error> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let bound = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    if bound.as_deref() != Some(node) {
        return Err(Error::Unexpected(format!(
            "pod {name} runs on {bound:?}, not on the real node {node}"
        )));
    }
    let status = pod.status.clone().unwrap_or_default();
    let container = status
        .container_statuses
        .unwrap_or_default()
        .into_iter()
        .next()
        .ok_or_else(|| Error::Unexpected(format!("pod {name} reports no container status")))?;
    let running = container.state.as_ref().and_then(|s| s.running.as_ref());
    if running.is_none() || container.image_id.is_empty() {
        return Err(Error::Unexpected(format!(
            "pod {name}: container not running with an image ID: {container:?}"
        )));
    }
    let container_id = container.container_id.unwrap_or_default();
    if !container_id.starts_with("containerd://") {
        return Err(Error::Unexpected(format!(
            "pod {name}: container ID {container_id:?} is not a containerd one"
        )));
    }
    let ip = status.pod_ip.unwrap_or_default();
    if ip.is_empty() || ip.starts_with("10.244.") {
        return Err(Error::Unexpected(format!(
            "pod {name} has IP {ip:?}, not one of the real node's pod network"
        )));
    }
    Ok(RunningPod {
        name,
        ip,
        image_id: container.image_id,
        container_id,
    })
}

/// Run a pod once on the real node and return its output once it Succeeded.
pub async fn run_to_completion(
    client: &kube::Client,
    node: &RealNode,
    ns: &str,
    name: &str,
    script: &str,
) -> Result<String, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.create(&PostParams::default(), &node.job_pod(name, script))
        .await
        .step(format!("create pod {ns}/{name}"))?;
    let phase = wait::until(
        &format!("pod {ns}/{name} to finish"),
        START_TIMEOUT,
        || async {
            let pod = pods.get(name).await?;
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            Ok(match phase.as_str() {
                "Succeeded" | "Failed" => Check::Done(phase),
                _ => Check::Pending(format!("phase {phase:?} {}", waiting_reason(&pod))),
            })
        },
    )
    .await?;
    let output = pods
        .logs(name, &LogParams::default())
        .await
        .step(format!("read the logs of pod {ns}/{name}"))?;
    if phase != "Succeeded" {
        return Err(Error::Unexpected(format!(
            "pod {ns}/{name} failed; its output: {output:?}"
        )));
    }
    Ok(output)
}

/// Wait until the scheduler reports `name` unschedulable and return its message.
pub async fn wait_unschedulable(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<String, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let message = wait::until(
        &format!("the scheduler to report pod {ns}/{name} unschedulable"),
        START_TIMEOUT,
        || async {
            let pod = pods.get(name).await?;
            if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
                return Ok(Check::Done(Err(node)));
            }
            let condition = pod
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "PodScheduled");
            Ok(match condition {
                Some(c) if c.status == "False" && c.reason.as_deref() == Some("Unschedulable") => {
                    Check::Done(Ok(c.message.unwrap_or_default()))
                }
                other => Check::Pending(format!("PodScheduled condition {other:?}")),
            })
        },
    )
    .await?;
    message.map_err(|node| {
        Error::Unexpected(format!(
            "pod {ns}/{name} without the toleration was bound to node {node}"
        ))
    })
}

/// The cluster's built kubectl (`SILO_KUBECTL`), else `kubectl` on PATH, against `kubeconfig`.
pub struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn new(kubeconfig: PathBuf) -> Self {
        let program = std::env::var_os("SILO_KUBECTL")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("kubectl"), PathBuf::from);
        Self {
            program,
            kubeconfig,
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Run kubectl with `args`; its stdout, or an error with its stderr.
    pub async fn run(&self, args: &[&str]) -> Result<String, Error> {
        let what = format!("kubectl {}", args.join(" "));
        let output = tokio::time::timeout(KUBECTL_TIMEOUT, self.command(args).output())
            .await
            .map_err(|_| Error::Unexpected(format!("{what} did not finish in {KUBECTL_TIMEOUT:?}")))?
            .map_err(|e| {
                Error::Unexpected(format!(
                    "cannot run {} ({e}); set SILO_KUBECTL or put the cluster's kubectl on PATH (source the cluster's env file)",
                    self.program.display()
                ))
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            return Err(Error::Unexpected(format!(
                "{what} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(stdout)
    }

    /// `kubectl port-forward pod/<pod> :<port>`, connect to the local end and read until the
    /// server closes the connection.
    pub async fn port_forward_read(&self, ns: &str, pod: &str, port: i32) -> Result<String, Error> {
        let target = format!("pod/{pod}");
        let remote = format!(":{port}");
        let mut child = self
            .command(&["-n", ns, "port-forward", &target, &remote])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Unexpected(format!("cannot run kubectl port-forward: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Unexpected("kubectl port-forward has no stdout".to_owned()))?;
        let mut lines = BufReader::new(stdout).lines();
        // "Forwarding from 127.0.0.1:PORT -> 8080"
        let local = tokio::time::timeout(KUBECTL_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                    return rest.split_whitespace().next().map(str::to_owned);
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let Some(local) = local else {
            let _ = child.start_kill();
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr).await;
            }
            return Err(Error::Unexpected(format!(
                "kubectl port-forward {target} printed no local port: {}",
                stderr.trim()
            )));
        };
        let result = tokio::time::timeout(KUBECTL_TIMEOUT, async {
            let mut stream = tokio::net::TcpStream::connect(format!("127.0.0.1:{local}")).await?;
            let mut received = String::new();
            stream.read_to_string(&mut received).await?;
            Ok::<_, std::io::Error>(received)
        })
        .await;
        let _ = child.start_kill();
        let _ = child.wait().await;
        match result {
            Ok(Ok(received)) => Ok(received),
            Ok(Err(e)) => Err(Error::Unexpected(format!(
                "reading through kubectl port-forward 127.0.0.1:{local} failed: {e}"
            ))),
            Err(_) => Err(Error::Unexpected(format!(
                "nothing arrived through kubectl port-forward 127.0.0.1:{local} in {KUBECTL_TIMEOUT:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> RealNode {
        RealNode {
            name: "real-node-0".to_owned(),
            image: "silo.local/e2e/busybox:1".to_owned(),
        }
    }

    #[test]
    fn echo_pods_select_and_tolerate_the_real_node_and_never_pull() {
        let d = node().echo_deployment("echo");
        let spec = d.spec.expect("spec").template.spec.expect("pod spec");
        assert_eq!(
            spec.node_selector
                .expect("selector")
                .get(NODE_KEY)
                .map(String::as_str),
            Some(NODE_VALUE)
        );
        let t = &spec.tolerations.expect("tolerations")[0];
        assert_eq!(t.key.as_deref(), Some(NODE_KEY));
        assert_eq!(t.effect.as_deref(), Some("NoSchedule"));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("Never")
        );
    }

    #[test]
    fn an_unscheduled_pod_names_the_schedulers_reason() {
        let pod = |json: serde_json::Value| -> Pod { serde_json::from_value(json).expect("pod") };
        let refused = pod(serde_json::json!({
            "spec": {"containers": []},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled",
                "status": "False", "reason": "Unschedulable",
                "message": "0/5 nodes are available: 1 node(s) had untolerated taint"}]}
        }));
        assert_eq!(
            unscheduled_reason(&refused),
            "unschedulable: Unschedulable 0/5 nodes are available: 1 node(s) had untolerated taint"
        );
        let untried = pod(serde_json::json!({"spec": {"containers": []}}));
        assert!(unscheduled_reason(&untried).contains("has not tried"));
        let bound = pod(serde_json::json!({"spec": {"containers": [], "nodeName": "n"}}));
        assert_eq!(unscheduled_reason(&bound), "");
    }

    #[test]
    fn the_service_targets_the_echo_port() {
        let s = echo_service("echo").spec.expect("spec");
        let port = &s.ports.expect("ports")[0];
        assert_eq!(port.target_port, Some(IntOrString::Int(ECHO_PORT)));
        assert_eq!(
            s.selector
                .expect("selector")
                .get(APP_LABEL)
                .map(String::as_str),
            Some("echo")
        );
    }
}
