//! The operator, installed by Helm from its locally built image, runs the control silo in real
//! pods on a real node: the control web serves `/api/0/`, `kubectl logs` and `exec` work, a
//! missing image is reported in status with the kubelet's reason, and deleting the
//! ControlPlane stops the pods gracefully.
//!
//! Needs `SILO_KUBECONFIG` (a cluster with a real node: `e2e/cluster/up.sh --real-node`, or
//! kind via `e2e/kind.sh`), the images built and loaded (`e2e/images/build.sh all`), and the
//! cluster's `kubectl` and `helm` on PATH (or `SILO_KUBECTL`, `SILO_HELM`).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use silo_api::ControlPlane;
use silo_e2e_cluster::cluster::{self, Which};
use silo_e2e_pods::kubectl::{OnDrop, Tools};
use silo_e2e_pods::pods::{describe, wait_ready_on_real_node};
use silo_e2e_pods::settings::Settings;
use silo_e2e_pods::wait::{self, Check};
use silo_e2e_pods::{Error, StepContext, operator, postgres};
use tokio::io::AsyncReadExt;

const CONTROL_PLANE: &str = "e2e-pods";
const WEB_LABEL: &str = "app.kubernetes.io/name=web";

fn control_plane(settings: &Settings, namespace: &str, version: &str) -> ControlPlane {
    serde_json::from_value(json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "ControlPlane",
        "metadata": {"name": CONTROL_PLANE},
        "spec": {
            "version": version,
            "namespace": namespace,
            "control": {"database": {"secretName": postgres::SECRET, "key": "url"}},
            "pods": {
                "imagePullPolicy": settings.pull_policy,
                "nodeSelector": settings.node_selector(),
                "tolerations": settings.tolerations(),
            },
        },
    }))
    .expect("ControlPlane literal matches the type")
}

/// Server-side apply the scenario's ControlPlane at `version`.
async fn apply_control_plane(
    cps: &Api<ControlPlane>,
    settings: &Settings,
    namespace: &str,
    version: &str,
) -> Result<ControlPlane, kube::Error> {
    cps.patch(
        CONTROL_PLANE,
        &PatchParams::apply("silo-e2e-pods").force(),
        &Patch::Apply(&control_plane(settings, namespace, version)),
    )
    .await
}

/// The ControlPlane's Ready condition as (status, reason, message).
fn ready_of(cp: &ControlPlane) -> Option<(String, String, String)> {
    let status = cp.status.as_ref()?;
    let current = status.observed_generation == cp.metadata.generation;
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && current)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn wait_ready_reason(
    cps: &Api<ControlPlane>,
    what: &str,
    accept: impl Fn(&str, &str) -> bool,
) -> Result<(String, String), Error> {
    Ok(wait::until(what, Duration::from_secs(240), || async {
        let cp = cps.get(CONTROL_PLANE).await?;
        Ok(match ready_of(&cp) {
            Some((status, reason, message)) if accept(&status, &reason) => {
                Check::Done((reason, message))
            }
            other => Check::Pending(format!("Ready = {other:?}")),
        })
    })
    .await?)
}

async fn web_pods(pods: &Api<Pod>) -> Result<Vec<Pod>, Error> {
    Ok(pods
        .list(&ListParams::default().labels(WEB_LABEL))
        .await
        .step("list web pods")?
        .items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installed_operator_runs_the_control_silo_in_real_pods() -> Result<(), Error> {
    let cluster = cluster::connect(Which::Primary).await?;
    let client = cluster.client.clone();
    let tools = Tools::new(&cluster.kubeconfig);
    let settings = Settings::from_env();
    let cps: Api<ControlPlane> = Api::all(client.clone());

    // 1. The operator from its image, by Helm, on the real node.
    let (_uninstall, to_ready) = operator::install(&client, &tools, &settings).await?;
    println!(
        "figure: helm install -> operator pod Ready: {:.1} s",
        to_ready.as_secs_f64()
    );

    // The operator manages exactly one ControlPlane: the scenario needs the fleet to itself
    // (the chart has installed the CRDs by now).
    let _ = cps.delete(CONTROL_PLANE, &DeleteParams::default()).await;
    wait::until(
        "no ControlPlane to exist (other tests' ControlPlanes would own the fleet)",
        Duration::from_secs(120),
        || async {
            let names: Vec<String> = cps
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .map(|c| c.name_any())
                .collect();
            Ok(if names.is_empty() {
                Check::Done(())
            } else {
                Check::Pending(format!("{names:?}"))
            })
        },
    )
    .await?;

    // 2. Postgres for the control silo, in the control namespace.
    let suffix = hex::encode(rand::random::<[u8; 3]>());
    let namespace = format!("e2e-control-{suffix}");
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace},
    }))
    .expect("namespace literal");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            &namespace,
            &PatchParams::apply("silo-e2e-pods"),
            &Patch::Apply(&ns),
        )
        .await
        .step("create the control namespace")?;
    let _namespace_gone = {
        let tools = tools.clone();
        let namespace = namespace.clone();
        OnDrop::new(move || {
            let _ = tools.kubectl(&[
                "delete",
                "controlplane",
                CONTROL_PLANE,
                "--ignore-not-found",
                "--wait=false",
            ]);
            let _ = tools.kubectl(&[
                "delete",
                "namespace",
                &namespace,
                "--ignore-not-found",
                "--wait=false",
            ]);
        })
    };
    let database = postgres::start(&client, &namespace, &settings).await?;

    // 3. The ControlPlane: control web with that database, on the real node.
    let applied = Instant::now();
    apply_control_plane(&cps, &settings, &namespace, &settings.image_tag)
        .await
        .step("apply the ControlPlane")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let web_pod = wait_ready_on_real_node(
        &client,
        &namespace,
        WEB_LABEL,
        "the control web pod to be Ready on a real node",
    )
    .await
    .map_err(|e| Error::Unexpected(format!("{e}\noperator log:\n{}", operator::logs(&tools))))?;
    wait_ready_reason(&cps, "the ControlPlane to be Ready", |status, _| {
        status == "True"
    })
    .await?;
    println!(
        "figure: ControlPlane apply -> control web Ready: {:.1} s",
        applied.elapsed().as_secs_f64()
    );

    // 4. Real answers from the real binary, through the API server's port-forward.
    let web = tools.port_forward(&namespace, "svc/web", 8000).await?;
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut request = http.get(format!("{}{path}", web.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let health = get("/readyz", None)
        .await
        .map_err(|e| Error::Unexpected(e.to_string()))?;
    assert_eq!(health.status(), 200, "control web /readyz");
    let anonymous = get("/api/0/organizations/", None)
        .await
        .map_err(|e| Error::Unexpected(e.to_string()))?;
    assert_eq!(anonymous.status(), 401, "no token: 401");

    // An API token in the control directory, stored with the project's own code through a
    // port-forward to the Postgres pod.
    let pg = tools.port_forward(&namespace, "svc/postgres", 5432).await?;
    let pg_url = format!(
        "postgres://{}:{}@{}/{}",
        postgres::USER,
        database.password,
        pg.url.trim_start_matches("http://"),
        postgres::DATABASE
    );
    assert!(
        database
            .url
            .contains(&format!("{}.{namespace}.svc", postgres::NAME))
    );
    let pool = silo_store::connect_lazy(&silo_store::PoolSettings {
        url: pg_url,
        max_connections: 1,
        acquire_timeout: Duration::from_secs(10),
        ping_after_idle: silo_store::PING_AFTER_IDLE,
    })
    .map_err(|e| Error::Unexpected(e.to_string()))?;
    let token = hex::encode(rand::random::<[u8; 24]>());
    let scopes: Vec<String> = ["org:read", "org:write", "project:read"]
        .map(String::from)
        .to_vec();
    silo_store::api_tokens::upsert(&pool, &token, "e2e", &scopes)
        .await
        .map_err(|e| Error::Unexpected(format!("storing a token in the control database: {e}")))?;

    let listed = get("/api/0/organizations/", Some(&token))
        .await
        .map_err(|e| Error::Unexpected(e.to_string()))?;
    assert_eq!(listed.status(), 200);
    let body: serde_json::Value = listed
        .json()
        .await
        .map_err(|e| Error::Unexpected(e.to_string()))?;
    assert_eq!(
        body,
        json!([]),
        "a new control directory lists no organization"
    );
    let create = http
        .post(format!("{}/api/0/organizations/", web.url))
        .bearer_auth(&token)
        .json(&json!({"name": "Acme", "slug": "acme", "region": "nowhere"}))
        .send()
        .await
        .map_err(|e| Error::Unexpected(e.to_string()))?;
    assert_eq!(create.status(), 400, "an unknown region is refused");
    let detail = create.text().await.unwrap_or_default();
    assert!(
        detail.contains("nowhere"),
        "the refusal names the region: {detail}"
    );
    let unknown = get("/api/0/organizations/nope/projects/", Some(&token))
        .await
        .map_err(|e| Error::Unexpected(e.to_string()))?;
    assert_eq!(
        unknown.status(),
        404,
        "the gateway knows no organization 'nope'"
    );

    // 5. kubectl logs and exec reach the container through the kubelet.
    let logs = tools.kubectl(&["logs", "-n", &namespace, &web_pod])?;
    assert!(logs.contains("web starting"), "web log: {logs}");
    let version = tools.kubectl(&["exec", "-n", &namespace, &web_pod, "--", "web", "--version"])?;
    assert!(
        version.trim().starts_with("web "),
        "web --version: {version}"
    );

    // 6. A missing image shows in status with the kubelet's reason, and recovering from it.
    apply_control_plane(&cps, &settings, &namespace, "0.0.0-missing")
        .await
        .step("point the ControlPlane at a missing image")?;
    let (reason, message) = wait_ready_reason(
        &cps,
        "Ready=False naming the missing image",
        |status, reason| {
            status == "False"
                && ["ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff"].contains(&reason)
        },
    )
    .await?;
    assert!(message.contains("0.0.0-missing"), "{reason}: {message}");
    apply_control_plane(&cps, &settings, &namespace, &settings.image_tag)
        .await
        .step("restore the ControlPlane version")?;
    wait_ready_reason(&cps, "the ControlPlane to be Ready again", |status, _| {
        status == "True"
    })
    .await?;

    // 7. Deleting the ControlPlane stops the web pods on SIGTERM: the log ends with the
    //    binary's own shutdown lines, the container exits 0.
    let serving = web_pods(&pods).await?;
    let stopping = serving
        .iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
        .ok_or_else(|| Error::Unexpected("no web pod left to stop".into()))?;
    let pod_name = stopping.name_any();
    let grace = stopping
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    let mut follow =
        tools.spawn_kubectl(&["logs", "-f", "--since=1s", "-n", &namespace, &pod_name])?;
    let mut stdout = follow
        .stdout
        .take()
        .ok_or_else(|| Error::Unexpected("no stdout".into()))?;
    let collected = tokio::spawn(async move {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out).await;
        out
    });
    // Let the follow attach before the signal (it prints nothing until then).
    wait::until(
        "kubectl logs -f to attach",
        Duration::from_secs(20),
        || async {
            Ok(if follow.id().is_some() {
                Check::Done(())
            } else {
                Check::Pending("not started".into())
            })
        },
    )
    .await?;
    let deleting = Instant::now();
    cps.delete(CONTROL_PLANE, &DeleteParams::default())
        .await
        .step("delete the ControlPlane")?;
    let exit = wait::until("the web pod to stop", Duration::from_secs(90), || async {
        let pod = match pods.get_opt(&pod_name).await? {
            None => return Ok(Check::Done(None)),
            Some(pod) => pod,
        };
        let exit = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .find_map(|c| c.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code));
        Ok(match exit {
            Some(code) => Check::Done(Some(code)),
            None => Check::Pending(describe(std::slice::from_ref(&pod))),
        })
    })
    .await?;
    let log_tail = tokio::time::timeout(Duration::from_secs(30), collected)
        .await
        .map_err(|_| Error::Unexpected("kubectl logs -f did not end with the container".into()))?
        .map_err(|e| Error::Unexpected(e.to_string()))?;
    println!(
        "figure: ControlPlane delete -> web container stopped: {:.1} s (grace period {} s)",
        deleting.elapsed().as_secs_f64(),
        grace
    );
    if let Some(code) = exit {
        assert_eq!(
            code, 0,
            "web exited with {code} (137 = killed after the grace period)"
        );
    }
    assert!(
        log_tail.contains("shutdown signal received") && log_tail.contains("web stopped"),
        "the web log does not end with a graceful shutdown:\n{log_tail}"
    );
    operator::still_ready(&client).await?;
    Ok(())
}
