//! Talking to the cluster: CRDs, server-side apply of objects, and counting what is ready.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, CustomResourceExt, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use silo_api::{ControlPlane, Region};
use silo_operator::build::Child;
use silo_operator::labels;

/// Field manager of the benchmark's own writes.
const MANAGER: &str = "silo-bench";

/// Server-side apply `obj` through `api`.
async fn ssa<K>(api: Api<K>, obj: &K) -> kube::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams::apply(MANAGER).force();
    api.patch(&obj.name_any(), &params, &Patch::Apply(obj))
        .await
        .map(|_| ())
}

/// Apply the CRDs generated from the Rust types and wait until they are established.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [Region::crd(), ControlPlane::crd()] {
        ssa(crds.clone(), &crd).await?;
        let name = crd.name_any();
        until("CRD established", Duration::from_secs(60), || async {
            let crd = crds.get(&name).await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        })
        .await?;
    }
    Ok(())
}

/// Apply one child object; returns 1 (the write it sent).
async fn apply_child(client: &Client, child: &Child) -> kube::Result<u64> {
    let ns = child.meta().namespace.as_deref().unwrap_or_default();
    let c = || client.clone();
    match child {
        Child::Namespace(o) => ssa(Api::<Namespace>::all(c()), o).await?,
        Child::ConfigMap(o) => ssa(Api::<ConfigMap>::namespaced(c(), ns), o).await?,
        Child::Secret(o) => ssa(Api::<Secret>::namespaced(c(), ns), o).await?,
        Child::Deployment(o) => ssa(Api::<Deployment>::namespaced(c(), ns), o.as_ref()).await?,
        Child::Service(o) => ssa(Api::<Service>::namespaced(c(), ns), o.as_ref()).await?,
        Child::StatefulSet(o) => ssa(Api::<StatefulSet>::namespaced(c(), ns), o.as_ref()).await?,
        Child::ServiceAccount(o) => ssa(Api::<ServiceAccount>::namespaced(c(), ns), o).await?,
        Child::NetworkPolicy(o) => {
            ssa(Api::<NetworkPolicy>::namespaced(c(), ns), o.as_ref()).await?
        }
        Child::Job(o) => ssa(Api::<Job>::namespaced(c(), ns), o.as_ref()).await?,
    }
    Ok(1)
}

/// Apply every group (in order within a group), `concurrency` groups at a time; returns the
/// number of writes sent.
pub async fn apply_groups(
    client: &Client,
    groups: &[Vec<Child>],
    concurrency: usize,
) -> kube::Result<u64> {
    stream::iter(groups)
        .map(|group| async move {
            let mut writes = 0;
            for child in group {
                writes += apply_child(client, child).await?;
            }
            Ok::<_, kube::Error>(writes)
        })
        .buffer_unordered(concurrency)
        .try_fold(0, |sum, n| async move { Ok(sum + n) })
        .await
}

/// Apply the ControlPlane and the Regions, `concurrency` at a time.
pub async fn apply_fleet(
    client: &Client,
    cp: &ControlPlane,
    regions: &[Region],
    concurrency: usize,
) -> kube::Result<()> {
    ssa(Api::all(client.clone()), cp).await?;
    let api: Api<Region> = Api::all(client.clone());
    stream::iter(regions)
        .map(|r| ssa(api.clone(), r))
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await
}

/// Deployments labelled as silo children that are Available at their current generation.
pub async fn available_deployments(client: &Client) -> kube::Result<usize> {
    let api: Api<Deployment> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default().labels(&labels::managed_selector()))
        .await?;
    Ok(list
        .items
        .iter()
        .filter(|d| {
            let Some(status) = &d.status else {
                return false;
            };
            status.observed_generation == d.metadata.generation
                && status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Available" && c.status == "True")
        })
        .count())
}

/// Regions whose `Ready` condition is True.
pub async fn ready_regions(client: &Client) -> kube::Result<usize> {
    let api: Api<Region> = Api::all(client.clone());
    let list = api.list(&ListParams::default()).await?;
    Ok(list.items.iter().filter(|r| r.is_ready()).count())
}

/// Whether the ControlPlane reports `n` Regions, all Ready.
pub async fn control_plane_counts(client: &Client, n: usize) -> kube::Result<bool> {
    let api: Api<ControlPlane> = Api::all(client.clone());
    let cp = api.get(crate::fleet::CONTROL_PLANE).await?;
    let want = i32::try_from(n).unwrap_or(i32::MAX);
    Ok(cp
        .status
        .is_some_and(|s| s.regions == want && s.regions_ready == want))
}

/// Silo objects present: (Regions, ControlPlanes, managed namespaces).
pub async fn leftovers(client: &Client) -> kube::Result<(usize, usize, usize)> {
    let regions: Api<Region> = Api::all(client.clone());
    let cps: Api<ControlPlane> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let selector = ListParams::default().labels(&labels::managed_selector());
    Ok((
        regions.list(&ListParams::default()).await?.items.len(),
        cps.list(&ListParams::default()).await?.items.len(),
        namespaces.list(&selector).await?.items.len(),
    ))
}

/// Delete the managed namespaces (the baseline's objects) and wait until they are gone.
pub async fn delete_namespaces(client: &Client, timeout: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let selector = ListParams::default().labels(&labels::managed_selector());
    for ns in namespaces.list(&selector).await? {
        namespaces
            .delete(&ns.name_any(), &DeleteParams::background())
            .await?;
    }
    until("baseline namespaces deleted", timeout, || async {
        let left = namespaces.list(&selector).await.ok()?.items.len();
        (left == 0).then_some(())
    })
    .await?;
    Ok(started.elapsed())
}

/// Delete the fleet (the operator's finalizer removes each region namespace) and wait until
/// Regions, ControlPlane and namespaces are gone.
pub async fn delete_fleet(client: &Client, timeout: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let regions: Api<Region> = Api::all(client.clone());
    let cps: Api<ControlPlane> = Api::all(client.clone());
    for region in regions.list(&ListParams::default()).await? {
        regions
            .delete(&region.name_any(), &DeleteParams::background())
            .await?;
    }
    for cp in cps.list(&ListParams::default()).await? {
        cps.delete(&cp.name_any(), &DeleteParams::background())
            .await?;
    }
    until("fleet deleted", timeout, || async {
        let (r, c, n) = leftovers(client).await.ok()?;
        (r + c + n == 0).then_some(())
    })
    .await?;
    Ok(started.elapsed())
}

/// Poll `check` every 500 ms until it yields a value or `timeout` passes.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
