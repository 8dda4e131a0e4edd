//! Running a rotation: read the snapshot (connection Secrets and Jobs from the stores, the
//! region's pods from the API when a rolled password waits to be retired), decide, and apply
//! the decided Secret steps with optimistic concurrency (each checks the Secret as watched,
//! does nothing when its change is already there, and patches at that resourceVersion).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use rand::RngCore;
use serde_json::{Value, json};
use silo_api::{CredentialRotationRequest, CredentialRotationStatus, Store};

use super::{
    Decision, NEXT_PASSWORD_KEY, PASSWORD_KEY, PREVIOUS_PASSWORD_KEY, PREVIOUS_USERNAME_KEY,
    Provision, ROTATABLE, SecretStep, SecretView, Snapshot, StoreView, USERNAME_KEY,
};
use crate::build::ROTATION_NAME;
use crate::infra::{Provided, SiloInfra};
use crate::labels;
use crate::records::SecretRecord;
use crate::stores::Stores;

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(
        "reading or writing Secret {namespace}/{name} for a password rotation failed: {source}"
    )]
    Secret {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing the pods of {namespace} (which still use the old password?) failed: {source}")]
    Pods {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "Secret {namespace}/{name} lacks key {key}, which the rotation wrote earlier; set a new spec.rotateCredentials.token to start over"
    )]
    MissingKey {
        namespace: String,
        name: String,
        key: &'static str,
    },
}

/// The decision and the revision the pod templates carry.
pub struct Prepared {
    pub decision: Decision,
    pub revision: Option<String>,
}

fn secret_name(store: Store) -> String {
    format!("{}-credentials", store.name())
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    data.get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .filter(|s| !s.is_empty())
}

fn view_of(secret: &SecretRecord) -> SecretView {
    let data = &secret.state.data;
    SecretView {
        username: text(data, USERNAME_KEY),
        token: secret.meta.credentials_token.clone(),
        has_next: text(data, NEXT_PASSWORD_KEY).is_some(),
        previous_username: text(data, PREVIOUS_USERNAME_KEY),
        has_previous: text(data, PREVIOUS_PASSWORD_KEY).is_some(),
    }
}

/// What the stores show of the region's rotatable stores.
fn views(stores: &Stores, namespace: &str, infra: &SiloInfra) -> Vec<StoreView> {
    let jobs = stores.jobs.state();
    ROTATABLE
        .into_iter()
        .map(|store| {
            let provision = match infra.get(store) {
                Some(Provided::Managed { .. }) => Provision::Managed,
                Some(Provided::External { source, .. }) => Provision::External {
                    source: source.clone(),
                },
                Some(Provided::Reference { secret, .. }) => Provision::External {
                    source: secret.clone(),
                },
                None => Provision::Absent,
            };
            let secret = stores
                .secrets
                .get(&ObjectRef::new(&secret_name(store)).within(namespace))
                .map(|s| view_of(&s));
            let prefix = format!("rotate-{}-", store.name());
            let jobs = jobs
                .iter()
                .filter(|j| j.meta.namespace.as_deref() == Some(namespace))
                .filter(|j| j.meta.name.starts_with(&prefix))
                .map(|j| (j.meta.name.clone(), j.state.clone()))
                .collect();
            StoreView {
                store,
                provision,
                secret,
                jobs,
            }
        })
        .collect()
}

/// Pods of the namespace that may hold a password older than `revision`: running or
/// terminating workload and migration pods not built at it (stores and rotation Jobs
/// excluded).
async fn stale_pods(
    client: &kube::Client,
    namespace: &str,
    revision: Option<&str>,
) -> Result<Vec<String>, RotationError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&labels::managed_selector()))
        .await
        .map_err(|source| RotationError::Pods {
            namespace: namespace.to_owned(),
            source,
        })?;
    let skip: Vec<&str> = Store::ALL
        .iter()
        .map(|s| s.name())
        .chain([ROTATION_NAME])
        .collect();
    Ok(list
        .items
        .into_iter()
        .filter(|p| {
            let finished = p
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
            let name = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::NAME))
                .map(String::as_str)
                .unwrap_or_default();
            let at = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(labels::CREDENTIALS_REVISION))
                .map(String::as_str);
            !finished && !skip.contains(&name) && at != revision
        })
        .filter_map(|p| p.metadata.name)
        .collect())
}

/// Read the snapshot and decide.
pub async fn prepare(
    client: &kube::Client,
    stores: &Stores,
    namespace: &str,
    infra: &SiloInfra,
    request: Option<&CredentialRotationRequest>,
    previous: &[CredentialRotationStatus],
    now: Time,
) -> Result<Prepared, RotationError> {
    let views = views(stores, namespace, infra);
    let revision = super::revision(&views);
    let rolling = views
        .iter()
        .any(|v| v.secret.as_ref().is_some_and(|s| s.has_previous));
    let stale = if rolling {
        stale_pods(client, namespace, revision.as_deref()).await?
    } else {
        Vec::new()
    };
    let decision = super::decide(&Snapshot {
        request,
        stores: views,
        previous,
        stale_pods: stale,
        now,
    });
    Ok(Prepared { decision, revision })
}

fn random_password() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn b64(value: &str) -> Value {
    use base64::Engine;
    Value::String(base64::engine::general_purpose::STANDARD.encode(value))
}

/// The connection URI of `store` for `login`/`password`, from the Secret's host and port.
fn uri(store: Store, data: &BTreeMap<String, ByteString>, login: &str, password: &str) -> String {
    let host = text(data, "host").unwrap_or_default();
    let port = text(data, "port").unwrap_or_else(|| store.port().to_string());
    match store {
        Store::Postgres => {
            let database = text(data, "database")
                .unwrap_or_else(|| crate::build::POSTGRES_DATABASE.to_owned());
            format!("postgres://{login}:{password}@{host}:{port}/{database}")
        }
        _ => format!("redis://:{password}@{host}:{port}/0"),
    }
}

/// The merge patch of `step` against the Secret as it is now, `None` when already applied.
fn step_patch(
    step: &SecretStep,
    secret: &SecretRecord,
    namespace: &str,
) -> Result<Option<Value>, RotationError> {
    let data = &secret.state.data;
    let view = view_of(secret);
    let missing = |store: Store, key: &'static str| RotationError::MissingKey {
        namespace: namespace.to_owned(),
        name: secret_name(store),
        key,
    };
    Ok(match step {
        SecretStep::PrepareNext { .. } if view.has_next => None,
        SecretStep::PrepareNext { .. } => Some(json!({
            "data": { NEXT_PASSWORD_KEY: b64(&random_password()) }
        })),
        SecretStep::Swap { token, .. } if view.token.as_deref() == Some(token.as_str()) => None,
        SecretStep::Swap {
            store,
            token,
            login,
        } => {
            let next =
                text(data, NEXT_PASSWORD_KEY).ok_or_else(|| missing(*store, NEXT_PASSWORD_KEY))?;
            let current = text(data, PASSWORD_KEY).ok_or_else(|| missing(*store, PASSWORD_KEY))?;
            let mut changes = serde_json::Map::new();
            changes.insert(PASSWORD_KEY.to_owned(), b64(&next));
            changes.insert(PREVIOUS_PASSWORD_KEY.to_owned(), b64(&current));
            changes.insert(NEXT_PASSWORD_KEY.to_owned(), Value::Null);
            if *store == Store::Postgres {
                let old = view
                    .username
                    .clone()
                    .ok_or_else(|| missing(*store, USERNAME_KEY))?;
                changes.insert(USERNAME_KEY.to_owned(), b64(login));
                changes.insert(PREVIOUS_USERNAME_KEY.to_owned(), b64(&old));
            }
            changes.insert("uri".to_owned(), b64(&uri(*store, data, login, &next)));
            Some(json!({
                "metadata": { "annotations": { labels::CREDENTIALS_TOKEN: token } },
                "data": changes,
            }))
        }
        SecretStep::Clean { .. } if !view.has_previous && view.previous_username.is_none() => None,
        SecretStep::Clean { .. } => Some(json!({
            "data": { PREVIOUS_PASSWORD_KEY: Value::Null, PREVIOUS_USERNAME_KEY: Value::Null }
        })),
    })
}

/// Apply the decided Secret steps, each against the Secret as the store shows it (the
/// operator may watch and patch Secrets, not get them); a stale copy fails on its
/// resourceVersion and the reconcile is retried.
pub async fn run_steps(
    client: &kube::Client,
    stores: &Stores,
    namespace: &str,
    steps: &[SecretStep],
) -> Result<(), RotationError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for step in steps {
        let store = match step {
            SecretStep::PrepareNext { store }
            | SecretStep::Swap { store, .. }
            | SecretStep::Clean { store } => *store,
        };
        let name = secret_name(store);
        let error = |source| RotationError::Secret {
            namespace: namespace.to_owned(),
            name: name.clone(),
            source,
        };
        let Some(secret) = stores.secrets.get(&ObjectRef::new(&name).within(namespace)) else {
            continue;
        };
        let Some(mut patch) = step_patch(step, &secret, namespace)? else {
            continue;
        };
        // Fails (and is retried) if the Secret changed since it was read.
        patch["metadata"]["resourceVersion"] = json!(secret.meta.resource_version);
        secrets
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(error)?;
        tracing::info!(namespace, store = store.name(), step = ?step_kind(step), "password rotation step");
    }
    Ok(())
}

fn step_kind(step: &SecretStep) -> &'static str {
    match step {
        SecretStep::PrepareNext { .. } => "new password generated",
        SecretStep::Swap { .. } => "connection Secret moved to the new password",
        SecretStep::Clean { .. } => "old password retired",
    }
}
