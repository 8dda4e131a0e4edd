//! Integration tests against the real node of `e2e/cluster/up.sh --real-node`.
//!
//! They need `SILO_KUBECONFIG` (or `KUBECONFIG`), `SILO_REAL_NODE` and `SILO_BUSYBOX_IMAGE` (the
//! cluster's env file sets both, after `e2e/cluster/load-images.sh` imported the image); without
//! them they fail and say how to start the cluster.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{ListParams, PostParams};
use silo_e2e_cluster::cluster::{self, Which};
use silo_e2e_cluster::namespace::with_namespace;
use silo_e2e_cluster::realnode::{self, Kubectl, RealNode};
use silo_e2e_cluster::{Error, StepContext, deployment};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_really_runs_on_the_real_node_with_logs_exec_and_port_forward()
-> Result<(), Error> {
    let node = RealNode::from_env()?;
    let primary = cluster::connect(Which::Primary).await?;
    let runtime = node.check_node(&primary.client).await?;
    let client = primary.client.clone();
    let kubectl = Kubectl::new(primary.kubeconfig.clone());
    with_namespace(&primary.client, "real", |ns| async move {
        Api::<Deployment>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &node.echo_deployment("echo"))
            .await
            .step(format!("create deployment {ns}/echo"))?;
        let pod = realnode::wait_ready_pod(&client, &ns, "echo").await?;
        let running = realnode::running_on(&pod, &node.name)?;
        eprintln!(
            "pod {} on {} ({runtime}): ip {}, image {}, container {}",
            running.name, node.name, running.ip, running.image_id, running.container_id
        );

        // kubectl logs: the API server fetches the container's output from the kubelet.
        let logs = kubectl.run(&["-n", &ns, "logs", &running.name]).await?;
        assert!(
            logs.contains(realnode::STARTED),
            "kubectl logs shows the container's first line: {logs:?}"
        );
        // kubectl exec: a new process in the running container, which sees the server as PID 1.
        let exec = kubectl
            .run(&[
                "-n",
                &ns,
                "exec",
                &running.name,
                "--",
                "sh",
                "-c",
                "echo exec-ok; tr '\\0' ' ' </proc/1/cmdline",
            ])
            .await?;
        assert!(
            exec.starts_with("exec-ok") && exec.contains("nc -ll -p"),
            "kubectl exec runs in the container next to the nc server: {exec:?}"
        );
        // kubectl port-forward: a local port tunnelled into the pod's network namespace.
        let forwarded = kubectl
            .port_forward_read(&ns, &running.name, realnode::ECHO_PORT)
            .await?;
        assert_eq!(
            forwarded.trim(),
            realnode::GREETING,
            "answer through port-forward"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_a_service_by_dns_name_and_the_api_server() -> Result<(), Error> {
    let node = RealNode::from_env()?;
    let primary = cluster::connect(Which::Primary).await?;
    node.check_node(&primary.client).await?;
    let client = primary.client.clone();
    with_namespace(&primary.client, "realnet", |ns| async move {
        Api::<Deployment>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &node.echo_deployment("echo"))
            .await
            .step(format!("create deployment {ns}/echo"))?;
        Api::<Service>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &realnode::echo_service("echo"))
            .await
            .step(format!("create service {ns}/echo"))?;
        let server = realnode::wait_ready_pod(&client, &ns, "echo").await?;
        realnode::running_on(&server, &node.name)?;

        // Another pod resolves the Service name through CoreDNS and connects to its ClusterIP,
        // which kube-proxy translates to the server pod.
        let name = format!("echo.{ns}.svc.cluster.local");
        let answer = realnode::run_to_completion(
            &client,
            &node,
            &ns,
            "client",
            &format!("nslookup {name} >&2 && nc -w 10 {name} 80 </dev/null"),
        )
        .await?;
        assert_eq!(
            answer.lines().last().map(str::trim),
            Some(realnode::GREETING),
            "{answer:?}"
        );

        // The API server through the kubernetes Service: an HTTP request to its TLS port gets
        // Go's "HTTP request to an HTTPS server" answer, so a real TLS server was reached.
        let api = realnode::run_to_completion(
            &client,
            &node,
            &ns,
            "api",
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 kubernetes.default.svc 443",
        )
        .await?;
        assert!(
            api.contains("Client sent an HTTP request to an HTTPS server"),
            "kubernetes.default.svc:443 answers as the API server's TLS listener: {api:?}"
        );
        // Names outside the cluster do not resolve: CoreDNS forwards nothing.
        let outside = realnode::run_to_completion(
            &client,
            &node,
            &ns,
            "outside",
            "if nslookup example.com >/dev/null 2>&1; then echo resolved; else echo unresolved; fi",
        )
        .await?;
        assert_eq!(
            outside.trim(),
            "unresolved",
            "example.com must not resolve in a pod"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_without_the_toleration_stay_off_the_real_node() -> Result<(), Error> {
    let node = RealNode::from_env()?;
    let primary = cluster::connect(Which::Primary).await?;
    node.check_node(&primary.client).await?;
    let client = primary.client.clone();
    with_namespace(&primary.client, "realtaint", |ns| async move {
        // Ordinary pods land on the kwok nodes, never on the real one.
        Api::<Deployment>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &deployment::build("plain", 4))
            .await
            .step(format!("create deployment {ns}/plain"))?;
        deployment::wait_available(&client, &ns, "plain", 4).await?;
        let pods = Api::<Pod>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .step(format!("list pods in {ns}"))?;
        for pod in &pods.items {
            let bound = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            assert!(
                bound.as_deref().is_some_and(|n| n != node.name),
                "pod {:?} without the toleration is on {bound:?}",
                pod.metadata.name
            );
        }
        // Selecting the real node without tolerating its taint leaves a pod unschedulable.
        let mut pod = node.job_pod("selects-only", "true");
        if let Some(spec) = pod.spec.as_mut() {
            spec.tolerations = None;
        }
        Api::<Pod>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &pod)
            .await
            .step(format!("create pod {ns}/selects-only"))?;
        let message = realnode::wait_unschedulable(&client, &ns, "selects-only").await?;
        assert!(
            message.contains("untolerated taint"),
            "the scheduler names the taint: {message}"
        );
        Ok(())
    })
    .await
}
