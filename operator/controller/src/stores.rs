//! Watched state: in-memory stores of the operator's children as compact records (see
//! [`crate::records`]: the few fields the operator reads, not the objects), and the routing of
//! child events to their owner's reconcile.
//!
//! ```text
//!   watch (label managed-by=silo-operator) ─► record ─► store ─► owner ref ─► Region / ControlPlane queue
//!                                                         ├─► owner index (owned_by, for pruning)
//!                                                         └─► deletions forget the tracker entry
//! ```
//!
//! A page of a (re-)list is decoded whole as k8s objects, then each object becomes its record
//! before it reaches the store: a child's metadata maps, owner references and status
//! conditions are dropped there.

use std::fmt::Debug;
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{SinkExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PartialObjectMeta};
use kube::core::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use silo_api::{ControlPlane, Region};

use crate::build::{ChildKey, ChildKind};
use crate::drift::{Observed, Tracker};
use crate::labels;
use crate::owners::OwnerIndex;
use crate::records::{
    DeploymentRecord, JobRecord, Meta, MetaRecord, Record, SecretRecord, SiloOwner, State,
    StatefulSetRecord, event_into,
};
use crate::synced::Synced;
use crate::validate::directory::DirectoryCache;

/// Stores of everything the operator watches.
#[derive(Clone)]
pub struct Stores {
    pub regions: Store<Region>,
    pub control_planes: Store<ControlPlane>,
    pub namespaces: Store<MetaRecord<Namespace>>,
    pub configmaps: Store<MetaRecord<ConfigMap>>,
    pub services: Store<MetaRecord<Service>>,
    pub service_accounts: Store<MetaRecord<ServiceAccount>>,
    pub network_policies: Store<MetaRecord<NetworkPolicy>>,
    /// With their data: the RPC secret's value is copied into every region namespace, and
    /// password rotations read the connection Secrets.
    pub secrets: Store<SecretRecord>,
    /// Replica counts, the Available condition and the pod template's version label.
    pub deployments: Store<DeploymentRecord>,
    /// The managed stores: like Deployments, plus whether they have volume claim templates.
    pub stateful_sets: Store<StatefulSetRecord>,
    /// Migration and rotation Jobs: what their status says.
    pub jobs: Store<JobRecord>,
    /// StorageClasses (metadata): whether the cluster has a default one.
    pub storage_classes: Store<PartialObjectMeta<StorageClass>>,
    /// Secrets of the operator's namespace (external stores' connections).
    pub external_secrets: Store<Secret>,
    /// The namespace `external_secrets` watches.
    pub operator_namespace: String,
    /// Children by owner label, from the same watch events as the child stores.
    pub owners: Arc<OwnerIndex>,
    /// The fleet directory last built from these stores.
    pub directory_cache: Arc<DirectoryCache>,
}

impl Stores {
    /// What the store shows of `key`.
    pub fn observed(&self, key: &ChildKey) -> Option<Observed> {
        fn observed<S: State>(store: &Store<Record<S>>, key: &ChildKey) -> Option<Observed> {
            let oref = ObjectRef::new(&key.name);
            let oref = if key.namespace.is_empty() {
                oref
            } else {
                oref.within(&key.namespace)
            };
            store.get(&oref).map(|o| o.meta.observed())
        }
        match key.kind {
            ChildKind::Namespace => observed(&self.namespaces, key),
            ChildKind::ConfigMap => observed(&self.configmaps, key),
            ChildKind::Service => observed(&self.services, key),
            ChildKind::Secret => observed(&self.secrets, key),
            ChildKind::Deployment => observed(&self.deployments, key),
            ChildKind::StatefulSet => observed(&self.stateful_sets, key),
            ChildKind::ServiceAccount => observed(&self.service_accounts, key),
            ChildKind::NetworkPolicy => observed(&self.network_policies, key),
            ChildKind::Job => observed(&self.jobs, key),
        }
    }

    /// Whether the cluster has a default StorageClass.
    pub fn has_default_storage_class(&self) -> bool {
        self.storage_classes.state().iter().any(|sc| {
            sc.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("storageclass.kubernetes.io/is-default-class"))
                .is_some_and(|v| v == "true")
        })
    }

    /// A Secret of the operator's namespace.
    pub fn external_secret(&self, name: &str) -> Option<Arc<Secret>> {
        self.external_secrets
            .get(&ObjectRef::new(name).within(&self.operator_namespace))
    }

    /// Every child carrying label `owner_label=owner`, as keys (from the owner index: what
    /// that owner has, not a scan of every child of the fleet).
    pub fn owned_by(&self, owner_label: &str, owner: &str) -> Vec<ChildKey> {
        self.owners.owned_by(owner_label, owner)
    }

    /// The RPC secret list of the ControlPlane whose namespace is `namespace`.
    pub fn rpc_secret(&self, namespace: &str) -> Option<String> {
        let secret = self
            .secrets
            .get(&ObjectRef::new(labels::RPC_SECRET).within(namespace))?;
        secret.meta.control_plane.as_ref()?;
        let bytes = secret.state.data.get(labels::RPC_SECRET_KEY)?;
        String::from_utf8(bytes.0.clone())
            .ok()
            .filter(|s| !s.is_empty())
    }
}

/// Where child events go: the owning Region or ControlPlane is queued for reconcile.
#[derive(Clone)]
pub struct Routes {
    pub regions: mpsc::Sender<ObjectRef<Region>>,
    pub control_planes: mpsc::Sender<ObjectRef<ControlPlane>>,
    /// Pinged when something the whole fleet depends on may have changed.
    pub fleet: Arc<tokio::sync::Notify>,
    /// Told when a watch has listed its objects (readiness).
    pub synced: Synced,
    /// Pinged when a StorageClass or a Secret of the operator's namespace changed: every
    /// silo is reconciled again (the fleet signature does not cover them).
    pub external: Arc<tokio::sync::Notify>,
}

impl Routes {
    /// Queue the Region or ControlPlane named by the owner label of `meta` (pods carry the
    /// label of the silo they belong to, not an owner reference to it).
    pub async fn route_labels(&mut self, meta: &ObjectMeta) {
        let Some(owner_labels) = meta.labels.as_ref() else {
            return;
        };
        let sent = if let Some(region) = owner_labels.get(labels::REGION) {
            self.regions.send(ObjectRef::new(region)).await.is_ok()
        } else if let Some(cp) = owner_labels.get(labels::CONTROL_PLANE) {
            self.control_planes.send(ObjectRef::new(cp)).await.is_ok()
        } else {
            true
        };
        if !sent {
            tracing::debug!("controller queue closed");
        }
    }

    async fn route(&mut self, meta: &Meta) {
        for owner in &meta.owners {
            // A full queue means the controller is already busy with a backlog; the send
            // waits for room rather than dropping the trigger.
            let (sent, name) = match owner {
                SiloOwner::Region(name) => {
                    (self.regions.send(ObjectRef::new(name)).await.is_ok(), name)
                }
                SiloOwner::ControlPlane(name) => (
                    self.control_planes.send(ObjectRef::new(name)).await.is_ok(),
                    name,
                ),
            };
            if !sent {
                tracing::debug!(owner = %name, "controller queue closed");
            }
        }
    }
}

/// The raw event stream of a watch, stripped and reflected into a store.
type Watch<K> =
    std::pin::Pin<Box<dyn Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send>>;

/// Objects per list request when a watch (re-)lists. A page is decoded whole, with the fields
/// the stores strip, before its objects are stripped one by one: after a restart at a thousand
/// Regions every child watch lists at once, and pages of the default 500 full Deployments,
/// Secrets and Jobs are the operator's largest allocations. A hundred keeps that transient
/// small for a few more list requests (40 instead of 8 for 4000 Deployments).
pub const LIST_PAGE_SIZE: u32 = 100;

/// The watch of the operator's children (label `managed-by`), paged by [`LIST_PAGE_SIZE`].
pub fn child_config() -> watcher::Config {
    watcher::Config::default()
        .labels(&labels::managed_selector())
        .page_size(LIST_PAGE_SIZE)
}

/// A watch of children of kind `K`, each object made its record before the store.
fn child_watch<K, R>(api: Api<K>) -> (Store<R>, Watch<R>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    R: From<K> + reflector::Lookup<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let events = watcher(api, child_config())
        .default_backoff()
        .map_ok(event_into);
    (reader, reflector::reflector(writer, events).boxed())
}

fn metadata_watch<K>(client: &Client) -> (Store<MetaRecord<K>>, Watch<MetaRecord<K>>)
where
    K: Resource<DynamicType = ()> + k8s_openapi::Resource + Clone + DeserializeOwned + Debug,
    K: Send + Sync + 'static,
{
    child_watch(Api::<PartialObjectMeta<K>>::all(client.clone()))
}

fn full_watch<K>(
    client: &Client,
    config: watcher::Config,
    strip: fn(&mut K),
) -> (Store<K>, Watch<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client.clone()), config)
        .default_backoff()
        .modify(strip)
        .reflect(writer)
        .boxed();
    (reader, stream)
}

fn strip_secret(s: &mut Secret) {
    s.metadata.managed_fields = None;
}

fn strip_region(r: &mut Region) {
    r.metadata.managed_fields = None;
    // Only the annotation the operator reads is kept.
    r.metadata.annotations = r.metadata.annotations.take().and_then(|mut a| {
        a.retain(|k, _| k == silo_api::cluster::ABANDON_REMOTE_ANNOTATION);
        (!a.is_empty()).then_some(a)
    });
}

fn strip_control_plane(c: &mut ControlPlane) {
    c.metadata.managed_fields = None;
    c.metadata.annotations = None;
}

/// Drive a child watch: route every change to its owner and forget deleted children.
async fn drive_child<S>(
    stream: Watch<Record<S>>,
    kind: ChildKind,
    tracker: Arc<Tracker>,
    owners: Arc<OwnerIndex>,
    mut routes: Routes,
) where
    S: Send + 'static,
{
    let mut stream = stream;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(obj)) => {
                if kind == ChildKind::Secret && is_rpc_master(&obj.meta) {
                    routes.fleet.notify_one();
                }
                // The directory lists a suspended Region by whether its namespace exists.
                if kind == ChildKind::Namespace {
                    routes.fleet.notify_one();
                }
                let meta = &obj.meta;
                let key = meta.key(kind);
                tracker.saw(&key, &meta.fields);
                owners.applied(key, meta);
                routes.route(meta).await;
            }
            Ok(watcher::Event::Delete(obj)) => {
                if kind == ChildKind::Namespace {
                    routes.fleet.notify_one();
                }
                let meta = &obj.meta;
                let key = meta.key(kind);
                tracker.forget(&key);
                owners.deleted(&key);
                routes.route(meta).await;
            }
            Ok(watcher::Event::Init) => owners.relist_started(kind),
            Ok(watcher::Event::InitApply(obj)) => owners.listed(kind, &obj.meta),
            Ok(watcher::Event::InitDone) => {
                owners.relist_done(kind);
                routes.synced.listed(kind.as_str());
                routes.fleet.notify_one();
            }
            Err(e) => {
                tracing::warn!(kind = kind.as_str(), error = %e, "watch failed; retrying with backoff")
            }
        }
    }
}

/// Drive a watch of something every silo may depend on: each change pings the fleet signal.
async fn drive_fleet_input<K>(stream: Watch<K>, kind: &'static str, routes: Routes)
where
    K: Send + 'static,
{
    let mut stream = stream;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::InitDone) => {
                routes.synced.listed(kind);
                routes.fleet.notify_one();
            }
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                routes.external.notify_one();
            }
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Err(e) => tracing::warn!(kind, error = %e, "watch failed; retrying with backoff"),
        }
    }
}

fn is_rpc_master(meta: &Meta) -> bool {
    meta.name == labels::RPC_SECRET && meta.control_plane.is_some()
}

/// A primary watch as handed to its controller: every event pings the fleet signal, and its
/// first complete listing counts for readiness.
fn primary_stream<K: Send + 'static>(
    stream: Watch<K>,
    kind: &'static str,
    routes: &Routes,
) -> Watch<K> {
    let fleet = routes.fleet.clone();
    let synced = routes.synced.clone();
    stream
        .inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone)) {
                synced.listed(kind);
            }
            fleet.notify_one();
        })
        .boxed()
}

/// The primary streams (Regions, ControlPlanes) handed to their controllers.
pub struct PrimaryStreams {
    pub regions: Watch<Region>,
    pub control_planes: Watch<ControlPlane>,
}

/// Start every child watch (as tasks) and return the stores plus the primary streams.
pub fn start(
    client: &Client,
    operator_namespace: &str,
    tracker: Arc<Tracker>,
    routes: Routes,
) -> (Stores, PrimaryStreams) {
    let owners = Arc::new(OwnerIndex::default());
    let (namespaces, ns_stream) = metadata_watch::<Namespace>(client);
    let (configmaps, cm_stream) = metadata_watch::<ConfigMap>(client);
    let (services, svc_stream) = metadata_watch::<Service>(client);
    let (service_accounts, sa_stream) = metadata_watch::<ServiceAccount>(client);
    let (network_policies, np_stream) = metadata_watch::<NetworkPolicy>(client);
    let (secrets, secret_stream) = child_watch(Api::<Secret>::all(client.clone()));
    let (deployments, deploy_stream) = child_watch(Api::<Deployment>::all(client.clone()));
    let (stateful_sets, sts_stream) = child_watch(Api::<StatefulSet>::all(client.clone()));
    let (jobs, job_stream) = child_watch(Api::<Job>::all(client.clone()));
    let (storage_classes, sc_reader) = reflector::store();
    let sc_stream = watcher(
        Api::<PartialObjectMeta<StorageClass>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|o: &mut PartialObjectMeta<StorageClass>| o.metadata.managed_fields = None)
    .reflect(sc_reader)
    .boxed();
    let (external_secrets, ext_writer) = reflector::store();
    let ext_stream = watcher(
        Api::<Secret>::namespaced(client.clone(), operator_namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(strip_secret)
    .reflect(ext_writer)
    .boxed();
    let (regions, region_stream) =
        full_watch::<Region>(client, watcher::Config::default(), strip_region);
    let (control_planes, cp_stream) =
        full_watch::<ControlPlane>(client, watcher::Config::default(), strip_control_plane);

    tokio::spawn(drive_child(
        ns_stream,
        ChildKind::Namespace,
        tracker.clone(),
        owners.clone(),
        routes.clone(),
    ));
    tokio::spawn(drive_child(
        cm_stream,
        ChildKind::ConfigMap,
        tracker.clone(),
        owners.clone(),
        routes.clone(),
    ));
    tokio::spawn(drive_child(
        svc_stream,
        ChildKind::Service,
        tracker.clone(),
        owners.clone(),
        routes.clone(),
    ));
    tokio::spawn(drive_child(
        sa_stream,
        ChildKind::ServiceAccount,
        tracker.clone(),
        owners.clone(),
        routes.clone(),
    ));
    tokio::spawn(drive_child(
        np_stream,
        ChildKind::NetworkPolicy,
        tracker.clone(),
        owners.clone(),
        routes.clone(),
    ));
    tokio::spawn(drive_child(
        secret_stream,
        ChildKind::Secret,
        tracker.clone(),
        owners.clone(),
        routes.clone(),
    ));
    tokio::spawn(drive_child(
        deploy_stream,
        ChildKind::Deployment,
        tracker.clone(),
        owners.clone(),
        routes.clone(),
    ));
    tokio::spawn(drive_child(
        sts_stream,
        ChildKind::StatefulSet,
        tracker.clone(),
        owners.clone(),
        routes.clone(),
    ));
    tokio::spawn(drive_child(
        job_stream,
        ChildKind::Job,
        tracker,
        owners.clone(),
        routes.clone(),
    ));
    // A StorageClass or an external Secret may matter to any silo: re-run them all.
    tokio::spawn(drive_fleet_input(sc_stream, "StorageClass", routes.clone()));
    tokio::spawn(drive_fleet_input(
        ext_stream,
        "external Secret",
        routes.clone(),
    ));

    let region_stream = primary_stream(region_stream, "Region", &routes);
    let cp_stream = primary_stream(cp_stream, "ControlPlane", &routes);

    (
        Stores {
            regions,
            control_planes,
            namespaces,
            configmaps,
            services,
            service_accounts,
            network_policies,
            secrets,
            deployments,
            stateful_sets,
            jobs,
            storage_classes,
            external_secrets,
            operator_namespace: operator_namespace.to_owned(),
            owners,
            directory_cache: Arc::default(),
        },
        PrimaryStreams {
            regions: region_stream,
            control_planes: cp_stream,
        },
    )
}
