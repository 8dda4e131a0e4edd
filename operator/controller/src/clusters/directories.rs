//! Which directory each remote Region last wrote to its cluster, so that a deleted Region is
//! released only once the directories in customer clusters dropped it too (the local ones are
//! read from the ConfigMap store; remote ConfigMaps are not watched).
//!
//! ```text
//!   remote Region applied ─► written(region, directory hash)
//!   Region finalizer ─► behind(live remote Regions whose cluster answers, hash) ─► wait / release
//! ```
//!
//! Only Regions whose last reconcile reached their cluster (`ClusterReachable=True`) and that
//! wrote within `max_age` (a few resyncs: a healthy remote Region writes every resync) are
//! waited for: an unreachable cluster or a Region whose reconciles fail never blocks another
//! Region's deletion for long (its directory is rewritten when it works again), and after an
//! operator restart a Region counts from its first write on.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use silo_api::Region;
use silo_api::conditions;

/// Region name -> hash of the directory last written to its cluster, and when.
#[derive(Debug, Default)]
pub struct WrittenDirectories(Mutex<HashMap<String, (String, Instant)>>);

impl WrittenDirectories {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (String, Instant)>> {
        // Entries are replaced whole; a panic elsewhere cannot leave one half-written.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `region`'s cluster now holds the directory with `hash`.
    pub fn written(&self, region: &str, hash: &str) {
        self.written_at(region, hash, Instant::now());
    }

    fn written_at(&self, region: &str, hash: &str, at: Instant) {
        self.lock().insert(region.to_owned(), (hash.to_owned(), at));
    }

    /// `region` is gone: nothing to wait for.
    pub fn forget(&self, region: &str) {
        self.lock().remove(region);
    }

    /// The live, unsuspended remote Regions (other than `deleted`) whose cluster answered,
    /// that wrote within `max_age` and whose cluster still holds a directory other than
    /// `hash`, by name.
    pub fn behind<'a>(
        &self,
        regions: impl IntoIterator<Item = &'a Region>,
        deleted: &str,
        hash: &str,
        max_age: Duration,
    ) -> Vec<String> {
        let map = self.lock();
        regions
            .into_iter()
            .filter(|r| waits_for(r, deleted))
            .filter_map(|r| {
                let name = r.name_any();
                let (written, at) = map.get(&name)?;
                (written != hash && at.elapsed() <= max_age).then_some(name)
            })
            .collect()
    }
}

/// Whether a deletion waits for `region`'s remote directory: a live, unsuspended remote Region
/// other than `deleted` whose last reconcile reached its cluster.
fn waits_for(region: &Region, deleted: &str) -> bool {
    let reachable = region
        .status
        .as_ref()
        .into_iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.type_ == conditions::CLUSTER_REACHABLE && c.status == "True");
    region.is_remote()
        && !region.spec.suspend
        && region.metadata.deletion_timestamp.is_none()
        && region.name_any() != deleted
        && reachable
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use silo_api::{RegionSpec, RegionStatus};

    use super::*;

    fn remote(name: &str, reachable: Option<&str>) -> Region {
        let spec: RegionSpec = serde_json::from_value(serde_json::json!({
            "snowflakeId": 1,
            "address": "https://acme.example.com",
            "cluster": {"kubeconfigSecret": "acme-kubeconfig"},
        }))
        .unwrap();
        let mut r = Region::new(name, spec);
        r.status = reachable.map(|status| RegionStatus {
            conditions: vec![Condition {
                type_: conditions::CLUSTER_REACHABLE.to_owned(),
                status: status.to_owned(),
                reason: "Any".to_owned(),
                message: String::new(),
                observed_generation: None,
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
            }],
            ..RegionStatus::default()
        });
        r
    }

    #[test]
    fn waits_for_reachable_remote_regions_behind_the_hash_only() {
        let written = WrittenDirectories::default();
        let behind = remote("behind", Some("True"));
        let current = remote("current", Some("True"));
        let down = remote("down", Some("False"));
        let fresh = remote("fresh", Some("True"));
        let mut suspended = remote("suspended", Some("True"));
        suspended.spec.suspend = true;
        let mut local = remote("local", Some("True"));
        local.spec.cluster = None;
        let deleted = remote("deleted", Some("True"));
        let stuck = remote("stuck", Some("True"));
        let minute = Duration::from_secs(60);
        for name in ["behind", "down", "suspended", "local", "deleted"] {
            written.written(name, "old");
        }
        written.written("current", "new");
        // Its last write is older than max_age: its reconciles no longer get that far.
        written.written_at("stuck", "old", Instant::now() - 2 * minute);
        let regions = [
            &behind, &current, &down, &fresh, &suspended, &local, &deleted, &stuck,
        ];
        assert_eq!(
            written.behind(regions, "deleted", "new", minute),
            vec!["behind".to_owned()]
        );
        written.written("behind", "new");
        assert!(written.behind(regions, "deleted", "new", minute).is_empty());
        written.forget("behind");
        assert_eq!(
            written.behind(regions, "deleted", "newer", minute),
            vec!["current".to_owned()]
        );
    }
}
