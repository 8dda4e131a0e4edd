//! Leader election on a `coordination.k8s.io` Lease: one replica reconciles and writes, the
//! others keep their watches warm and wait.
//!
//! ```text
//!  kube-lease-manager ── acquire / renew every renew_deadline/2 ──► Lease (holder, renewTime)
//!                                                                      │ GET every renew_deadline/4
//!  Leadership ◄── leading until renewTime + renew_deadline ◄───────────┘
//!     │ is_leading()                         │ gained                 │ passed without renewal
//!     ▼                                      ▼                        ▼
//!  reconcilers act, the client's Fence   reconcile everything     Election::lost(): the
//!  lets writes through                   once                     process exits
//! ```
//!
//! The renew deadline is shorter than the lease duration: a leader that cannot renew stops
//! writing (its `Fence` refuses every write once the deadline passed, whatever the reconcilers
//! are doing) before any standby may take the lease; the difference is the clock skew tolerated
//! between nodes. The deadline counts from the `renewTime` this replica wrote and is judged on
//! the monotonic clock, so a process paused past it (a stopped VM, SIGSTOP) resumes fenced.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant, SystemTime};

use futures::channel::mpsc;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseCreateMode, LeaseManagerBuilder};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::{Layer, Service};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Leader election failed or this replica lost the lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error(
        "invalid lease timing: {0} (the renew deadline must be at least 2s and shorter than the lease duration)"
    )]
    Timing(String),
    #[error(
        "cannot take part in leader election on Lease {lease}: {source} (the chart creates the Lease and grants get/patch on it; without the chart pass --leader-elect=false to run a single replica)"
    )]
    Lease {
        lease: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    #[error("lost the lease {lease}: {why}; exiting so that only the new leader writes")]
    Lost { lease: String, why: String },
}

/// Which Lease to hold and how long it is valid.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// Unique per process (a restarted process is a new candidate).
    pub identity: String,
    /// How long a lease stays valid after its last renewal: the longest a standby waits.
    pub duration: Duration,
    /// How long the leader keeps writing without a successful renewal.
    pub renew_deadline: Duration,
}

impl LeaseSettings {
    /// Whole seconds (the Lease's unit), checked: 2 <= renew deadline < duration.
    fn seconds(&self) -> Result<(u64, u64), LeaderError> {
        let duration = self.duration.as_secs();
        let renew = self.renew_deadline.as_secs();
        if renew < 2 || renew >= duration {
            return Err(LeaderError::Timing(format!(
                "lease duration {duration}s, renew deadline {renew}s"
            )));
        }
        Ok((duration, renew))
    }

    /// The crate renews `grace` seconds before the lease expires: every renew_deadline/2.
    fn grace(&self) -> Result<u64, LeaderError> {
        let (duration, renew) = self.seconds()?;
        Ok(duration - (renew / 2).max(1))
    }

    fn lease(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Whether this replica may reconcile and write now.
#[derive(Clone, Debug)]
pub struct Leadership {
    /// `None`: leader election is off, this replica always leads.
    until: Option<Arc<Mutex<Option<Instant>>>>,
}

impl Leadership {
    /// A single replica without election.
    pub fn always() -> Self {
        Self { until: None }
    }

    /// Not leading until the election says so.
    pub fn elected() -> Self {
        Self {
            until: Some(Arc::new(Mutex::new(None))),
        }
    }

    pub fn is_leading(&self) -> bool {
        self.is_leading_at(Instant::now())
    }

    fn is_leading_at(&self, now: Instant) -> bool {
        match &self.until {
            None => true,
            Some(until) => lock(until).is_some_and(|until| now < until),
        }
    }

    fn until(&self) -> Option<Instant> {
        self.until.as_ref().and_then(|until| *lock(until))
    }

    /// Lead until `until`; true when this replica was not leading before.
    fn extend(&self, until: Instant) -> bool {
        let Some(slot) = &self.until else {
            return false;
        };
        let mut slot = lock(slot);
        let gained = slot.is_none_or(|previous| previous <= Instant::now());
        *slot = Some(slot.map_or(until, |previous| previous.max(until)));
        gained
    }

    fn resign(&self) {
        if let Some(slot) = &self.until {
            *lock(slot) = None;
        }
    }

    /// A client layer refusing writes while this replica does not lead.
    pub fn fence(&self) -> FenceLayer {
        FenceLayer(self.clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Until when a lease renewed at `renewed` (by this replica) lets it write, on the monotonic
/// clock; `None` when that time has passed.
fn lead_until(
    renewed: SystemTime,
    renew_deadline: Duration,
    now: (Instant, SystemTime),
) -> Option<Instant> {
    let age = now.1.duration_since(renewed).unwrap_or(Duration::ZERO);
    renew_deadline
        .checked_sub(age)
        .filter(|left| !left.is_zero())
        .map(|left| now.0 + left)
}

/// The write a standby or a fenced leader tried to send.
#[derive(Debug, thiserror::Error)]
#[error("not sent: this operator replica does not hold the leader lease ({method} {path})")]
pub struct NotLeader {
    method: http::Method,
    path: String,
}

#[derive(Clone, Debug)]
pub struct FenceLayer(Leadership);

impl<S> Layer<S> for FenceLayer {
    type Service = Fence<S>;

    fn layer(&self, inner: S) -> Fence<S> {
        Fence {
            inner,
            leadership: self.0.clone(),
        }
    }
}

/// Passes reads; passes writes (POST, PUT, PATCH, DELETE) only while leading.
#[derive(Clone, Debug)]
pub struct Fence<S> {
    inner: S,
    leadership: Leadership,
}

type FenceFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<S, B> Service<http::Request<B>> for Fence<S>
where
    S: Service<http::Request<B>>,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = FenceFuture<S::Response>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let write = !matches!(
            *req.method(),
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        if write && !self.leadership.is_leading() {
            let refused = NotLeader {
                method: req.method().clone(),
                path: req.uri().path().to_owned(),
            };
            tracing::warn!(error = %refused, "write refused");
            return Box::pin(std::future::ready(Err(refused.into())));
        }
        let response = self.inner.call(req);
        Box::pin(async move { response.await.map_err(Into::into) })
    }
}

/// The running election; `lost` resolves only if this replica lost the lease.
pub struct Election {
    lease: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), LeaderError>>>,
}

impl Election {
    /// No election: `lost` never resolves.
    pub fn disabled() -> Self {
        Self {
            lease: String::new(),
            stop: None,
            task: None,
        }
    }

    /// Take part in the election on `settings`' Lease with `client` (a client without the
    /// fence: renewing the lease is what keeps the fence open). `gained` is told whenever this
    /// replica starts leading.
    pub fn start(
        client: Client,
        settings: LeaseSettings,
        leadership: Leadership,
        gained: Vec<mpsc::Sender<()>>,
        on_change: impl Fn(bool) + Send + Sync + 'static,
    ) -> Result<Self, LeaderError> {
        let grace = settings.grace()?;
        let lease = settings.lease();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(elect(
            client, settings, grace, leadership, gained, on_change, stopped,
        ));
        Ok(Self {
            lease,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Resolves when the lease was lost (or the election could not run).
    pub async fn lost(&mut self) -> LeaderError {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let outcome = task.await;
        self.task = None;
        match outcome {
            Ok(Err(error)) => error,
            Ok(Ok(())) => LeaderError::Lost {
                lease: self.lease.clone(),
                why: "the election ended".to_owned(),
            },
            Err(join) => LeaderError::Lost {
                lease: self.lease.clone(),
                why: format!("the election task failed: {join}"),
            },
        }
    }

    /// Give the lease up (after the controllers stopped), so that a standby need not wait for
    /// it to expire.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(Ok(Ok(()))) => tracing::info!(lease = %self.lease, "lease released"),
                Ok(Ok(Err(error))) => tracing::warn!(%error, "leaving the election"),
                Ok(Err(error)) => tracing::warn!(%error, "election task failed"),
                Err(_) => tracing::warn!(lease = %self.lease, "releasing the lease timed out"),
            }
        }
    }
}

async fn elect(
    client: Client,
    settings: LeaseSettings,
    grace: u64,
    leadership: Leadership,
    gained: Vec<mpsc::Sender<()>>,
    on_change: impl Fn(bool) + Send + Sync + 'static,
    mut stopped: oneshot::Receiver<()>,
) -> Result<(), LeaderError> {
    let lease = settings.lease();
    let manager = LeaseManagerBuilder::new(client.clone(), &settings.name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(settings.duration.as_secs())
        .with_grace(grace)
        .with_create_mode(LeaseCreateMode::AutoCreate)
        .build()
        .await
        .map_err(|source| LeaderError::Lease {
            lease: lease.clone(),
            source,
        })?;
    tracing::info!(%lease, identity = %settings.identity, "waiting for the leader lease");
    let (mut held, manager_task) = manager.watch().await;
    let leases: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let mut check = tokio::time::interval(settings.renew_deadline / 4);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lost = |why: String| LeaderError::Lost {
        lease: lease.clone(),
        why,
    };
    loop {
        let deadline = leadership.until();
        tokio::select! {
            _ = &mut stopped => break,
            changed = held.changed() => {
                if changed.is_err() {
                    leadership.resign();
                    return Err(lost("the lease manager stopped".to_owned()));
                }
                if !*held.borrow_and_update() && leadership.until().is_some() {
                    leadership.resign();
                    return Err(lost("another replica holds it".to_owned()));
                }
            }
            _ = check.tick(), if *held.borrow() => {}
            () = sleep_until(deadline), if deadline.is_some() => {
                if !leadership.is_leading() {
                    leadership.resign();
                    return Err(lost(format!(
                        "not renewed within the renew deadline ({:?})",
                        settings.renew_deadline
                    )));
                }
                continue;
            }
        }
        if *held.borrow() {
            confirm(&leases, &settings, &leadership, &gained, &on_change, &lost).await?;
        }
    }
    leadership.resign();
    drop(held);
    match manager_task.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(LeaderError::Lease {
            lease: lease.clone(),
            source,
        }),
        Err(join) => Err(lost(format!("the lease manager failed: {join}"))),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Read the Lease: while it names this replica, lead until its renewTime + renew deadline.
async fn confirm(
    leases: &Api<Lease>,
    settings: &LeaseSettings,
    leadership: &Leadership,
    gained: &[mpsc::Sender<()>],
    on_change: &(impl Fn(bool) + Send + Sync),
    lost: &impl Fn(String) -> LeaderError,
) -> Result<(), LeaderError> {
    let read = tokio::time::timeout(settings.renew_deadline / 4, leases.get(&settings.name));
    let spec = match read.await {
        Ok(Ok(lease)) => lease.spec.unwrap_or_default(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot read the leader lease");
            return Ok(());
        }
        Err(_) => {
            tracing::warn!("reading the leader lease timed out");
            return Ok(());
        }
    };
    let ours = spec.holder_identity.as_deref() == Some(settings.identity.as_str());
    let now = (Instant::now(), SystemTime::now());
    let until = spec
        .renew_time
        .filter(|_| ours)
        .and_then(|renewed| lead_until(renewed.0.into(), settings.renew_deadline, now));
    match until {
        Some(until) => {
            if leadership.extend(until) {
                tracing::info!(lease = %settings.lease(), identity = %settings.identity, "leading");
                on_change(true);
                for sender in gained {
                    // A full channel already holds a pending "reconcile all".
                    let _ = sender.clone().try_send(());
                }
            }
            Ok(())
        }
        None if !ours && leadership.until().is_some() => {
            leadership.resign();
            Err(lost(format!(
                "the Lease names {}",
                spec.holder_identity.as_deref().unwrap_or("no holder")
            )))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(duration: u64, renew: u64) -> LeaseSettings {
        LeaseSettings {
            name: "silo-operator".to_owned(),
            namespace: "silo-system".to_owned(),
            identity: "a".to_owned(),
            duration: Duration::from_secs(duration),
            renew_deadline: Duration::from_secs(renew),
        }
    }

    #[test]
    fn renewal_happens_at_half_the_renew_deadline() {
        // Lease 15s, deadline 10s: the crate renews 10s before expiry, i.e. 5s after renewing.
        assert_eq!(settings(15, 10).grace().unwrap(), 10);
        assert_eq!(settings(6, 4).grace().unwrap(), 4);
        assert_eq!(settings(3, 2).grace().unwrap(), 2);
    }

    #[test]
    fn timing_must_leave_room_for_skew() {
        for (duration, renew) in [(10, 10), (10, 12), (10, 1), (1, 0)] {
            let error = settings(duration, renew).grace().unwrap_err();
            assert!(error.to_string().contains("renew deadline"), "{error}");
        }
    }

    #[test]
    fn leads_until_the_renew_deadline_after_the_last_renewal() {
        let now = (Instant::now(), SystemTime::now());
        let deadline = Duration::from_secs(10);
        let renewed = now.1 - Duration::from_secs(4);
        assert_eq!(
            lead_until(renewed, deadline, now),
            Some(now.0 + Duration::from_secs(6))
        );
        assert_eq!(lead_until(now.1 - deadline, deadline, now), None);
        assert_eq!(
            lead_until(now.1 - Duration::from_secs(60), deadline, now),
            None
        );
        // A renewTime slightly ahead of this clock counts as just renewed.
        let ahead = now.1 + Duration::from_secs(1);
        assert_eq!(lead_until(ahead, deadline, now), Some(now.0 + deadline));
    }

    #[test]
    fn leadership_lapses_without_renewal() {
        let leadership = Leadership::elected();
        assert!(!leadership.is_leading());
        let start = Instant::now();
        assert!(leadership.extend(start + Duration::from_secs(10)));
        assert!(leadership.is_leading_at(start + Duration::from_secs(9)));
        assert!(!leadership.is_leading_at(start + Duration::from_secs(10)));
        // A renewal extends; an older observation never shortens.
        assert!(!leadership.extend(start + Duration::from_secs(15)));
        assert!(!leadership.extend(start + Duration::from_secs(12)));
        assert!(leadership.is_leading_at(start + Duration::from_secs(14)));
        leadership.resign();
        assert!(!leadership.is_leading_at(start));
        assert!(Leadership::always().is_leading());
    }

    #[tokio::test]
    async fn fence_refuses_writes_but_not_reads_while_not_leading() {
        let leadership = Leadership::elected();
        let inner = tower::service_fn(|req: http::Request<()>| async move {
            Ok::<_, std::convert::Infallible>(req.method().clone())
        });
        let mut fence = leadership.fence().layer(inner);
        let request = |method: http::Method| {
            http::Request::builder()
                .method(method)
                .uri("/apis/apps/v1/namespaces/region-us/deployments/web")
                .body(())
                .unwrap()
        };
        let get = fence.call(request(http::Method::GET)).await.unwrap();
        assert_eq!(get, http::Method::GET);
        for method in [
            http::Method::PATCH,
            http::Method::POST,
            http::Method::DELETE,
            http::Method::PUT,
        ] {
            let error = fence.call(request(method.clone())).await.unwrap_err();
            assert!(
                error.to_string().contains("does not hold the leader lease"),
                "{error}"
            );
        }
        leadership.extend(Instant::now() + Duration::from_secs(30));
        let patch = fence.call(request(http::Method::PATCH)).await.unwrap();
        assert_eq!(patch, http::Method::PATCH);
    }
}
