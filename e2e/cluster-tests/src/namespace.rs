//! A namespace with a generated name per test, deleted (and awaited) when the test ends.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};

use crate::wait::{self, Check};
use crate::{Error, StepContext};

/// How long the namespace controller may take to empty and remove a namespace.
const DELETE_TIMEOUT: Duration = Duration::from_secs(120);

pub struct TestNamespace {
    api: Api<Namespace>,
    pub name: String,
}

impl TestNamespace {
    /// Create `silo-e2e-<purpose>-<random>`.
    pub async fn create(client: &kube::Client, purpose: &str) -> Result<Self, Error> {
        let api: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("silo-e2e-{purpose}-")),
                labels: Some([("silo.dev/e2e".to_owned(), purpose.to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = api
            .create(&PostParams::default(), &ns)
            .await
            .step(format!("create namespace for {purpose}"))?;
        let name = created
            .metadata
            .name
            .ok_or_else(|| Error::Unexpected("created namespace has no name".to_owned()))?;
        Ok(Self { api, name })
    }

    /// Delete the namespace and wait until the namespace controller has removed it.
    pub async fn delete(self) -> Result<(), Error> {
        match self.api.delete(&self.name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(e) => return Err(e).step(format!("delete namespace {}", self.name)),
        }
        let api = self.api.clone();
        let name = self.name.clone();
        wait::until(
            &format!("namespace {name} to be removed"),
            DELETE_TIMEOUT,
            || async {
                Ok(match api.get_opt(&name).await? {
                    None => Check::Done(()),
                    Some(ns) => Check::Pending(format!(
                        "phase {:?}",
                        ns.status.and_then(|s| s.phase).unwrap_or_default()
                    )),
                })
            },
        )
        .await?;
        Ok(())
    }
}

/// Run `scenario` in a fresh namespace, then delete the namespace whatever the outcome.
pub async fn with_namespace<T, F, Fut>(
    client: &kube::Client,
    purpose: &str,
    scenario: F,
) -> Result<T, Error>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let ns = TestNamespace::create(client, purpose).await?;
    let result = scenario(ns.name.clone()).await;
    let cleanup = ns.delete().await;
    let value = result?;
    cleanup?;
    Ok(value)
}
