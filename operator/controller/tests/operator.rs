//! The operator against a real cluster, running as the chart's ServiceAccount: a fleet goes
//! Ready, the contract reaches every pod template, directories change without restarts, drift
//! is corrected, snowflake clashes are reported, a deleted Region's snowflake id is retired
//! until released, deletion cleans up, monolith mode works.
//!
//! Takes over the cluster's silo resources (deletes existing Regions/ControlPlanes first).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use silo_api::{ControlPlane, Region};
use silo_contract::RegionDirectory;

const READY_TIMEOUT: Duration = Duration::from_secs(120);
const CONTROL_NS: &str = "it-control";

fn control_plane(mode: &str, monolith_region: &str) -> ControlPlane {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "ControlPlane",
        "metadata": {"name": "it-silo"},
        "spec": {
            "version": "0.1.0",
            "mode": mode,
            "monolithRegion": monolith_region,
            "namespace": CONTROL_NS,
        }
    }))
    .expect("ControlPlane fixture")
}

fn region(name: &str, category: &str, snowflake_id: i32) -> Region {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "Region",
        "metadata": {"name": name},
        "spec": {"category": category, "snowflakeId": snowflake_id}
    }))
    .expect("Region fixture")
}

struct Fleet {
    client: Client,
    regions: Api<Region>,
    control_planes: Api<ControlPlane>,
}

impl Fleet {
    async fn create_region(&self, name: &str, category: &str, id: i32) {
        self.regions
            .create(&PostParams::default(), &region(name, category, id))
            .await
            .unwrap_or_else(|e| panic!("create Region {name}: {e}"));
    }

    async fn wait_ready(&self, name: &str) -> Region {
        let regions = self.regions.clone();
        wait_for(&format!("Region {name} to be Ready"), READY_TIMEOUT, || {
            let regions = regions.clone();
            async move {
                let r = regions.get(name).await.map_err(|e| e.to_string())?;
                if r.is_ready() {
                    Ok(r)
                } else {
                    Err(format!("{:?}", r.ready_condition()))
                }
            }
        })
        .await
    }

    async fn wait_condition(&self, name: &str, reason: &str) -> Region {
        let regions = self.regions.clone();
        wait_for(
            &format!("Region {name} Ready=False/{reason}"),
            READY_TIMEOUT,
            || {
                let regions = regions.clone();
                async move {
                    let r = regions.get(name).await.map_err(|e| e.to_string())?;
                    match r.ready_condition() {
                        Some(c) if c.status == "False" && c.reason == reason => Ok(r),
                        other => Err(format!("{other:?}")),
                    }
                }
            },
        )
        .await
    }

    fn deployments(&self, ns: &str) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// `(namespace/name) -> metadata.generation` of every operator-managed Deployment.
    async fn deployment_generations(&self) -> BTreeMap<String, i64> {
        Api::<Deployment>::all(self.client.clone())
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=silo-operator"))
            .await
            .expect("list deployments")
            .into_iter()
            .map(|d| {
                (
                    format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any()),
                    d.metadata.generation.unwrap_or_default(),
                )
            })
            .collect()
    }

    async fn directory_in(&self, ns: &str) -> RegionDirectory {
        let cm = Api::<ConfigMap>::namespaced(self.client.clone(), ns)
            .get("silo-directory")
            .await
            .unwrap_or_else(|e| panic!("directory ConfigMap in {ns}: {e}"));
        let json = cm
            .data
            .unwrap_or_default()
            .remove("regions.json")
            .unwrap_or_default();
        RegionDirectory::from_json(&json).unwrap_or_else(|e| panic!("directory in {ns}: {e}"))
    }

    /// Wait until the directory in every namespace lists exactly `names`.
    async fn wait_directories(&self, namespaces: &[String], names: &[&str]) {
        let mut want: Vec<&str> = names.to_vec();
        want.sort_unstable();
        for ns in namespaces {
            let client = self.client.clone();
            let want = want.clone();
            wait_for(
                &format!("directory in {ns} to list {want:?}"),
                READY_TIMEOUT,
                || {
                    let api = Api::<ConfigMap>::namespaced(client.clone(), ns);
                    let want = want.clone();
                    async move {
                        let cm = api.get("silo-directory").await.map_err(|e| e.to_string())?;
                        let json = cm
                            .data
                            .unwrap_or_default()
                            .remove("regions.json")
                            .unwrap_or_default();
                        let dir = RegionDirectory::from_json(&json).map_err(|e| e.to_string())?;
                        let have: Vec<&str> = dir.names().collect();
                        (have == want)
                            .then_some(())
                            .ok_or_else(|| format!("{have:?}"))
                    }
                },
            )
            .await;
        }
    }
}

fn env_map(d: &Deployment) -> BTreeMap<String, EnvVar> {
    let pod = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    pod.containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect()
}

fn value(env: &BTreeMap<String, EnvVar>, name: &str) -> Option<String> {
    env.get(name).and_then(|e| e.value.clone())
}

fn secret_name(env: &BTreeMap<String, EnvVar>, name: &str) -> Option<String> {
    env.get(name)
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.secret_key_ref.as_ref())
        .map(|s| s.name.clone())
}

async fn check_contract(fleet: &Fleet, region: &str) {
    let ns = format!("region-{region}");
    for workload in ["relay", "consumers", "web", "postprocess"] {
        let d = fleet
            .deployments(&ns)
            .get(workload)
            .await
            .expect("workload deployment");
        let env = env_map(&d);
        let at = format!("{ns}/{workload}");
        assert_eq!(
            value(&env, "SENTRY_SILO_MODE").as_deref(),
            Some("REGION"),
            "{at}"
        );
        assert_eq!(
            value(&env, "SENTRY_REGION").as_deref(),
            Some(region),
            "{at}"
        );
        assert_eq!(
            value(&env, "SENTRY_REGION_CONFIG").as_deref(),
            Some("/etc/silo/directory/regions.json"),
            "{at}"
        );
        assert_eq!(
            value(&env, "SENTRY_MONOLITH_REGION").as_deref(),
            Some("it-us"),
            "{at}"
        );
        assert_eq!(
            value(&env, "SENTRY_CONTROL_ADDRESS").as_deref(),
            Some("http://web.it-control.svc:8000"),
            "{at}"
        );
        assert_eq!(
            secret_name(&env, "RPC_SHARED_SECRET").as_deref(),
            Some("silo-rpc"),
            "{at}"
        );
        let relay = secret_name(&env, "RELAY_SHARED_SECRET");
        if matches!(workload, "relay" | "web") {
            assert_eq!(relay.as_deref(), Some("relay-secret"), "{at}");
        } else {
            assert_eq!(relay, None, "{at} must not get the relay secret");
        }
    }
    let control = fleet
        .deployments(CONTROL_NS)
        .get("web")
        .await
        .expect("control web");
    assert_eq!(
        value(&env_map(&control), "SENTRY_SILO_MODE").as_deref(),
        Some("CONTROL")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_reconciles_the_fleet() {
    let admin = admin_client().await;
    install_crds(&admin).await;
    install_rbac(&admin).await;
    clean_slate(&admin).await;
    let sa_kubeconfig = service_account_kubeconfig(&admin).await;
    let operator = Operator::start(&sa_kubeconfig, "operator-it").await;
    let fleet = Fleet {
        client: admin.clone(),
        regions: Api::all(admin.clone()),
        control_planes: Api::all(admin.clone()),
    };

    // A ControlPlane and three Regions (one SINGLE_TENANT) all become Ready.
    fleet
        .control_planes
        .create(&PostParams::default(), &control_plane("SILOED", "it-us"))
        .await
        .expect("create ControlPlane");
    fleet.create_region("it-us", "MULTI_TENANT", 3001).await;
    fleet.create_region("it-de", "MULTI_TENANT", 3002).await;
    fleet.create_region("it-acme", "SINGLE_TENANT", 3003).await;
    for name in ["it-us", "it-de", "it-acme"] {
        let r = fleet.wait_ready(name).await;
        assert_eq!(
            r.status.as_ref().and_then(|s| s.running_version.as_deref()),
            Some("0.1.0")
        );
    }
    let cps = fleet.control_planes.clone();
    wait_for("ControlPlane Ready with 3/3 regions", READY_TIMEOUT, || {
        let cps = cps.clone();
        async move {
            let cp = cps.get("it-silo").await.map_err(|e| e.to_string())?;
            let status = cp.status.unwrap_or_default();
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && status.regions == 3 && status.regions_ready == 3)
                .then_some(())
                .ok_or_else(|| format!("{status:?}"))
        }
    })
    .await;

    // Every pod template carries the contract.
    for name in ["it-us", "it-de", "it-acme"] {
        check_contract(&fleet, name).await;
    }
    let acme = fleet.directory_in("region-it-de").await;
    assert_eq!(
        acme.get("it-acme").map(|r| r.category.as_str()),
        Some("SINGLE_TENANT")
    );

    // A 4th Region changes every directory and no other pod template.
    let before = fleet.deployment_generations().await;
    fleet.create_region("it-jp", "MULTI_TENANT", 3004).await;
    fleet.wait_ready("it-jp").await;
    let mut namespaces: Vec<String> = ["it-us", "it-de", "it-acme", "it-jp"]
        .iter()
        .map(|r| format!("region-{r}"))
        .collect();
    namespaces.push(CONTROL_NS.to_owned());
    fleet
        .wait_directories(&namespaces, &["it-us", "it-de", "it-acme", "it-jp"])
        .await;
    let after = fleet.deployment_generations().await;
    for (key, generation) in &before {
        assert_eq!(
            after.get(key),
            Some(generation),
            "{key} changed when a region was added"
        );
    }

    // A deleted Deployment comes back; a hand-edited one is put back.
    let web = fleet.deployments("region-it-de");
    let old_uid = web.get("web").await.expect("web").uid();
    web.delete("web", &DeleteParams::default())
        .await
        .expect("delete web");
    wait_for("deleted Deployment to be restored", READY_TIMEOUT, || {
        let web = web.clone();
        let old_uid = old_uid.clone();
        async move {
            let d = web.get_opt("web").await.map_err(|e| e.to_string())?;
            match d {
                Some(d) if d.uid() != old_uid => Ok(()),
                other => Err(format!("{:?}", other.map(|d| d.uid()))),
            }
        }
    })
    .await;
    web.patch(
        "relay",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 4}})),
    )
    .await
    .expect("scale relay by hand");
    wait_for(
        "hand-scaled relay to be put back to 1 replica",
        READY_TIMEOUT,
        || {
            let web = web.clone();
            async move {
                let d = web.get("relay").await.map_err(|e| e.to_string())?;
                let replicas = d.spec.and_then(|s| s.replicas);
                (replicas == Some(1))
                    .then_some(())
                    .ok_or_else(|| format!("{replicas:?}"))
            }
        },
    )
    .await;
    fleet.wait_ready("it-de").await;

    // A duplicate snowflake id is a condition naming the holder, not a crash.
    fleet.create_region("it-dup", "MULTI_TENANT", 3002).await;
    let dup = fleet.wait_condition("it-dup", "DuplicateSnowflakeId").await;
    let message = dup
        .ready_condition()
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("it-de"),
        "message should name the other region: {message}"
    );
    assert!(
        get_opt(&Api::<Namespace>::all(admin.clone()), "region-it-dup")
            .await
            .is_none(),
        "a region with a taken snowflake id must not be deployed"
    );
    fleet.wait_ready("it-de").await;

    // Deleting the holder retires its id: ids generated in it-de embed 3002, so the waiting
    // duplicate is refused instead of taking it, and the ControlPlane records the id.
    fleet
        .regions
        .delete("it-de", &DeleteParams::default())
        .await
        .expect("delete it-de");
    let dup = fleet.wait_condition("it-dup", "RetiredSnowflakeId").await;
    let message = dup
        .ready_condition()
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("3002")
            && message.contains("it-de")
            && message.contains("spec.releasedSnowflakeIds"),
        "message should name the id, its holder and the release: {message}"
    );
    let regions = fleet.regions.clone();
    wait_for("Region it-de to disappear", READY_TIMEOUT, || {
        let regions = regions.clone();
        async move {
            let de = regions.get_opt("it-de").await.map_err(|e| e.to_string())?;
            de.is_none()
                .then_some(())
                .ok_or_else(|| "it-de present".to_owned())
        }
    })
    .await;
    let retired = |cp: &ControlPlane, id: &str| {
        cp.status
            .as_ref()
            .and_then(|s| s.retired_snowflake_ids.get(id).cloned())
    };
    let cp = fleet
        .control_planes
        .get("it-silo")
        .await
        .expect("get ControlPlane");
    assert_eq!(
        retired(&cp, "3002").as_deref(),
        Some("it-de"),
        "the finalizer records the id before it releases the Region: {:?}",
        cp.status
    );
    namespaces.retain(|ns| ns != "region-it-de");
    fleet
        .wait_directories(&namespaces, &["it-us", "it-acme", "it-jp"])
        .await;
    let dup = fleet.wait_condition("it-dup", "RetiredSnowflakeId").await;
    assert!(!dup.is_ready());
    assert!(
        get_opt(&Api::<Namespace>::all(admin.clone()), "region-it-dup")
            .await
            .is_none(),
        "a region with a retired snowflake id must not be deployed"
    );

    // Releasing the id lets the duplicate take it; the record stays, also through the
    // ControlPlane's own status writes for its new generation.
    fleet
        .control_planes
        .patch(
            "it-silo",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"releasedSnowflakeIds": [3002]}})),
        )
        .await
        .expect("release snowflake id 3002");
    fleet.wait_ready("it-dup").await;
    fleet
        .wait_directories(&namespaces, &["it-us", "it-acme", "it-jp", "it-dup"])
        .await;
    let cps = fleet.control_planes.clone();
    wait_for(
        "ControlPlane status of the new generation to keep the retired id",
        READY_TIMEOUT,
        || {
            let cps = cps.clone();
            async move {
                let cp = cps.get("it-silo").await.map_err(|e| e.to_string())?;
                let current = cp.status.as_ref().and_then(|s| s.observed_generation)
                    == cp.metadata.generation;
                let status = cp.status.clone().unwrap_or_default();
                (current && status.regions_ready == 4 && retired(&cp, "3002").is_some())
                    .then_some(())
                    .ok_or_else(|| format!("{status:?}"))
            }
        },
    )
    .await;

    // Deleting a Region removes its namespace and takes it out of every directory.
    fleet
        .regions
        .delete("it-dup", &DeleteParams::default())
        .await
        .expect("delete it-dup");
    fleet
        .regions
        .delete("it-jp", &DeleteParams::default())
        .await
        .expect("delete it-jp");
    let regions = fleet.regions.clone();
    wait_for(
        "Regions it-jp and it-dup to disappear",
        READY_TIMEOUT,
        || {
            let regions = regions.clone();
            async move {
                let jp = regions.get_opt("it-jp").await.map_err(|e| e.to_string())?;
                let dup = regions.get_opt("it-dup").await.map_err(|e| e.to_string())?;
                (jp.is_none() && dup.is_none())
                    .then_some(())
                    .ok_or_else(|| {
                        format!(
                            "it-jp present: {}, it-dup present: {}",
                            jp.is_some(),
                            dup.is_some()
                        )
                    })
            }
        },
    )
    .await;
    assert!(
        get_opt(&Api::<Namespace>::all(admin.clone()), "region-it-jp")
            .await
            .is_none(),
        "the finalizer releases the Region only after its namespace is gone"
    );
    let cp = fleet
        .control_planes
        .get("it-silo")
        .await
        .expect("get ControlPlane");
    assert_eq!(retired(&cp, "3004").as_deref(), Some("it-jp"));
    assert_eq!(
        retired(&cp, "3002").as_deref(),
        Some("it-dup"),
        "the record names the last Region that held the id"
    );
    namespaces.retain(|ns| ns != "region-it-jp");
    for ns in &namespaces {
        let names: Vec<String> = fleet
            .directory_in(ns)
            .await
            .names()
            .map(str::to_owned)
            .collect();
        assert!(
            !names.contains(&"it-jp".to_owned()),
            "{ns} still lists it-jp: {names:?}"
        );
    }

    // The operator reports its work on /metrics.
    assert!(
        operator
            .counter("silo_operator_reconciles_total", &["region"])
            .await
            > 0.0
    );
    assert!(
        operator
            .counter(
                "silo_operator_reconcile_errors_total",
                &["DuplicateSnowflakeId"]
            )
            .await
            > 0.0
    );
    assert!(
        operator
            .counter(
                "silo_operator_reconcile_errors_total",
                &["RetiredSnowflakeId"]
            )
            .await
            > 0.0
    );

    // An external Postgres from a Secret in the operator's namespace: a missing Secret or key
    // is named in status and nothing of the region is created; once complete it is copied
    // into the region's namespace and the region runs on it.
    let mut ext = region("it-ext", "MULTI_TENANT", 3010);
    ext.spec.infrastructure.postgres = serde_json::from_value(serde_json::json!({
        "external": {"secretName": "it-ext-postgres"}
    }))
    .expect("store spec");
    fleet
        .regions
        .create(&PostParams::default(), &ext)
        .await
        .expect("create it-ext");
    let r = fleet
        .wait_condition("it-ext", "ExternalSecretInvalid")
        .await;
    let message = r
        .ready_condition()
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("silo-system/it-ext-postgres does not exist"),
        "{message}"
    );
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    assert!(
        namespaces
            .get_opt("region-it-ext")
            .await
            .expect("get ns")
            .is_none(),
        "nothing of the region may be created while its external store is unusable"
    );
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let partial: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "it-ext-postgres"},
        "stringData": {"host": "db.example.internal", "username": "silo", "password": "pw"},
    }))
    .expect("secret");
    let _ = secrets
        .delete("it-ext-postgres", &DeleteParams::default())
        .await;
    secrets
        .create(&PostParams::default(), &partial)
        .await
        .expect("create partial secret");
    let regions = fleet.regions.clone();
    wait_for("it-ext to name the missing key", READY_TIMEOUT, || {
        let regions = regions.clone();
        async move {
            let r = regions.get("it-ext").await.map_err(|e| e.to_string())?;
            let m = r
                .ready_condition()
                .map(|c| c.message.clone())
                .unwrap_or_default();
            m.contains("lacks key \"database\"").then_some(()).ok_or(m)
        }
    })
    .await;
    secrets
        .patch(
            "it-ext-postgres",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"database": "silo_ext"}})),
        )
        .await
        .expect("complete the secret");
    fleet.wait_ready("it-ext").await;
    let copied: Api<Secret> = Api::namespaced(admin.clone(), "region-it-ext");
    let copy = copied
        .get("postgres-external")
        .await
        .expect("copied secret");
    let uri = copy
        .data
        .and_then(|d| {
            d.get("uri")
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        })
        .unwrap_or_default();
    assert_eq!(uri, "postgres://silo:pw@db.example.internal:5432/silo_ext");
    let sts: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::namespaced(admin.clone(), "region-it-ext");
    let stores: Vec<String> = sts
        .list(&ListParams::default())
        .await
        .expect("list stores")
        .items
        .iter()
        .map(|s| s.name_any())
        .collect();
    assert_eq!(
        stores,
        ["kafka", "redis"],
        "no managed Postgres for an external one"
    );
    fleet
        .regions
        .delete("it-ext", &DeleteParams::default())
        .await
        .expect("delete it-ext");
    secrets
        .delete("it-ext-postgres", &DeleteParams::default())
        .await
        .expect("delete secret");

    // Monolith mode: one namespace with all four workloads, no separate control web.
    for name in ["it-us", "it-acme"] {
        fleet
            .regions
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete region");
    }
    fleet
        .control_planes
        .patch(
            "it-silo",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"mode": "MONOLITH", "monolithRegion": "local"}}),
            ),
        )
        .await
        .expect("switch to MONOLITH");
    let cps = fleet.control_planes.clone();
    wait_for(
        "monolith ControlPlane Ready with 1/1 regions",
        READY_TIMEOUT,
        || {
            let cps = cps.clone();
            async move {
                let cp = cps.get("it-silo").await.map_err(|e| e.to_string())?;
                let current = cp.status.as_ref().and_then(|s| s.observed_generation)
                    == cp.metadata.generation;
                let status = cp.status.unwrap_or_default();
                let ready = status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                (current && ready && status.regions_ready == 1)
                    .then_some(())
                    .ok_or_else(|| format!("{status:?}"))
            }
        },
    )
    .await;
    let deployments = fleet.deployments(CONTROL_NS);
    let mut names = Vec::new();
    for d in deployments
        .list(&ListParams::default())
        .await
        .expect("list")
    {
        let env = env_map(&d);
        assert_eq!(
            value(&env, "SENTRY_SILO_MODE").as_deref(),
            Some("MONOLITH"),
            "{}",
            d.name_any()
        );
        assert_eq!(value(&env, "SENTRY_REGION").as_deref(), Some("local"));
        names.push(d.name_any());
    }
    names.sort();
    assert_eq!(names, vec!["consumers", "postprocess", "relay", "web"]);
    let monolith_dir = fleet.directory_in(CONTROL_NS).await;
    assert_eq!(monolith_dir.names().collect::<Vec<_>>(), vec!["local"]);
    let regions = fleet.regions.clone();
    wait_for("all Regions gone", READY_TIMEOUT, || {
        let regions = regions.clone();
        async move {
            let n = regions
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            (n == 0).then_some(()).ok_or_else(|| format!("{n} left"))
        }
    })
    .await;

    // Nothing it was refused: every request it made was allowed by the chart's RBAC.
    let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
    assert!(
        !log.contains("forbidden"),
        "operator hit an RBAC denial; see {}",
        operator.log.display()
    );
    fleet
        .control_planes
        .delete("it-silo", &DeleteParams::default())
        .await
        .expect("delete ControlPlane");
}
