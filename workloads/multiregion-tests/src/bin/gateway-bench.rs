//! Gateway overhead: requests/s, latency and CPU per request of an org-scoped GET through the
//! control gateway versus straight at the owning region, measured in the same run on loopback.
//!
//! ```text
//!  cargo run --release -p silo-multiregion-tests --bin gateway-bench
//!  Fleet (control + us + de, release `web`) ─► org "bench" in de
//!  1. equal work (the headline): control's token cache off (SILO_GATEWAY_TOKEN_CACHE_TTL=0s),
//!     so each request looks its bearer token up in Postgres once on either path
//!       direct:  client ─► de (token lookup, org query)
//!       gateway: client ─► control (token lookup, signed identity) ─► de (org query)
//!  2. control restarted with --token-cache-ttl (not equal work: the gateway skips the lookup)
//!  rounds per phase: direct ─► gateway ─► direct ─► gateway ... (same client, same load)
//!  ─► requests/s, p50, p99, CPU per request of each process; ratios against direct
//!  after phase 1, open loop at --latency-load x the slower path's rate, each target in turn:
//!  request i due at i/rate whatever the answers ─► p50, p99, max at equal offered load
//! ```
//!
//! Closed-loop rounds keep 8 requests in flight, so their latency is mostly queueing behind
//! the saturated cores: the gateway path, slower, queues longer. The open-loop phase offers
//! both paths the same rate, well below either one's capacity, so its p99 delta is the
//! latency the hop itself adds.
//!
//! Throughput on a shared machine moves with whatever else runs; the CPU time each process
//! spends per request (from /proc) is the steadier figure of what the hop costs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use silo_multiregion_tests::cpu::{cpu_time, own_cpu_time};
use silo_multiregion_tests::{Fleet, FleetOptions, Silo, TOKEN};

/// Throughput of the gateway path on equal work, as a fraction of direct, at least.
const TARGET_RATIO: f64 = 0.8;
/// Latency the gateway may add at p99 on equal work, milliseconds, at most.
const TARGET_P99_DELTA_MS: f64 = 0.5;
const TOKEN_CACHE_TTL: &str = "SILO_GATEWAY_TOKEN_CACHE_TTL";

#[derive(Debug, Parser)]
#[command(about = "Gateway overhead: org-scoped GET through control vs direct at the region")]
struct Args {
    /// Requests per round and target.
    #[arg(long, env = "BENCH_REQUESTS", default_value_t = 4000)]
    requests: usize,
    /// Concurrent requests in flight.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 8)]
    concurrency: usize,
    /// Measured rounds per target and phase (interleaved).
    #[arg(long, env = "BENCH_ROUNDS", default_value_t = 3)]
    rounds: usize,
    /// Unmeasured requests per target before the first round of each phase.
    #[arg(long, env = "BENCH_WARMUP", default_value_t = 1000)]
    warmup: usize,
    /// Control's SILO_GATEWAY_TOKEN_CACHE_TTL in the second phase (`0s`: no second phase).
    #[arg(long, env = "BENCH_TOKEN_CACHE_TTL", default_value = "5s")]
    token_cache_ttl: String,
    /// Offered load of the open-loop latency phase, as a fraction of the slower path's rate in
    /// the equal-work rounds (0: no latency phase).
    #[arg(long, env = "BENCH_LATENCY_LOAD", default_value_t = 0.5)]
    latency_load: f64,
    /// Seconds each target is offered that load in the latency phase.
    #[arg(long, env = "BENCH_LATENCY_SECONDS", default_value_t = 10)]
    latency_seconds: u64,
    /// Every web process's SILO_WEB_DATABASE_PING_AFTER_IDLE (`0s`: a ping before every
    /// pooled query, as sqlx does by default).
    #[arg(long, env = "BENCH_DATABASE_PING_AFTER_IDLE", default_value = "1s")]
    database_ping_after_idle: String,
}

/// CPU time used by the processes on a request's way.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    control: Duration,
    region: Duration,
    client: Duration,
}

impl Cpu {
    fn now(fleet: &Fleet) -> Cpu {
        let of = |silo: &silo_multiregion_tests::WebProcess| {
            silo.process.id().and_then(cpu_time).unwrap_or_default()
        };
        Cpu {
            control: of(&fleet.control),
            region: of(&fleet.de),
            client: own_cpu_time().unwrap_or_default(),
        }
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            control: self.control.saturating_sub(before.control),
            region: self.region.saturating_sub(before.region),
            client: self.client.saturating_sub(before.client),
        }
    }

    fn add(&mut self, other: Cpu) {
        self.control += other.control;
        self.region += other.region;
        self.client += other.client;
    }
}

#[derive(Default)]
struct Sample {
    latencies: Vec<Duration>,
    elapsed: Duration,
    errors: usize,
    cpu: Cpu,
}

impl Sample {
    fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }

    fn merge(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.elapsed += other.elapsed;
        self.errors += other.errors;
        self.cpu.add(other.cpu);
    }

    /// Microseconds of CPU per answered request.
    fn cpu_us(&self, of: Duration) -> f64 {
        of.as_secs_f64() * 1e6 / self.latencies.len().max(1) as f64
    }
}

/// One authenticated GET of `url`: whether it was answered 2xx with its whole body.
async fn answered(client: &reqwest::Client, url: &str) -> bool {
    match client.get(url).bearer_auth(TOKEN).send().await {
        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

async fn round(
    fleet: &Fleet,
    client: &reqwest::Client,
    url: &str,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<Sample> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu_before = Cpu::now(fleet);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.to_owned(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                let t = Instant::now();
                let ok = answered(&client, &url).await;
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut sample = Sample::default();
    for worker in workers {
        let (latencies, errors) = worker.await?;
        sample.latencies.extend(latencies);
        sample.errors += errors;
    }
    sample.elapsed = started.elapsed();
    sample.cpu = Cpu::now(fleet).since(cpu_before);
    Ok(sample)
}

/// Open loop at `rate` requests/s for `window`: request `i` is sent at `i / rate` whatever the
/// answers to the others, so a slow target gets the same requests as a fast one. Latency
/// counts from the send; the sender's lateness (send minus due time) is returned apart.
async fn open_loop(
    fleet: &Fleet,
    client: &reqwest::Client,
    url: &str,
    rate: f64,
    window: Duration,
) -> anyhow::Result<(Sample, Duration)> {
    let total = (rate * window.as_secs_f64()).max(1.0) as usize;
    let cpu_before = Cpu::now(fleet);
    let started = Instant::now();
    let mut late = Duration::ZERO;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        late = late.max(due.elapsed());
        let (client, url) = (client.clone(), url.to_owned());
        tasks.spawn(async move {
            let sent = Instant::now();
            let ok = answered(&client, &url).await;
            ok.then(|| sent.elapsed())
        });
    }
    let mut sample = Sample::default();
    while let Some(done) = tasks.join_next().await {
        match done? {
            Some(latency) => sample.latencies.push(latency),
            None => sample.errors += 1,
        }
    }
    sample.elapsed = started.elapsed();
    sample.cpu = Cpu::now(fleet).since(cpu_before);
    Ok((sample, late))
}

/// The open-loop phase: both targets at the same offered load; the p99 delta.
async fn latency_phase(
    fleet: &Fleet,
    client: &reqwest::Client,
    args: &Args,
    path: &str,
    rate: f64,
) -> anyhow::Result<f64> {
    let window = Duration::from_secs(args.latency_seconds.max(1));
    println!(
        "\n== equal work, open loop: {rate:.0} requests/s ({} x the slower path's rate) for {}s per target ==",
        args.latency_load,
        window.as_secs()
    );
    println!(
        "{:<10} {:>9} {:>8} {:>8} {:>8} {:>7} {:>13}",
        "target", "samples", "p50 ms", "p99 ms", "max ms", "errors", "sender late"
    );
    let mut p99 = [0.0; 2];
    for (i, (name, base)) in [
        ("direct", fleet.de.base_url()),
        ("gateway", fleet.control.base_url()),
    ]
    .into_iter()
    .enumerate()
    {
        let (mut sample, late) =
            open_loop(fleet, client, &format!("{base}{path}"), rate, window).await?;
        p99[i] = ms(sample.percentile(0.99));
        println!(
            "{name:<10} {:>9} {:>8.3} {:>8.3} {:>8.3} {:>7} {:>10.1} ms",
            sample.latencies.len(),
            ms(sample.percentile(0.5)),
            p99[i],
            ms(sample.percentile(1.0)),
            sample.errors,
            ms(late)
        );
    }
    Ok(p99[1] - p99[0])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Warm both targets up, then interleave measured rounds; (direct, gateway).
async fn compare(
    fleet: &Fleet,
    client: &reqwest::Client,
    args: &Args,
    path: &str,
) -> anyhow::Result<(Sample, Sample)> {
    let direct_url = format!("{}{path}", fleet.de.base_url());
    let gateway_url = format!("{}{path}", fleet.control.base_url());
    for url in [&direct_url, &gateway_url] {
        let warm = round(fleet, client, url, args.warmup, args.concurrency).await?;
        anyhow::ensure!(
            warm.errors == 0,
            "{url} failed {} warm-up requests",
            warm.errors
        );
    }
    let (mut direct, mut gateway) = (Sample::default(), Sample::default());
    for _ in 0..args.rounds {
        for (url, total) in [(&direct_url, &mut direct), (&gateway_url, &mut gateway)] {
            total.merge(round(fleet, client, url, args.requests, args.concurrency).await?);
        }
    }
    Ok((direct, gateway))
}

/// The table of one phase, and (throughput ratio, p99 delta in ms).
fn report(title: &str, direct: &mut Sample, gateway: &mut Sample) -> (f64, f64) {
    println!("{title}");
    println!(
        "{:<10} {:>9} {:>8} {:>8} {:>7} {:>13} {:>13} {:>13}",
        "target",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "control µs/r",
        "region µs/r",
        "client µs/r"
    );
    let mut p99 = [0.0; 2];
    for (i, (name, sample)) in [("direct", &mut *direct), ("gateway", &mut *gateway)]
        .into_iter()
        .enumerate()
    {
        let (p50, p) = (ms(sample.percentile(0.5)), ms(sample.percentile(0.99)));
        p99[i] = p;
        println!(
            "{name:<10} {:>9.0} {p50:>8.3} {p:>8.3} {:>7} {:>13.0} {:>13.0} {:>13.0}",
            sample.rps(),
            sample.errors,
            sample.cpu_us(sample.cpu.control),
            sample.cpu_us(sample.cpu.region),
            sample.cpu_us(sample.cpu.client),
        );
    }
    let ratio = gateway.rps() / direct.rps();
    let delta = p99[1] - p99[0];
    let total = |s: &Sample| s.cpu_us(s.cpu.control + s.cpu.region);
    println!(
        "gateway/direct: throughput {ratio:.2}, p99 {delta:+.3} ms, web CPU per request {:.2}x \
         ({:.0} vs {:.0} µs)",
        total(gateway) / total(direct).max(f64::EPSILON),
        total(gateway),
        total(direct)
    );
    (ratio, delta)
}

/// Whether a duration such as `0s`, `0ms` or `0` is zero (web parses and checks the value).
fn is_zero(duration: &str) -> bool {
    duration
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .parse::<f64>()
        .is_ok_and(|n| n == 0.0)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut fleet = Fleet::start(FleetOptions {
        env: vec![
            ("RUST_LOG".into(), "warn".into()),
            (TOKEN_CACHE_TTL.into(), "0s".into()),
            (
                "SILO_WEB_DATABASE_PING_AFTER_IDLE".into(),
                args.database_ping_after_idle.clone(),
            ),
        ],
        ..FleetOptions::default()
    })
    .await;
    let control = fleet.api(Silo::Control);
    let created = control
        .post(
            "/api/0/organizations/",
            json!({"name": "Bench", "slug": "bench", "region": "de"}),
        )
        .await;
    anyhow::ensure!(
        created.status == 201,
        "creating the org failed: {}",
        created.body
    );

    let path = "/api/0/organizations/bench/";
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    println!(
        "org-scoped GET {path}: {} rounds x {} requests per target and phase, concurrency {}, \
         loopback; pooled connections pinged after {} idle; CPU from /proc (µs per request)",
        args.rounds, args.requests, args.concurrency, args.database_ping_after_idle
    );
    let (mut direct, mut gateway) = compare(&fleet, &client, &args, path).await?;
    let (ratio, delta) = report(
        "\n== equal work: one token lookup in Postgres per request on both paths \
         (gateway token cache off) ==",
        &mut direct,
        &mut gateway,
    );
    println!(
        "equal work: throughput ratio {ratio:.2} (target >= {TARGET_RATIO}: {}), \
         p99 delta {delta:+.3} ms under saturation",
        verdict(ratio >= TARGET_RATIO),
    );
    if args.latency_load > 0.0 {
        let rate = args.latency_load * direct.rps().min(gateway.rps());
        let delta = latency_phase(&fleet, &client, &args, path, rate).await?;
        println!(
            "equal work at equal offered load: p99 delta {delta:+.3} ms \
             (target <= +{TARGET_P99_DELTA_MS} ms: {})",
            verdict(delta <= TARGET_P99_DELTA_MS)
        );
    }

    if !is_zero(&args.token_cache_ttl) {
        fleet
            .control
            .restart_with(
                &[(TOKEN_CACHE_TTL, args.token_cache_ttl.as_str())],
                silo_multiregion_tests::fleet::READY,
            )
            .await;
        let (mut direct, mut gateway) = compare(&fleet, &client, &args, path).await?;
        report(
            &format!(
                "\n== gateway token cache {} (not equal work: the gateway skips the token \
                 lookup that direct requests make) ==",
                args.token_cache_ttl
            ),
            &mut direct,
            &mut gateway,
        );
    }
    fleet.finish().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_flag_has_an_env_var() {
        for arg in Args::command().get_arguments() {
            let id = arg.get_id().as_str();
            if !matches!(id, "help" | "version") {
                assert!(arg.get_env().is_some(), "flag --{id} has no env var");
            }
        }
    }

    #[test]
    fn a_zero_ttl_skips_the_cached_phase() {
        assert!(is_zero("0s") && is_zero("0ms") && is_zero("0"));
        assert!(!is_zero("5s") && !is_zero("500ms"));
    }
}
