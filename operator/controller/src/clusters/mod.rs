//! The cluster registry: one client per customer-provided cluster, behind one seam.
//!
//! ```text
//!   Region.spec.cluster ─► kubeconfig Secret (operator namespace, key `value`, watched)
//!        │                        │ (name, resourceVersion, timeout) = cache key
//!        ▼                        ▼
//!   Registry::cluster ─► Cluster { client with per-request timeout, permits, health }
//!        │
//!        ├─► snapshot: list the Region's namespace there ─► a Stores view (drift, status)
//!        ├─► apply: the same Applier, with that client and view
//!        ├─► directories: the directory each remote Region last wrote (deletions wait on it)
//!        └─► health: failures ─► backoff with jitter for the whole cluster; success resets
//! ```
//!
//! Drift in a remote cluster is found by a bounded periodic resync (each remote Region is
//! reconciled again every `--cluster-resync`, which lists its namespace there) rather than
//! by watches: the operator then holds no long-lived connection per cluster, a cluster that
//! is down costs nothing between attempts, and an unreachable cluster cannot stall or
//! back up a watch stream that other Regions share. A changed kubeconfig Secret is seen by
//! the watch of the operator's namespace and re-runs every Region; the next request uses
//! the new credentials (the cache key holds the Secret's resourceVersion).

pub mod access;
pub mod directories;
pub mod error;
pub mod snapshot;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use silo_api::ClusterRef;
use silo_api::cluster::{
    DEFAULT_REQUEST_TIMEOUT_SECONDS, KUBECONFIG_KEY, TOKEN_EXPIRES_ANNOTATION,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use error::{ClusterError, ErrorClass, classify};

use crate::stores::Stores;

/// Limits of every cluster client.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Requests in flight to one cluster at most (each remote reconcile sends one at a time
    /// and holds a permit throughout).
    pub max_in_flight: usize,
    /// How often a remote Region is reconciled again to find drift there.
    pub resync: Duration,
    /// Longest wait between attempts to reach a failing cluster.
    pub max_backoff: Duration,
    /// How often the identity's permissions are reviewed again (always after new credentials).
    pub permission_check: Duration,
}

/// Consecutive failures of one cluster.
#[derive(Debug, Default)]
struct Health {
    failures: u32,
    retry_at: Option<Instant>,
    last: Option<(ErrorClass, String)>,
}

/// One customer-provided cluster as the current kubeconfig Secret describes it.
pub struct Cluster {
    pub secret: String,
    pub client: Client,
    /// The API server URL.
    pub server: String,
    /// Per-request timeout.
    pub timeout: Duration,
    /// When the credentials expire (the Secret's annotation), if known.
    pub expires_at: Option<Timestamp>,
    /// The kubeconfig Secret's resourceVersion this client was built from.
    pub resource_version: String,
    permits: Arc<Semaphore>,
    health: Mutex<Health>,
    /// Needed permissions the identity lacks, by Region namespace, and when they were checked.
    missing: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

impl Cluster {
    fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A permit to talk to the cluster, or `None` when all are taken for longer than one
    /// request timeout (the caller requeues instead of holding a worker).
    pub async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(self.timeout, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// `Err` while the cluster backs off after failures: how long until the next attempt.
    pub fn backing_off(&self) -> Result<(), ClusterError> {
        let health = self.health();
        let now = Instant::now();
        match (health.retry_at, &health.last) {
            (Some(at), Some((class, last))) if at > now => Err(ClusterError::BackingOff {
                secret: self.secret.clone(),
                server: self.server.clone(),
                failures: health.failures,
                last: last.clone(),
                retry_in_secs: at.duration_since(now).as_secs().max(1),
                class: *class,
            }),
            _ => Ok(()),
        }
    }

    /// Record a failed request; returns the error to report and when to try again.
    pub fn failed(&self, error: &kube::Error, max_backoff: Duration) -> (ClusterError, Duration) {
        let class = classify(error);
        let message = error.to_string();
        let mut health = self.health();
        health.failures = health.failures.saturating_add(1);
        let wait = jittered(
            crate::backoff::delay(health.failures).min(max_backoff),
            rand::random::<f64>(),
        );
        health.retry_at = Some(Instant::now() + wait);
        health.last = Some((class, message.clone()));
        let error = ClusterError::Request {
            secret: self.secret.clone(),
            server: self.server.clone(),
            class,
            message,
        };
        (error, wait)
    }

    /// Record a successful exchange: the cluster is healthy again.
    pub fn succeeded(&self) {
        *self.health() = Health::default();
    }

    fn missing(&self) -> MutexGuard<'_, HashMap<String, (Instant, Vec<String>)>> {
        self.missing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The needed permissions in `namespace` these credentials lack, if checked already.
    pub fn missing_permissions(&self, namespace: &str) -> Option<Vec<String>> {
        self.missing().get(namespace).map(|(_, m)| m.clone())
    }

    /// Whether the permissions in `namespace` were never checked with these credentials, or
    /// longer ago than `interval` (a Role edited in the cluster shows within it).
    pub fn permissions_due(&self, namespace: &str, interval: Duration) -> bool {
        self.missing()
            .get(namespace)
            .is_none_or(|(at, _)| at.elapsed() >= interval)
    }

    /// Remember the result of the permission check in `namespace`.
    pub fn set_missing_permissions(&self, namespace: &str, missing: Vec<String>) {
        self.missing()
            .insert(namespace.to_owned(), (Instant::now(), missing));
    }
}

/// `base` scaled by a factor in 0.8..1.2 (from `unit` in 0..1), so that Regions of one
/// cluster do not retry in lockstep.
pub fn jittered(base: Duration, unit: f64) -> Duration {
    base.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0))
}

/// Clients of every referenced cluster, keyed by kubeconfig Secret.
pub struct Registry {
    pub settings: Settings,
    clusters: Mutex<HashMap<String, Arc<Cluster>>>,
    /// The directory each remote Region last wrote to its cluster.
    pub directories: directories::WrittenDirectories,
}

impl Registry {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            clusters: Mutex::new(HashMap::new()),
            directories: directories::WrittenDirectories::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Cluster>>> {
        self.clusters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of cluster clients held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no cluster client is held.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The cluster `spec` refers to, built from its Secret as the store shows it now (a new
    /// client when the Secret or the timeout changed since the last call).
    pub async fn cluster(
        &self,
        stores: &Stores,
        spec: &ClusterRef,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let name = &spec.kubeconfig_secret;
        let namespace = stores.operator_namespace.clone();
        let secret = stores
            .external_secret(name)
            .ok_or_else(|| ClusterError::SecretMissing {
                namespace: namespace.clone(),
                secret: name.clone(),
            })?;
        let version = secret.metadata.resource_version.clone().unwrap_or_default();
        let timeout = Duration::from_secs(
            spec.request_timeout_seconds
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT_SECONDS)
                .clamp(1, 60) as u64,
        );
        if let Some(cached) = self.lock().get(name)
            && cached.resource_version == version
            && cached.timeout == timeout
        {
            return Ok(cached.clone());
        }
        let permits = self.settings.max_in_flight.max(1);
        let cluster = Arc::new(build(&namespace, name, &secret, timeout, permits).await?);
        tracing::info!(secret = %name, server = %cluster.server, "cluster client built");
        self.lock().insert(name.clone(), cluster.clone());
        Ok(cluster)
    }
}

/// A cluster from its kubeconfig Secret.
async fn build(
    namespace: &str,
    name: &str,
    secret: &Secret,
    timeout: Duration,
    permits: usize,
) -> Result<Cluster, ClusterError> {
    let invalid = |problem: String| ClusterError::InvalidKubeconfig {
        namespace: namespace.to_owned(),
        secret: name.to_owned(),
        problem,
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KUBECONFIG_KEY))
        .ok_or_else(|| ClusterError::NoValue {
            namespace: namespace.to_owned(),
            secret: name.to_owned(),
        })?;
    let text = std::str::from_utf8(&value.0).map_err(|e| invalid(format!("not UTF-8: {e}")))?;
    let kubeconfig = Kubeconfig::from_yaml(text).map_err(|e| invalid(e.to_string()))?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| invalid(e.to_string()))?;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| invalid(e.to_string()))?;
    let expires_at = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TOKEN_EXPIRES_ANNOTATION))
        .and_then(|t| t.parse::<Timestamp>().ok());
    Ok(Cluster {
        secret: name.to_owned(),
        client,
        server,
        timeout,
        expires_at,
        resource_version: secret.metadata.resource_version.clone().unwrap_or_default(),
        permits: Arc::new(Semaphore::new(permits)),
        health: Mutex::new(Health::default()),
        missing: Mutex::new(HashMap::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_fifth() {
        let base = Duration::from_secs(10);
        assert_eq!(jittered(base, 0.0), Duration::from_secs(8));
        assert_eq!(jittered(base, 1.0), Duration::from_secs(12));
        assert_eq!(jittered(base, 0.5), Duration::from_secs(10));
    }
}
