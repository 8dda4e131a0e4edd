//! Deployment lifecycle: roll out, scale up and down, delete with garbage collection.
//!
//! Exercises the controller manager (Deployment -> ReplicaSet -> Pods, garbage collector), the
//! scheduler (pods bound to nodes) and kwok (bound pods become Ready).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};

use crate::wait::{self, Check};
use crate::{Error, StepContext};

/// How long a rollout or scale step may take on the local cluster.
pub const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(90);

const APP_LABEL: &str = "app.kubernetes.io/name";

/// A Deployment of `replicas` pods labelled `app.kubernetes.io/name=<name>`.
pub fn build(name: &str, replicas: i32) -> Deployment {
    let labels = [(APP_LABEL.to_owned(), name.to_owned())]
        .into_iter()
        .collect();
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([(APP_LABEL.to_owned(), name.to_owned())].into()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".to_owned(),
                        image: Some("registry.invalid/silo/e2e-app:1".to_owned()),
                        resources: Some(ResourceRequirements {
                            requests: Some(
                                [
                                    ("cpu".to_owned(), Quantity("10m".to_owned())),
                                    ("memory".to_owned(), Quantity("16Mi".to_owned())),
                                ]
                                .into(),
                            ),
                            ..ResourceRequirements::default()
                        }),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Wait until the Deployment reports `replicas` available and exactly that many pods exist,
/// all bound to a node and Ready.
pub async fn wait_available(
    client: &kube::Client,
    ns: &str,
    name: &str,
    replicas: i32,
) -> Result<(), Error> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = ListParams::default().labels(&format!("{APP_LABEL}={name}"));
    let want = usize::try_from(replicas)
        .map_err(|_| Error::Unexpected(format!("negative replicas {replicas}")))?;
    wait::until(
        &format!("deployment {ns}/{name} to have {replicas} available replicas and {replicas} Ready pods"),
        ROLLOUT_TIMEOUT,
        || async {
            let d = deployments.get(name).await?;
            let status = d.status.unwrap_or_default();
            let available = status.available_replicas.unwrap_or(0);
            let condition = status
                .conditions
                .unwrap_or_default()
                .into_iter()
                .any(|c| c.type_ == "Available" && c.status == "True");
            let pod_list = pods.list(&selector).await?;
            let live: Vec<&Pod> = pod_list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let ready_bound = live
                .iter()
                .filter(|p| pod_ready(p) && p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
                .count();
            let observed = format!(
                "available={available} condition Available={condition} pods={} (live {}, ready+bound {ready_bound})",
                pod_list.items.len(),
                live.len()
            );
            let settled = available == replicas
                && status.replicas.unwrap_or(0) == replicas
                && condition
                && pod_list.items.len() == want
                && ready_bound == want;
            Ok(if settled { Check::Done(()) } else { Check::Pending(observed) })
        },
    )
    .await?;
    Ok(())
}

async fn scale(client: &kube::Client, ns: &str, name: &str, replicas: i32) -> Result<(), Error> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({ "spec": { "replicas": replicas } });
    deployments
        .patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .step(format!("scale deployment {ns}/{name} to {replicas}"))?;
    Ok(())
}

/// Roll out 3 replicas, scale to 5 and back to 3, delete, and wait for the garbage collector to
/// remove the ReplicaSet and its pods.
pub async fn lifecycle(client: &kube::Client, ns: &str) -> Result<(), Error> {
    let name = "web";
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deployments
        .create(&PostParams::default(), &build(name, 3))
        .await
        .step(format!("create deployment {ns}/{name}"))?;
    wait_available(client, ns, name, 3).await?;

    scale(client, ns, name, 5).await?;
    wait_available(client, ns, name, 5).await?;
    scale(client, ns, name, 3).await?;
    wait_available(client, ns, name, 3).await?;

    deployments
        .delete(name, &DeleteParams::background())
        .await
        .step(format!("delete deployment {ns}/{name}"))?;
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = ListParams::default().labels(&format!("{APP_LABEL}={name}"));
    wait::until(
        &format!("garbage collection of deployment {ns}/{name}'s ReplicaSets and pods"),
        ROLLOUT_TIMEOUT,
        || async {
            let rs = replicasets.list(&selector).await?.items.len();
            let p = pods.list(&selector).await?.items.len();
            let gone = deployments.get_opt(name).await?.is_none();
            Ok(if gone && rs == 0 && p == 0 {
                Check::Done(())
            } else {
                Check::Pending(format!(
                    "deployment present={}, replicasets={rs}, pods={p}",
                    !gone
                ))
            })
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_matches_the_pod_template() {
        let d = build("web", 3);
        let spec = d.spec.expect("spec");
        assert_eq!(spec.replicas, Some(3));
        let selector = spec.selector.match_labels.expect("selector labels");
        let template = spec
            .template
            .metadata
            .and_then(|m| m.labels)
            .expect("template labels");
        for (k, v) in &selector {
            assert_eq!(
                template.get(k),
                Some(v),
                "template lacks selector label {k}"
            );
        }
    }
}
