//! `relay-bench`: envelopes per second accepted end to end (HTTP -> relay -> Kafka ack) against
//! a bare rdkafka producer sending the same messages with the same producer settings, in the
//! same run, on loopback. Needs Kafka and Redis from `e2e/services/up.sh`.
//!
//! ```text
//!  workers ─HTTP POST envelope─► relay (in process) ─► Kafka  ┐ same topic, same producer
//!  workers ─FutureProducer::send(IngestMessage)──────► Kafka  ┘ config, same concurrency
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::post;
use clap::Parser;
use prometheus_client::registry::Registry;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use silo_protocol::{
    IngestMessage, KeyState, ProjectConfig, ProjectConfigEntry, ProjectConfigRequest,
    ProjectConfigResponse, ProjectOptions,
};
use silo_relay::kafka::KafkaSettings;
use silo_runtime::Shutdown;

const KEY: &str = "be0c0be0c0be0c0be0c0be0c0be0c0b0";
const PROJECT: u64 = 42;
const SECRET: &str = "bench-secret";

/// Relay throughput against a bare Kafka producer.
#[derive(Debug, Parser)]
#[command(name = "relay-bench")]
struct Args {
    /// Events per measured phase.
    #[arg(long, env = "BENCH_EVENTS", default_value_t = 20_000)]
    events: u64,
    /// Requests (or produce calls) in flight at once.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 64)]
    concurrency: usize,
    /// Upper bound on one phase, seconds.
    #[arg(long, env = "BENCH_MAX_SECONDS", default_value_t = 60)]
    max_seconds: u64,
    /// Rounds of (bare, relay); the ratio uses the best of each.
    #[arg(long, env = "BENCH_ROUNDS", default_value_t = 2)]
    rounds: u32,
    /// Kafka brokers (default: from the services env file).
    #[arg(long, env = "KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Redis URL (default: from the services env file).
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
}

fn services_value(name: &str) -> anyhow::Result<String> {
    let state = std::env::var("SILO_STATE_DIR").unwrap_or_else(|_| {
        let base = std::env::var("XDG_STATE_HOME").unwrap_or_else(|_| {
            format!("{}/.local/state", std::env::var("HOME").unwrap_or_default())
        });
        format!("{base}/silo")
    });
    let path = format!("{state}/services/env");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("{name} not given and {path} unreadable; run e2e/services/up.sh")
    })?;
    text.lines()
        .filter_map(|l| l.trim().trim_start_matches("export ").split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .with_context(|| format!("{path} has no {name}; run e2e/services/up.sh"))
}

/// The fields of a typical SDK error event (~1 KB) after its `event_id`, built once.
fn event_rest() -> &'static str {
    static REST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    REST.get_or_init(|| {
        let frames: Vec<serde_json::Value> = (0..8)
            .map(|i| serde_json::json!({"function": format!("handler_{i}"), "filename": format!("src/app/module_{i}.rs"), "lineno": 100 + i, "in_app": true}))
            .collect();
        let body = serde_json::json!({
            "timestamp": 1_700_000_000.0,
            "platform": "rust",
            "level": "error",
            "release": "bench@1.0.0",
            "environment": "production",
            "exception": {"values": [{"type": "ConnectionError", "value": "connection reset by peer", "stacktrace": {"frames": frames}}]},
            "tags": {"region": "de", "service": "checkout"},
            "sdk": {"name": "sentry.rust", "version": "0.34.0"}
        })
        .to_string();
        body.trim_start_matches('{').to_owned()
    })
}

/// The event JSON for `event_id`, as an SDK would send it.
fn event_json(event_id: &str) -> String {
    format!("{{\"event_id\":\"{event_id}\",{}", event_rest())
}

fn envelope(event_id: &str) -> String {
    let payload = event_json(event_id);
    format!(
        "{{\"event_id\":\"{event_id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
        payload.len()
    )
}

/// The project-config upstream the relay asks (stands in for web; only hit on a cache miss).
async fn upstream() -> anyhow::Result<SocketAddr> {
    let handler = |body: bytes::Bytes| async move {
        let request: ProjectConfigRequest = serde_json::from_slice(&body).unwrap_or_default();
        let mut response = ProjectConfigResponse::default();
        for key in request.public_keys {
            let entry = if key == KEY {
                ProjectConfigEntry::Enabled(Box::new(ProjectConfig {
                    project_id: PROJECT,
                    organization_id: 1,
                    slug: "bench".into(),
                    disabled: false,
                    public_keys: vec![KeyState {
                        public_key: KEY.into(),
                        numeric_id: 1,
                        is_enabled: true,
                    }],
                    config: ProjectOptions::default(),
                    last_change: None,
                }))
            } else {
                ProjectConfigEntry::disabled()
            };
            response.configs.insert(key, entry);
        }
        axum::Json(response)
    };
    let app = Router::new().route(silo_protocol::project_config::PATH, post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// Run `op` for `events` ids with `concurrency` workers; returns (successes, elapsed).
async fn drive<F, Fut>(events: u64, concurrency: usize, max: Duration, op: F) -> (u64, Duration)
where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + max;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, ok, op) = (next.clone(), ok.clone(), op.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < events && Instant::now() < deadline {
                    if op(uuid::Uuid::new_v4().simple().to_string()).await {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    (ok.load(Ordering::Relaxed), started.elapsed())
}

/// What relay writes for the same event (the payload forwarded as sent).
fn ingest_bytes(event_id: &str) -> Vec<u8> {
    let Ok(payload) = serde_json::value::RawValue::from_string(event_json(event_id)) else {
        return Vec::new();
    };
    let message = IngestMessage {
        event_id: event_id.to_owned(),
        project_id: PROJECT,
        organization_id: 1,
        key_id: 1,
        received: 1_700_000_000.0,
        remote_addr: Some("127.0.0.1".into()),
        payload,
    };
    serde_json::to_vec(&message).unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let brokers = match args.kafka_brokers.clone() {
        Some(b) => b,
        None => services_value("KAFKA_BROKERS")?,
    };
    let redis_url = match args.redis_url.clone() {
        Some(r) => r,
        None => services_value("REDIS_URL")?,
    };
    let prefix = format!("bench.{}.", uuid::Uuid::new_v4().simple());
    let upstream = upstream().await?;
    let upstream_url = format!("http://{upstream}");
    let cli = silo_relay::cli::Cli::try_parse_from([
        "relay",
        "--upstream-url",
        &upstream_url,
        "--relay-secret",
        SECRET,
        "--kafka-brokers",
        &brokers,
        "--kafka-topic-prefix",
        &prefix,
        "--redis-url",
        &redis_url,
        "--redis-prefix",
        &format!("{prefix}relay:"),
    ])?;
    let shutdown = Shutdown::new();
    let mut registry = Registry::default();
    let components = silo_relay::app::build(&cli, &mut registry, &shutdown)?;
    let topic = components.state.producer.ingest_topic.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let relay_addr = listener.local_addr()?;
    let router = silo_relay::router(components.state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    // The baseline producer: exactly the relay's producer settings.
    let bare: FutureProducer = KafkaSettings {
        brokers: brokers.clone(),
        delivery_timeout: cli.kafka.kafka_delivery_timeout,
        linger: cli.kafka.kafka_linger,
        topic_prefix: prefix.clone(),
    }
    .client_config()
    .create()?;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let url = format!("http://{relay_addr}/api/{PROJECT}/envelope/");
    let relay_op = {
        let (http, url) = (http.clone(), url.clone());
        move |id: String| {
            let request = http
                .post(&url)
                .header(
                    "x-sentry-auth",
                    format!("Sentry sentry_key={KEY}, sentry_version=7"),
                )
                .body(envelope(&id))
                .send();
            async move { matches!(request.await, Ok(r) if r.status().is_success()) }
        }
    };
    let bare_op = {
        let (bare, topic) = (bare.clone(), topic.clone());
        move |id: String| {
            let (bare, topic) = (bare.clone(), topic.clone());
            async move {
                let payload = ingest_bytes(&id);
                let key = PROJECT.to_string();
                let record = FutureRecord::to(&topic).key(&key).payload(&payload);
                bare.send(record, Timeout::After(Duration::from_secs(5)))
                    .await
                    .is_ok()
            }
        }
    };

    let max = Duration::from_secs(args.max_seconds);
    let warm = args.events.min(2_000);
    let (w1, _) = drive(warm, args.concurrency, max, relay_op.clone()).await;
    let (w2, _) = drive(warm, args.concurrency, max, bare_op.clone()).await;
    if w1 < warm || w2 < warm {
        bail!("warm-up failed: relay {w1}/{warm}, bare {w2}/{warm} acknowledged; is Kafka up?");
    }
    println!(
        "relay-bench: {} events per phase, concurrency {}, ~{} byte envelopes, topic {topic}",
        args.events,
        args.concurrency,
        envelope(&"0".repeat(32)).len()
    );
    let (mut best_bare, mut best_relay) = (0.0_f64, 0.0_f64);
    for round in 1..=args.rounds {
        let (n, t) = drive(args.events, args.concurrency, max, bare_op.clone()).await;
        let bare_rate = n as f64 / t.as_secs_f64();
        println!(
            "round {round}: bare producer  {n:>7} acked in {:>6.2}s = {bare_rate:>9.0} events/s",
            t.as_secs_f64()
        );
        let (n, t) = drive(args.events, args.concurrency, max, relay_op.clone()).await;
        let relay_rate = n as f64 / t.as_secs_f64();
        println!(
            "round {round}: relay (HTTP)   {n:>7} acked in {:>6.2}s = {relay_rate:>9.0} events/s",
            t.as_secs_f64()
        );
        best_bare = best_bare.max(bare_rate);
        best_relay = best_relay.max(relay_rate);
    }
    let ratio = best_relay / best_bare;
    println!(
        "best: relay {best_relay:.0} events/s, bare producer {best_bare:.0} events/s, ratio {:.0}% (target >= 50%)",
        ratio * 100.0
    );
    shutdown.trigger();
    Ok(())
}
