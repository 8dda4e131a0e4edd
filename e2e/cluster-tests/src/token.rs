//! ServiceAccount tokens from the TokenRequest API, authorized by RBAC.
//!
//! This is how workloads and the operator authenticate: the API server signs the token with the
//! service-account key, accepts it back, and RBAC decides what the account may do.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};

use crate::cluster::Cluster;
use crate::wait::{self, Check};
use crate::{Error, StepContext};

const RBAC_TIMEOUT: Duration = Duration::from_secs(30);

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

/// Create ServiceAccount `name` in `ns` allowed to get and list pods there, and nothing else.
async fn pod_reader(client: &kube::Client, ns: &str, name: &str) -> Result<(), Error> {
    let pp = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(
            &pp,
            &ServiceAccount {
                metadata: meta(name),
                ..ServiceAccount::default()
            },
        )
        .await
        .step(format!("create ServiceAccount {ns}/{name}"))?;
    let role = Role {
        metadata: meta(name),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".to_owned()]),
            verbs: vec!["get".to_owned(), "list".to_owned()],
            ..PolicyRule::default()
        }]),
    };
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&pp, &role)
        .await
        .step(format!("create Role {ns}/{name}"))?;
    let binding = RoleBinding {
        metadata: meta(name),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "Role".to_owned(),
            name: name.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: name.to_owned(),
            namespace: Some(ns.to_owned()),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&pp, &binding)
        .await
        .step(format!("create RoleBinding {ns}/{name}"))?;
    Ok(())
}

/// A client for the same API server authenticating with `token` only.
pub fn token_client(cluster: &Cluster, token: &str) -> Result<kube::Client, Error> {
    let mut config = cluster.config.clone();
    config.auth_info = serde_json::from_value(serde_json::json!({ "token": token }))
        .map_err(|e| Error::Unexpected(format!("token credentials do not deserialize: {e}")))?;
    kube::Client::try_from(config).step("build a client with the ServiceAccount token")
}

/// Issue a token for a pod-reader ServiceAccount, then check it may list pods in `ns` and is
/// forbidden to list them in `other_ns`. Returns the authenticated user name the server reports.
pub async fn service_account_access(
    cluster: &Cluster,
    ns: &str,
    other_ns: &str,
) -> Result<String, Error> {
    let name = "pod-reader";
    pod_reader(&cluster.client, ns, name).await?;
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let issued = Api::<ServiceAccount>::namespaced(cluster.client.clone(), ns)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .step(format!("request a token for ServiceAccount {ns}/{name}"))?;
    let token = issued
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Unexpected("TokenRequest returned no token".to_owned()))?;
    let as_account = token_client(cluster, &token)?;

    // The RBAC authorizer works from a cache; the new binding may take a moment to apply.
    let own: Api<Pod> = Api::namespaced(as_account.clone(), ns);
    wait::until(
        &format!("ServiceAccount {ns}/{name} to be allowed to list pods"),
        RBAC_TIMEOUT,
        || async {
            match own.list(&ListParams::default()).await {
                Ok(_) => Ok(Check::Done(())),
                Err(kube::Error::Api(status)) if status.code == 403 => {
                    Ok(Check::Pending(status.message))
                }
                Err(e) => Err(e),
            }
        },
    )
    .await?;

    match Api::<Pod>::namespaced(as_account, other_ns)
        .list(&ListParams::default())
        .await
    {
        Ok(_) => Err(Error::Unexpected(format!(
            "ServiceAccount {ns}/{name} listed pods in {other_ns} without any grant there"
        ))),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(status.message),
        Err(e) => Err(e).step(format!(
            "list pods in {other_ns} as ServiceAccount {ns}/{name}"
        )),
    }
}
