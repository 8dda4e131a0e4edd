//! A Region in a customer-provided cluster, on two real clusters: the management cluster
//! (`SILO_KUBECONFIG`, the operator runs there as the chart's ServiceAccount) and the customer
//! cluster (`SILO_KUBECONFIG_2`, reached only with the identity `silo-operator onboard` made).
//!
//! Onboard the customer cluster as single-tenant Region `acme`; its objects appear and become
//! Ready there, its directory lists every Region and is updated in place; with the customer
//! API server stopped, local Regions are created as fast as without the outage while `acme`
//! reports `ClusterReachable=False`; it recovers when the API server is back; rotation
//! invalidates the old token; the identity cannot read Secrets outside its namespace; a
//! permission taken away is named in status until onboarding runs again. A
//! Region whose kubeconfig Secret is missing, has no `value`, holds no kubeconfig or carries
//! refused credentials says which, and is deleted by abandoning its remote objects.
//!
//! Takes over the management cluster's silo resources; stops and starts the customer cluster's
//! API server (`e2e/cluster/apiserver.sh`).

mod common;

use std::time::{Duration, Instant};

use common::customer::{
    CUSTOMER_TIMEOUT, Outage, cluster_name, condition, control_plane, customer_kubeconfig,
    local_region, onboard, wait_region,
};
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use silo_api::{ControlPlane, Region};
use silo_contract::RegionDirectory;

const READY_TIMEOUT: Duration = CUSTOMER_TIMEOUT;
const ACME_NS: &str = "region-acme";
const SECRET: &str = "acme-kubeconfig";

async fn client_of(kubeconfig: Kubeconfig) -> Client {
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("usable kubeconfig");
    Client::try_from(config).expect("client")
}

async fn all_ready(regions: &Api<Region>, names: &[String]) {
    wait_for("the local Regions to be Ready", READY_TIMEOUT, || {
        let regions = regions.clone();
        async move {
            let mut waiting = Vec::new();
            for name in names {
                let r = regions.get(name).await.map_err(|e| e.to_string())?;
                if !r.is_ready() {
                    waiting.push(name.clone());
                }
            }
            waiting
                .is_empty()
                .then_some(())
                .ok_or_else(|| format!("not Ready: {waiting:?}"))
        }
    })
    .await;
}

/// Create `names` and return how long until all are Ready.
async fn create_fleet(regions: &Api<Region>, names: &[String], first_id: i32) -> Duration {
    let start = Instant::now();
    for (i, name) in names.iter().enumerate() {
        regions
            .create(
                &PostParams::default(),
                &local_region(name, first_id + i as i32),
            )
            .await
            .unwrap_or_else(|e| panic!("create Region {name}: {e}"));
    }
    all_ready(regions, names).await;
    start.elapsed()
}

async fn directory_names(configmaps: &Api<ConfigMap>) -> Result<(String, Vec<String>), String> {
    let cm = configmaps
        .get("silo-directory")
        .await
        .map_err(|e| e.to_string())?;
    let json = cm
        .data
        .clone()
        .unwrap_or_default()
        .remove("regions.json")
        .unwrap_or_default();
    let dir = RegionDirectory::from_json(&json).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = dir.names().map(str::to_owned).collect();
    names.sort();
    Ok((cm.uid().unwrap_or_default(), names))
}

/// The token in the management cluster's kubeconfig Secret.
async fn token_in_secret(secrets: &Api<Secret>) -> (Kubeconfig, String) {
    let secret = secrets.get(SECRET).await.expect("kubeconfig Secret");
    let value = secret
        .data
        .and_then(|d| d.get("value").cloned())
        .expect("kubeconfig under `value`");
    let kubeconfig = Kubeconfig::from_yaml(std::str::from_utf8(&value.0).expect("utf-8"))
        .expect("kubeconfig parses");
    let yaml: serde_yaml::Value = serde_yaml::from_slice(&value.0).expect("kubeconfig is YAML");
    let token = yaml["users"][0]["user"]["token"]
        .as_str()
        .expect("token user")
        .to_owned();
    (kubeconfig, token)
}

/// Whether the identity may `verb` `resource` (`name.group`) in `namespace`, asked as itself
/// (what `kubectl auth can-i` asks).
async fn can_i(client: &Client, verb: &str, resource: &str, namespace: &str) -> bool {
    let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SelfSubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

/// Start from a customer cluster without the Region's namespace.
async fn clean_customer(customer: &Client) {
    let namespaces: Api<Namespace> = Api::all(customer.clone());
    let _ = namespaces.delete(ACME_NS, &DeleteParams::default()).await;
    wait_for(
        "the customer namespace of an earlier run to be gone",
        Duration::from_secs(120),
        || {
            let namespaces = namespaces.clone();
            async move {
                match namespaces
                    .get_opt(ACME_NS)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    None => Ok(()),
                    Some(_) => Err("still terminating".to_owned()),
                }
            }
        },
    )
    .await;
}

/// The machine's 1-minute load average (the tests share it with other work).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

/// Resident memory of process `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Wait for an Event with `reason` about Region `name`.
async fn wait_event(admin: &Client, name: &str, reason: &str) {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(admin.clone());
    let selector = format!("regarding.name={name}");
    wait_for(
        &format!("an Event {reason} on Region {name}"),
        Duration::from_secs(30),
        || {
            let (events, selector) = (events.clone(), selector.clone());
            async move {
                let list = events
                    .list(&kube::api::ListParams::default().fields(&selector))
                    .await
                    .map_err(|e| e.to_string())?;
                let reasons: Vec<String> =
                    list.items.iter().filter_map(|e| e.reason.clone()).collect();
                reasons
                    .iter()
                    .any(|r| r == reason)
                    .then_some(())
                    .ok_or_else(|| format!("{reasons:?}"))
            }
        },
    )
    .await;
}

/// The reason `ClusterReachable` gives Region `name`, once it is `reason`.
async fn wait_reachable_reason(regions: &Api<Region>, name: &str, reason: &str) -> String {
    let r = wait_region(
        regions,
        name,
        &format!("ClusterReachable reason {reason}"),
        |r| {
            condition(r, "ClusterReachable")
                .is_some_and(|c| c.status == "False" && c.reason == reason)
        },
    )
    .await;
    let ready = condition(&r, "Ready").expect("Ready");
    assert_eq!(ready.reason, "ClusterUnreachable", "{ready:?}");
    condition(&r, "ClusterReachable")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn secret_with(data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("it-bad-kubeconfig".to_owned()),
            ..Default::default()
        },
        string_data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Default::default()
    }
}

async fn replace_secret(secrets: &Api<Secret>, secret: Secret) {
    let _ = secrets
        .delete("it-bad-kubeconfig", &DeleteParams::default())
        .await;
    wait_for("the old bad Secret to go", Duration::from_secs(30), || {
        let secrets = secrets.clone();
        async move {
            match secrets
                .get_opt("it-bad-kubeconfig")
                .await
                .map_err(|e| e.to_string())?
            {
                None => Ok(()),
                Some(_) => Err("still there".to_owned()),
            }
        }
    })
    .await;
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create bad Secret");
}

/// A Region whose Secret is missing, has no `value`, holds no kubeconfig, or whose
/// credentials the server refuses; then deleted with its cluster unusable and abandoned.
async fn bad_secrets(
    admin: &Client,
    regions: &Api<Region>,
    secrets: &Api<Secret>,
    customer: &std::path::Path,
) {
    let bad: Region = serde_json::from_value(serde_json::json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "Region",
        "metadata": {"name": "it-bad"},
        "spec": {
            "snowflakeId": 3150,
            "address": "https://bad.it.example",
            "cluster": {"kubeconfigSecret": "it-bad-kubeconfig", "requestTimeoutSeconds": 2},
        }
    }))
    .expect("Region fixture");
    regions
        .create(&PostParams::default(), &bad)
        .await
        .expect("create it-bad");
    let message = wait_reachable_reason(regions, "it-bad", "SecretMissing").await;
    assert!(message.contains("does not exist"), "{message}");
    replace_secret(secrets, secret_with(&[("kubeconfig", "x")])).await;
    let message = wait_reachable_reason(regions, "it-bad", "SecretHasNoValue").await;
    assert!(message.contains("key `value`"), "{message}");
    replace_secret(
        secrets,
        secret_with(&[("value", "clusters: [not a kubeconfig")]),
    )
    .await;
    wait_reachable_reason(regions, "it-bad", "InvalidKubeconfig").await;
    // The customer cluster's address with a token it never issued.
    let mut yaml: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(customer).expect("read kubeconfig"))
            .expect("kubeconfig YAML");
    yaml["users"] =
        serde_yaml::from_str("[{name: admin, user: {token: not-a-token}}]").expect("users YAML");
    let context = yaml["current-context"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if let Some(contexts) = yaml["contexts"].as_sequence_mut() {
        for c in contexts
            .iter_mut()
            .filter(|c| c["name"].as_str() == Some(context.as_str()))
        {
            c["context"]["user"] = "admin".into();
        }
    }
    let forged = serde_yaml::to_string(&yaml).expect("render kubeconfig");
    replace_secret(secrets, secret_with(&[("value", &forged)])).await;
    let message = wait_reachable_reason(regions, "it-bad", "Unauthorized").await;
    assert!(message.contains("onboard rotate"), "{message}");
    wait_event(admin, "it-bad", "Unauthorized").await;

    // Deleting it waits for the cluster, then the annotation abandons the remote objects.
    regions
        .delete("it-bad", &DeleteParams::default())
        .await
        .expect("delete it-bad");
    let r = wait_region(regions, "it-bad", "deletion blocked", |r| {
        condition(r, "Ready").is_some_and(|c| c.reason == "DeleteBlockedClusterUnreachable")
    })
    .await;
    let message = condition(&r, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("silo.dev/abandon-remote"), "{message}");
    regions
        .patch(
            "it-bad",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {"silo.dev/abandon-remote": "true"}}
            })),
        )
        .await
        .expect("annotate it-bad");
    wait_for("it-bad to be released", READY_TIMEOUT, || {
        let regions = regions.clone();
        async move {
            match regions.get_opt("it-bad").await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(_) => Err("still there".to_owned()),
            }
        }
    })
    .await;
    let _ = secrets
        .delete("it-bad-kubeconfig", &DeleteParams::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_runs_in_a_customer_cluster() {
    let fleet_size: usize = std::env::var("SILO_CUSTOMER_TEST_REGIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let management_path = kubeconfig_path();
    let customer_path = customer_kubeconfig();
    let customer_name = cluster_name(&customer_path);
    let admin = admin_client().await;
    let customer =
        client_of(Kubeconfig::read_from(&customer_path).expect("customer kubeconfig")).await;
    install_crds(&admin).await;
    install_rbac(&admin).await;
    clean_slate(&admin).await;
    clean_customer(&customer).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let _ = secrets.delete(SECRET, &DeleteParams::default()).await;
    let sa_kubeconfig = service_account_kubeconfig(&admin).await;
    // Credentials that expire within 1000h count as expiring: the onboarded token (720h) warns.
    let operator = Operator::start_with(
        &sa_kubeconfig,
        "operator-customer",
        &[
            "--cluster-resync",
            "5s",
            "--cluster-max-backoff",
            "4s",
            "--credentials-warn-before",
            "1000h",
            "--cluster-permission-check",
            "2s",
        ],
    )
    .await;
    let regions: Api<Region> = Api::all(admin.clone());
    Api::<ControlPlane>::all(admin.clone())
        .create(&PostParams::default(), &control_plane())
        .await
        .expect("create ControlPlane");
    regions
        .create(&PostParams::default(), &local_region("it-home", 3200))
        .await
        .expect("create Region it-home");

    wait_region(&regions, "it-home", "Ready", Region::is_ready).await;
    let rss_before = rss_kib(operator.pid());

    // Onboard and apply: the Region's objects appear in the customer cluster and are Ready.
    let m = management_path.to_string_lossy().into_owned();
    let c = customer_path.to_string_lossy().into_owned();
    let onboard_args = [
        "--kubeconfig",
        c.as_str(),
        "--management-kubeconfig",
        m.as_str(),
        "--region",
        "acme",
        "--snowflake-id",
        "3100",
        "--address",
        "https://acme.it.example",
    ];
    let mut with_apply = onboard_args.to_vec();
    with_apply.push("--apply");
    onboard(&with_apply);
    // Idempotent: a second run changes nothing and keeps the valid token.
    let (_, first_token) = token_in_secret(&secrets).await;
    onboard(&with_apply);
    assert_eq!(
        token_in_secret(&secrets).await.1,
        first_token,
        "a valid token is kept"
    );

    let acme = wait_region(&regions, "acme", "Ready", Region::is_ready).await;
    let rss_after = rss_kib(operator.pid());
    println!(
        "FIGURE memory: operator RSS {rss_before} KiB before the first remote Region, {rss_after} KiB with it Ready (one cluster client, its snapshot and Region: {:+} KiB)",
        rss_after as i64 - rss_before as i64
    );
    let expiring = condition(&acme, "CredentialsValid").expect("CredentialsValid");
    assert_eq!(
        (expiring.status.as_str(), expiring.reason.as_str()),
        ("False", "CredentialsExpiring"),
        "{expiring:?}"
    );
    assert!(expiring.message.contains("onboard rotate"), "{expiring:?}");
    wait_event(&admin, "acme", "CredentialsExpiring").await;
    let status = acme.status.clone().unwrap_or_default();
    let cluster = status.cluster.clone().expect("status.cluster");
    assert!(
        cluster.credentials_expire_at.is_some(),
        "expiry in status: {cluster:?}"
    );
    assert!(
        cluster.missing_permissions.is_empty(),
        "missing permissions: {:?}",
        cluster.missing_permissions
    );
    assert_eq!(
        condition(&acme, "ClusterReachable").map(|c| c.status.as_str()),
        Some("True")
    );
    let deployments: Api<Deployment> = Api::namespaced(customer.clone(), ACME_NS);
    for name in ["relay", "web", "consumers", "postprocess"] {
        let d = deployments
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("Deployment {name} in the customer cluster: {e}"));
        assert!(
            d.metadata.owner_references.is_none(),
            "remote objects carry no owner reference to the management cluster's Region"
        );
    }
    assert!(
        Api::<Namespace>::all(admin.clone())
            .get_opt(ACME_NS)
            .await
            .expect("get namespace")
            .is_none(),
        "nothing of acme runs in the management cluster"
    );

    // The directory in the customer cluster lists every Region and is updated in place.
    let configmaps: Api<ConfigMap> = Api::namespaced(customer.clone(), ACME_NS);
    let (uid, names) = directory_names(&configmaps).await.expect("directory");
    assert_eq!(names, vec!["acme".to_owned(), "it-home".to_owned()]);
    regions
        .create(&PostParams::default(), &local_region("it-added", 3201))
        .await
        .expect("create Region it-added");
    wait_for(
        "the customer directory to list it-added",
        READY_TIMEOUT,
        || {
            let configmaps = configmaps.clone();
            let uid = uid.clone();
            async move {
                let (now_uid, names) = directory_names(&configmaps).await?;
                assert_eq!(now_uid, uid, "the directory ConfigMap is updated in place");
                names
                    .contains(&"it-added".to_owned())
                    .then_some(())
                    .ok_or_else(|| format!("{names:?}"))
            }
        },
    )
    .await;

    // A permission taken away in the customer cluster is named in status; onboarding again
    // restores it.
    let roles: Api<Role> = Api::namespaced(customer.clone(), ACME_NS);
    let mut role = roles
        .get("silo-operator")
        .await
        .expect("Role silo-operator");
    for rule in role.rules.iter_mut().flatten() {
        rule.verbs.retain(|v| v != "delete");
    }
    role.metadata.managed_fields = None;
    roles
        .replace("silo-operator", &PostParams::default(), &role)
        .await
        .expect("take delete away");
    let acme = wait_region(&regions, "acme", "PermissionsSufficient=False", |r| {
        condition(r, "PermissionsSufficient").is_some_and(|c| c.status == "False")
    })
    .await;
    let missing = acme
        .status
        .and_then(|s| s.cluster)
        .map(|c| c.missing_permissions)
        .unwrap_or_default();
    assert!(
        missing.contains(&"delete jobs.batch in region-acme".to_owned()),
        "{missing:?}"
    );
    onboard(&onboard_args);
    wait_region(&regions, "acme", "PermissionsSufficient=True", |r| {
        condition(r, "PermissionsSufficient").is_some_and(|c| c.status == "True")
    })
    .await;

    // Bad input: each problem of the kubeconfig Secret is named on the Region and in an
    // Event, and only that Region waits.
    bad_secrets(&admin, &regions, &secrets, &customer_path).await;

    // Fleet throughput with the customer cluster up, down, and up again (in the same run; the
    // two baselines bracket the outage, so a change of the machine's load shows as their gap).
    let fleet = |prefix: &str| -> Vec<String> {
        (0..fleet_size)
            .map(|i| format!("it-{prefix}-{i}"))
            .collect()
    };
    let load_before = load_average();
    let before_time = create_fleet(&regions, &fleet("before"), 3300).await;
    let outage = Outage::begin(&customer_name);
    let load_outage = load_average();
    let outage_time = create_fleet(&regions, &fleet("out"), 3400).await;
    let acme = wait_region(&regions, "acme", "ClusterReachable=False", |r| {
        condition(r, "ClusterReachable").is_some_and(|c| c.status == "False")
    })
    .await;
    let ready = condition(&acme, "Ready").expect("Ready");
    assert_eq!(ready.reason, "ClusterUnreachable", "{ready:?}");
    let reachable = condition(&acme, "ClusterReachable").expect("ClusterReachable");
    assert!(
        ["Refused", "Timeout"].contains(&reachable.reason.as_str()),
        "error class: {reachable:?}"
    );

    // Back: acme recovers without a restart.
    let started = Instant::now();
    drop(outage);
    let answering = Instant::now();
    wait_region(&regions, "acme", "Ready again", |r| {
        r.is_ready() && condition(r, "ClusterReachable").is_some_and(|c| c.status == "True")
    })
    .await;
    println!(
        "FIGURE recovery: acme Ready {:.1}s after the customer API server was started ({:.1}s after it answered /readyz to the start script)",
        started.elapsed().as_secs_f64(),
        answering.elapsed().as_secs_f64()
    );
    let load_after = load_average();
    let after_time = create_fleet(&regions, &fleet("after"), 3500).await;
    let up = (before_time.as_secs_f64() + after_time.as_secs_f64()) / 2.0;
    let ratio = up / outage_time.as_secs_f64();
    println!(
        "FIGURE fleet reconcile: {fleet_size} Regions Ready in {:.1}s with every cluster up, {:.1}s with the customer cluster down, {:.1}s with it up again; throughput down/up {ratio:.2} (target >= 0.9; machine load average {load_before}, {load_outage}, {load_after})",
        before_time.as_secs_f64(),
        outage_time.as_secs_f64(),
        after_time.as_secs_f64(),
    );

    // Rotation: a new token is used, the old one stops working, acme stays Ready.
    let (old_config, old_token) = token_in_secret(&secrets).await;
    let old_client = client_of(old_config).await;
    assert!(can_i(&old_client, "list", "deployments.apps", ACME_NS).await);
    let rotation = k8s_openapi::jiff::Timestamp::now();
    let mut rotate = vec!["rotate"];
    rotate.extend(onboard_args);
    onboard(&rotate);
    let (new_config, new_token) = token_in_secret(&secrets).await;
    assert_ne!(new_token, old_token, "rotation issues a new token");
    wait_for(
        "the old token to be refused",
        Duration::from_secs(60),
        || {
            let old_client = old_client.clone();
            async move {
                match old_client.apiserver_version().await {
                    Err(kube::Error::Api(s)) if s.code == 401 => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
    let identity = client_of(new_config).await;
    assert!(can_i(&identity, "list", "deployments.apps", ACME_NS).await);
    // Reconciled with the new credentials: still Ready, still reachable.
    let version = secrets
        .get(SECRET)
        .await
        .expect("kubeconfig Secret")
        .resource_version();
    wait_region(&regions, "acme", "Ready with the rotated token", |r| {
        r.is_ready()
            && condition(r, "ClusterReachable").is_some_and(|c| c.status == "True")
            && r.status
                .as_ref()
                .and_then(|s| s.cluster.as_ref())
                .and_then(|c| c.secret_version.clone())
                == version
    })
    .await;

    // No failed reconcile: acme stayed reachable through the rotation.
    let acme = regions.get("acme").await.expect("acme");
    let reachable = condition(&acme, "ClusterReachable").expect("ClusterReachable");
    assert!(
        reachable.status == "True" && reachable.last_transition_time.0 < rotation,
        "acme lost its cluster during the rotation: {reachable:?}"
    );

    // Least privilege: no Secrets outside its namespace, no namespaces of its own making.
    assert!(can_i(&identity, "get", "secrets", ACME_NS).await);
    for ns in ["kube-system", "default", "silo-system"] {
        assert!(
            !can_i(&identity, "get", "secrets", ns).await,
            "the identity must not read Secrets in {ns}"
        );
        assert!(!can_i(&identity, "list", "secrets", ns).await);
    }
    assert!(!can_i(&identity, "create", "namespaces", "").await);

    // Deleting acme removes its namespace in the customer cluster.
    regions
        .delete("acme", &DeleteParams::default())
        .await
        .expect("delete acme");
    let namespaces: Api<Namespace> = Api::all(customer.clone());
    wait_for("acme's customer namespace to go", READY_TIMEOUT, || {
        let namespaces = namespaces.clone();
        async move {
            match namespaces
                .get_opt(ACME_NS)
                .await
                .map_err(|e| e.to_string())?
            {
                None => Ok(()),
                Some(ns) => Err(format!("{:?}", ns.status)),
            }
        }
    })
    .await;
    wait_for("Region acme to be released", READY_TIMEOUT, || {
        let regions = regions.clone();
        async move {
            match regions.get_opt("acme").await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(r) => Err(format!("{:?}", r.status.map(|s| s.conditions))),
            }
        }
    })
    .await;
}
