//! The rollout phase: a version change across the converged fleet, against its theoretical
//! time.
//!
//! ```text
//!  idle fleet: pin one Region to the next version ─► time to Ready there (per-region upgrade)
//!  rollout: spec.version ─► ledger Complete, control silo at the version; halfway SIGKILL
//!           the operator and restart it ─► time to the next ledger change (resume)
//!  theoretical = waves (sum over groups of ceil(size / maxConcurrency)) x (upgrade + soak)
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use silo_api::{ControlPlane, Region, RolloutPhase, RolloutStatus};

use crate::cluster::until;
use crate::cpu::{Processes, Usage};
use crate::fleet;
use crate::operator::Operator;
use crate::schedule::{self, Schedule};

pub const NEXT_VERSION: &str = "0.2.0";

/// What the rollout phase measured.
pub struct Figures {
    pub one_region: Duration,
    pub waves: usize,
    pub total: Duration,
    pub theoretical: Duration,
    pub regions: i32,
    pub writes: f64,
    pub peak_rss_mib: f64,
    pub resume: Duration,
    /// Each Region's upgrade under the rollout's load and the ideal schedule of those.
    pub schedule: Schedule,
    /// CPU seconds of the cluster's processes and the operator during the rollout.
    pub cpu: Usage,
}

async fn ledger(cps: &Api<ControlPlane>) -> Option<(RolloutStatus, Option<String>)> {
    let status = cps.get(fleet::CONTROL_PLANE).await.ok()?.status?;
    Some((status.rollout?, status.running_version))
}

/// Settings of the run.
pub struct Settings<'a> {
    pub concurrency: usize,
    pub soak: Duration,
    pub timeout: Duration,
    pub binary: &'a Path,
    pub kubeconfig: Option<&'a Path>,
    pub port: u16,
    pub reconcile_concurrency: usize,
}

/// Run the rollout phase; `operator` is replaced by the restarted one.
pub async fn run(
    client: &Client,
    operator: &mut Operator,
    s: &Settings<'_>,
) -> anyhow::Result<Figures> {
    let cps: Api<ControlPlane> = Api::all(client.clone());
    let regions: Api<Region> = Api::all(client.clone());
    let merge = |v: serde_json::Value| Patch::Merge(v);
    cps.patch(
        fleet::CONTROL_PLANE,
        &PatchParams::default(),
        &merge(serde_json::json!({"spec": {"rollout": {
            "defaultGroup": {"maxConcurrency": s.concurrency, "minSuccessTime": format!("{}s", s.soak.as_secs())},
            "progressDeadline": "30m",
        }}})),
    )
    .await?;

    // One Region upgraded on its own (pinned, so the rollout leaves it alone).
    let probe = fleet::region_name(0);
    let started = Instant::now();
    regions
        .patch(
            &probe,
            &PatchParams::default(),
            &merge(serde_json::json!({"spec": {"version": NEXT_VERSION}})),
        )
        .await?;
    until(
        "the pinned Region Ready at the next version",
        s.timeout,
        || async {
            let r = regions.get(&probe).await.ok()?;
            let running = r.status.as_ref()?.running_version.as_deref() == Some(NEXT_VERSION);
            (running && r.is_ready()).then_some(())
        },
    )
    .await?;
    let one_region = started.elapsed();
    eprintln!(
        "[bench] one Region upgraded on an idle fleet in {:.1}s",
        one_region.as_secs_f64()
    );

    let (_, writes_before, _) = operator.requests().await?;
    let mut procs = Processes::of(s.kubeconfig, operator.pid());
    let mut cpu_start = procs.sample();
    let started = Instant::now();
    cps.patch(
        fleet::CONTROL_PLANE,
        &PatchParams::default(),
        &merge(serde_json::json!({"spec": {"version": NEXT_VERSION}})),
    )
    .await?;
    // Halfway: SIGKILL, restart, time to the next ledger change.
    let half = until("half of the fleet upgraded", s.timeout, || async {
        let (l, _) = ledger(&cps).await?;
        (l.target_version == NEXT_VERSION && l.total > 0 && l.done * 2 >= l.total).then_some(l)
    })
    .await?;
    let (_, writes_killed, _) = operator.requests().await?;
    let (peak_before, _) = operator.memory_mib()?;
    let killed_at = Instant::now();
    operator.kill();
    let log = operator.log.with_extension("restarted.log");
    *operator =
        Operator::start(s.binary, s.kubeconfig, s.port, s.reconcile_concurrency, log).await?;
    procs.operator_restarted(&mut cpu_start, operator.pid());
    let seen = format!("{:?}{:?}{}", half.in_flight, half.upgraded, half.done);
    until("progress after the restart", s.timeout, || async {
        let (l, _) = ledger(&cps).await?;
        (format!("{:?}{:?}{}", l.in_flight, l.upgraded, l.done) != seen).then_some(())
    })
    .await?;
    let resume = killed_at.elapsed();
    eprintln!(
        "[bench] operator SIGKILLed at {}/{} done; progress again after {:.1}s",
        half.done,
        half.total,
        resume.as_secs_f64()
    );
    let done = until("the rollout to complete", s.timeout, || async {
        let (l, running) = ledger(&cps).await?;
        (l.phase == RolloutPhase::Complete && running.as_deref() == Some(NEXT_VERSION)).then_some(l)
    })
    .await?;
    let total = started.elapsed();
    let cpu = procs.since(&cpu_start);
    let (_, writes_after, _) = operator.requests().await?;
    let (peak_after, _) = operator.memory_mib()?;
    let strategy =
        silo_rollout::Strategy::from_spec(&cps.get(fleet::CONTROL_PLANE).await?.spec.rollout)?;
    let waves = done
        .groups
        .iter()
        .zip(&strategy.groups)
        .map(|(g, spec)| {
            let size = usize::try_from(g.total).unwrap_or(0);
            size.div_ceil(spec.concurrency(size))
        })
        .sum::<usize>();
    let upgrades = schedule::upgrades(
        &regions.list(&Default::default()).await?.items,
        &strategy,
        NEXT_VERSION,
    );
    Ok(Figures {
        one_region,
        waves,
        total,
        theoretical: (one_region + s.soak) * u32::try_from(waves).unwrap_or(u32::MAX),
        regions: done.total,
        writes: (writes_killed - writes_before) + writes_after,
        peak_rss_mib: peak_before.max(peak_after),
        resume,
        schedule: schedule::analyse(&upgrades, &strategy),
        cpu,
    })
}

/// Print the figures.
pub fn print(f: &Figures, soak: Duration, concurrency: usize) {
    println!(
        "  rollout                   {:>9.1} s   ({} Regions, {} waves of <= {concurrency}, soak {}s, SIGKILL halfway)",
        f.total.as_secs_f64(),
        f.regions,
        f.waves,
        soak.as_secs()
    );
    println!(
        "  theoretical               {:>9.1} s   (waves x (one Region alone {:.1}s + soak))",
        f.theoretical.as_secs_f64(),
        f.one_region.as_secs_f64()
    );
    println!(
        "  ratio rollout/theoretical {:>9.2} x   (target <= 1.2)",
        f.total.as_secs_f64() / f.theoretical.as_secs_f64()
    );
    let sch = &f.schedule;
    println!(
        "  upgrade under load        {:>9.1} s   (p50 of {} Regions, move -> available; p90 {:.1}s; alone {:.1}s)",
        sch.upgrade_p50.as_secs_f64(),
        sch.regions,
        sch.upgrade_p90.as_secs_f64(),
        f.one_region.as_secs_f64()
    );
    println!(
        "  ideal schedule            {:>9.1} s   (those upgrades, every slot refilled at once, groups in order)",
        sch.ideal.as_secs_f64()
    );
    println!(
        "  ratio rollout/ideal       {:>9.2} x   (the operator's hand-offs, restart and control silo step)",
        f.total.as_secs_f64() / sch.ideal.as_secs_f64().max(f64::EPSILON)
    );
    println!("  CPU during the rollout    {}", f.cpu.line());
    println!(
        "  writes per Region upgrade {:>9.1}     ({:.0} writes)",
        f.writes / f64::from(f.regions.max(1)),
        f.writes
    );
    println!(
        "  SIGKILL to progress       {:>9.1} s",
        f.resume.as_secs_f64()
    );
    println!(
        "  peak RSS during rollout   {:>9.1} MiB (target < 100 MiB)",
        f.peak_rss_mib
    );
}
