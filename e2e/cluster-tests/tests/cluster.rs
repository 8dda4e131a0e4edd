//! Integration tests against the local clusters started by `e2e/cluster/up.sh`.
//!
//! They need `SILO_KUBECONFIG` (or `KUBECONFIG`) and, for the two-cluster test,
//! `SILO_KUBECONFIG_2`; without them they fail and say how to start the clusters.

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use silo_e2e_cluster::cluster::{self, Which};
use silo_e2e_cluster::namespace::with_namespace;
use silo_e2e_cluster::{Error, StepContext, crd, deployment, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_scales_and_is_garbage_collected() -> Result<(), Error> {
    let primary = cluster::connect(Which::Primary).await?;
    let client = primary.client.clone();
    with_namespace(&primary.client, "deploy", |ns| async move {
        deployment::lifecycle(&client, &ns).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_cel_rule_rejects_invalid_object_and_accepts_valid_one() -> Result<(), Error> {
    let primary = cluster::connect(Which::Primary).await?;
    let client = primary.client.clone();
    let message = with_namespace(&primary.client, "crd", |ns| async move {
        // The generated namespace suffix keeps the CRD name unique to this run.
        let suffix: String = ns
            .rsplit('-')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        crd::cel_validation(&client, &ns, &suffix).await
    })
    .await?;
    assert!(
        message.contains(crd::RULE_MESSAGE),
        "rejection message: {message}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_roll_out_deployments_at_the_same_time() -> Result<(), Error> {
    let primary = cluster::connect(Which::Primary).await?;
    let secondary = cluster::connect(Which::Secondary).await?;
    assert_ne!(
        primary.kubeconfig, secondary.kubeconfig,
        "SILO_KUBECONFIG and SILO_KUBECONFIG_2 must name two different clusters"
    );

    let (first, second) = tokio::join!(
        with_namespace(&primary.client, "pair", |ns| {
            let client = primary.client.clone();
            let other = secondary.client.clone();
            async move {
                // A namespace of one cluster must not exist in the other: they are independent.
                let seen = Api::<Namespace>::all(other)
                    .get_opt(&ns)
                    .await
                    .step("look up the first cluster's namespace in the second")?;
                if seen.is_some() {
                    return Err(Error::Unexpected(format!(
                        "namespace {ns} of the first cluster exists in the second: both variables point at one cluster"
                    )));
                }
                deployment::lifecycle(&client, &ns).await
            }
        }),
        with_namespace(&secondary.client, "pair", |ns| {
            let client = secondary.client.clone();
            async move { deployment::lifecycle(&client, &ns).await }
        }),
    );
    first?;
    second?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_token_is_accepted_and_limited_by_rbac() -> Result<(), Error> {
    let primary = cluster::connect(Which::Primary).await?;
    let cluster = primary.clone();
    let denial = with_namespace(&primary.client, "token", |ns| async move {
        token::service_account_access(&cluster, &ns, "default").await
    })
    .await?;
    assert!(
        denial.contains("system:serviceaccount:")
            && denial.contains("cannot list resource \"pods\""),
        "denial names the ServiceAccount and the verb: {denial}"
    );
    Ok(())
}
