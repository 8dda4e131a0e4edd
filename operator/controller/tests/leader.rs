//! Two operators against one cluster, one leader Lease: the standby sends no write; a SIGKILLed
//! leader is replaced by the standby and the fleet keeps converging; a leader paused past its
//! renew deadline (its lease taken meanwhile) resumes fenced: it exits without writing.
//!
//! Takes over the cluster's silo resources (deletes existing Regions/ControlPlanes first).

mod common;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use silo_api::{ControlPlane, Region};

const LEASE_NAME: &str = "silo-operator";
/// Short lease timings so that a takeover happens within seconds.
const LEASE_ARGS: [&str; 4] = ["--lease-duration", "6s", "--lease-renew-deadline", "4s"];
const TIMEOUT: Duration = Duration::from_secs(120);

fn control_plane() -> ControlPlane {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "ControlPlane",
        "metadata": {"name": "le-silo"},
        "spec": {"version": "0.1.0", "mode": "SILOED", "monolithRegion": "le-us", "namespace": "le-control"}
    }))
    .expect("ControlPlane fixture")
}

fn region(name: &str, snowflake_id: i32) -> Region {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "Region",
        "metadata": {"name": name},
        "spec": {"category": "MULTI_TENANT", "snowflakeId": snowflake_id}
    }))
    .expect("Region fixture")
}

fn signal(operator: &Operator, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &operator.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} failed");
}

async fn lease(leases: &Api<Lease>) -> k8s_openapi::api::coordination::v1::LeaseSpec {
    leases
        .get(LEASE_NAME)
        .await
        .expect("read the leader Lease")
        .spec
        .unwrap_or_default()
}

/// Wait until the Lease names an identity of `instance` (`<instance>_<random>`).
async fn wait_holder(leases: &Api<Lease>, instance: &str) {
    let prefix = format!("{instance}_");
    wait_for(&format!("{instance} to hold the lease"), TIMEOUT, || {
        let leases = leases.clone();
        let prefix = prefix.clone();
        async move {
            let spec = lease(&leases).await;
            match spec.holder_identity {
                Some(holder) if holder.starts_with(&prefix) => Ok(()),
                other => Err(format!("holder {other:?}")),
            }
        }
    })
    .await;
}

async fn wait_ready(regions: &Api<Region>, name: &str) {
    wait_for(&format!("Region {name} to be Ready"), TIMEOUT, || {
        let regions = regions.clone();
        async move {
            let r = regions.get(name).await.map_err(|e| e.to_string())?;
            r.is_ready()
                .then_some(())
                .ok_or_else(|| format!("{:?}", r.ready_condition()))
        }
    })
    .await;
}

async fn relay_replicas(deployments: &Api<Deployment>) -> Option<i32> {
    deployments
        .get("relay")
        .await
        .expect("read relay")
        .spec
        .and_then(|s| s.replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_fails_over_and_a_fenced_leader_never_writes() {
    let admin = admin_client().await;
    install_crds(&admin).await;
    install_rbac(&admin).await;
    clean_slate(&admin).await;
    let sa_kubeconfig = service_account_kubeconfig(&admin).await;
    let leases = leases(&admin);
    let regions: Api<Region> = Api::all(admin.clone());

    // A leads, B is a standby with warm caches; the fleet converges through A.
    let a = Operator::start_with(&sa_kubeconfig, "leader-a", &LEASE_ARGS).await;
    wait_holder(&leases, "leader-a").await;
    let b = Operator::start_with(&sa_kubeconfig, "leader-b", &LEASE_ARGS).await;
    wait_for("B to report itself a ready standby", TIMEOUT, || {
        http_get(b.port, "/readyz")
    })
    .await;
    let readyz = http_get(b.port, "/readyz").await.expect("B /readyz");
    assert!(readyz.starts_with("standby"), "B /readyz: {readyz}");
    assert_eq!(http_get(a.port, "/readyz").await.as_deref(), Ok("leader"));
    assert_eq!(a.counter("silo_operator_leader", &[]).await, 1.0);
    assert_eq!(b.counter("silo_operator_leader", &[]).await, 0.0);

    Api::<ControlPlane>::all(admin.clone())
        .create(&PostParams::default(), &control_plane())
        .await
        .expect("create ControlPlane");
    regions
        .create(&PostParams::default(), &region("le-us", 3101))
        .await
        .expect("create Region le-us");
    wait_ready(&regions, "le-us").await;
    assert!(a.writes().await > 0.0, "the leader wrote the fleet");
    assert_eq!(b.writes().await, 0.0, "the standby sent a write");

    // SIGKILL the leader: B takes over once the lease expired and converges a new Region.
    let killed = (Instant::now(), SystemTime::now());
    drop(a);
    regions
        .create(&PostParams::default(), &region("le-de", 3102))
        .await
        .expect("create Region le-de");
    wait_holder(&leases, "leader-b").await;
    let acquired = lease(&leases).await.acquire_time.expect("acquireTime");
    let takeover = SystemTime::from(acquired.0)
        .duration_since(killed.1)
        .unwrap_or_default();
    wait_ready(&regions, "le-de").await;
    println!(
        "failover: SIGKILL of the leader -> standby holds the lease {:.1}s -> new Region Ready {:.1}s (lease duration 6s, renew deadline 4s)",
        takeover.as_secs_f64(),
        killed.0.elapsed().as_secs_f64()
    );
    assert_eq!(http_get(b.port, "/readyz").await.as_deref(), Ok("leader"));

    // Pause B past its lease; another holder takes the lease meanwhile, and the fleet drifts.
    let mut b = b;
    signal(&b, "STOP");
    wait_for("B's lease to expire", TIMEOUT, || {
        let leases = leases.clone();
        async move {
            let spec = lease(&leases).await;
            let renewed = spec.renew_time.ok_or_else(|| "no renewTime".to_owned())?;
            let expires = SystemTime::from(renewed.0)
                + Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0) as u64);
            (SystemTime::now() > expires)
                .then_some(())
                .ok_or_else(|| "not yet".to_owned())
        }
    })
    .await;
    let now = MicroTime(Timestamp::now());
    leases
        .patch(
            LEASE_NAME,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {
                "holderIdentity": "intruder",
                "acquireTime": now,
                "renewTime": now,
                "leaseDurationSeconds": 3600,
            }})),
        )
        .await
        .expect("take the lease");
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "region-le-de");
    deployments
        .patch(
            "relay",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 4}})),
        )
        .await
        .expect("scale relay by hand");

    // Resumed, B sees its renew deadline passed and exits without putting relay back.
    signal(&b, "CONT");
    let status = wait_for("the fenced leader B to exit", TIMEOUT, || {
        let exited = b.exited();
        async move { exited.ok_or_else(|| "still running".to_owned()) }
    })
    .await;
    assert!(!status.success(), "B exited with {status}");
    let log = std::fs::read_to_string(&b.log).expect("read B's log");
    assert!(log.contains("lost the lease"), "B's log:\n{log}");
    assert_eq!(
        relay_replicas(&deployments).await,
        Some(4),
        "the fenced leader wrote after losing the lease"
    );

    // The lease freed, a new operator leads and puts the drift right.
    leases
        .patch(
            LEASE_NAME,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {
                "holderIdentity": null,
                "acquireTime": null,
                "renewTime": null,
                "leaseDurationSeconds": null,
            }})),
        )
        .await
        .expect("free the lease");
    let c = Operator::start_with(&sa_kubeconfig, "leader-c", &LEASE_ARGS).await;
    wait_holder(&leases, "leader-c").await;
    wait_for(
        "relay put back to 1 replica by the new leader",
        TIMEOUT,
        || {
            let deployments = deployments.clone();
            async move {
                let replicas = relay_replicas(&deployments).await;
                (replicas == Some(1))
                    .then_some(())
                    .ok_or_else(|| format!("{replicas:?}"))
            }
        },
    )
    .await;
    wait_ready(&regions, "le-de").await;
    drop(c);
    clean_slate(&admin).await;
}
