//! Gateway overhead: requests/s and latency of an org-scoped GET through the control gateway
//! versus straight at the owning region, measured in the same run on loopback.
//!
//! ```text
//!  cargo run --release -p silo-multiregion-tests --bin gateway-bench
//!  cargo run --release -p silo-multiregion-tests --bin gateway-bench -- --token-cache-ttl 0s
//!  Fleet (control + us + de, release `web`) ─► org "bench" in de
//!  rounds: direct (de) ─► gateway (control) ─► direct ─► gateway ... (same client, same load)
//!  ─► requests/s, p50, p99 per target; ratios against direct
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use silo_multiregion_tests::{Fleet, FleetOptions, Silo, TOKEN};

#[derive(Debug, Parser)]
#[command(about = "Gateway overhead: org-scoped GET through control vs direct at the region")]
struct Args {
    /// Requests per round and target.
    #[arg(long, env = "BENCH_REQUESTS", default_value_t = 4000)]
    requests: usize,
    /// Concurrent requests in flight.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 8)]
    concurrency: usize,
    /// Measured rounds per target (interleaved).
    #[arg(long, env = "BENCH_ROUNDS", default_value_t = 3)]
    rounds: usize,
    /// Unmeasured requests per target before the first round.
    #[arg(long, env = "BENCH_WARMUP", default_value_t = 1000)]
    warmup: usize,
    /// The control silo's SILO_GATEWAY_TOKEN_CACHE_TTL (`0s` looks every token up).
    #[arg(long, env = "BENCH_TOKEN_CACHE_TTL", default_value = "5s")]
    token_cache_ttl: String,
}

#[derive(Default)]
struct Sample {
    latencies: Vec<Duration>,
    elapsed: Duration,
    errors: usize,
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
}

async fn round(
    client: &reqwest::Client,
    url: &str,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<Sample> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.to_owned(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                let t = Instant::now();
                let ok = match client.get(&url).bearer_auth(TOKEN).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
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
    Ok(sample)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fleet = Fleet::start(FleetOptions {
        env: vec![
            ("RUST_LOG".into(), "warn".into()),
            (
                "SILO_GATEWAY_TOKEN_CACHE_TTL".into(),
                args.token_cache_ttl.clone(),
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
    let direct_url = format!("{}{path}", fleet.de.base_url());
    let gateway_url = format!("{}{path}", fleet.control.base_url());
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    for url in [&direct_url, &gateway_url] {
        let warm = round(&client, url, args.warmup, args.concurrency).await?;
        anyhow::ensure!(
            warm.errors == 0,
            "{url} failed {} warm-up requests",
            warm.errors
        );
    }
    let (mut direct, mut gateway) = (Sample::default(), Sample::default());
    for _ in 0..args.rounds {
        for (url, total) in [(&direct_url, &mut direct), (&gateway_url, &mut gateway)] {
            let s = round(&client, url, args.requests, args.concurrency).await?;
            total.latencies.extend(s.latencies);
            total.elapsed += s.elapsed;
            total.errors += s.errors;
        }
    }
    let (d50, d99, g50, g99) = (
        direct.percentile(0.5),
        direct.percentile(0.99),
        gateway.percentile(0.5),
        gateway.percentile(0.99),
    );
    println!(
        "org-scoped GET {path} ({} rounds x {} requests, concurrency {}, loopback, \
         gateway token cache {})",
        args.rounds, args.requests, args.concurrency, args.token_cache_ttl
    );
    println!(
        "{:<10} {:>10} {:>9} {:>9} {:>7}",
        "target", "req/s", "p50 ms", "p99 ms", "errors"
    );
    for (name, sample, p50, p99) in [
        ("direct", &direct, d50, d99),
        ("gateway", &gateway, g50, g99),
    ] {
        println!(
            "{name:<10} {:>10.0} {:>9.3} {:>9.3} {:>7}",
            sample.rps(),
            ms(p50),
            ms(p99),
            sample.errors
        );
    }
    let throughput_ratio = gateway.rps() / direct.rps();
    let p99_delta = ms(g99) - ms(d99);
    println!(
        "gateway/direct throughput ratio: {throughput_ratio:.2} (target >= 0.70: {})",
        if throughput_ratio >= 0.70 {
            "met"
        } else {
            "missed"
        }
    );
    println!(
        "gateway p99 - direct p99: {p99_delta:.3} ms (target <= 2 ms: {})",
        if p99_delta <= 2.0 { "met" } else { "missed" }
    );
    fleet.finish().await;
    Ok(())
}
