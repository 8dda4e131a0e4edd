//! Apply: make the cluster match a [`DesiredSet`] with server-side apply (one field manager),
//! skipping unchanged children without a request, creating generated secrets once, and
//! deleting children that are no longer desired.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use rand::RngCore;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::{Child, ChildKey, ChildKind, DesiredSet, GeneratedSecret};
use crate::drift::{Applied, Tracker, fields_digest, needs_apply};
use crate::labels;
use crate::metrics::Metrics;
use crate::stores::Stores;

/// A write to the API server failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("applying {key} failed: {source}")]
    Apply {
        key: ChildKey,
        #[source]
        source: kube::Error,
    },
    #[error("creating secret {key} failed: {source}")]
    Create {
        key: ChildKey,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {key} failed: {source}")]
    Delete {
        key: ChildKey,
        #[source]
        source: kube::Error,
    },
}

/// What one apply pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub written: usize,
    pub unchanged: usize,
    pub deleted: usize,
}

/// Applies desired sets for the reconcilers.
#[derive(Clone)]
pub struct Applier {
    pub client: Client,
    pub stores: Stores,
    pub tracker: Arc<Tracker>,
    pub metrics: Metrics,
}

fn api_for<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(client.clone(), namespace)
}

async fn ssa<K>(api: Api<K>, name: &str, obj: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let params = PatchParams::apply(labels::FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(obj)).await
}

impl Applier {
    /// Create generated secrets, then apply every child that needs it.
    pub async fn apply_set(&self, set: &DesiredSet) -> Result<ApplyReport, ApplyError> {
        let mut report = ApplyReport::default();
        // The namespace goes first: everything else lives in it.
        let (namespaces, rest): (Vec<&Child>, Vec<&Child>) = set
            .children
            .iter()
            .partition(|c| c.kind() == ChildKind::Namespace);
        for child in namespaces {
            self.apply_child(child, &mut report).await?;
        }
        for generated in &set.generated {
            self.ensure_generated(generated, &mut report).await?;
        }
        for child in rest {
            self.apply_child(child, &mut report).await?;
        }
        Ok(report)
    }

    async fn apply_child(&self, child: &Child, report: &mut ApplyReport) -> Result<(), ApplyError> {
        let key = child.key();
        let hash = child.hash();
        let observed = self.stores.observed(&key);
        // A Job is created once: its pod template cannot change, and a finished Job is the
        // record that its version's migrations ran.
        if key.kind == ChildKind::Job && (observed.is_some() || self.tracker.get(&key).is_some()) {
            report.unchanged += 1;
            return Ok(());
        }
        let applied = self.tracker.get(&key);
        if !needs_apply(hash, observed.as_ref(), applied.as_ref(), Instant::now()) {
            if applied.is_none()
                && let Some(o) = observed
            {
                // First sight after a restart, unedited: its fields as they are are ours.
                self.tracker.record(
                    key.clone(),
                    Applied {
                        hash: hash.to_owned(),
                        fields: o.fields,
                        at: Instant::now(),
                        seen: true,
                    },
                );
            }
            report.unchanged += 1;
            self.metrics.apply(key.kind.as_str(), false);
            return Ok(());
        }
        let client = &self.client;
        let ns = key.namespace.as_str();
        let name = key.name.as_str();
        let result = match child {
            Child::Namespace(o) => ssa(Api::<Namespace>::all(client.clone()), name, o)
                .await
                .map(|r| r.metadata),
            Child::ConfigMap(o) => ssa(api_for::<ConfigMap>(client, ns), name, o)
                .await
                .map(|r| r.metadata),
            Child::Secret(o) => ssa(api_for::<Secret>(client, ns), name, o)
                .await
                .map(|r| r.metadata),
            Child::Deployment(o) => ssa(api_for::<Deployment>(client, ns), name, o)
                .await
                .map(|r| r.metadata),
            Child::Service(o) => ssa(api_for::<Service>(client, ns), name, o)
                .await
                .map(|r| r.metadata),
            Child::StatefulSet(o) => ssa(api_for::<StatefulSet>(client, ns), name, o)
                .await
                .map(|r| r.metadata),
            Child::ServiceAccount(o) => ssa(api_for::<ServiceAccount>(client, ns), name, o)
                .await
                .map(|r| r.metadata),
            Child::NetworkPolicy(o) => ssa(api_for::<NetworkPolicy>(client, ns), name, o)
                .await
                .map(|r| r.metadata),
            Child::Job(o) => ssa(api_for::<Job>(client, ns), name, o)
                .await
                .map(|r| r.metadata),
        };
        let meta = result.map_err(|source| ApplyError::Apply {
            key: key.clone(),
            source,
        })?;
        tracing::debug!(%key, "applied");
        self.metrics.apply(key.kind.as_str(), true);
        self.tracker.record(
            key.clone(),
            Applied {
                hash: hash.to_owned(),
                fields: fields_digest(meta.managed_fields.as_deref().unwrap_or_default()).0,
                at: Instant::now(),
                seen: false,
            },
        );
        report.written += 1;
        Ok(())
    }

    async fn ensure_generated(
        &self,
        generated: &GeneratedSecret,
        report: &mut ApplyReport,
    ) -> Result<(), ApplyError> {
        let key = generated.key();
        if self.stores.observed(&key).is_some() || self.tracker.get(&key).is_some() {
            report.unchanged += 1;
            return Ok(());
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let mut secret = generated.secret.clone();
        let data: BTreeMap<String, ByteString> = generated
            .data(&hex::encode(bytes))
            .into_iter()
            .map(|(k, v)| (k, ByteString(v.into_bytes())))
            .collect();
        secret.data = Some(data);
        let api = api_for::<Secret>(&self.client, &key.namespace);
        let fields = match api.create(&PostParams::default(), &secret).await {
            Ok(created) => {
                report.written += 1;
                self.metrics.apply(key.kind.as_str(), true);
                fields_digest(
                    created
                        .metadata
                        .managed_fields
                        .as_deref()
                        .unwrap_or_default(),
                )
                .0
            }
            // Created earlier (the store had not caught up): keep the existing value.
            Err(kube::Error::Api(status)) if status.code == 409 => String::new(),
            Err(source) => return Err(ApplyError::Create { key, source }),
        };
        // Created once and never compared: the record only says "exists".
        self.tracker.record(
            key,
            Applied {
                hash: String::new(),
                fields,
                at: Instant::now(),
                seen: false,
            },
        );
        Ok(())
    }

    /// Delete every child labelled `owner_label=owner` that `set` does not contain.
    pub async fn prune(
        &self,
        owner_label: &str,
        owner: &str,
        set: &DesiredSet,
        report: &mut ApplyReport,
    ) -> Result<(), ApplyError> {
        for key in self.stores.owned_by(owner_label, owner) {
            if set.contains(&key) {
                continue;
            }
            self.delete(&key).await?;
            report.deleted += 1;
        }
        Ok(())
    }

    /// Delete one child; already gone counts as done.
    pub async fn delete(&self, key: &ChildKey) -> Result<(), ApplyError> {
        let dp = DeleteParams::background();
        let client = &self.client;
        let ns = key.namespace.as_str();
        let name = key.name.as_str();
        let result = match key.kind {
            ChildKind::Namespace => Api::<Namespace>::all(client.clone())
                .delete(name, &dp)
                .await
                .map(|_| ()),
            ChildKind::ConfigMap => api_for::<ConfigMap>(client, ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            ChildKind::Secret => api_for::<Secret>(client, ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            ChildKind::Deployment => api_for::<Deployment>(client, ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            ChildKind::Service => api_for::<Service>(client, ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            ChildKind::StatefulSet => api_for::<StatefulSet>(client, ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            ChildKind::ServiceAccount => api_for::<ServiceAccount>(client, ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            ChildKind::NetworkPolicy => api_for::<NetworkPolicy>(client, ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            ChildKind::Job => api_for::<Job>(client, ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
        };
        self.tracker.forget(key);
        match result {
            Ok(()) => {
                tracing::info!(%key, "deleted child that is no longer desired");
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(ApplyError::Delete {
                key: key.clone(),
                source,
            }),
        }
    }
}
