//! Composition root: client (with request metrics), watches and stores, the fleet signal,
//! both controllers and the HTTP server, wired once.

use std::future::ready;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Config};
use prometheus_client::registry::Registry;
use silo_runtime::Shutdown;
use tower::util::MapRequestLayer;

use crate::apply::Applier;
use crate::backoff::Backoff;
use crate::build;
use crate::clusters::{Registry as ClusterRegistry, Settings as ClusterSettings};
use crate::config::Args;
use crate::context::Context;
use crate::drift::Tracker;
use crate::http::router;
use crate::leader::{Election, LeaderError, Leadership, LeaseSettings};
use crate::metrics::Metrics;
use crate::pacing::StatusPacer;
use crate::pods::{self, PodProblems};
use crate::stores::{self, Routes, Stores};
use crate::synced::Synced;
use crate::{controlplane, region, rollout, validate};

/// The operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read kubeconfig: {0}")]
    Kubeconfig(#[from] KubeconfigError),
    #[error("cannot configure the Kubernetes client (set KUBECONFIG or run in a cluster): {0}")]
    Config(#[from] kube::config::InferConfigError),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    #[error(transparent)]
    Serve(#[from] silo_runtime::ServeError),
    #[error(transparent)]
    Leader(#[from] LeaderError),
}

async fn client_config(args: &Args) -> Result<Config, RunError> {
    match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)?;
            Ok(Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
        }
        None => Ok(Config::infer().await?),
    }
}

/// A client that counts every request it sends, by method, and sends writes only while
/// this replica leads.
fn counting_client(
    config: Config,
    metrics: &Metrics,
    leadership: &Leadership,
) -> Result<Client, RunError> {
    let metrics = metrics.clone();
    let layer = MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        metrics.request(req.method().as_str());
        req
    });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&layer)
        .with_layer(&leadership.fence())
        .build())
}

/// Join the leader election (unless turned off); `gained` is told to reconcile everything
/// each time this replica starts leading.
fn election(
    args: &Args,
    config: Config,
    leadership: &Leadership,
    gained: Vec<mpsc::Sender<()>>,
    metrics: &Metrics,
    readiness: &silo_runtime::Readiness,
) -> Result<Election, RunError> {
    if !args.leader_elect {
        metrics.leader.set(1);
        readiness.set_detail("leader: leader election is off");
        return Ok(Election::disabled());
    }
    let settings = LeaseSettings {
        name: args.lease_name.clone(),
        namespace: args.namespace.clone(),
        identity: format!("{}_{:08x}", args.instance, rand::random::<u32>()),
        duration: args.lease_duration,
        renew_deadline: args.lease_renew_deadline,
    };
    readiness.set_detail(format!(
        "standby: waiting for the Lease {}/{}",
        settings.namespace, settings.name
    ));
    let (gauge, ready) = (metrics.leader.clone(), readiness.clone());
    let on_change = move |leading: bool| {
        gauge.set(i64::from(leading));
        ready.set_detail(if leading { "leader" } else { "standby" });
    };
    // Renewing the lease must not pass the fence it keeps open.
    let client = Client::try_from(config)?;
    Ok(Election::start(
        client,
        settings,
        leadership.clone(),
        gained,
        on_change,
    )?)
}

/// What the whole fleet depends on: directory, snowflake id holders, active ControlPlane
/// generation, RPC secret.
fn fleet_signature(stores: &Stores) -> String {
    let fleet = validate::directory::current(stores);
    let control_planes = stores.control_planes.state();
    let active = validate::active_control_plane(&control_planes).ok();
    let cp = active.map(|cp| {
        (
            cp.metadata.name.clone(),
            cp.metadata.generation,
            stores
                .rpc_secret(&cp.spec.namespace)
                .map(|s| build::content_hash(&s)),
        )
    });
    // Who holds which id, and which ids are refused: a Region waiting for an id hears of it.
    build::content_hash(&(
        &fleet.published.hash,
        &fleet.holders,
        &fleet.duplicates,
        &fleet.retired,
        cp,
    ))
}

/// Collapse bursts of Region/ControlPlane changes; re-run every Region when the fleet
/// signature changed, and the ControlPlane always (its region counts may have moved).
/// A change of a StorageClass or an external Secret (`external`) re-runs every Region too.
async fn fleet_task(
    stores: Stores,
    notify: Arc<tokio::sync::Notify>,
    external: Arc<tokio::sync::Notify>,
    debounce: Duration,
    mut regions_all: mpsc::Sender<()>,
    mut control_all: mpsc::Sender<()>,
) {
    let mut last = String::new();
    loop {
        let forced = tokio::select! {
            () = notify.notified() => false,
            () = external.notified() => true,
        };
        tokio::time::sleep(debounce).await;
        // A full channel already holds a pending "reconcile all": nothing is lost.
        let _ = control_all.try_send(());
        let signature = fleet_signature(&stores);
        if forced || signature != last {
            last = signature;
            let _ = regions_all.try_send(());
        }
    }
}

/// Run the operator until SIGTERM/SIGINT, or until it lost the leader lease (an error: the
/// process exits and restarts as a standby).
pub async fn run(args: Args) -> Result<(), RunError> {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let config = client_config(&args).await?;
    let leadership = if args.leader_elect {
        Leadership::elected()
    } else {
        Leadership::always()
    };
    let client = counting_client(config.clone(), &metrics, &leadership)?;

    let (region_tx, region_rx) = mpsc::channel(1024);
    let (cp_tx, cp_rx) = mpsc::channel(64);
    let fleet = Arc::new(tokio::sync::Notify::new());
    let external = Arc::new(tokio::sync::Notify::new());
    let tracker = Arc::new(Tracker::default());
    let readiness = silo_runtime::Readiness::new();
    let moved_regions = region_tx.clone();
    let routes = Routes {
        regions: region_tx,
        control_planes: cp_tx,
        fleet: fleet.clone(),
        synced: Synced::new(readiness.register("watches")),
        external: external.clone(),
    };
    let (stores, primary) =
        stores::start(&client, &args.namespace, tracker.clone(), routes.clone());
    let pod_problems = PodProblems::default();
    tokio::spawn(pods::watch(client.clone(), pod_problems.clone(), routes));

    let (regions_all_tx, regions_all_rx) = mpsc::channel(1);
    let (cp_all_tx, cp_all_rx) = mpsc::channel(1);
    let mut election = election(
        &args,
        config,
        &leadership,
        vec![regions_all_tx.clone(), cp_all_tx.clone()],
        &metrics,
        &readiness,
    )?;
    tokio::spawn(fleet_task(
        stores.clone(),
        fleet,
        external,
        args.fleet_debounce,
        regions_all_tx.clone(),
        cp_all_tx,
    ));

    // Each ledger the ControlPlane watch delivers (after the store holds it) re-runs the
    // Regions it moved.
    let (ledger_tx, ledger_rx) = mpsc::unbounded();
    tokio::spawn(rollout::moves_task(
        ledger_rx,
        moved_regions,
        regions_all_tx.clone(),
    ));
    let cp_stream = primary.control_planes.inspect(move |event| {
        if let Ok(watcher::Event::Apply(cp) | watcher::Event::InitApply(cp)) = event {
            let _ = ledger_tx.unbounded_send(cp.status.as_ref().and_then(|s| s.rollout.clone()));
        }
    });

    let reporter = Reporter {
        controller: "silo-operator".to_owned(),
        instance: Some(args.instance.clone()),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        stores: stores.clone(),
        pod_problems,
        applier: Applier {
            client: client.clone(),
            stores: stores.clone(),
            tracker,
            metrics: metrics.clone(),
        },
        metrics: metrics.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        backoff: Backoff::default(),
        resync: args.resync,
        status_pacer: StatusPacer::new(args.status_message_interval),
        leadership,
        clusters: ClusterRegistry::new(ClusterSettings {
            max_in_flight: args.clusters.cluster_max_in_flight,
            resync: args.clusters.cluster_resync,
            max_backoff: args.clusters.cluster_max_backoff,
            permission_check: args.clusters.cluster_permission_check,
        }),
        credentials_warn_before: args.clusters.credentials_warn_before,
    });

    let shutdown = Shutdown::on_signals();
    let controller_config = ControllerConfig::default().concurrency(args.concurrency);
    let regions = Controller::for_stream(primary.regions.applied_objects(), stores.regions.clone())
        .with_config(controller_config.clone())
        .reconcile_on(region_rx)
        .reconcile_all_on(regions_all_rx)
        .graceful_shutdown_on({
            let s = shutdown.clone();
            async move { s.wait().await }
        })
        .run(region::reconcile, region::error_policy, ctx.clone())
        .for_each(|_| ready(()));
    let control_planes =
        Controller::for_stream(cp_stream.applied_objects(), stores.control_planes.clone())
            .with_config(controller_config)
            .reconcile_on(cp_rx)
            .reconcile_all_on(cp_all_rx)
            .graceful_shutdown_on({
                let s = shutdown.clone();
                async move { s.wait().await }
            })
            .run(controlplane::reconcile, controlplane::error_policy, ctx)
            .for_each(|_| ready(()));

    let http = silo_runtime::serve(
        args.listen,
        router(Arc::new(registry), readiness),
        shutdown.clone(),
    );
    tracing::info!(listen = %args.listen, concurrency = args.concurrency, "silo-operator starting");
    // The directory lists a suspended Region only while its namespace exists: reconcile once
    // the namespaces are known, so that a restart does not drop running suspended Regions from
    // every directory for a moment.
    let controllers = async {
        let _ = stores.namespaces.wait_until_ready().await;
        tokio::join!(regions, control_planes)
    };
    // A server that cannot start (its port taken) stops the operator at once: running without
    // probes and metrics would look healthy to nobody and be scraped by whoever holds the port.
    let work = async {
        tokio::pin!(http, controllers);
        tokio::select! {
            served = &mut http => {
                served?;
                controllers.await;
                Ok(())
            }
            _ = &mut controllers => http.await,
        }
    };
    tokio::select! {
        served = work => {
            // The controllers have stopped: no write can follow the release.
            election.release().await;
            served?;
        }
        lost = election.lost() => {
            tracing::error!(error = %lost, "stopping");
            return Err(lost.into());
        }
    }
    tracing::info!("silo-operator stopped");
    Ok(())
}
