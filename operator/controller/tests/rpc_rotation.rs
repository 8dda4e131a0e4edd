//! Rotating the fleet's `RPC_SHARED_SECRET` through `ControlPlane.spec.rotateRpcSecret`, on a
//! real cluster with the operator running as the chart's ServiceAccount: the key list moves
//! `[old]` -> `[old, new]` -> `[new, old]` -> `[new]`, each step written only once every silo's
//! Deployments run the previous one, so at no moment can a silo sign with a key another silo
//! does not accept; at the end every silo runs the new key alone.
//!
//! Takes over the cluster's silo resources (deletes existing Regions/ControlPlanes first).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use silo_api::{ControlPlane, Region, RpcRotationPhase};
use silo_contract::env::parse_secret_list;
use silo_operator::build::content_hash;

const READY_TIMEOUT: Duration = Duration::from_secs(180);
const ROTATION_TIMEOUT: Duration = Duration::from_secs(300);
const CONTROL_PLANE: &str = "it-rpc";
const CONTROL_NS: &str = "it-rpc-control";
const REGIONS: [(&str, i32); 2] = [("it-rpc-us", 3101), ("it-rpc-de", 3102)];

async fn key_list(client: &Client, namespace: &str) -> Option<String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get_opt("silo-rpc").await.ok()??;
    let bytes = secret.data?.get("secrets")?.0.clone();
    String::from_utf8(bytes).ok()
}

/// Every silo Deployment of the fleet: `namespace/name -> (rpc hash annotation, available)`.
async fn deployments(client: &Client) -> BTreeMap<String, (Option<String>, bool)> {
    Api::<Deployment>::all(client.clone())
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=silo-operator"))
        .await
        .expect("list Deployments")
        .into_iter()
        .filter(|d| {
            let ns = d.namespace().unwrap_or_default();
            ns == CONTROL_NS || REGIONS.iter().any(|(r, _)| ns == format!("region-{r}"))
        })
        .map(|d| {
            let hash = d.annotations().get("silo.dev/rpc-secrets-hash").cloned();
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let available = d.status.as_ref().is_some_and(|s| {
                s.observed_generation >= d.metadata.generation
                    && s.updated_replicas.unwrap_or(0) == want
                    && s.available_replicas.unwrap_or(0) >= want
                    && s.replicas.unwrap_or(0) == want
            });
            (
                format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any()),
                (hash, available),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpc_key_rotates_in_three_steps_each_after_every_silo() {
    let admin = admin_client().await;
    install_crds(&admin).await;
    install_rbac(&admin).await;
    clean_slate(&admin).await;
    let sa_kubeconfig = service_account_kubeconfig(&admin).await;
    let _operator = Operator::start(&sa_kubeconfig, "operator-rpc-it").await;
    let control_planes: Api<ControlPlane> = Api::all(admin.clone());
    let regions: Api<Region> = Api::all(admin.clone());
    let cp: ControlPlane = serde_json::from_value(serde_json::json!({
        "apiVersion": "silo.dev/v1alpha1", "kind": "ControlPlane",
        "metadata": {"name": CONTROL_PLANE},
        "spec": {"version": "0.1.0", "namespace": CONTROL_NS},
    }))
    .expect("ControlPlane fixture");
    control_planes
        .create(&PostParams::default(), &cp)
        .await
        .expect("create the ControlPlane");
    for (name, id) in REGIONS {
        let region: Region = serde_json::from_value(serde_json::json!({
            "apiVersion": "silo.dev/v1alpha1", "kind": "Region",
            "metadata": {"name": name}, "spec": {"snowflakeId": id},
        }))
        .expect("Region fixture");
        regions
            .create(&PostParams::default(), &region)
            .await
            .expect("create a Region");
    }
    let cps = control_planes.clone();
    wait_for("the fleet to be Ready", READY_TIMEOUT, || {
        let cps = cps.clone();
        async move {
            let cp = cps.get(CONTROL_PLANE).await.map_err(|e| e.to_string())?;
            let status = cp.status.unwrap_or_default();
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && status.regions_ready == 2)
                .then_some(())
                .ok_or_else(|| format!("{:?}", status.conditions))
        }
    })
    .await;
    let old = key_list(&admin, CONTROL_NS)
        .await
        .expect("the fleet's key list");
    assert_eq!(
        parse_secret_list(&old).len(),
        1,
        "one key before any rotation"
    );
    // A fleet that never rotated carries no hash: nothing rolls for it.
    assert!(
        deployments(&admin)
            .await
            .values()
            .all(|(hash, _)| hash.is_none()),
        "no rotation hash before the first rotation"
    );

    // Ask for a rotation and watch every step.
    control_planes
        .patch(
            CONTROL_PLANE,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"rotateRpcSecret": {"token": "2026-12-07"}}}),
            ),
        )
        .await
        .expect("request a rotation");
    let started = Instant::now();
    // The lists the control Secret held, in order, and the index of each list's hash.
    let mut lists: Vec<String> = vec![old.clone()];
    let mut steps_seen = Vec::new();
    let complete = loop {
        assert!(
            started.elapsed() < ROTATION_TIMEOUT,
            "the rotation did not complete in {ROTATION_TIMEOUT:?}; lists seen: {}",
            lists.len()
        );
        // Deployments first, then the list: a hash seen is never of a list not yet read.
        let running = deployments(&admin).await;
        let current = key_list(&admin, CONTROL_NS).await.expect("key list");
        if lists.last() != Some(&current) {
            lists.push(current.clone());
        }
        let index_of = |hash: &Option<String>| match hash {
            None => Some(0),
            Some(h) => lists.iter().position(|l| content_hash(&l.as_str()) == *h),
        };
        // Safety: every Deployment runs the list in force or the one before it; a silo that
        // signs with the newest list's first key is only ever beside silos that accept it.
        let now = lists.len() - 1;
        for (name, (hash, available)) in running {
            let at = index_of(&hash)
                .unwrap_or_else(|| panic!("{name} carries a hash of no list the fleet had"));
            assert!(
                at + 1 >= now,
                "{name} runs list {at} while the fleet's list is already {now}"
            );
            if at + 1 == now && !available {
                // Still rolling towards list `at`: its older pods run list `at - 1`, which
                // must not be two steps behind either.
                assert!(at + 2 >= now, "{name} is two steps behind");
            }
        }
        let cp = control_planes
            .get(CONTROL_PLANE)
            .await
            .expect("get ControlPlane");
        let rotation = cp.status.and_then(|s| s.rpc_secret_rotation);
        if let Some(r) = &rotation
            && steps_seen.last() != Some(&r.phase)
        {
            steps_seen.push(r.phase);
        }
        match rotation {
            Some(r) if r.phase == RpcRotationPhase::Complete && r.token == "2026-12-07" => break r,
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    let took = started.elapsed();

    // [old] -> [old, new] -> [new, old] -> [new]: the new key is accepted, then signs, then
    // stands alone.
    let parsed: Vec<Vec<String>> = lists.iter().map(|l| parse_secret_list(l)).collect();
    assert_eq!(parsed.len(), 4, "four lists: {parsed:?}");
    let (old_key, new_key) = (parsed[0][0].clone(), parsed[1][1].clone());
    assert_ne!(old_key, new_key);
    assert_eq!(parsed[1], vec![old_key.clone(), new_key.clone()]);
    assert_eq!(parsed[2], vec![new_key.clone(), old_key.clone()]);
    assert_eq!(parsed[3], vec![new_key.clone()]);
    assert_eq!(
        complete.key_fingerprint,
        silo_operator::rpc_rotation::fingerprint(&new_key)
    );
    assert!(complete.finished_at.is_some());
    // Every silo runs the new key alone: the region copies hold it and every Deployment is
    // available at its hash.
    for (region, _) in REGIONS {
        assert_eq!(
            key_list(&admin, &format!("region-{region}"))
                .await
                .as_deref(),
            Some(new_key.as_str()),
            "{region}'s copy"
        );
    }
    let final_hash = content_hash(&new_key.as_str());
    for (name, (hash, available)) in deployments(&admin).await {
        assert_eq!(hash.as_deref(), Some(final_hash.as_str()), "{name}");
        assert!(available, "{name} available");
    }
    println!(
        "RPC key rotated across the control silo and {} regions in {:.1} s; phases seen: {steps_seen:?}",
        REGIONS.len(),
        took.as_secs_f64()
    );
    clean_slate(&admin).await;
}
