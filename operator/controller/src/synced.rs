//! Readiness of the watches: `/readyz` turns true once every watch has listed its objects,
//! so that no reconcile (and no probe) acts on a half-filled store.
//!
//! ```text
//!   each watch stream ── InitDone ──► Synced::listed(kind) ──(last one)──► ReadyFlag "watches"
//! ```

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use silo_runtime::admin::ReadyFlag;

/// Every watch the operator runs, by the kind it watches.
pub const WATCHES: [&str; 14] = [
    "Region",
    "ControlPlane",
    "Namespace",
    "ConfigMap",
    "Service",
    "ServiceAccount",
    "NetworkPolicy",
    "Secret",
    "Deployment",
    "StatefulSet",
    "Job",
    "StorageClass",
    "external Secret",
    "Pod",
];

/// The watches that have not listed their objects yet.
#[derive(Clone, Debug)]
pub struct Synced {
    pending: Arc<Mutex<BTreeSet<&'static str>>>,
    flag: ReadyFlag,
}

impl Synced {
    /// Track [`WATCHES`]; `flag` is set once all of them have listed.
    pub fn new(flag: ReadyFlag) -> Self {
        flag.set(false);
        Self {
            pending: Arc::new(Mutex::new(WATCHES.into_iter().collect())),
            flag,
        }
    }

    /// The watch of `kind` has listed its objects (a re-list later changes nothing).
    pub fn listed(&self, kind: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.remove(kind) && pending.is_empty() {
            tracing::info!("every watch has listed its objects");
            self.flag.set(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silo_runtime::Readiness;

    #[test]
    fn ready_once_every_watch_listed() {
        let readiness = Readiness::new();
        let synced = Synced::new(readiness.register("watches"));
        for kind in &WATCHES[..WATCHES.len() - 1] {
            synced.listed(kind);
            synced.listed(kind);
        }
        assert_eq!(readiness.not_ready(), ["watches"]);
        synced.listed("Pod");
        assert!(readiness.not_ready().is_empty());
    }
}
