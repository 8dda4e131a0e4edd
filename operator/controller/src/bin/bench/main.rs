//! silo-operator-bench: how fast the operator turns N Regions into Ready silos, against the
//! API server's own floor.
//!
//! ```text
//!  baseline: build the fleet's children (operator's pure build step) ─► plain client SSA
//!            ─► wait all Deployments Available ─► delete, wait gone
//!            (--only-baseline: no deletion, the cluster is thrown away; the next run on a
//!            fresh cluster takes the figure with --baseline-seconds)
//!  operator: start silo-operator ─► apply ControlPlane + N Regions ─► wait all Ready
//!            ─► count its writes (/metrics) ─► idle --steady ─► requests/min, writes, peak RSS
//!  rollout (--rollout): one Region upgraded alone ─► spec.version across the fleet in waves,
//!            SIGKILL halfway ─► time against waves x (one Region + soak), writes, RSS
//!            ─► Regions' own move/available times ─► upgrade under load, ideal schedule
//!            (schedule.rs); CPU of each cluster process and the operator (cpu.rs)
//!  end: delete the fleet, or leave it with --keep-fleet (the cluster is thrown away)
//! ```
//!
//! Run against an empty cluster (see `e2e/bench-operator.sh`). Prints figures and ratios;
//! asserts nothing about time.

mod cluster;
mod cpu;
mod fleet;
mod operator;
mod rollout;
mod schedule;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use silo_runtime::args::parse_duration;

use crate::operator::Operator;

/// Measure Region convergence, writes, steady-state requests and memory of silo-operator.
#[derive(Debug, Parser)]
#[command(name = "silo-operator-bench")]
struct Args {
    /// Regions to create.
    #[arg(long, env = "SILO_BENCH_REGIONS", default_value_t = 100)]
    regions: usize,
    /// Kubeconfig of the (empty) cluster; without it `KUBECONFIG` or the default is used.
    #[arg(long, env = "SILO_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The operator binary (default: `silo-operator` next to this one).
    #[arg(long, env = "SILO_BENCH_OPERATOR")]
    operator: Option<PathBuf>,
    /// Objects written at once by the baseline, and the operator's reconcile concurrency.
    #[arg(long, env = "SILO_BENCH_CONCURRENCY", default_value_t = 16)]
    concurrency: usize,
    /// How long to watch the converged fleet for steady-state requests.
    #[arg(long, env = "SILO_BENCH_STEADY", default_value = "60s", value_parser = parse_duration)]
    steady: Duration,
    /// Longest wait for any phase.
    #[arg(long, env = "SILO_BENCH_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    timeout: Duration,
    /// Port of the operator's /metrics.
    #[arg(long, env = "SILO_BENCH_PORT", default_value_t = 18181)]
    port: u16,
    /// Skip the baseline (operator figures only).
    #[arg(long, env = "SILO_BENCH_NO_BASELINE")]
    no_baseline: bool,
    /// Measure the baseline only, print it and leave its objects (for a cluster that is thrown
    /// away next: deleting a thousand Regions' namespaces takes minutes).
    #[arg(long, env = "SILO_BENCH_ONLY_BASELINE", conflicts_with_all = ["no_baseline", "baseline_seconds"])]
    only_baseline: bool,
    /// The baseline measured by an `--only-baseline` run on another fresh cluster, in seconds:
    /// used for the ratio instead of measuring it here.
    #[arg(
        long,
        env = "SILO_BENCH_BASELINE_SECONDS",
        conflicts_with = "no_baseline"
    )]
    baseline_seconds: Option<f64>,
    /// After convergence, roll a new version out across the fleet.
    #[arg(long, env = "SILO_BENCH_ROLLOUT")]
    rollout: bool,
    /// The rollout's `maxConcurrency` per group.
    #[arg(long, env = "SILO_BENCH_ROLLOUT_CONCURRENCY", default_value_t = 100)]
    rollout_concurrency: usize,
    /// Leave the fleet in place at the end (the cluster is thrown away instead, which is much
    /// faster than deleting a thousand namespaces).
    #[arg(long, env = "SILO_BENCH_KEEP_FLEET")]
    keep_fleet: bool,
    /// The rollout's `minSuccessTime`.
    #[arg(long, env = "SILO_BENCH_SOAK", default_value = "10s", value_parser = parse_duration)]
    soak: Duration,
}

fn operator_binary(args: &Args) -> anyhow::Result<PathBuf> {
    Ok(match &args.operator {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("silo-operator"),
    })
}

async fn client(args: &Args) -> anyhow::Result<Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    };
    let client = Client::try_from(config)?;
    client
        .apiserver_version()
        .await
        .context("the API server does not answer; start one with e2e/cluster/up.sh")?;
    Ok(client)
}

/// Time for a plain client to create every child and see every Deployment Available, and its
/// writes. The objects are deleted afterwards unless `--only-baseline`.
async fn baseline(client: &Client, args: &Args) -> anyhow::Result<(Duration, u64)> {
    let groups = fleet::baseline_objects(args.regions)?;
    let deployments = groups
        .iter()
        .flatten()
        .filter(|c| c.kind() == silo_operator::build::ChildKind::Deployment)
        .count();
    let started = Instant::now();
    let writes = cluster::apply_groups(client, &groups, args.concurrency).await?;
    cluster::until("baseline Deployments Available", args.timeout, || async {
        let n = cluster::available_deployments(client).await.ok()?;
        (n >= deployments).then_some(())
    })
    .await?;
    let took = started.elapsed();
    if args.only_baseline {
        return Ok((took, writes));
    }
    let cleanup = cluster::delete_namespaces(client, args.timeout).await?;
    eprintln!(
        "[bench] baseline: {writes} writes, {deployments} Deployments Available in {:.1}s (cleanup {:.1}s)",
        took.as_secs_f64(),
        cleanup.as_secs_f64()
    );
    Ok((took, writes))
}

struct OperatorRun {
    /// Still running: deleting the fleet needs its finalizer.
    operator: Operator,
    converged: Duration,
    writes: f64,
    child_writes: f64,
    steady_requests_per_min: f64,
    steady_writes: f64,
    peak_rss_mib: f64,
    rss_mib: f64,
}

async fn operator_run(client: &Client, args: &Args) -> anyhow::Result<OperatorRun> {
    let binary = operator_binary(args)?;
    // Named by the metrics port, so benchmarks on different clusters keep their own logs.
    let log = std::env::temp_dir().join(format!("silo-operator-bench-{}.log", args.port));
    let operator = Operator::start(
        &binary,
        args.kubeconfig.as_deref(),
        args.port,
        args.concurrency,
        log,
    )
    .await?;
    eprintln!("[bench] operator started (log {})", operator.log.display());
    let (_, writes_before, children_before) = operator.requests().await?;
    let regions: Vec<_> = (0..args.regions).map(fleet::region).collect();
    let started = Instant::now();
    cluster::apply_fleet(client, &fleet::control_plane(), &regions, args.concurrency).await?;
    let last = std::sync::atomic::AtomicUsize::new(0);
    cluster::until("every Region Ready", args.timeout, || async {
        let ready = cluster::ready_regions(client).await.ok()?;
        let before = last.swap(ready, std::sync::atomic::Ordering::Relaxed);
        if ready / 100 != before / 100 {
            eprintln!(
                "[bench] {ready}/{} Regions Ready after {:.1}s",
                args.regions,
                started.elapsed().as_secs_f64()
            );
        }
        (ready == args.regions).then_some(())
    })
    .await?;
    // The ControlPlane's status counts Ready Regions: converged once it has caught up too.
    cluster::until(
        "ControlPlane counting every Region Ready",
        args.timeout,
        || async {
            cluster::control_plane_counts(client, args.regions)
                .await
                .ok()?
                .then_some(())
        },
    )
    .await?;
    let converged = started.elapsed();
    let (all_after, writes_after, children_after) = operator.requests().await?;
    eprintln!(
        "[bench] operator: {} Regions Ready in {:.1}s; watching the idle fleet for {:?}",
        args.regions,
        converged.as_secs_f64(),
        args.steady
    );
    tokio::time::sleep(args.steady).await;
    let (all_steady, writes_steady, _) = operator.requests().await?;
    let (peak_rss_mib, rss_mib) = operator.memory_mib()?;
    Ok(OperatorRun {
        operator,
        converged,
        writes: writes_after - writes_before,
        child_writes: children_after - children_before,
        steady_requests_per_min: (all_steady - all_after) * 60.0 / args.steady.as_secs_f64(),
        steady_writes: writes_steady - writes_after,
        peak_rss_mib,
        rss_mib,
    })
}

/// The line `--baseline-seconds` takes its figure from (field 4).
fn print_baseline(regions: usize, took: Duration, writes: u64) {
    println!("silo-operator-bench: baseline only, {regions} Regions");
    println!(
        "  baseline (plain client)   {:>9.1} s   ({writes} writes, all Deployments Available)",
        took.as_secs_f64()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // On SIGINT/SIGTERM the run is dropped, and with it the operator child (killed on drop).
    let shutdown = silo_runtime::Shutdown::on_signals();
    tokio::select! {
        result = run(args) => result,
        () = shutdown.wait() => anyhow::bail!(
            "interrupted; the operator child is stopped, the cluster keeps what was created \
             (e2e/bench-operator.sh stops its cluster)"
        ),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let client = client(&args).await?;
    cluster::install_crds(&client).await?;
    let (r, c, n) = cluster::leftovers(&client).await?;
    if r + c + n > 0 {
        anyhow::bail!(
            "the cluster already has {r} Regions, {c} ControlPlanes and {n} silo namespaces; \
             run the benchmark on an empty cluster (e2e/bench-operator.sh starts one)"
        );
    }
    let base = match args.baseline_seconds {
        _ if args.no_baseline => None,
        Some(seconds) if seconds > 0.0 => Some((Duration::from_secs_f64(seconds), None)),
        Some(seconds) => anyhow::bail!("--baseline-seconds must be positive, got {seconds}"),
        None => {
            let (took, writes) = baseline(&client, &args).await?;
            Some((took, Some(writes)))
        }
    };
    if args.only_baseline {
        if let Some((took, Some(writes))) = base {
            print_baseline(args.regions, took, writes);
        }
        return Ok(());
    }
    let mut run = operator_run(&client, &args).await?;
    let rolled = if args.rollout {
        let binary = operator_binary(&args)?;
        let settings = rollout::Settings {
            concurrency: args.rollout_concurrency,
            soak: args.soak,
            timeout: args.timeout,
            binary: &binary,
            kubeconfig: args.kubeconfig.as_deref(),
            port: args.port,
            reconcile_concurrency: args.concurrency,
        };
        Some(rollout::run(&client, &mut run.operator, &settings).await?)
    } else {
        None
    };

    println!(
        "silo-operator-bench: {} Regions, concurrency {}",
        args.regions, args.concurrency
    );
    println!(
        "  operator convergence      {:>9.1} s   (all Regions Ready, counted by the ControlPlane)",
        run.converged.as_secs_f64()
    );
    if let Some((took, writes)) = base {
        let source = match writes {
            Some(writes) => format!("{writes} writes"),
            None => "measured on its own cluster".to_owned(),
        };
        println!(
            "  baseline (plain client)   {:>9.1} s   ({source}, all Deployments Available)",
            took.as_secs_f64()
        );
        println!(
            "  ratio operator/baseline   {:>9.2} x   (target <= 1.5)",
            run.converged.as_secs_f64() / took.as_secs_f64()
        );
    }
    println!(
        "  operator writes           {:>9.0}   ({:.0} child objects; the rest finalizers, status, Events)",
        run.writes, run.child_writes
    );
    println!(
        "  steady state              {:>9.1} requests/min, {} writes in {:?} (target 0 writes)",
        run.steady_requests_per_min, run.steady_writes, args.steady
    );
    println!(
        "  operator peak RSS         {:>9.1} MiB (now {:.1} MiB; target < 100 MiB at 1000)",
        run.peak_rss_mib, run.rss_mib
    );
    if let Some(figures) = &rolled {
        rollout::print(figures, args.soak, args.rollout_concurrency);
    }
    if !args.keep_fleet {
        let teardown = cluster::delete_fleet(&client, args.timeout).await?;
        eprintln!("[bench] fleet deleted in {:.1}s", teardown.as_secs_f64());
    }
    drop(run.operator);
    Ok(())
}
