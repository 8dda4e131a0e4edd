//! `relay-bench`: envelopes per second accepted end to end (HTTP -> relay -> Kafka ack) against
//! a bare rdkafka producer sending the same messages with the same producer settings, in the
//! same run, on loopback; and relay again with a key quota, so the Redis rate-limit check is
//! on the path (the quota is far above what is sent: nothing is limited, the work is the
//! same). Needs Kafka and Redis from `e2e/services/up.sh`.
//!
//! ```text
//!  workers ─HTTP POST envelope─► relay (in process) ─► Kafka  ┐ same topic, same producer
//!  workers ─HTTP POST envelope─► relay ─► Redis quota ─► Kafka┤ config, same concurrency
//!  workers ─FutureProducer::send(IngestMessage)──────► Kafka  ┘
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
    ProjectConfigResponse, ProjectOptions, Quota, QuotaScope,
};
use silo_relay::kafka::KafkaSettings;
use silo_runtime::Shutdown;

const KEY: &str = "be0c0be0c0be0c0be0c0be0c0be0c0b0";
/// A second key of the project, with a quota (numeric id [`QUOTA_KEY_ID`]).
const QUOTA_KEY: &str = "be0c0be0c0be0c0be0c0be0c0be0c0b1";
const QUOTA_KEY_ID: u64 = 2;
/// Events per window of the key quota: far above anything the benchmark sends.
const QUOTA_LIMIT: u64 = 1_000_000_000_000;
/// A day: the run stays in one window (a counter expires a second after its window ends, so
/// crossing a boundary would lose the count the quota check compares), and the counters are
/// deleted at the end.
const QUOTA_WINDOW: u64 = 86_400;
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
    /// Rounds of (bare, relay, relay with quota); the ratios use the best of each.
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
            let entry = match key.as_str() {
                KEY => project_config(KEY, 1, Vec::new()),
                QUOTA_KEY => project_config(QUOTA_KEY, QUOTA_KEY_ID, vec![key_quota()]),
                _ => ProjectConfigEntry::disabled(),
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

/// The config web would send for `key` (see web's `config_for`).
fn project_config(key: &str, key_id: u64, quotas: Vec<Quota>) -> ProjectConfigEntry {
    ProjectConfigEntry::Enabled(Box::new(ProjectConfig {
        project_id: PROJECT,
        organization_id: 1,
        slug: "bench".into(),
        disabled: false,
        public_keys: vec![KeyState {
            public_key: key.into(),
            numeric_id: key_id,
            is_enabled: true,
        }],
        config: ProjectOptions {
            quotas,
            ..ProjectOptions::default()
        },
        last_change: None,
    }))
}

/// A key rate limit as web configures it, far above what the benchmark sends.
fn key_quota() -> Quota {
    Quota {
        id: format!("key-{QUOTA_KEY_ID}"),
        categories: Vec::new(),
        scope: QuotaScope::Key,
        scope_id: Some(QUOTA_KEY_ID.to_string()),
        limit: QUOTA_LIMIT,
        window: QUOTA_WINDOW,
        reason_code: "key_quota".into(),
    }
}

/// What one phase did.
#[derive(Clone, Copy, Debug)]
struct Phase {
    ok: u64,
    failed: u64,
    elapsed: Duration,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    fn line(&self, round: u32, name: &str) -> String {
        let refused = if self.failed > 0 {
            format!(" ({} refused or failed)", self.failed)
        } else {
            String::new()
        };
        format!(
            "round {round}: {name:<19} {:>7} acked in {:>6.2}s = {:>9.0} events/s{refused}",
            self.ok,
            self.elapsed.as_secs_f64(),
            self.rate()
        )
    }
}

/// Run `op` for `events` ids with `concurrency` workers, for at most `max`.
async fn drive<F, Fut>(events: u64, concurrency: usize, max: Duration, op: F) -> Phase
where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + max;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, ok, failed, op) = (next.clone(), ok.clone(), failed.clone(), op.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < events && Instant::now() < deadline {
                    let counter = if op(uuid::Uuid::new_v4().simple().to_string()).await {
                        &ok
                    } else {
                        &failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    Phase {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

/// The sum of relay's quota counters in Redis under `prefix` (every window), which are then
/// deleted.
async fn take_quota_counters(redis_url: &str, prefix: &str) -> anyhow::Result<u64> {
    let client = redis::Client::open(redis_url).context("REDIS_URL")?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .context("connecting to Redis timed out")??;
    let pattern = format!("{prefix}quota:*");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut conn)
        .await?;
    if keys.is_empty() {
        return Ok(0);
    }
    let values: Vec<Option<u64>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
    redis::cmd("DEL")
        .arg(&keys)
        .query_async::<u64>(&mut conn)
        .await?;
    Ok(values.into_iter().flatten().sum())
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
        security: Vec::new(),
    }
    .client_config()
    .create()?;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let url = format!("http://{relay_addr}/api/{PROJECT}/envelope/");
    let relay_op = |key: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        move |id: String| {
            let request = http
                .post(&url)
                .header(
                    "x-sentry-auth",
                    format!("Sentry sentry_key={key}, sentry_version=7"),
                )
                .body(envelope(&id))
                .send();
            async move { matches!(request.await, Ok(r) if r.status().is_success()) }
        }
    };
    let (plain_op, quota_op) = (relay_op(KEY), relay_op(QUOTA_KEY));
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
    let warm_ups = [
        (
            "relay",
            drive(warm, args.concurrency, max, plain_op.clone()).await,
        ),
        (
            "relay with quota",
            drive(warm, args.concurrency, max, quota_op.clone()).await,
        ),
        (
            "bare",
            drive(warm, args.concurrency, max, bare_op.clone()).await,
        ),
    ];
    if let Some((name, phase)) = warm_ups.iter().find(|(_, p)| p.ok < warm) {
        bail!(
            "warm-up failed: {name} {}/{warm} acknowledged; are Kafka and Redis up?",
            phase.ok
        );
    }
    println!(
        "relay-bench: {} events per phase, concurrency {}, ~{} byte envelopes, topic {topic}",
        args.events,
        args.concurrency,
        envelope(&"0".repeat(32)).len()
    );
    println!(
        "quota phase: key quota of {QUOTA_LIMIT} events per {QUOTA_WINDOW}s window, checked in Redis for every envelope"
    );
    let (mut bare_best, mut relay_best, mut quota_best) = (0.0_f64, 0.0_f64, 0.0_f64);
    let mut quota_accepted = warm_ups[1].1.ok;
    for round in 1..=args.rounds {
        let bare = drive(args.events, args.concurrency, max, bare_op.clone()).await;
        println!("{}", bare.line(round, "bare producer"));
        let relay = drive(args.events, args.concurrency, max, plain_op.clone()).await;
        println!("{}", relay.line(round, "relay (HTTP)"));
        let quota = drive(args.events, args.concurrency, max, quota_op.clone()).await;
        println!("{}", quota.line(round, "relay + Redis quota"));
        quota_accepted += quota.ok;
        bare_best = bare_best.max(bare.rate());
        relay_best = relay_best.max(relay.rate());
        quota_best = quota_best.max(quota.rate());
    }
    println!(
        "best: bare producer {bare_best:.0} events/s, relay {relay_best:.0} events/s ({:.0}% of bare, target >= 50%), \
         relay with quota {quota_best:.0} events/s ({:.0}% of relay without quota)",
        relay_best / bare_best * 100.0,
        quota_best / relay_best * 100.0
    );
    // The quota path must really have run: relay accepts events when Redis fails.
    let errors = components.state.metrics.rate_limit_errors.get();
    let counted = take_quota_counters(&redis_url, &format!("{prefix}relay:")).await?;
    println!(
        "quota check: {counted} events counted in Redis for {quota_accepted} accepted with the quota, \
         {errors} rate-limit errors{}",
        if counted == quota_accepted && errors == 0 {
            ""
        } else {
            " (MISMATCH: not every event of the quota phase went through Redis, or a quota window ended during the run)"
        }
    );
    shutdown.trigger();
    Ok(())
}
