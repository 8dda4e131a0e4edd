//! More of a Region in a customer-provided cluster, on the same two real clusters as
//! `customer_cluster.rs` (management `SILO_KUBECONFIG`, customer `SILO_KUBECONFIG_2`, reached
//! only with the identity `silo-operator onboard` made):
//!
//! - onboarded with a namespace prefix, the Region lands in `<prefix><name>` there, becomes
//!   Ready and gets its directory ConfigMap there;
//! - its directory names the local Regions that pods there cannot reach (a `.svc` address)
//!   in `DirectoryAddressesReachable` until they set `spec.address`;
//! - an identity that may not read pods there is named in `PermissionsSufficient` and the
//!   Region keeps working;
//! - its managed stores' passwords rotate to the end (the rolling step reads its pods there);
//! - a local Region deleted is gone from the directory there by the time it is released (its
//!   finalizer waits for the directories in customer clusters too);
//! - a pod that cannot run there (the kwok stage `e2e/cluster/kwok/unpullable-version.yaml`)
//!   is named in its `Ready` message, as for a local Region.
//!
//! Takes over the management cluster's silo resources; uses only namespace `tenant-it-beta` of
//! the customer cluster.

mod common;

use std::time::Duration;

use common::customer::{
    CUSTOMER_TIMEOUT, condition, control_plane, customer_client, customer_kubeconfig, local_region,
    onboard, wait_region,
};
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::Role;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use silo_api::{ControlPlane, Region};
use silo_contract::RegionDirectory;

const TIMEOUT: Duration = CUSTOMER_TIMEOUT;
const REGION: &str = "it-beta";
const PREFIX: &str = "tenant-";
const REMOTE_NS: &str = "tenant-it-beta";
/// The kwok stage keeps pods of this release in ImagePullBackOff.
const UNPULLABLE: &str = "0.0.0-unpullable";

async fn wait_gone(regions: &Api<Region>, name: &str) {
    wait_for(&format!("Region {name} to be released"), TIMEOUT, || {
        let regions = regions.clone();
        async move {
            match regions.get_opt(name).await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(r) => Err(format!("{:?}", r.status.map(|s| s.conditions))),
            }
        }
    })
    .await;
}

/// The Region names in the directory ConfigMap of `configmaps`' namespace.
async fn directory_names(configmaps: &Api<ConfigMap>) -> Result<Vec<String>, String> {
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
    Ok(names)
}

/// Start from a customer cluster without the Region's namespace.
async fn clean_customer(customer: &Client) {
    let namespaces: Api<Namespace> = Api::all(customer.clone());
    let _ = namespaces.delete(REMOTE_NS, &DeleteParams::default()).await;
    wait_for(
        "the customer namespace of an earlier run to be gone",
        Duration::from_secs(120),
        || {
            let namespaces = namespaces.clone();
            async move {
                match namespaces
                    .get_opt(REMOTE_NS)
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

async fn patch_spec(regions: &Api<Region>, name: &str, spec: serde_json::Value) {
    regions
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": spec })),
        )
        .await
        .unwrap_or_else(|e| panic!("patch Region {name}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefixed_customer_region_reports_pods_rotates_and_follows_the_fleet() {
    let management_path = kubeconfig_path();
    let customer_path = customer_kubeconfig();
    let admin = admin_client().await;
    let customer = customer_client().await;
    install_crds(&admin).await;
    install_rbac(&admin).await;
    clean_slate(&admin).await;
    clean_customer(&customer).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let secret = format!("{REGION}-kubeconfig");
    let _ = secrets.delete(&secret, &DeleteParams::default()).await;
    let sa_kubeconfig = service_account_kubeconfig(&admin).await;
    let _operator = Operator::start_with(
        &sa_kubeconfig,
        "operator-customer-regions",
        &[
            "--cluster-resync",
            "3s",
            "--cluster-max-backoff",
            "4s",
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
    // Two local Regions with their derived, cluster-internal address.
    for (name, id) in [("it-home", 3200), ("it-gone", 3201)] {
        regions
            .create(&PostParams::default(), &local_region(name, id))
            .await
            .unwrap_or_else(|e| panic!("create Region {name}: {e}"));
    }

    // Onboarded with a namespace prefix: the Region's namespace there is <prefix><name>.
    let m = management_path.to_string_lossy().into_owned();
    let c = customer_path.to_string_lossy().into_owned();
    let onboard_args = [
        "--kubeconfig",
        c.as_str(),
        "--management-kubeconfig",
        m.as_str(),
        "--region",
        REGION,
        "--snowflake-id",
        "3110",
        "--address",
        "https://beta.it.example",
        "--namespace-prefix",
        PREFIX,
    ];
    let mut with_apply = onboard_args.to_vec();
    with_apply.push("--apply");
    onboard(&with_apply);
    let beta = wait_region(&regions, REGION, "Ready", Region::is_ready).await;
    let status = beta.status.clone().unwrap_or_default();
    assert_eq!(status.namespace.as_deref(), Some(REMOTE_NS));
    let cluster = status.cluster.clone().expect("status.cluster");
    assert!(
        cluster.missing_permissions.is_empty(),
        "the onboarded identity has every permission, pods included: {:?}",
        cluster.missing_permissions
    );
    let deployments: Api<Deployment> = Api::namespaced(customer.clone(), REMOTE_NS);
    for name in ["relay", "web", "consumers", "postprocess"] {
        deployments.get(name).await.unwrap_or_else(|e| {
            panic!("Deployment {name} in {REMOTE_NS} of the customer cluster: {e}")
        });
    }
    assert!(
        Api::<Namespace>::all(customer.clone())
            .get_opt(&format!("region-{REGION}"))
            .await
            .expect("get namespace")
            .is_none(),
        "nothing lands in the unprefixed namespace"
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(customer.clone(), REMOTE_NS);
    assert_eq!(
        directory_names(&configmaps).await.expect("directory"),
        vec!["it-beta", "it-gone", "it-home"]
    );

    // An identity that may not read pods (onboarded by an older release) is named in
    // PermissionsSufficient; the Region keeps working without pod problems in its status, and
    // onboarding again restores the rule.
    let roles: Api<Role> = Api::namespaced(customer.clone(), REMOTE_NS);
    let mut role = roles
        .get("silo-operator")
        .await
        .expect("Role silo-operator");
    role.rules
        .get_or_insert_default()
        .retain(|rule| !rule.resources.iter().flatten().any(|r| r == "pods"));
    role.metadata.managed_fields = None;
    roles
        .replace("silo-operator", &PostParams::default(), &role)
        .await
        .expect("take pods away");
    let beta = wait_region(&regions, REGION, "PermissionsSufficient=False", |r| {
        condition(r, "PermissionsSufficient").is_some_and(|c| c.status == "False")
    })
    .await;
    let missing = beta
        .status
        .as_ref()
        .and_then(|s| s.cluster.as_ref())
        .map(|c| c.missing_permissions.clone())
        .unwrap_or_default();
    assert_eq!(
        missing,
        vec![
            format!("get pods in {REMOTE_NS}"),
            format!("list pods in {REMOTE_NS}")
        ]
    );
    wait_region(&regions, REGION, "Ready without reading pods", |r| {
        r.is_ready() && condition(r, "PermissionsSufficient").is_some_and(|c| c.status == "False")
    })
    .await;
    onboard(&onboard_args);
    wait_region(&regions, REGION, "PermissionsSufficient=True", |r| {
        condition(r, "PermissionsSufficient").is_some_and(|c| c.status == "True")
    })
    .await;

    // The directory there lists the local Regions at addresses its pods cannot reach: named,
    // with the fix; a Region that sets spec.address is no longer named.
    let beta = wait_region(
        &regions,
        REGION,
        "DirectoryAddressesReachable names it-gone and it-home",
        |r| {
            condition(r, "DirectoryAddressesReachable")
                .is_some_and(|c| c.status == "False" && c.message.contains("it-gone, it-home"))
        },
    )
    .await;
    let unreachable = condition(&beta, "DirectoryAddressesReachable").expect("condition");
    assert_eq!(unreachable.reason, "ClusterInternalAddresses");
    assert!(
        unreachable.message.contains("spec.address"),
        "{unreachable:?}"
    );
    assert!(
        beta.is_ready(),
        "an informational condition: Ready stays True"
    );
    patch_spec(
        &regions,
        "it-home",
        serde_json::json!({"address": "https://home.it.example"}),
    )
    .await;
    wait_region(&regions, REGION, "only it-gone named", |r| {
        condition(r, "DirectoryAddressesReachable").is_some_and(|c| {
            c.status == "False"
                && c.message.contains(": it-gone;")
                && !c.message.contains("it-home")
        })
    })
    .await;

    // Password rotation of the remote Region's managed stores runs to its end: the rolling
    // step lists the Region's pods in the customer cluster.
    patch_spec(
        &regions,
        REGION,
        serde_json::json!({"rotateCredentials": {"token": "it-rotation-1"}}),
    )
    .await;
    let rotated = wait_region(&regions, REGION, "CredentialsRotated", |r| {
        r.is_ready()
            && condition(r, "CredentialsRotated")
                .is_some_and(|c| c.status == "True" && c.reason == "Rotated")
    })
    .await;
    println!(
        "rotation: {:?}",
        condition(&rotated, "CredentialsRotated").map(|c| &c.message)
    );

    // Deleting a local Region: the directory in the customer cluster drops it.
    regions
        .delete("it-gone", &DeleteParams::default())
        .await
        .expect("delete it-gone");
    // Its finalizer waits for the remote directory: by the time the Region is gone, the
    // directory there no longer lists it.
    wait_gone(&regions, "it-gone").await;
    assert_eq!(
        directory_names(&configmaps).await.expect("directory"),
        vec!["it-beta", "it-home"],
        "the customer directory dropped it-gone before the Region was released"
    );
    wait_region(&regions, REGION, "DirectoryAddressesReachable=True", |r| {
        condition(r, "DirectoryAddressesReachable").is_some_and(|c| c.status == "True")
    })
    .await;

    // A pod that cannot run in the customer cluster is named in Ready, like a local one.
    patch_spec(&regions, REGION, serde_json::json!({"version": UNPULLABLE})).await;
    let stuck = wait_region(
        &regions,
        REGION,
        "Ready=False naming ImagePullBackOff",
        |r| {
            condition(r, "Ready").is_some_and(|c| {
                c.status == "False"
                    && c.reason == "ImagePullBackOff"
                    && c.message.contains("ImagePullBackOff")
            })
        },
    )
    .await;
    let ready = condition(&stuck, "Ready").expect("Ready");
    println!("pod problem: {}", ready.message);
    assert!(
        ready.message.contains(UNPULLABLE),
        "names the image it cannot pull: {ready:?}"
    );

    // Deleting the Region removes its prefixed namespace there.
    regions
        .delete(REGION, &DeleteParams::default())
        .await
        .expect("delete it-beta");
    wait_gone(&regions, REGION).await;
    assert!(
        Api::<Namespace>::all(customer.clone())
            .get_opt(REMOTE_NS)
            .await
            .expect("get namespace")
            .is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()),
        "the prefixed namespace is deleted with the Region"
    );
    let _ = secrets.delete(&secret, &DeleteParams::default()).await;
}
