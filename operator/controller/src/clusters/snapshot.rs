//! What a remote cluster holds of one Region: its namespace's children, listed once per
//! reconcile into a [`Stores`] view, so that drift detection, pruning and status read the
//! remote cluster through the same code as the local one.
//!
//! ```text
//!   remote API ─► GET namespace, LIST children (label managed-by) ─► records (fields digest)
//!              ─► fresh stores + owner index ─► Stores view (fleet stores stay local)
//! ```

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, PartialObjectMeta};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use crate::build::ChildKind;
use crate::labels;
use crate::owners::OwnerIndex;
use crate::records::{MetaRecord, Record, State};
use crate::stores::Stores;

/// A store holding exactly `items`.
fn store_of<K>(items: Vec<K>) -> Store<K>
where
    K: reflector::Lookup<DynamicType = ()> + Clone + 'static,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for item in items {
        writer.apply_watcher_event(&watcher::Event::InitApply(item));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

/// A store holding the records of `items`, indexed in `owners` as children of `kind`.
fn records_of<K, S>(items: Vec<K>, kind: ChildKind, owners: &OwnerIndex) -> Store<Record<S>>
where
    Record<S>: From<K>,
    S: State + 'static,
{
    owners.relist_started(kind);
    let records: Vec<Record<S>> = items.into_iter().map(Record::from).collect();
    for record in &records {
        owners.listed(kind, &record.meta);
    }
    owners.relist_done(kind);
    store_of(records)
}

async fn list_full<K, S>(
    client: &Client,
    namespace: &str,
    kind: ChildKind,
    owners: &OwnerIndex,
) -> Result<Store<Record<S>>, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    Record<S>: From<K>,
    S: State + 'static,
{
    let params = ListParams::default().labels(&labels::managed_selector());
    let items = Api::<K>::namespaced(client.clone(), namespace)
        .list(&params)
        .await?
        .items;
    Ok(records_of(items, kind, owners))
}

async fn list_meta<K>(
    client: &Client,
    namespace: &str,
    kind: ChildKind,
    owners: &OwnerIndex,
) -> Result<Store<MetaRecord<K>>, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + Debug
        + 'static,
{
    let params = ListParams::default().labels(&labels::managed_selector());
    let items = Api::<K>::namespaced(client.clone(), namespace)
        .list_metadata(&params)
        .await?
        .items;
    Ok(records_of(items, kind, owners))
}

/// `local` with every child store replaced by what the remote cluster holds in `namespace`
/// (the Region's namespace there). The first failing request ends the snapshot.
pub async fn view(client: &Client, local: &Stores, namespace: &str) -> Result<Stores, kube::Error> {
    let owners = Arc::new(OwnerIndex::default());
    let ns = Api::<Namespace>::all(client.clone())
        .get_metadata_opt(namespace)
        .await?;
    let namespaces = records_of::<PartialObjectMeta<Namespace>, _>(
        ns.into_iter().collect(),
        ChildKind::Namespace,
        &owners,
    );
    // Which StorageClass is the default decides the stores' volumes; an identity that may
    // not list them gets emptyDir-backed stores, as in a cluster without a default class.
    let classes = match Api::<StorageClass>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await
    {
        Ok(list) => list
            .items
            .into_iter()
            .map(|mut c| {
                c.metadata.managed_fields = None;
                c
            })
            .collect(),
        Err(kube::Error::Api(status)) if status.code == 403 => Vec::new(),
        Err(e) => return Err(e),
    };
    let storage_classes = store_of(classes);
    Ok(Stores {
        namespaces,
        configmaps: list_meta::<ConfigMap>(client, namespace, ChildKind::ConfigMap, &owners)
            .await?,
        services: list_meta::<Service>(client, namespace, ChildKind::Service, &owners).await?,
        service_accounts: list_meta::<ServiceAccount>(
            client,
            namespace,
            ChildKind::ServiceAccount,
            &owners,
        )
        .await?,
        network_policies: list_meta::<NetworkPolicy>(
            client,
            namespace,
            ChildKind::NetworkPolicy,
            &owners,
        )
        .await?,
        secrets: list_full::<Secret, _>(client, namespace, ChildKind::Secret, &owners).await?,
        deployments: list_full::<Deployment, _>(client, namespace, ChildKind::Deployment, &owners)
            .await?,
        stateful_sets: list_full::<StatefulSet, _>(
            client,
            namespace,
            ChildKind::StatefulSet,
            &owners,
        )
        .await?,
        jobs: list_full::<Job, _>(client, namespace, ChildKind::Job, &owners).await?,
        storage_classes,
        owners,
        ..local.clone()
    })
}
