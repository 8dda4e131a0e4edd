//! The owner index: which children carry an owner's label, kept beside the stores from the
//! same watch events, so that pruning one Region reads what that Region has and not every
//! child of the fleet.
//!
//! ```text
//!   child watch event ─► Apply/Delete: one key in or out
//!                     ─► Init ─ InitApply… ─► InitDone: the kind's keys replaced by the listing
//!   owned_by(label, owner) ─► that owner's keys
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use crate::build::{ChildKey, ChildKind};
use crate::labels;
use crate::records::Meta;

/// Labels that name a child's owner.
const OWNER_LABELS: [&str; 2] = [labels::REGION, labels::CONTROL_PLANE];

/// (owner label, owner) of a child.
type Owner = (&'static str, String);

#[derive(Debug, Default)]
struct Inner {
    by_owner: HashMap<Owner, BTreeSet<ChildKey>>,
    owners_of: HashMap<ChildKey, Vec<Owner>>,
    /// A re-list in progress per kind: the keys listed so far with their owners.
    listing: HashMap<ChildKind, Vec<(ChildKey, Vec<Owner>)>>,
}

impl Inner {
    fn insert(&mut self, key: ChildKey, owners: Vec<Owner>) {
        self.remove(&key);
        if owners.is_empty() {
            return;
        }
        for owner in &owners {
            self.by_owner
                .entry(owner.clone())
                .or_default()
                .insert(key.clone());
        }
        self.owners_of.insert(key, owners);
    }

    fn remove(&mut self, key: &ChildKey) {
        let Some(owners) = self.owners_of.remove(key) else {
            return;
        };
        for owner in owners {
            if let Some(keys) = self.by_owner.get_mut(&owner) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_owner.remove(&owner);
                }
            }
        }
    }
}

/// Children by owner label, for every kind the operator watches.
#[derive(Debug, Default)]
pub struct OwnerIndex {
    inner: Mutex<Inner>,
}

fn owners(meta: &Meta) -> Vec<Owner> {
    OWNER_LABELS
        .iter()
        .filter_map(|label| Some((*label, meta.owner_label(label)?.to_owned())))
        .collect()
}

impl OwnerIndex {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change is applied whole under the lock; a panic elsewhere cannot leave one
        // half-done.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Child `key` as it is now, with metadata `meta`.
    pub fn applied(&self, key: ChildKey, meta: &Meta) {
        self.lock().insert(key, owners(meta));
    }

    /// Child `key` is gone.
    pub fn deleted(&self, key: &ChildKey) {
        self.lock().remove(key);
    }

    /// A re-list of `kind` begins.
    pub fn relist_started(&self, kind: ChildKind) {
        self.lock().listing.insert(kind, Vec::new());
    }

    /// One child of the re-list of `kind`.
    pub fn listed(&self, kind: ChildKind, meta: &Meta) {
        let entry = (meta.key(kind), owners(meta));
        self.lock().listing.entry(kind).or_default().push(entry);
    }

    /// The re-list of `kind` is complete: it replaces what the index held of that kind.
    pub fn relist_done(&self, kind: ChildKind) {
        let mut inner = self.lock();
        let listed = inner.listing.remove(&kind).unwrap_or_default();
        let stale: Vec<ChildKey> = inner
            .owners_of
            .keys()
            .filter(|k| k.kind == kind)
            .cloned()
            .collect();
        for key in &stale {
            inner.remove(key);
        }
        for (key, owners) in listed {
            inner.insert(key, owners);
        }
    }

    /// Every child carrying label `owner_label=owner`: workloads before what they read
    /// (configuration, secrets), a namespace last, so that a prune never leaves a running
    /// workload without its inputs.
    pub fn owned_by(&self, owner_label: &str, owner: &str) -> Vec<ChildKey> {
        let mut keys: Vec<ChildKey> = {
            let inner = self.lock();
            OWNER_LABELS
                .iter()
                .find(|l| **l == owner_label)
                .and_then(|label| inner.by_owner.get(&(*label, owner.to_owned())))
                .map(|keys| keys.iter().cloned().collect())
                .unwrap_or_default()
        };
        keys.sort_by_key(|k| prune_rank(k.kind));
        keys
    }
}

fn prune_rank(kind: ChildKind) -> u8 {
    match kind {
        ChildKind::Deployment => 0,
        ChildKind::Service => 1,
        ChildKind::StatefulSet => 2,
        ChildKind::Job => 3,
        ChildKind::ConfigMap => 4,
        ChildKind::Secret => 5,
        // Policies and the identity go after the pods that use them.
        ChildKind::NetworkPolicy => 6,
        ChildKind::ServiceAccount => 7,
        ChildKind::Namespace => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ns: &str, name: &str, region: Option<&str>) -> Meta {
        Meta {
            namespace: Some(ns.into()),
            name: name.into(),
            region: region.map(str::to_owned),
            ..Meta::default()
        }
    }

    fn apply(index: &OwnerIndex, kind: ChildKind, meta: &Meta) {
        index.applied(meta.key(kind), meta);
    }

    fn names(keys: Vec<ChildKey>) -> Vec<String> {
        keys.into_iter()
            .map(|k| format!("{}/{}", k.namespace, k.name))
            .collect()
    }

    #[test]
    fn applies_and_deletes_move_one_key() {
        let index = OwnerIndex::default();
        apply(
            &index,
            ChildKind::Deployment,
            &meta("region-us", "web", Some("us")),
        );
        apply(
            &index,
            ChildKind::Deployment,
            &meta("region-us", "relay", Some("us")),
        );
        apply(
            &index,
            ChildKind::Deployment,
            &meta("region-de", "web", Some("de")),
        );
        apply(&index, ChildKind::Deployment, &meta("elsewhere", "x", None));
        assert_eq!(
            names(index.owned_by(labels::REGION, "us")),
            ["region-us/relay", "region-us/web"]
        );
        index.deleted(&meta("region-us", "web", Some("us")).key(ChildKind::Deployment));
        assert_eq!(
            names(index.owned_by(labels::REGION, "us")),
            ["region-us/relay"]
        );
        assert!(index.owned_by(labels::CONTROL_PLANE, "us").is_empty());
        assert!(index.owned_by("other-label", "us").is_empty());
        // A label changed to another owner moves the key.
        apply(
            &index,
            ChildKind::Deployment,
            &meta("region-us", "relay", Some("de")),
        );
        assert!(index.owned_by(labels::REGION, "us").is_empty());
        assert_eq!(
            names(index.owned_by(labels::REGION, "de")),
            ["region-de/web", "region-us/relay"]
        );
    }

    #[test]
    fn a_namespace_comes_last() {
        let index = OwnerIndex::default();
        apply(
            &index,
            ChildKind::Namespace,
            &meta("", "region-us", Some("us")),
        );
        apply(
            &index,
            ChildKind::Secret,
            &meta("region-us", "postgres", Some("us")),
        );
        apply(
            &index,
            ChildKind::Deployment,
            &meta("region-us", "web", Some("us")),
        );
        let kinds: Vec<_> = index
            .owned_by(labels::REGION, "us")
            .into_iter()
            .map(|k| k.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                ChildKind::Deployment,
                ChildKind::Secret,
                ChildKind::Namespace
            ]
        );
    }

    #[test]
    fn a_relist_replaces_only_its_kind() {
        let index = OwnerIndex::default();
        apply(
            &index,
            ChildKind::Deployment,
            &meta("region-us", "web", Some("us")),
        );
        apply(
            &index,
            ChildKind::Service,
            &meta("region-us", "web", Some("us")),
        );
        index.relist_started(ChildKind::Deployment);
        index.listed(
            ChildKind::Deployment,
            &meta("region-us", "relay", Some("us")),
        );
        // Until the listing is complete the index answers from what it had.
        assert_eq!(index.owned_by(labels::REGION, "us").len(), 2);
        index.relist_done(ChildKind::Deployment);
        let keys = index.owned_by(labels::REGION, "us");
        let kinds: Vec<_> = keys.iter().map(|k| (k.kind, k.name.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (ChildKind::Deployment, "relay"),
                (ChildKind::Service, "web")
            ]
        );
    }
}
