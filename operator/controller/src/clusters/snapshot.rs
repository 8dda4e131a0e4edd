//! What a remote cluster holds of one Region: its namespace's children, listed once per
//! reconcile into a [`Stores`] view, so that drift detection, pruning and status read the
//! remote cluster through the same code as the local one.
//!
//! ```text
//!   remote API ─► GET namespace, LIST children (label managed-by) ─► stash fields digest
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
use crate::drift::stash_fields;
use crate::labels;
use crate::owners::OwnerIndex;
use crate::stores::Stores;

/// A store holding exactly `items` (each with its fields digest stashed), indexed in `owners`.
fn store_of<K>(items: Vec<K>, kind: Option<ChildKind>, owners: &OwnerIndex) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    if let Some(kind) = kind {
        owners.relist_started(kind);
    }
    for mut item in items {
        stash_fields(item.meta_mut());
        if let Some(kind) = kind {
            owners.listed(kind, item.meta());
        }
        writer.apply_watcher_event(&watcher::Event::InitApply(item));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    if let Some(kind) = kind {
        owners.relist_done(kind);
    }
    reader
}

async fn list_full<K>(
    client: &Client,
    namespace: &str,
    kind: ChildKind,
    owners: &OwnerIndex,
) -> Result<Store<K>, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let params = ListParams::default().labels(&labels::managed_selector());
    let items = Api::<K>::namespaced(client.clone(), namespace)
        .list(&params)
        .await?
        .items;
    Ok(store_of(items, Some(kind), owners))
}

async fn list_meta<K>(
    client: &Client,
    namespace: &str,
    kind: ChildKind,
    owners: &OwnerIndex,
) -> Result<Store<PartialObjectMeta<K>>, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let params = ListParams::default().labels(&labels::managed_selector());
    let items = Api::<K>::namespaced(client.clone(), namespace)
        .list_metadata(&params)
        .await?
        .items;
    Ok(store_of(items, Some(kind), owners))
}

/// `local` with every child store replaced by what the remote cluster holds in `namespace`
/// (the Region's namespace there). The first failing request ends the snapshot.
pub async fn view(client: &Client, local: &Stores, namespace: &str) -> Result<Stores, kube::Error> {
    let owners = Arc::new(OwnerIndex::default());
    let ns = Api::<Namespace>::all(client.clone())
        .get_metadata_opt(namespace)
        .await?;
    let namespaces = store_of(
        ns.into_iter().collect(),
        Some(ChildKind::Namespace),
        &owners,
    );
    // Which StorageClass is the default decides the stores' volumes; an identity that may
    // not list them gets emptyDir-backed stores, as in a cluster without a default class.
    let classes = match Api::<StorageClass>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await
    {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.code == 403 => Vec::new(),
        Err(e) => return Err(e),
    };
    let storage_classes = store_of(classes, None, &owners);
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
        secrets: list_full::<Secret>(client, namespace, ChildKind::Secret, &owners).await?,
        deployments: list_full::<Deployment>(client, namespace, ChildKind::Deployment, &owners)
            .await?,
        stateful_sets: list_full::<StatefulSet>(client, namespace, ChildKind::StatefulSet, &owners)
            .await?,
        jobs: list_full::<Job>(client, namespace, ChildKind::Job, &owners).await?,
        storage_classes,
        owners,
        ..local.clone()
    })
}
