//! Build: desired child objects from validated input. Pure: no client, no clock, no randomness.
//!
//! Every object gets the operator's labels, an owner reference and a `silo.dev/spec-hash`
//! annotation over its own content, so the apply step can tell "unchanged" without a request.

mod container;
mod control;
mod migration;
mod network;
mod pod;
mod region;
mod rotation;
mod store;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use container::{ADMIN_PORT, TERMINATION_GRACE_SECONDS};
pub use control::{build_control, build_monolith, monolith_directory_entry};
pub use migration::{MIGRATE_NAME, TOPICS, job_name};
pub use network::{
    INGRESS_POLICY, ISOLATION_POLICY, Isolation, SERVICE_ACCOUNT, Side, network_policies,
    service_account,
};
pub use pod::{PublishedDirectory, Silo, control_address, region_address, relay_address};
pub use region::build_region;
pub use rotation::{ROTATION_NAME, RotationContext, push_rotation};
pub use store::{POSTGRES_DATABASE, POSTGRES_USER, kafka_cluster_id, store_host};

/// What the migration gate lets the build include.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gate<'a> {
    /// Include the migration Job of the silo's desired version.
    pub run_job: bool,
    /// The version the workloads run (`None`: no workload yet).
    pub workload_version: Option<&'a str>,
}

use crate::labels;
use crate::validate::FleetContext;

/// One object the operator wants to exist exactly as given.
#[derive(Clone, Debug, PartialEq)]
pub enum Child {
    Namespace(Namespace),
    ConfigMap(ConfigMap),
    Secret(Secret),
    Deployment(Box<Deployment>),
    Service(Box<Service>),
    StatefulSet(Box<StatefulSet>),
    ServiceAccount(ServiceAccount),
    NetworkPolicy(Box<NetworkPolicy>),
    /// Created once: a Job's template cannot change.
    Job(Box<Job>),
}

impl Child {
    pub fn kind(&self) -> ChildKind {
        match self {
            Child::Namespace(_) => ChildKind::Namespace,
            Child::ConfigMap(_) => ChildKind::ConfigMap,
            Child::Secret(_) => ChildKind::Secret,
            Child::Deployment(_) => ChildKind::Deployment,
            Child::Service(_) => ChildKind::Service,
            Child::StatefulSet(_) => ChildKind::StatefulSet,
            Child::ServiceAccount(_) => ChildKind::ServiceAccount,
            Child::NetworkPolicy(_) => ChildKind::NetworkPolicy,
            Child::Job(_) => ChildKind::Job,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Child::Namespace(o) => &o.metadata,
            Child::ConfigMap(o) => &o.metadata,
            Child::Secret(o) => &o.metadata,
            Child::Deployment(o) => &o.metadata,
            Child::Service(o) => &o.metadata,
            Child::StatefulSet(o) => &o.metadata,
            Child::ServiceAccount(o) => &o.metadata,
            Child::NetworkPolicy(o) => &o.metadata,
            Child::Job(o) => &o.metadata,
        }
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Child::Namespace(o) => &mut o.metadata,
            Child::ConfigMap(o) => &mut o.metadata,
            Child::Secret(o) => &mut o.metadata,
            Child::Deployment(o) => &mut o.metadata,
            Child::Service(o) => &mut o.metadata,
            Child::StatefulSet(o) => &mut o.metadata,
            Child::ServiceAccount(o) => &mut o.metadata,
            Child::NetworkPolicy(o) => &mut o.metadata,
            Child::Job(o) => &mut o.metadata,
        }
    }

    /// Where the object lives.
    pub fn key(&self) -> ChildKey {
        ChildKey::of(self.kind(), self.meta())
    }

    /// The content hash stamped on the object by [`Child::stamped`].
    pub fn hash(&self) -> &str {
        self.meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(labels::SPEC_HASH))
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// Stamp the hash of the object's content (everything but the hash itself) on it.
    fn stamped(mut self) -> Self {
        let hash = match &self {
            Child::Namespace(o) => content_hash(o),
            Child::ConfigMap(o) => content_hash(o),
            Child::Secret(o) => content_hash(o),
            Child::Deployment(o) => content_hash(o),
            Child::Service(o) => content_hash(o),
            Child::StatefulSet(o) => content_hash(o),
            Child::ServiceAccount(o) => content_hash(o),
            Child::NetworkPolicy(o) => content_hash(o),
            Child::Job(o) => content_hash(o),
        };
        self.meta_mut()
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(labels::SPEC_HASH.to_owned(), hash);
        self
    }
}

/// The kinds of object the operator creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildKind {
    Namespace,
    ConfigMap,
    Secret,
    Deployment,
    Service,
    StatefulSet,
    ServiceAccount,
    NetworkPolicy,
    Job,
}

impl ChildKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Namespace => "Namespace",
            ChildKind::ConfigMap => "ConfigMap",
            ChildKind::Secret => "Secret",
            ChildKind::Deployment => "Deployment",
            ChildKind::Service => "Service",
            ChildKind::StatefulSet => "StatefulSet",
            ChildKind::ServiceAccount => "ServiceAccount",
            ChildKind::NetworkPolicy => "NetworkPolicy",
            ChildKind::Job => "Job",
        }
    }
}

/// Identity of a child object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChildKey {
    pub kind: ChildKind,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl ChildKey {
    /// The key of an object of `kind` with metadata `meta`.
    pub fn of(kind: ChildKind, meta: &ObjectMeta) -> Self {
        Self {
            kind,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for ChildKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind.as_str(), self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind.as_str(), self.namespace, self.name)
        }
    }
}

/// A Secret whose value the operator generates once (create if absent, never overwritten).
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedSecret {
    /// The Secret with empty data; the apply step fills `key` with a random value.
    pub secret: Secret,
    pub key: String,
    /// Keys written as given.
    pub fixed: BTreeMap<String, String>,
    /// Keys whose value is a template in which `{password}` stands for the random value.
    pub derived: BTreeMap<String, String>,
}

impl GeneratedSecret {
    /// The Secret's data for the random value `random`.
    pub fn data(&self, random: &str) -> BTreeMap<String, String> {
        let mut data = self.fixed.clone();
        for (key, template) in &self.derived {
            data.insert(key.clone(), template.replace("{password}", random));
        }
        data.insert(self.key.clone(), random.to_owned());
        data
    }
}

impl GeneratedSecret {
    pub fn key(&self) -> ChildKey {
        ChildKey::of(ChildKind::Secret, &self.secret.metadata)
    }
}

/// Everything one owner (a Region or the ControlPlane) wants to exist.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredSet {
    /// Applied in this order (namespace first).
    pub children: Vec<Child>,
    /// Created before the children that reference them.
    pub generated: Vec<GeneratedSecret>,
}

impl DesiredSet {
    fn push(&mut self, child: Child) {
        self.children.push(child.stamped());
    }

    /// The StatefulSets in the set.
    pub fn stateful_sets(&self) -> impl Iterator<Item = &StatefulSet> {
        self.children.iter().filter_map(|c| match c {
            Child::StatefulSet(s) => Some(s.as_ref()),
            _ => None,
        })
    }

    /// The migration Job in the set, if any.
    pub fn job(&self) -> Option<&Job> {
        self.children.iter().find_map(|c| match c {
            Child::Job(j) => Some(j.as_ref()),
            _ => None,
        })
    }

    /// Names of the Deployments in the set.
    pub fn deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.children.iter().filter_map(|c| match c {
            Child::Deployment(d) => Some(d.as_ref()),
            _ => None,
        })
    }

    /// Whether `key` is part of the set.
    /// The same objects without owner references, for a cluster where the owner does not
    /// exist (its garbage collector must not see a dangling owner). Hashes are stamped anew.
    pub fn detached(self) -> Self {
        let children = self
            .children
            .into_iter()
            .map(|mut child| {
                let meta = child.meta_mut();
                meta.owner_references = None;
                if let Some(annotations) = meta.annotations.as_mut() {
                    annotations.remove(labels::SPEC_HASH);
                }
                child.stamped()
            })
            .collect();
        let generated = self
            .generated
            .into_iter()
            .map(|mut g| {
                g.secret.metadata.owner_references = None;
                g
            })
            .collect();
        Self {
            children,
            generated,
        }
    }

    pub fn contains(&self, key: &ChildKey) -> bool {
        self.children.iter().any(|c| &c.key() == key)
            || self.generated.iter().any(|g| &g.key() == key)
    }
}

/// Which object owns the children, and how they are labelled.
#[derive(Clone, Debug, PartialEq)]
pub struct Owner {
    pub reference: OwnerReference,
    /// `(silo.dev/region, name)` or `(silo.dev/controlplane, name)`.
    pub label: (&'static str, String),
}

impl Owner {
    /// Labels every child of this owner carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                labels::MANAGED_BY.to_owned(),
                labels::MANAGED_BY_VALUE.to_owned(),
            ),
            (labels::PART_OF.to_owned(), labels::PART_OF_VALUE.to_owned()),
            (self.label.0.to_owned(), self.label.1.clone()),
        ])
    }

    /// Metadata of a child named `name` in `namespace` (None: cluster-scoped).
    pub fn meta(&self, namespace: Option<&str>, name: &str, component: &str) -> ObjectMeta {
        let mut labels = self.labels();
        labels.insert(labels::COMPONENT.to_owned(), component.to_owned());
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            labels: Some(labels),
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// The silo's ServiceAccount, then its NetworkPolicies unless `isolation` is `None` (policies
/// disabled fleet-wide or suspended for this silo: pruning removes existing ones).
pub(crate) fn push_isolation(
    set: &mut DesiredSet,
    owner: &Owner,
    namespace: &str,
    isolation: Option<&Isolation<'_>>,
) {
    set.push(Child::ServiceAccount(service_account(owner, namespace)));
    if let Some(isolation) = isolation {
        for policy in network_policies(owner, namespace, isolation) {
            set.push(Child::NetworkPolicy(Box::new(policy)));
        }
    }
}

/// Stores, then the migration Job and the workloads (built by `workloads` at the gate's
/// version) as far as `gate` allows.
pub(crate) fn push_gated(
    silo: &Silo<'_>,
    set: &mut DesiredSet,
    gate: Gate<'_>,
    fleet: &FleetContext,
    workloads: impl FnOnce(&Silo<'_>, &mut DesiredSet),
) {
    store::push_stores(silo, set);
    if gate.run_job {
        set.push(Child::Job(Box::new(migration::job(silo))));
    }
    if let Some(version) = gate.workload_version {
        let image = fleet.image_for(version);
        let silo = Silo {
            image: &image,
            version,
            ..silo.clone()
        };
        workloads(&silo, set);
    }
}

/// Hex SHA-256 (first 16 bytes) of the JSON form of `value`, streamed into the hash (a
/// directory ConfigMap's JSON is as large as the fleet; no copy of it is built to be hashed).
pub fn content_hash<T: Serialize>(value: &T) -> String {
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    // Serializing k8s-openapi types cannot fail; whatever was written still hashes
    // deterministically.
    let _ = serde_json::to_writer(&mut hashing, value);
    hex::encode(&hashing.0.finalize()[..16])
}

#[cfg(test)]
mod tests;
