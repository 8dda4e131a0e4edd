//! Where a Region's objects live, as the Region reconciler sees it: the local stores and
//! applier, or a customer-provided cluster's snapshot and an applier with that cluster's
//! client; and the conditions that say how that cluster is doing.
//!
//! ```text
//!   Region ─► local?  ─► Target { ctx.stores, ctx.applier }
//!          └► remote ─► Registry::cluster ─► backing off? ─► permit ─► snapshot::view
//!                         │                                           + pods::list (problems)
//!                         │ error: ClusterReachable=False (class), Ready=False ClusterUnreachable
//!                         └► Target { view, Applier(remote client) } + cluster verdicts
//! ```

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, DeleteParams};
use kube::runtime::events::{Event, EventType};
use silo_api::cluster::ABANDON_REMOTE_ANNOTATION;
use silo_api::conditions::{self, reason};
use silo_api::{ClusterStatus, Region};
use tokio::sync::OwnedSemaphorePermit;

use crate::apply::Applier;
use crate::clusters::{Cluster, ClusterError, ErrorClass, access, classify, snapshot};
use crate::context::Context;
use crate::pods::{self, PodProblems};
use crate::status::Verdict;
use crate::stores::Stores;

/// Where one reconcile reads and writes a Region's objects.
pub struct Target {
    pub stores: Stores,
    pub applier: Applier,
    pub pod_problems: PodProblems,
    /// The remote cluster, for a Region with `spec.cluster`.
    pub cluster: Option<Arc<Cluster>>,
    /// Held while this reconcile talks to the remote cluster.
    _permit: Option<OwnedSemaphorePermit>,
}

/// The cluster of a remote Region cannot be used now; try again after `retry`.
#[derive(Debug)]
pub struct Unreachable {
    pub error: ClusterError,
    pub retry: Duration,
    /// The API server, when the kubeconfig could be read.
    pub server: Option<String>,
    /// After a refused request (403): the needed permissions the identity lacks.
    pub missing: Option<Vec<String>>,
}

impl Target {
    /// The operator's own cluster.
    pub fn local(ctx: &Context) -> Self {
        Self {
            stores: ctx.stores.clone(),
            applier: ctx.applier.clone(),
            pod_problems: ctx.pod_problems.clone(),
            cluster: None,
            _permit: None,
        }
    }

    /// Record a failed write: a transport or credential failure counts against the cluster's
    /// health (the next reconciles back off); `Some` with what to report then.
    pub fn write_failed(&self, error: &kube::Error, ctx: &Context) -> Option<Unreachable> {
        let cluster = self.cluster.as_ref()?;
        if classify(error) == ErrorClass::Other {
            return None;
        }
        let (error, retry) = cluster.failed(error, ctx.clusters.settings.max_backoff);
        Some(Unreachable {
            error,
            retry,
            server: Some(cluster.server.clone()),
            missing: None,
        })
    }
}

/// The target of `region` whose namespace is `namespace`: local, or a snapshot of its
/// remote cluster (at most one request timeout per request, never a wait on other clusters).
pub async fn target(
    ctx: &Context,
    region: &Region,
    namespace: &str,
) -> Result<Target, Unreachable> {
    let Some(spec) = &region.spec.cluster else {
        return Ok(Target::local(ctx));
    };
    let settings = &ctx.clusters.settings;
    let cluster = ctx
        .clusters
        .cluster(&ctx.stores, spec)
        .await
        .map_err(|error| Unreachable {
            error,
            // Fixed by a change of the Secret, whose watch re-runs the Region.
            retry: settings.resync,
            server: None,
            missing: None,
        })?;
    let down = |error: ClusterError, retry: Duration| Unreachable {
        error,
        retry,
        server: Some(cluster.server.clone()),
        missing: None,
    };
    if let Err(error) = cluster.backing_off() {
        let retry = match &error {
            ClusterError::BackingOff { retry_in_secs, .. } => {
                crate::clusters::jittered(Duration::from_secs(*retry_in_secs), rand::random())
            }
            _ => settings.resync,
        };
        return Err(down(error, retry));
    }
    let Some(permit) = cluster.permit().await else {
        // Other Regions of this cluster hold every permit: come back soon, free the worker.
        return Err(down(
            ClusterError::Request {
                secret: cluster.secret.clone(),
                server: cluster.server.clone(),
                class: ErrorClass::Timeout,
                message: "every request slot of this cluster stayed busy".to_owned(),
            },
            Duration::from_secs(1),
        ));
    };
    let view = match snapshot::view(&cluster.client, &ctx.stores, namespace).await {
        Ok(view) => view,
        Err(e) => {
            let (error, retry) = cluster.failed(&e, settings.max_backoff);
            let mut down = down(error, retry);
            // Refused: name what the identity lacks.
            if classify(&e) == ErrorClass::Forbidden
                && let Ok(missing) = access::missing(&cluster.client, namespace).await
            {
                cluster.set_missing_permissions(namespace, missing.clone());
                down.missing = Some(missing);
            }
            return Err(down);
        }
    };
    let pod_problems = match pods::list(&cluster.client, namespace).await {
        Ok(problems) => problems,
        // An identity onboarded before pods were readable: status lacks the pods' problems
        // and `PermissionsSufficient` names the missing `list pods`.
        Err(kube::Error::Api(status)) if status.code == 403 => PodProblems::default(),
        Err(e) => {
            let (error, retry) = cluster.failed(&e, settings.max_backoff);
            return Err(down(error, retry));
        }
    };
    cluster.succeeded();
    if cluster.permissions_due(namespace, settings.permission_check) {
        match access::missing(&cluster.client, namespace).await {
            Ok(missing) => cluster.set_missing_permissions(namespace, missing),
            Err(e) => {
                tracing::warn!(secret = %cluster.secret, error = %e, "permission review failed; retried next reconcile")
            }
        }
    }
    Ok(Target {
        applier: Applier {
            client: cluster.client.clone(),
            stores: view.clone(),
            tracker: ctx.applier.tracker.clone(),
            metrics: ctx.applier.metrics.clone(),
        },
        stores: view,
        pod_problems,
        cluster: Some(cluster),
        _permit: Some(permit),
    })
}

/// `status.cluster` of a reachable remote Region whose namespace there is `namespace`.
pub fn cluster_status(cluster: &Cluster, namespace: &str) -> ClusterStatus {
    ClusterStatus {
        server: Some(cluster.server.clone()),
        secret_version: Some(cluster.resource_version.clone()),
        credentials_expire_at: cluster.expires_at.map(|t| t.to_string()),
        missing_permissions: cluster.missing_permissions(namespace).unwrap_or_default(),
    }
}

/// Conditions of a reachable remote cluster: reachable, credentials, permissions.
pub fn cluster_verdicts(
    cluster: &Cluster,
    namespace: &str,
    warn_before: Duration,
    now: Timestamp,
) -> Vec<Verdict> {
    let mut verdicts = vec![Verdict::new(
        conditions::CLUSTER_REACHABLE,
        true,
        reason::REACHABLE,
        format!("{} answered", cluster.server),
    )];
    if let Some(expires) = cluster.expires_at {
        verdicts.push(credentials_verdict(expires, warn_before, now));
    }
    match cluster.missing_permissions(namespace) {
        Some(missing) if !missing.is_empty() => verdicts.push(Verdict::new(
            conditions::PERMISSIONS_SUFFICIENT,
            false,
            reason::MISSING_PERMISSIONS,
            format!(
                "the identity of Secret {} lacks: {}; run `silo-operator onboard` again to restore its roles",
                cluster.secret,
                missing.join(", ")
            ),
        )),
        Some(_) => verdicts.push(Verdict::new(
            conditions::PERMISSIONS_SUFFICIENT,
            true,
            reason::READY,
            "the identity has every permission the operator needs",
        )),
        None => {}
    }
    verdicts
}

/// Condition of a remote Region: whether every Region in the directory written to its
/// cluster has an address pods there can reach.
pub const DIRECTORY_ADDRESSES_REACHABLE: &str = "DirectoryAddressesReachable";
/// Its reason when some Regions are listed at a cluster-internal address.
pub const CLUSTER_INTERNAL_ADDRESSES: &str = "ClusterInternalAddresses";
/// At most this many Regions are named in its message.
const NAMED_AT_MOST: usize = 20;

/// `DirectoryAddressesReachable` of a remote Region, from the local Regions the directory
/// lists at a cluster-internal address (`internal`, by name). The directory keeps them (every
/// entry needs an address, and the silos there still learn their names and ids); the
/// condition says which ones pods in the customer cluster cannot reach and what to set.
pub fn directory_verdict(internal: &[String]) -> Verdict {
    if internal.is_empty() {
        return Verdict::new(
            DIRECTORY_ADDRESSES_REACHABLE,
            true,
            reason::READY,
            "every Region in this cluster's directory has an address outside the operator's cluster",
        );
    }
    let mut named = internal
        .iter()
        .take(NAMED_AT_MOST)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if internal.len() > NAMED_AT_MOST {
        named.push_str(&format!(" and {} more", internal.len() - NAMED_AT_MOST));
    }
    Verdict::new(
        DIRECTORY_ADDRESSES_REACHABLE,
        false,
        CLUSTER_INTERNAL_ADDRESSES,
        format!(
            "this cluster's directory lists {} Region(s) of the operator's cluster at a cluster-internal .svc address its pods cannot reach: {named}; set spec.address of each to a URL reachable from this cluster (e.g. https://<region>.sentry.example.com)",
            internal.len()
        ),
    )
}

/// `CredentialsValid`: False within `warn_before` of the expiry.
pub fn credentials_verdict(expires: Timestamp, warn_before: Duration, now: Timestamp) -> Verdict {
    let left = expires.duration_since(now);
    let left_secs = left.as_secs();
    if left_secs <= 0 {
        Verdict::new(
            conditions::CREDENTIALS_VALID,
            false,
            reason::CREDENTIALS_EXPIRED,
            format!("the token expired at {expires}; renew it with `silo-operator onboard rotate`"),
        )
    } else if (left_secs as u64) < warn_before.as_secs() {
        Verdict::new(
            conditions::CREDENTIALS_VALID,
            false,
            reason::CREDENTIALS_EXPIRING,
            format!(
                "the token expires at {expires} (in {}h); renew it with `silo-operator onboard rotate`",
                left_secs / 3600
            ),
        )
    } else {
        Verdict::new(
            conditions::CREDENTIALS_VALID,
            true,
            reason::READY,
            format!("the token expires at {expires}"),
        )
    }
}

/// Conditions of a Region whose cluster cannot be used.
pub fn unreachable_verdicts(down: &Unreachable) -> Vec<Verdict> {
    let message = down.error.to_string();
    let mut verdicts = Vec::new();
    if let Some(missing) = down.missing.as_ref().filter(|m| !m.is_empty()) {
        verdicts.push(missing_verdict(&down.error, missing));
    }
    let mut both = vec![
        Verdict::new(
            conditions::READY,
            false,
            reason::CLUSTER_UNREACHABLE,
            message.clone(),
        ),
        Verdict::new(
            conditions::CLUSTER_REACHABLE,
            false,
            down.error.reason(),
            message,
        ),
    ];
    both.append(&mut verdicts);
    both
}

fn missing_verdict(error: &ClusterError, missing: &[String]) -> Verdict {
    let secret = match error {
        ClusterError::Request { secret, .. } | ClusterError::BackingOff { secret, .. } => {
            secret.as_str()
        }
        _ => "",
    };
    Verdict::new(
        conditions::PERMISSIONS_SUFFICIENT,
        false,
        reason::MISSING_PERMISSIONS,
        format!(
            "the identity of Secret {secret} lacks: {}; run `silo-operator onboard` again to restore its roles",
            missing.join(", ")
        ),
    )
}

/// A Warning Event for each cluster condition that turned False (or changed its reason).
pub async fn publish_warnings(
    ctx: &Context,
    region: &Region,
    previous: &[Condition],
    verdicts: &[Verdict],
) {
    for v in verdicts.iter().filter(|v| !v.ok) {
        if !matches!(
            v.type_,
            conditions::CLUSTER_REACHABLE
                | conditions::CREDENTIALS_VALID
                | conditions::PERMISSIONS_SUFFICIENT
        ) {
            continue;
        }
        let unchanged = previous
            .iter()
            .any(|c| c.type_ == v.type_ && c.status == "False" && c.reason == v.reason);
        if unchanged {
            continue;
        }
        let event = Event {
            type_: EventType::Warning,
            reason: v.reason.clone(),
            note: Some(v.message.chars().take(1000).collect()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &region.object_ref(&())).await {
            tracing::warn!(error = %e, "publishing event failed");
        }
    }
}

/// Whether the Region may be deleted without deleting its objects in its cluster.
pub fn abandons_remote(region: &Region) -> bool {
    region
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(ABANDON_REMOTE_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// Delete the Region's namespace in its cluster; `Ok(true)` once it is gone.
pub async fn delete_namespace(
    ctx: &Context,
    region: &Region,
    namespace: &str,
) -> Result<bool, Unreachable> {
    let Some(spec) = &region.spec.cluster else {
        return Ok(true);
    };
    let cluster = ctx
        .clusters
        .cluster(&ctx.stores, spec)
        .await
        .map_err(|error| Unreachable {
            error,
            retry: ctx.clusters.settings.resync,
            server: None,
            missing: None,
        })?;
    let failed = |e: kube::Error| {
        let (error, retry) = cluster.failed(&e, ctx.clusters.settings.max_backoff);
        Unreachable {
            error,
            retry,
            server: Some(cluster.server.clone()),
            missing: None,
        }
    };
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let existing = api.get_metadata_opt(namespace).await.map_err(failed)?;
    let Some(existing) = existing else {
        cluster.succeeded();
        return Ok(true);
    };
    if existing.metadata.deletion_timestamp.is_none() {
        match api.delete(namespace, &DeleteParams::background()).await {
            Ok(_) => {
                tracing::info!(namespace, server = %cluster.server, "deleting remote region namespace")
            }
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(true),
            Err(e) => return Err(failed(e)),
        }
    }
    cluster.succeeded();
    Ok(false)
}

/// The message of a deletion that waits for an unreachable cluster.
pub fn delete_blocked(down: &Unreachable, namespace: &str) -> Vec<Verdict> {
    let message = format!(
        "deleting: namespace {namespace} cannot be deleted in the Region's cluster: {}. The operator keeps trying; to delete the Region and leave its objects in that cluster, annotate it {ABANDON_REMOTE_ANNOTATION}=\"true\"",
        down.error
    );
    vec![
        Verdict::new(
            conditions::READY,
            false,
            reason::DELETE_BLOCKED,
            message.clone(),
        ),
        Verdict::new(
            conditions::CLUSTER_REACHABLE,
            false,
            down.error.reason(),
            message,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rollout_counts_this_ready_reason_apart() {
        assert_eq!(
            reason::CLUSTER_UNREACHABLE,
            crate::rollout::CLUSTER_UNREACHABLE
        );
    }

    #[test]
    fn the_directory_condition_names_unreachable_regions_and_the_fix() {
        assert!(directory_verdict(&[]).ok);
        let two = directory_verdict(&["de".to_owned(), "us".to_owned()]);
        assert!(!two.ok);
        assert_eq!(two.reason, CLUSTER_INTERNAL_ADDRESSES);
        assert!(two.message.contains("2 Region(s)"), "{}", two.message);
        assert!(two.message.contains(": de, us;"), "{}", two.message);
        assert!(two.message.contains("spec.address"), "{}", two.message);
        let many: Vec<String> = (0..25).map(|i| format!("r{i}")).collect();
        let capped = directory_verdict(&many);
        assert!(
            capped.message.contains("r19 and 5 more"),
            "{}",
            capped.message
        );
        assert!(!capped.message.contains("r20,"), "{}", capped.message);
    }

    #[test]
    fn credentials_warn_before_they_expire() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let week = Duration::from_secs(7 * 24 * 3600);
        let in_days = |d: i64| {
            now.checked_add(k8s_openapi::jiff::SignedDuration::from_hours(24 * d))
                .unwrap()
        };
        assert!(credentials_verdict(in_days(30), week, now).ok);
        let soon = credentials_verdict(in_days(3), week, now);
        assert!(!soon.ok);
        assert_eq!(soon.reason, reason::CREDENTIALS_EXPIRING);
        assert!(soon.message.contains("onboard rotate"));
        assert_eq!(
            credentials_verdict(in_days(-1), week, now).reason,
            reason::CREDENTIALS_EXPIRED
        );
    }
}
