//! NetworkPolicies are enforced on the real node of `e2e/cluster/up.sh --real-node` (kube-router's
//! firewall controller turns them into iptables rules and ipsets there).
//!
//! ```text
//! namespace "server": Deployment + Service "echo" (busybox nc), pod "neighbour"
//! namespace "client": pod "client"
//!     --> `kubectl exec <pod> -- nc <echo pod IP | Service IP>`: answered, or refused/timed out
//!     --> polled until the expected outcome, since kube-router applies a change asynchronously
//! ```
//!
//! Only the real node's pods (10.89.0.0/24) and Services are ever connected to. They need
//! `SILO_KUBECONFIG` (or `KUBECONFIG`), `SILO_REAL_NODE`, `SILO_BUSYBOX_IMAGE` and a kubectl
//! (`SILO_KUBECTL` or on PATH), as `tests/real_node.rs`; `e2e/test.sh` sets them.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use silo_e2e_cluster::cluster::{self, Which};
use silo_e2e_cluster::namespace::with_namespace;
use silo_e2e_cluster::realnode::{self, Kubectl, RealNode};
use silo_e2e_cluster::wait::{self, Check};
use silo_e2e_cluster::{Error, StepContext};
use tokio::io::AsyncReadExt;

/// How long kube-router may take to apply a policy change (it usually takes about a second).
const POLICY_TIMEOUT: Duration = Duration::from_secs(90);
/// Pause between two connection attempts while waiting for an outcome.
const PROBE_INTERVAL: Duration = Duration::from_millis(300);
/// How long one `nc` waits for the connection and the answer.
const NC_TIMEOUT_S: u32 = 3;

/// Where a probe connects: a pod IP or a Service ClusterIP, and its port.
#[derive(Clone, Debug)]
struct Target {
    what: String,
    ip: String,
    port: i32,
}

/// The outcome the test waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The echo server's greeting arrived.
    Answered,
    /// `nc` failed: refused (kube-router rejects) or timed out.
    Blocked,
}

/// Is `ip` in the real node's pod network or the Service range? Nothing else is connected to.
fn on_the_node(ip: &str) -> bool {
    let octets: Vec<u8> = ip.split('.').filter_map(|o| o.parse().ok()).collect();
    match octets.as_slice() {
        [10, 89, 0, _] => true,
        [10, b, _, _] => (96..112).contains(b),
        _ => false,
    }
}

/// Connect once from `pod` to `target` with `kubectl exec ... nc`.
async fn probe(kubectl: &Kubectl, ns: &str, pod: &str, target: &Target) -> Result<Outcome, String> {
    assert!(
        on_the_node(&target.ip),
        "{} ({}) is neither a real-node pod nor a Service address",
        target.what,
        target.ip
    );
    let script = format!(
        "nc -w {NC_TIMEOUT_S} {} {} </dev/null 2>&1; echo \"exit=$?\"",
        target.ip, target.port
    );
    let output = kubectl
        .run(&["-n", ns, "exec", pod, "--", "sh", "-c", &script])
        .await
        .map_err(|e| e.to_string())?;
    if output.contains(realnode::GREETING) {
        Ok(Outcome::Answered)
    } else if output.contains("exit=") && !output.contains("exit=0") {
        Ok(Outcome::Blocked)
    } else {
        Err(format!("unexpected output {output:?}"))
    }
}

/// Probe from `ns/pod` to `target` until the outcome is `want`, within [`POLICY_TIMEOUT`].
async fn expect(
    kubectl: &Kubectl,
    ns: &str,
    pod: &str,
    target: &Target,
    want: Outcome,
) -> Result<(), Error> {
    let start = Instant::now();
    let deadline = start + POLICY_TIMEOUT;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = match probe(kubectl, ns, pod, target).await {
            Ok(got) if got == want => {
                eprintln!(
                    "{ns}/{pod} -> {} ({}:{}): {want:?} after {attempts} attempt(s), {:.1}s",
                    target.what,
                    target.ip,
                    target.port,
                    start.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Ok(got) => format!("{got:?}"),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(Error::Unexpected(format!(
                "{ns}/{pod} -> {} ({}:{}): expected {want:?} within {POLICY_TIMEOUT:?}, \
                 last of {attempts} attempts: {last}",
                target.what, target.ip, target.port
            )));
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// A connection from this machine (the node's own address) to a pod gets the greeting whatever
/// the policies say: kube-router accepts traffic whose source is local to the node, which is what
/// keeps the kubelet's probes working.
async fn host_reaches(target: &Target) -> Result<(), Error> {
    assert!(
        on_the_node(&target.ip),
        "{} is not a real-node address",
        target.ip
    );
    let address = format!("{}:{}", target.ip, target.port);
    let received = tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = tokio::net::TcpStream::connect(&address).await?;
        let mut received = String::new();
        stream.read_to_string(&mut received).await?;
        Ok::<_, std::io::Error>(received)
    })
    .await
    .map_err(|_| Error::Unexpected(format!("no answer from {address} within 10s")))?
    .map_err(|e| Error::Unexpected(format!("connecting from this machine to {address}: {e}")))?;
    if received.trim() != realnode::GREETING {
        return Err(Error::Unexpected(format!(
            "{address} answered {received:?} to a connection from this machine"
        )));
    }
    Ok(())
}

/// A pod on the real node that only sleeps: the source of the probes (`kubectl exec`).
async fn start_prober(
    client: &kube::Client,
    node: &RealNode,
    ns: &str,
    name: &str,
) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.create(
        &PostParams::default(),
        &node.job_pod(name, "exec sleep 3600"),
    )
    .await
    .step(format!("create pod {ns}/{name}"))?;
    wait::until(
        &format!("pod {ns}/{name} to run"),
        realnode::START_TIMEOUT,
        || async {
            let pod = pods.get(name).await?;
            let status = pod.status.unwrap_or_default();
            let running = status.phase.as_deref() == Some("Running")
                && status.pod_ip.is_some()
                && status
                    .container_statuses
                    .unwrap_or_default()
                    .iter()
                    .all(|c| c.ready);
            Ok(if running {
                Check::Done(())
            } else {
                Check::Pending(format!("phase {:?}", status.phase))
            })
        },
    )
    .await?;
    Ok(())
}

/// The echo server (Deployment + Service "echo") in `ns`: its pod and its Service as targets.
async fn start_echo(
    client: &kube::Client,
    node: &RealNode,
    ns: &str,
) -> Result<(Target, Target), Error> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &node.echo_deployment("echo"))
        .await
        .step(format!("create deployment {ns}/echo"))?;
    let service = Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &realnode::echo_service("echo"))
        .await
        .step(format!("create service {ns}/echo"))?;
    let pod = realnode::wait_ready_pod(client, ns, "echo").await?;
    let running = realnode::running_on(&pod, &node.name)?;
    let cluster_ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .filter(|ip| !ip.is_empty() && ip != "None")
        .ok_or_else(|| Error::Unexpected(format!("service {ns}/echo has no ClusterIP")))?;
    let pod_target = Target {
        what: format!("pod {}", running.name),
        ip: running.ip,
        port: realnode::ECHO_PORT,
    };
    let service_target = Target {
        what: format!("service {ns}/echo"),
        ip: cluster_ip,
        port: 80,
    };
    Ok((pod_target, service_target))
}

fn policy(value: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(value).expect("a valid NetworkPolicy")
}

/// Every pod of the namespace: no ingress allowed.
fn deny_ingress() -> NetworkPolicy {
    policy(serde_json::json!({
        "metadata": {"name": "deny-ingress"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}
    }))
}

/// Every pod of the namespace: ingress from the pods of namespace `from`.
fn allow_ingress_from(from: &str) -> NetworkPolicy {
    policy(serde_json::json!({
        "metadata": {"name": "allow-from-client-namespace"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": from}
            }}]}]
        }
    }))
}

/// Every pod of the namespace: no egress allowed.
fn deny_egress() -> NetworkPolicy {
    policy(serde_json::json!({
        "metadata": {"name": "deny-egress"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"]}
    }))
}

/// Every pod of the namespace: egress to the pods of namespace `to` on TCP `port`.
fn allow_egress_to(to: &str, port: i32) -> NetworkPolicy {
    policy(serde_json::json!({
        "metadata": {"name": "allow-to-server-namespace"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{
                "to": [{"namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": to}
                }}],
                "ports": [{"protocol": "TCP", "port": port}]
            }]
        }
    }))
}

async fn apply(api: &Api<NetworkPolicy>, ns: &str, p: &NetworkPolicy) -> Result<(), Error> {
    let name = p.metadata.name.clone().unwrap_or_default();
    api.create(&PostParams::default(), p)
        .await
        .step(format!("create networkpolicy {ns}/{name}"))?;
    eprintln!("applied networkpolicy {ns}/{name}");
    Ok(())
}

async fn remove(api: &Api<NetworkPolicy>, ns: &str, name: &str) -> Result<(), Error> {
    api.delete(name, &DeleteParams::default())
        .await
        .step(format!("delete networkpolicy {ns}/{name}"))?;
    eprintln!("deleted networkpolicy {ns}/{name}");
    Ok(())
}

struct Setup {
    node: RealNode,
    client: kube::Client,
    kubectl: Kubectl,
}

async fn setup() -> Result<Setup, Error> {
    let node = RealNode::from_env()?;
    let primary = cluster::connect(Which::Primary).await?;
    node.check_node(&primary.client).await?;
    Ok(Setup {
        node,
        client: primary.client.clone(),
        kubectl: Kubectl::new(primary.kubeconfig.clone()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_policies_are_enforced_on_the_real_node() -> Result<(), Error> {
    let Setup {
        node,
        client,
        kubectl,
    } = setup().await?;
    let outer = client.clone();
    with_namespace(&outer, "netpol-in-srv", |srv| async move {
        let inner = client.clone();
        with_namespace(&inner, "netpol-in-cli", |cli| async move {
            let (echo, service) = start_echo(&client, &node, &srv).await?;
            start_prober(&client, &node, &cli, "client").await?;
            start_prober(&client, &node, &srv, "neighbour").await?;
            let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &srv);
            use Outcome::{Answered, Blocked};

            // No policy: everything reaches the server, directly and through its Service.
            expect(&kubectl, &cli, "client", &echo, Answered).await?;
            expect(&kubectl, &cli, "client", &service, Answered).await?;
            expect(&kubectl, &srv, "neighbour", &echo, Answered).await?;

            // Default deny for ingress in the server's namespace: nobody gets in, not even a pod
            // of the same namespace; the node itself still does (kubelet probes).
            apply(&policies, &srv, &deny_ingress()).await?;
            expect(&kubectl, &cli, "client", &echo, Blocked).await?;
            expect(&kubectl, &cli, "client", &service, Blocked).await?;
            expect(&kubectl, &srv, "neighbour", &echo, Blocked).await?;
            host_reaches(&echo).await?;

            // Ingress from the client's namespace: the client gets in again, the neighbour not.
            apply(&policies, &srv, &allow_ingress_from(&cli)).await?;
            expect(&kubectl, &cli, "client", &echo, Answered).await?;
            expect(&kubectl, &cli, "client", &service, Answered).await?;
            expect(&kubectl, &srv, "neighbour", &echo, Blocked).await?;

            // Without the policies everything connects again.
            remove(&policies, &srv, "allow-from-client-namespace").await?;
            remove(&policies, &srv, "deny-ingress").await?;
            expect(&kubectl, &srv, "neighbour", &echo, Answered).await?;
            expect(&kubectl, &cli, "client", &echo, Answered).await?;
            Ok(())
        })
        .await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_policies_are_enforced_on_the_real_node() -> Result<(), Error> {
    let Setup {
        node,
        client,
        kubectl,
    } = setup().await?;
    let outer = client.clone();
    with_namespace(&outer, "netpol-eg-srv", |srv| async move {
        let inner = client.clone();
        with_namespace(&inner, "netpol-eg-cli", |cli| async move {
            let (echo, service) = start_echo(&client, &node, &srv).await?;
            start_prober(&client, &node, &cli, "client").await?;
            start_prober(&client, &node, &srv, "neighbour").await?;
            let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &cli);
            use Outcome::{Answered, Blocked};

            expect(&kubectl, &cli, "client", &echo, Answered).await?;

            // Default deny for egress in the client's namespace: the client reaches nothing,
            // while the server's neighbour, in another namespace, still does.
            apply(&policies, &cli, &deny_egress()).await?;
            expect(&kubectl, &cli, "client", &echo, Blocked).await?;
            expect(&kubectl, &cli, "client", &service, Blocked).await?;
            expect(&kubectl, &srv, "neighbour", &echo, Answered).await?;

            // Egress to the server's namespace on the echo port: allowed again, also through
            // the Service (kube-proxy's DNAT happens before the filter sees the packet).
            apply(&policies, &cli, &allow_egress_to(&srv, realnode::ECHO_PORT)).await?;
            expect(&kubectl, &cli, "client", &echo, Answered).await?;
            expect(&kubectl, &cli, "client", &service, Answered).await?;

            // Without the policies the client connects as before.
            remove(&policies, &cli, "deny-egress").await?;
            remove(&policies, &cli, "allow-to-server-namespace").await?;
            expect(&kubectl, &cli, "client", &echo, Answered).await?;
            expect(&kubectl, &cli, "client", &service, Answered).await?;
            Ok(())
        })
        .await
    })
    .await
}

#[cfg(test)]
mod unit {
    use super::on_the_node;

    #[test]
    fn only_real_node_pods_and_services_are_targets() {
        assert!(on_the_node("10.89.0.7"));
        assert!(on_the_node("10.96.0.10"));
        assert!(on_the_node("10.111.255.1"));
        assert!(!on_the_node("10.244.0.5"));
        assert!(!on_the_node("10.240.0.1"));
        assert!(!on_the_node("10.89.1.1"));
        assert!(!on_the_node("93.184.216.34"));
    }
}
