//! Pipeline benchmark: relay alone as the baseline, then the whole pipeline at a fixed offered
//! load (open loop) for a fixed window; the rate at which events become queryable, the
//! backlog, the latency from relay's 200 to the event being returned by the API, and peak
//! RSS of each workload.
//!
//! ```text
//! cargo run --release -p silo-pipeline-tests --bin pipeline-bench -- --duration-seconds 60
//! ```
//!
//! Needs the services (`e2e/services/up.sh`). Every wait has a deadline; refused sends are
//! retried and counted, never fatal. Nothing here is an assertion on time: figures are printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use silo_pipeline_tests::bench::histogram::{self, Buckets};
use silo_pipeline_tests::bench::open_loop::{self, OpenLoop};
use silo_pipeline_tests::bench::report::{self, Baseline};
use silo_pipeline_tests::bench::schedule::Schedule;
use silo_pipeline_tests::bench::{
    RetryPolicy, SendCounters, peak_rss_kib, send_all, total_issue_count,
};
use silo_pipeline_tests::sdk::EnvelopeSender;
use silo_pipeline_tests::{Region, TestProject};

#[derive(Debug, Parser)]
#[command(name = "pipeline-bench", about = "Benchmark relay -> consumers -> API")]
struct Args {
    /// Events of the relay-alone baseline, sent as fast as relay accepts them.
    #[arg(long, env = "BENCH_BASELINE_EVENTS", default_value_t = 3000)]
    baseline_events: usize,
    /// Concurrent senders of the baseline.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 16)]
    concurrency: usize,
    /// Offered load of the open-loop phase, events/s (default: --load x the baseline).
    #[arg(long, env = "BENCH_RATE")]
    rate: Option<f64>,
    /// Offered load as a fraction of relay's baseline rate (or, with --probe-seconds, of the
    /// pipeline's sustained rate the probe measured), when --rate is not given.
    #[arg(long, env = "BENCH_LOAD", default_value_t = 0.5)]
    load: f64,
    /// Before the measured window, offer --probe-load x relay's baseline for this many seconds
    /// to find the pipeline's own sustained rate, and take --load of that (0: no probe).
    #[arg(long, env = "BENCH_PROBE_SECONDS", default_value_t = 0)]
    probe_seconds: u64,
    /// The probe's offered load as a fraction of relay's baseline rate.
    #[arg(long, env = "BENCH_PROBE_LOAD", default_value_t = 1.0)]
    probe_load: f64,
    /// Length of the open-loop send window.
    #[arg(long, env = "BENCH_DURATION_SECONDS", default_value_t = 60)]
    duration_seconds: u64,
    /// Events followed until the API returns them (spread evenly over the window; every
    /// event when fewer are sent).
    #[arg(long, env = "BENCH_LATENCY_SAMPLES", default_value_t = 1000)]
    latency_samples: u64,
    /// Pause between two API polls for one sampled event, milliseconds.
    #[arg(long, env = "BENCH_POLL_MS", default_value_t = 10)]
    poll_ms: u64,
    /// API requests of the latency probe in flight at most.
    #[arg(long, env = "BENCH_MAX_POLLS_IN_FLIGHT", default_value_t = 8)]
    max_polls_in_flight: usize,
    /// Open-loop sends in flight at most (beyond it sends start late, and that is measured).
    #[arg(long, env = "BENCH_MAX_IN_FLIGHT", default_value_t = 512)]
    max_in_flight: usize,
    /// Attempts per event before it counts as a final failure.
    #[arg(long, env = "BENCH_MAX_ATTEMPTS", default_value_t = 6)]
    max_attempts: u32,
    /// Wait before the first retry, milliseconds; doubled per retry up to 2 s.
    #[arg(long, env = "BENCH_RETRY_BASE_MS", default_value_t = 50)]
    retry_base_ms: u64,
    /// Longest wait for the pipeline to catch up, and for one event to be returned.
    #[arg(long, env = "BENCH_DEADLINE_SECONDS", default_value_t = 300)]
    deadline_seconds: u64,
}

impl Args {
    fn validate(&self) -> anyhow::Result<()> {
        if self.baseline_events == 0 || self.concurrency == 0 || self.duration_seconds == 0 {
            bail!("--baseline-events, --concurrency and --duration-seconds must be positive");
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !self.rate.is_none_or(positive) || !positive(self.load) || !positive(self.probe_load) {
            bail!("--rate, --load and --probe-load must be positive");
        }
        Ok(())
    }

    /// An open-loop phase of `schedule` with this run's settings.
    fn open_loop(&self, schedule: Schedule, deadline: Duration) -> OpenLoop {
        OpenLoop {
            schedule,
            max_in_flight: self.max_in_flight,
            poll_interval: Duration::from_millis(self.poll_ms),
            max_polls_in_flight: self.max_polls_in_flight,
            retry: self.retry(),
            deadline,
        }
    }

    fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            base: Duration::from_millis(self.retry_base_ms),
            cap: Duration::from_secs(2),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.validate()?;
    let deadline = Duration::from_secs(args.deadline_seconds);
    println!("starting the region ...");
    let region = Region::start("bench").await;
    let project = region.project("bench").await;
    let sender = Arc::new(EnvelopeSender::new(
        &region.relay_url,
        &project.id,
        &project.public_key,
    ));

    // Warm-up: configs cached, connections open, topics assigned.
    let warm = Arc::new(SendCounters::default());
    send_all(&sender, 50, 4, args.retry(), &warm).await;
    let want = warm.accepted();
    wait_queryable(&region, &project, want, deadline)
        .await
        .context("warm-up")?;

    // Baseline: relay alone, as fast as it accepts (closed loop).
    println!("baseline: {} events ...", args.baseline_events);
    let counters = Arc::new(SendCounters::default());
    let started = Instant::now();
    let requests = send_all(
        &sender,
        args.baseline_events,
        args.concurrency,
        args.retry(),
        &counters,
    )
    .await;
    let accepted_in = started.elapsed();
    let want = want + counters.accepted();
    let queryable = wait_queryable(&region, &project, want, deadline).await;
    let baseline = Baseline {
        events: args.baseline_events,
        senders: args.concurrency,
        accepted_in,
        requests,
        sends: counters.tally(),
        queryable_in: queryable.as_ref().ok().map(|_| started.elapsed()),
    };
    // The open-loop phase counts from here: leftovers of the burst would be counted in it.
    queryable.context("baseline burst (raise --deadline-seconds)")?;
    wait_postprocessed(&region, want, deadline).await;

    let reference = if args.probe_seconds > 0 {
        probe(&region, &project, &sender, &args, baseline.rate(), deadline).await?
    } else {
        baseline.rate()
    };
    let offered = args.rate.unwrap_or(args.load * reference).max(1.0);
    let window = Duration::from_secs(args.duration_seconds);
    println!(
        "open loop: {offered:.0} events/s for {}s ...",
        window.as_secs()
    );
    let consumers_before = region.consumers.metrics_text().await;
    let load = open_loop::run(
        &region.api,
        &project,
        &sender,
        &args.open_loop(
            Schedule::new(offered, window, args.latency_samples),
            deadline,
        ),
    )
    .await;

    let rss: Vec<report::Rss> = [
        &region.relay,
        &region.consumers,
        &region.web,
        &region.postprocess,
    ]
    .iter()
    .map(|bin| (bin.name.clone(), bin.id().and_then(peak_rss_kib)))
    .collect();
    println!();
    for line in report::render(&baseline, &load, offered, window, &rss) {
        println!("{line}");
    }
    let consumers_after = region.consumers.metrics_text().await;
    println!("{}", consumers_line(&consumers_before, &consumers_after));
    region.stop().await;
    Ok(())
}

/// Offer `--probe-load` x relay's rate for `--probe-seconds` and return the rate at which the
/// pipeline made events queryable until it caught up: its own sustained rate (a lower bound
/// when it kept up).
async fn probe(
    region: &Region,
    project: &TestProject,
    sender: &Arc<EnvelopeSender>,
    args: &Args,
    relay_rate: f64,
    deadline: Duration,
) -> anyhow::Result<f64> {
    let offered = (args.probe_load * relay_rate).max(1.0);
    let window = Duration::from_secs(args.probe_seconds);
    println!(
        "probe: {offered:.0} events/s for {}s to find the pipeline's sustained rate ...",
        window.as_secs()
    );
    let before = total_issue_count(&region.api, project).await.unwrap_or(0);
    let probe = open_loop::run(
        &region.api,
        project,
        sender,
        &args.open_loop(Schedule::new(offered, window, 0), deadline),
    )
    .await;
    let t = &probe.throughput;
    let sustained = t.sustained;
    println!(
        "probe: pipeline sustained {sustained:.0} events/s ({:.2} of relay's {relay_rate:.0}/s){}; backlog max {}",
        sustained / relay_rate.max(f64::EPSILON),
        if t.kept_up() {
            ", kept up: a lower bound"
        } else {
            ""
        },
        t.max_backlog
    );
    let want = before + probe.sends.accepted;
    wait_queryable(region, project, want, deadline)
        .await
        .context("probe backlog (raise --deadline-seconds)")?;
    wait_postprocessed(region, want, deadline).await;
    Ok(sustained)
}

/// What the consumers' own histograms saw during the open loop: the part of the latency
/// spent from relay's acceptance to the eventstream record, and the batches.
fn consumers_line(before: &str, after: &str) -> String {
    let phase = |name: &str| histogram::parse(after, name).since(&histogram::parse(before, name));
    let ms = |b: &Buckets, q: f64| {
        b.quantile(q)
            .map_or("n/a".to_owned(), |s| format!("<= {:.0} ms", s * 1000.0))
    };
    let ingest = phase("silo_consumers_ingest_latency_seconds");
    let processing = phase("silo_consumers_processing_seconds");
    let batch = phase("silo_consumers_batch_events");
    format!(
        "consumers' own histograms in the open loop: relay accept -> eventstream record p50 {}, p99 {}; batch start -> record published p50 {}, p99 {}; {:.1} events per batch ({:.0} batches)",
        ms(&ingest, 0.5),
        ms(&ingest, 0.99),
        ms(&processing, 0.5),
        ms(&processing, 0.99),
        batch.mean().unwrap_or(0.0),
        batch.count
    )
}

/// Wait (at most `deadline`) for postprocess to evaluate `want` events, so its backlog does
/// not compete with the next phase for the CPU; goes on with a note when it did not.
async fn wait_postprocessed(region: &Region, want: u64, deadline: Duration) {
    const METRIC: &str = "silo_postprocess_events_processed_total";
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if region.postprocess.metric(METRIC).await >= want as f64 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("note: postprocess had not evaluated {want} events after {deadline:?}");
}

/// Wait (at most `deadline`) until the API counts `want` events in the project's issues.
async fn wait_queryable(
    region: &Region,
    project: &TestProject,
    want: u64,
    deadline: Duration,
) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    let mut have = None;
    while Instant::now() < until {
        have = total_issue_count(&region.api, project).await.or(have);
        if have.is_some_and(|h| h >= want) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!(
        "only {} of {want} events queryable after {deadline:?}",
        have.unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_flag_has_an_env_var() {
        for arg in Args::command().get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            assert!(arg.get_env().is_some(), "flag --{id} has no env var");
        }
    }

    #[test]
    fn rejects_loads_that_are_not_positive() {
        let parse = |a: &[&str]| Args::try_parse_from([&["pipeline-bench"], a].concat());
        assert!(parse(&[]).unwrap().validate().is_ok());
        assert!(parse(&["--rate", "0"]).unwrap().validate().is_err());
        assert!(parse(&["--load=-1"]).unwrap().validate().is_err());
        assert!(
            parse(&["--duration-seconds", "0"])
                .unwrap()
                .validate()
                .is_err()
        );
    }
}
