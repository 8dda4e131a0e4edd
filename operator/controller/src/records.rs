//! Compact records of the operator's children: what the stores keep of each watched object
//! instead of the object itself — the few metadata fields, labels and annotations the
//! operator reads, and per kind the status numbers readiness reads.
//!
//! ```text
//!   watch event (k8s object) ─► Record::from: Meta (name, owner labels and references,
//!                                 spec hash, fields digest, ...) + kind state
//!                             ─► store (Arc<Record>) ─► drift, owners, status, rotation
//! ```
//!
//! Labels, annotations and owner references are fields, not maps: a child costs a few
//! hundred bytes in a store, and reading one clones nothing.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PartialObjectMeta;
use kube::core::ObjectMeta;
use kube::runtime::reflector::Lookup;
use kube::runtime::watcher;

use crate::build::{ChildKey, ChildKind};
use crate::drift::{Observed, fields_digest};
use crate::infra::gate::JobState;
use crate::labels;
use crate::silo::job_state;

/// A silo-group owner reference of a child: the Region or ControlPlane to reconcile when the
/// child changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiloOwner {
    Region(String),
    ControlPlane(String),
}

/// What the operator reads of a child's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub name: String,
    /// `None` for cluster-scoped children (namespaces).
    pub namespace: Option<String>,
    pub resource_version: Option<String>,
    pub generation: i64,
    /// A deletion timestamp is set.
    pub deleting: bool,
    /// Label [`labels::REGION`].
    pub region: Option<String>,
    /// Label [`labels::CONTROL_PLANE`].
    pub control_plane: Option<String>,
    /// Owner references to Regions and ControlPlanes.
    pub owners: Vec<SiloOwner>,
    /// Annotation [`labels::SPEC_HASH`]: the desired-object hash of the operator's last write.
    pub spec_hash: Option<String>,
    /// Annotation [`labels::RPC_SECRETS_HASH`] (workloads).
    pub rpc_secrets_hash: Option<String>,
    /// Annotation [`labels::CREDENTIALS_TOKEN`] (connection Secrets).
    pub credentials_token: Option<String>,
    /// Annotation [`labels::DIRECTORY_HASH`] (directory ConfigMaps).
    pub directory_hash: Option<String>,
    /// Digest of the ownership of its fields (see [`fields_digest`]).
    pub fields: String,
    /// Another writer owns content fields.
    pub foreign: bool,
}

impl Meta {
    /// The record of `meta`: its `managedFields` become their digest, and of its labels,
    /// annotations and owner references only those the operator reads are kept.
    pub fn of(meta: ObjectMeta) -> Self {
        let (fields, foreign) = fields_digest(meta.managed_fields.as_deref().unwrap_or_default());
        let mut labels = meta.labels.unwrap_or_default();
        let mut annotations = meta.annotations.unwrap_or_default();
        let owners = meta
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.api_version.starts_with(silo_api::GROUP))
            .filter_map(|o| match o.kind.as_str() {
                "Region" => Some(SiloOwner::Region(o.name)),
                "ControlPlane" => Some(SiloOwner::ControlPlane(o.name)),
                _ => None,
            })
            .collect();
        Self {
            name: meta.name.unwrap_or_default(),
            namespace: meta.namespace,
            resource_version: meta.resource_version,
            generation: meta.generation.unwrap_or(0),
            deleting: meta.deletion_timestamp.is_some(),
            region: labels.remove(labels::REGION),
            control_plane: labels.remove(labels::CONTROL_PLANE),
            owners,
            spec_hash: annotations.remove(labels::SPEC_HASH),
            rpc_secrets_hash: annotations.remove(labels::RPC_SECRETS_HASH),
            credentials_token: annotations.remove(labels::CREDENTIALS_TOKEN),
            directory_hash: annotations.remove(labels::DIRECTORY_HASH),
            foreign,
            fields,
        }
    }

    /// The key of this child as a child of `kind`.
    pub fn key(&self, kind: ChildKind) -> ChildKey {
        ChildKey {
            kind,
            namespace: self.namespace.clone().unwrap_or_default(),
            name: self.name.clone(),
        }
    }

    /// What drift detection compares.
    pub fn observed(&self) -> Observed {
        Observed {
            hash: self.spec_hash.clone(),
            fields: self.fields.clone(),
            foreign: self.foreign,
        }
    }

    /// The value of owner label `label` ([`labels::REGION`] or [`labels::CONTROL_PLANE`]).
    pub fn owner_label(&self, label: &str) -> Option<&str> {
        match label {
            labels::REGION => self.region.as_deref(),
            labels::CONTROL_PLANE => self.control_plane.as_deref(),
            _ => None,
        }
    }
}

/// What a store keeps of one child: its [`Meta`] and the state of its kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Record<S> {
    pub meta: Meta,
    pub state: S,
}

/// The kind-specific part of a [`Record`], and the API identity of the kind.
pub trait State: Clone {
    /// The Kubernetes kind whose API identity the record's store uses.
    type Kind: k8s_openapi::Resource;
}

/// The state of a kind the operator reads only the metadata of.
pub struct Plain<K>(PhantomData<fn() -> K>);

impl<K> Clone for Plain<K> {
    fn clone(&self) -> Self {
        Self(PhantomData)
    }
}

impl<K> std::fmt::Debug for Plain<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Plain")
    }
}

impl<K> PartialEq for Plain<K> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<K: k8s_openapi::Resource> State for Plain<K> {
    type Kind = K;
}

/// A metadata-only child (Namespace, ConfigMap, Service, ServiceAccount, NetworkPolicy).
pub type MetaRecord<K> = Record<Plain<K>>;

impl<K> From<PartialObjectMeta<K>> for MetaRecord<K> {
    fn from(o: PartialObjectMeta<K>) -> Self {
        Self {
            meta: Meta::of(o.metadata),
            state: Plain(PhantomData),
        }
    }
}

/// What readiness and the rollout read of a Deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploymentState {
    /// `spec.replicas` (1 when unset).
    pub want: i32,
    /// The version label of the pod template: what the pods run.
    pub version: Option<String>,
    /// `None` before the controller wrote a status.
    pub status: Option<ReplicaCounts>,
    /// The `Available` condition is `True`.
    pub available_condition: bool,
}

/// Replica counts of a Deployment's or StatefulSet's status (0 when unset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaCounts {
    pub observed_generation: i64,
    pub replicas: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
}

impl State for DeploymentState {
    type Kind = Deployment;
}

pub type DeploymentRecord = Record<DeploymentState>;

impl From<Deployment> for DeploymentRecord {
    fn from(d: Deployment) -> Self {
        let spec = d.spec.as_ref();
        let status = d.status.as_ref();
        let state = DeploymentState {
            want: spec.and_then(|s| s.replicas).unwrap_or(1),
            version: spec
                .and_then(|s| s.template.metadata.as_ref()?.labels.as_ref())
                .and_then(|l| l.get(labels::VERSION).cloned()),
            status: status.map(|s| ReplicaCounts {
                observed_generation: s.observed_generation.unwrap_or(0),
                replicas: s.replicas.unwrap_or(0),
                updated: s.updated_replicas.unwrap_or(0),
                ready: s.ready_replicas.unwrap_or(0),
                available: s.available_replicas.unwrap_or(0),
            }),
            available_condition: status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Available" && c.status == "True")
                }),
        };
        Self {
            meta: Meta::of(d.metadata),
            state,
        }
    }
}

/// What readiness and infrastructure read of a managed store's StatefulSet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatefulSetState {
    /// `spec.replicas` (1 when unset).
    pub want: i32,
    /// It has volume claim templates (its data is on volumes).
    pub has_claims: bool,
    /// `None` before the controller wrote a status.
    pub status: Option<ReplicaCounts>,
    /// The current and update revisions are the same (or either is unknown).
    pub revision_done: bool,
}

impl State for StatefulSetState {
    type Kind = StatefulSet;
}

pub type StatefulSetRecord = Record<StatefulSetState>;

impl From<StatefulSet> for StatefulSetRecord {
    fn from(s: StatefulSet) -> Self {
        let spec = s.spec.as_ref();
        let status = s.status.as_ref();
        let state = StatefulSetState {
            want: spec.and_then(|s| s.replicas).unwrap_or(1),
            has_claims: spec
                .and_then(|s| s.volume_claim_templates.as_ref())
                .is_some_and(|c| !c.is_empty()),
            status: status.map(|s| ReplicaCounts {
                observed_generation: s.observed_generation.unwrap_or(0),
                replicas: s.replicas,
                updated: s.updated_replicas.unwrap_or(0),
                ready: s.ready_replicas.unwrap_or(0),
                available: s.available_replicas.unwrap_or(0),
            }),
            revision_done: status.is_none_or(|s| match (&s.current_revision, &s.update_revision) {
                (Some(current), Some(update)) => current == update,
                _ => true,
            }),
        };
        Self {
            meta: Meta::of(s.metadata),
            state,
        }
    }
}

impl State for JobState {
    type Kind = Job;
}

/// A Job: what its status says (succeeded, failed and why, or running).
pub type JobRecord = Record<JobState>;

impl From<Job> for JobRecord {
    fn from(j: Job) -> Self {
        let state = job_state(&j);
        Self {
            meta: Meta::of(j.metadata),
            state,
        }
    }
}

/// A Secret's data (the RPC key list and the connection credentials are read from it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SecretState {
    pub data: BTreeMap<String, ByteString>,
}

impl State for SecretState {
    type Kind = Secret;
}

pub type SecretRecord = Record<SecretState>;

impl From<Secret> for SecretRecord {
    fn from(s: Secret) -> Self {
        Self {
            meta: Meta::of(s.metadata),
            state: SecretState {
                data: s.data.unwrap_or_default(),
            },
        }
    }
}

impl<S: State> Lookup for Record<S> {
    type DynamicType = ();

    fn kind(_: &()) -> Cow<'_, str> {
        <S::Kind as k8s_openapi::Resource>::KIND.into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        <S::Kind as k8s_openapi::Resource>::GROUP.into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        <S::Kind as k8s_openapi::Resource>::VERSION.into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        <S::Kind as k8s_openapi::Resource>::URL_PATH_SEGMENT.into()
    }

    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.meta.name))
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        self.meta.namespace.as_deref().map(Cow::Borrowed)
    }

    /// Not part of the store's key: a store entry is found by kind, namespace and name, and
    /// leaving the version (and the uid) out of the key keeps each entry small.
    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }

    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}

/// `event` with its objects made records.
pub fn event_into<K, R: From<K>>(event: watcher::Event<K>) -> watcher::Event<R> {
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(o.into()),
        watcher::Event::Delete(o) => watcher::Event::Delete(o.into()),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(o) => watcher::Event::InitApply(o.into()),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, OwnerReference};

    use super::*;

    fn object_meta() -> ObjectMeta {
        ObjectMeta {
            name: Some("web".into()),
            namespace: Some("region-de".into()),
            resource_version: Some("42".into()),
            generation: Some(3),
            labels: Some(BTreeMap::from([
                (labels::REGION.to_owned(), "de".to_owned()),
                (labels::MANAGED_BY.to_owned(), "silo-operator".to_owned()),
            ])),
            annotations: Some(BTreeMap::from([
                (labels::SPEC_HASH.to_owned(), "h1".to_owned()),
                ("other".to_owned(), "x".to_owned()),
            ])),
            owner_references: Some(vec![
                OwnerReference {
                    api_version: format!("{}/v1alpha1", silo_api::GROUP),
                    kind: "Region".into(),
                    name: "de".into(),
                    ..OwnerReference::default()
                },
                OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "web-1".into(),
                    ..OwnerReference::default()
                },
            ]),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some("kubectl".into()),
                operation: Some("Apply".into()),
                fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                    serde_json::json!({"f:spec": {}}),
                )),
                ..ManagedFieldsEntry::default()
            }]),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn a_record_keeps_what_the_operator_reads() {
        let object = object_meta();
        let (fields, foreign) = fields_digest(object.managed_fields.as_deref().unwrap_or_default());
        let meta = Meta::of(object.clone());
        assert_eq!(
            meta.observed(),
            Observed {
                hash: Some("h1".into()),
                fields,
                foreign,
            }
        );
        assert!(meta.foreign);
        assert_eq!(meta.region.as_deref(), Some("de"));
        assert_eq!(meta.owner_label(labels::REGION), Some("de"));
        assert_eq!(meta.owner_label(labels::CONTROL_PLANE), None);
        assert_eq!(meta.owners, [SiloOwner::Region("de".into())]);
        assert_eq!(meta.generation, 3);
        assert_eq!(
            meta.key(ChildKind::Deployment),
            ChildKey::of(ChildKind::Deployment, &object)
        );
    }

    #[test]
    fn a_store_finds_a_record_by_namespace_and_name() {
        use kube::runtime::reflector::{self, ObjectRef};
        let (reader, mut writer) = reflector::store::<SecretRecord>();
        let secret = Secret {
            metadata: object_meta(),
            ..Secret::default()
        };
        writer.apply_watcher_event(&event_into(watcher::Event::Apply(secret)));
        let found = reader.get(&ObjectRef::new("web").within("region-de"));
        assert_eq!(found.map(|s| s.meta.name.clone()).as_deref(), Some("web"));
        assert!(
            reader
                .get(&ObjectRef::new("web").within("region-us"))
                .is_none()
        );
    }
}
