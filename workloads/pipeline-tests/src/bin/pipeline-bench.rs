//! Pipeline benchmark: events/s from relay to queryable issue, latency from relay's 200 to the
//! event being returned by the API, and peak RSS of each workload.
//!
//! ```text
//! cargo run --release -p silo-pipeline-tests --bin pipeline-bench -- --events 3000
//! ```
//!
//! Needs the services (`e2e/services/up.sh`). Bounded: `--events` and `--latency-seconds`,
//! each wait with a deadline. The baseline, measured in the same run on the same payloads, is
//! relay's own acceptance rate (HTTP 200 = written to Kafka): the pipeline's sustained rate is
//! reported as a ratio of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use silo_pipeline_tests::bench::{peak_rss_kib, send_all, total_issue_count};
use silo_pipeline_tests::sdk::EnvelopeSender;
use silo_pipeline_tests::{Region, TestProject};

#[derive(Debug, Parser)]
#[command(name = "pipeline-bench", about = "Benchmark relay -> consumers -> API")]
struct Args {
    /// Events sent as fast as relay accepts them, for the sustained rate.
    #[arg(long, env = "BENCH_EVENTS", default_value_t = 3000)]
    events: usize,
    /// Concurrent senders.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 16)]
    concurrency: usize,
    /// Length of the latency phase.
    #[arg(long, env = "BENCH_LATENCY_SECONDS", default_value_t = 15)]
    latency_seconds: u64,
    /// Load of the latency phase as a fraction of the measured sustained rate.
    #[arg(long, env = "BENCH_LATENCY_LOAD", default_value_t = 0.5)]
    latency_load: f64,
    /// Longest wait for the pipeline to catch up in any phase.
    #[arg(long, env = "BENCH_DEADLINE_SECONDS", default_value_t = 300)]
    deadline_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.events == 0 || args.concurrency == 0 {
        bail!("--events and --concurrency must be positive");
    }
    let deadline = Duration::from_secs(args.deadline_seconds);
    println!("starting the region (release binaries) ...");
    let region = Region::start("bench").await;
    let project = region.project("bench").await;
    let sender = Arc::new(EnvelopeSender::new(
        &region.relay_url,
        &project.id,
        &project.public_key,
    ));

    // Warm-up: configs cached, connections open, topics assigned.
    send_all(&sender, 50, 4).await.context("warm-up")?;
    wait_stored(&region, &project, 50, deadline).await?;

    // Sustained: N events at full speed; relay's accept rate is the baseline.
    let started = Instant::now();
    let accept = send_all(&sender, args.events, args.concurrency)
        .await
        .context("sustained phase")?;
    let accepted_in = started.elapsed();
    wait_stored(&region, &project, 50 + args.events as u64, deadline).await?;
    let stored_in = started.elapsed();
    let relay_rate = args.events as f64 / accepted_in.as_secs_f64();
    let pipeline_rate = args.events as f64 / stored_in.as_secs_f64();

    // Latency at a load the pipeline sustains, once postprocess has evaluated the burst (its
    // backlog would otherwise compete for the CPU and skew the first seconds).
    wait_postprocessed(&region, 50 + args.events as u64, deadline).await;
    let rate = (pipeline_rate * args.latency_load).max(1.0);
    let latency = silo_pipeline_tests::bench::latency_phase(
        &region,
        &project,
        &sender,
        rate,
        Duration::from_secs(args.latency_seconds),
        deadline,
    )
    .await?;

    println!();
    println!(
        "== pipeline benchmark ({} events, {} senders) ==",
        args.events, args.concurrency
    );
    println!(
        "baseline: relay accepted {relay_rate:.0} events/s (HTTP 200 after Kafka ack; p50 {:.1} ms, p99 {:.1} ms per request)",
        accept.p(50.0),
        accept.p(99.0)
    );
    println!(
        "pipeline: {pipeline_rate:.0} events/s sustained from relay to queryable issue \
         (ratio to baseline {:.2})",
        pipeline_rate / relay_rate
    );
    println!(
        "latency at {rate:.0} events/s for {}s: relay 200 -> event returned by the API: \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        args.latency_seconds,
        latency.p(50.0),
        latency.p(99.0),
        latency.p(100.0),
        latency.len()
    );
    for bin in [
        &region.relay,
        &region.consumers,
        &region.web,
        &region.postprocess,
    ] {
        match bin.id().and_then(peak_rss_kib) {
            Some(kib) => println!("peak RSS {:<12} {:>7.1} MiB", bin.name, kib as f64 / 1024.0),
            None => println!("peak RSS {:<12} unavailable", bin.name),
        }
    }
    region.stop().await;
    Ok(())
}

async fn wait_postprocessed(region: &Region, want: u64, deadline: Duration) {
    // Wait for postprocess to evaluate every event.
    region
        .postprocess
        .wait_metric(
            "silo_postprocess_events_processed_total",
            want as f64,
            deadline,
        )
        .await;
}

async fn wait_stored(
    region: &Region,
    project: &TestProject,
    want: u64,
    deadline: Duration,
) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    loop {
        let have = total_issue_count(&region.api, project).await;
        if have >= want {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("only {have} of {want} events queryable after {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
