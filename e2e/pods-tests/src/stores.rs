//! A region's store pods, reached through the API server: `psql` by `kubectl exec`, a store
//! pod deleted and waited back, and the volumes a region's stores claim.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};

use crate::kubectl::Tools;
use crate::wait::{self, Check};
use crate::{Error, StepContext};

/// `psql` in a region's Postgres pod (local socket, as the image's superuser); the output,
/// trimmed (`-tA`: values only).
pub fn psql(tools: &Tools, namespace: &str, sql: &str) -> Result<String, Error> {
    psql_in(tools, namespace, "postgres-0", "silo", "silo", sql)
}

/// `psql` in the `postgres` container of `target` (a pod, or e.g. `deploy/postgres`) as `user`
/// on `database`, over the local socket; the output, trimmed (`-tA`: values only).
pub fn psql_in(
    tools: &Tools,
    namespace: &str,
    target: &str,
    user: &str,
    database: &str,
    sql: &str,
) -> Result<String, Error> {
    let out = tools.kubectl(&[
        "exec", "-n", namespace, target, "-c", "postgres", "--", "psql", "-U", user, "-d",
        database, "-tAc", sql,
    ])?;
    Ok(out.trim().to_owned())
}

/// Delete pod `name` in `namespace` and wait until its replacement is Ready; seconds taken.
pub async fn restart(client: &Client, namespace: &str, name: &str) -> Result<f64, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let old = pods.get(name).await.step("get the store pod")?.uid();
    let started = Instant::now();
    pods.delete(name, &DeleteParams::default())
        .await
        .step("delete the store pod")?;
    wait::until(
        &format!("{namespace}/{name} to come back Ready"),
        Duration::from_secs(240),
        || async {
            let pod = pods.get_opt(name).await?;
            let ready = pod.as_ref().is_some_and(|p| {
                p.uid() != old
                    && p.status
                        .iter()
                        .flat_map(|s| s.conditions.iter().flatten())
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            Ok(if ready {
                Check::Done(())
            } else {
                Check::Pending("not ready".into())
            })
        },
    )
    .await?;
    Ok(started.elapsed().as_secs_f64())
}

/// The PersistentVolumes whose claim is (or was, once Released) in `namespace`.
pub async fn volumes_of(client: &Client, namespace: &str) -> Result<Vec<PersistentVolume>, Error> {
    Ok(Api::<PersistentVolume>::all(client.clone())
        .list(&ListParams::default())
        .await
        .step("list volumes")?
        .items
        .into_iter()
        .filter(|pv| claim(pv).and_then(|c| c.namespace.as_deref()) == Some(namespace))
        .collect())
}

/// The claim volume `pv` is (or, once Released, was) bound to.
pub fn claim(pv: &PersistentVolume) -> Option<&ObjectReference> {
    pv.spec.as_ref()?.claim_ref.as_ref()
}
