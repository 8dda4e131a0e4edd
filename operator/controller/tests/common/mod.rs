//! Harness for the integration tests: a real cluster (kubeconfig from `SILO_KUBECONFIG` or
//! `KUBECONFIG`), the CRDs, the chart's RBAC, and the operator binary running as the chart's
//! ServiceAccount (never as cluster admin), so a missing permission fails a test.

#![allow(dead_code)]

pub mod customer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, CustomResourceExt, ResourceExt};
use serde::de::DeserializeOwned;
use silo_api::{ControlPlane, Region};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const OPERATOR_NAMESPACE: &str = "silo-system";
pub const SERVICE_ACCOUNT: &str = "silo-operator";
const MANAGER: &str = "silo-tests";

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the tests write logs and generated kubeconfigs.
pub fn state_dir() -> PathBuf {
    let base = std::env::var_os("SILO_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|p| PathBuf::from(p).join("silo")))
        .or_else(|| std::env::var_os("HOME").map(|p| PathBuf::from(p).join(".local/state/silo")))
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join("operator-tests");
    std::fs::create_dir_all(&dir).expect("create the test state directory");
    dir
}

/// The admin kubeconfig of the test cluster; panics with instructions when none is set.
pub fn kubeconfig_path() -> PathBuf {
    let path = std::env::var_os("SILO_KUBECONFIG")
        .or_else(|| std::env::var_os("KUBECONFIG"))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "these tests need a Kubernetes cluster: run `e2e/cluster/up.sh` and set SILO_KUBECONFIG \
                 (or KUBECONFIG) to the kubeconfig it prints"
            )
        });
    assert!(
        path.exists(),
        "kubeconfig {} does not exist: start the cluster with `e2e/cluster/up.sh`",
        path.display()
    );
    path
}

async fn client_from(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("unusable kubeconfig {}: {e}", path.display()));
    let client = Client::try_from(config).expect("build client");
    client.apiserver_version().await.unwrap_or_else(|e| {
        panic!(
            "the API server of {} does not answer ({e}); is the cluster running (`e2e/cluster/up.sh`)?",
            path.display()
        )
    });
    client
}

/// A cluster-admin client.
pub async fn admin_client() -> Client {
    client_from(&kubeconfig_path()).await
}

/// Poll `check` every 250 ms until it yields a value; panic after `timeout` with `what` and
/// the last state `check` reported.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(state) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last state: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Server-side apply the CRDs generated from the types and wait until they are established.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [ControlPlane::crd(), Region::crd()] {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("installing CRD {name} failed: {e}"));
        wait_for(
            &format!("CRD {name} to be established"),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await.map_err(|e| e.to_string())?;
                    let established = crd
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    established
                        .then_some(())
                        .ok_or_else(|| "not established".to_owned())
                }
            },
        )
        .await;
    }
}

/// The `helm` binary: `SILO_HELM`, else `helm` on PATH (the cluster's env file adds it).
pub fn helm() -> PathBuf {
    let helm = std::env::var_os("SILO_HELM").map_or_else(|| PathBuf::from("helm"), PathBuf::from);
    let works = Command::new(&helm)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        works,
        "helm not found ({}): source the cluster env file ($STATE/clusters/NAME/env) or set SILO_HELM",
        helm.display()
    );
    helm
}

/// `helm template` of the chart, CRDs included.
pub fn render_chart(namespace: &str) -> String {
    let output = Command::new(helm())
        .args(["template", "silo-operator"])
        .arg(repo_root().join("charts/silo-operator"))
        .args(["--namespace", namespace, "--include-crds"])
        .output()
        .expect("run helm template");
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("helm output is UTF-8")
}

/// The rendered documents of kind `kind`.
pub fn chart_objects<K: DeserializeOwned>(rendered: &str, kind: &str) -> Vec<K> {
    rendered
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<serde_yaml::Value>(doc).ok())
        .filter(|doc| doc.get("kind").and_then(|k| k.as_str()) == Some(kind))
        .map(|doc| serde_yaml::from_value(doc).expect("chart object matches its type"))
        .collect()
}

/// Create the operator namespace, then apply the chart's ServiceAccount and RBAC, and create
/// its leader Lease afresh (a Lease left held by a killed operator would keep the next one
/// waiting for it to expire).
pub async fn install_rbac(client: &Client) {
    let rendered = render_chart(OPERATOR_NAMESPACE);
    let params = PatchParams::apply(MANAGER).force();
    let ns = Namespace {
        metadata: kube::core::ObjectMeta {
            name: Some(OPERATOR_NAMESPACE.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .patch(OPERATOR_NAMESPACE, &params, &Patch::Apply(&ns))
        .await
        .expect("create operator namespace");
    for sa in chart_objects::<ServiceAccount>(&rendered, "ServiceAccount") {
        Api::<ServiceAccount>::namespaced(client.clone(), OPERATOR_NAMESPACE)
            .patch(&sa.name_any(), &params, &Patch::Apply(&sa))
            .await
            .expect("apply ServiceAccount");
    }
    for role in chart_objects::<ClusterRole>(&rendered, "ClusterRole") {
        Api::<ClusterRole>::all(client.clone())
            .patch(&role.name_any(), &params, &Patch::Apply(&role))
            .await
            .expect("apply ClusterRole");
    }
    for binding in chart_objects::<ClusterRoleBinding>(&rendered, "ClusterRoleBinding") {
        Api::<ClusterRoleBinding>::all(client.clone())
            .patch(&binding.name_any(), &params, &Patch::Apply(&binding))
            .await
            .expect("apply ClusterRoleBinding");
    }
    let roles: Api<Role> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    for role in chart_objects::<Role>(&rendered, "Role") {
        roles
            .patch(&role.name_any(), &params, &Patch::Apply(&role))
            .await
            .expect("apply Role");
    }
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    for binding in chart_objects::<RoleBinding>(&rendered, "RoleBinding") {
        bindings
            .patch(&binding.name_any(), &params, &Patch::Apply(&binding))
            .await
            .expect("apply RoleBinding");
    }
    let leases = leases(client);
    for lease in chart_objects::<Lease>(&rendered, "Lease") {
        let name = lease.name_any();
        let _ = leases.delete(&name, &DeleteParams::default()).await;
        wait_for("the old Lease to be gone", Duration::from_secs(30), || {
            let leases = leases.clone();
            let name = name.clone();
            async move {
                match leases.get_opt(&name).await {
                    Ok(None) => Ok(()),
                    Ok(Some(_)) => Err("still there".to_owned()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
        leases
            .create(&PostParams::default(), &lease)
            .await
            .expect("create the leader Lease");
    }
}

/// The operator namespace's Leases.
pub fn leases(client: &Client) -> Api<Lease> {
    Api::namespaced(client.clone(), OPERATOR_NAMESPACE)
}

/// A kubeconfig that authenticates as the operator's ServiceAccount (TokenRequest API).
pub async fn service_account_kubeconfig(client: &Client) -> PathBuf {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token: TokenRequest = api
        .create_subresource("token", SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .expect("request a ServiceAccount token");
    let token = token.status.expect("token in TokenRequest status").token;

    let admin: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(kubeconfig_path()).expect("read kubeconfig"))
            .expect("parse kubeconfig");
    let context_name = admin["current-context"].as_str().expect("current-context");
    let context = admin["contexts"]
        .as_sequence()
        .and_then(|s| s.iter().find(|c| c["name"].as_str() == Some(context_name)))
        .expect("current context entry");
    let cluster_name = context["context"]["cluster"]
        .as_str()
        .expect("context cluster");
    let cluster = admin["clusters"]
        .as_sequence()
        .and_then(|s| s.iter().find(|c| c["name"].as_str() == Some(cluster_name)))
        .expect("cluster entry")["cluster"]
        .clone();
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": SERVICE_ACCOUNT}}],
        "current-context": "test",
    });
    let path = state_dir().join("operator-sa.kubeconfig");
    std::fs::write(
        &path,
        serde_yaml::to_string(&config).expect("render kubeconfig"),
    )
    .expect("write kubeconfig");
    path
}

/// The operator binary running as a child process; killed on drop.
pub struct Operator {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// GET `path` on 127.0.0.1:`port`; the body on HTTP 200.
pub async fn http_get(port: u16, path: &str) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no HTTP body")?;
    if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") {
        Ok(body.to_owned())
    } else {
        Err(head.lines().next().unwrap_or_default().to_owned())
    }
}

impl Operator {
    /// Start the operator with `kubeconfig` and wait for `/healthz`.
    pub async fn start(kubeconfig: &Path, name: &str) -> Self {
        Self::start_with(kubeconfig, name, &[]).await
    }

    /// [`Operator::start`] with more flags; `name` is also the instance (lease identity prefix).
    pub async fn start_with(kubeconfig: &Path, name: &str, args: &[&str]) -> Self {
        let port = free_port();
        let log = state_dir().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create operator log");
        let child = Command::new(env!("CARGO_BIN_EXE_silo-operator"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--fleet-debounce", "200ms"])
            .args(["--instance", name])
            .args(args)
            .env("RUST_LOG", "info,silo_operator=debug")
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file)
            .spawn()
            .expect("start silo-operator");
        let operator = Self { child, port, log };
        wait_for("operator /healthz", Duration::from_secs(30), || {
            http_get(port, "/healthz")
        })
        .await;
        operator
    }

    /// The process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("poll the operator process")
    }

    /// Sum of a counter family's samples whose line contains every one of `filters`.
    pub async fn counter(&self, metric: &str, filters: &[&str]) -> f64 {
        let body = http_get(self.port, "/metrics")
            .await
            .expect("scrape /metrics");
        body.lines()
            .filter(|l| l.starts_with(metric) && filters.iter().all(|f| l.contains(f)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Write requests (POST, PUT, PATCH, DELETE) the operator has sent.
    pub async fn writes(&self) -> f64 {
        let mut total = 0.0;
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            total += self
                .counter(
                    "silo_operator_api_requests_total",
                    &[&format!("method=\"{method}\"")],
                )
                .await;
        }
        total
    }
}

/// Delete every Region and ControlPlane (dropping finalizers nobody will process) and wait
/// until they and the region namespaces are gone.
pub async fn clean_slate(client: &Client) {
    let regions: Api<Region> = Api::all(client.clone());
    let cps: Api<ControlPlane> = Api::all(client.clone());
    for region in regions
        .list(&ListParams::default())
        .await
        .expect("list regions")
    {
        let name = region.name_any();
        let _ = regions.delete(&name, &DeleteParams::default()).await;
        let _ = regions
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
            )
            .await;
    }
    for cp in cps
        .list(&ListParams::default())
        .await
        .expect("list controlplanes")
    {
        let _ = cps.delete(&cp.name_any(), &DeleteParams::default()).await;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in namespaces
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=silo-operator"))
        .await
        .expect("list namespaces")
    {
        let _ = namespaces
            .delete(&ns.name_any(), &DeleteParams::default())
            .await;
    }
    wait_for(
        "previous silo objects to be deleted",
        Duration::from_secs(120),
        || {
            let (regions, cps, namespaces) = (regions.clone(), cps.clone(), namespaces.clone());
            async move {
                let r = regions
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .items
                    .len();
                let c = cps
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .items
                    .len();
                let n = namespaces
                    .list(
                        &ListParams::default().labels("app.kubernetes.io/managed-by=silo-operator"),
                    )
                    .await
                    .map_err(|e| e.to_string())?
                    .items
                    .len();
                (r + c + n == 0)
                    .then_some(())
                    .ok_or_else(|| format!("{r} regions, {c} controlplanes, {n} namespaces left"))
            }
        },
    )
    .await;
}

/// Fetch an object, `None` when it does not exist.
pub async fn get_opt<K>(api: &Api<K>, name: &str) -> Option<K>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.expect("get object")
}
