//! Fixtures: the loopback services (Postgres, Redis, Kafka from `e2e/services/up.sh`), the real
//! `web` binary over a fresh database, and a relay in front of it with per-test topic and Redis
//! prefixes so tests never see each other's data. Services, database, process and waits are
//! `silo-testkit`'s.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use serde_json::{Value, json};
use silo_relay::app::Components;
use silo_relay::cli::Cli;
use silo_runtime::Shutdown;
use silo_testkit::{Process, Services, TestDb};

/// Tests that need Kafka hold this shared; the outage test holds it exclusively while it stops
/// the broker.
pub static KAFKA_GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

pub const SECRET: &str = "relay-test-secret";

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    addr
}

/// A DSN key created through the web API.
#[derive(Clone, Debug)]
pub struct Key {
    /// Numeric key id (what relay reports as `key_id`).
    pub id: u64,
    pub project_id: u64,
    pub organization_id: u64,
    pub public_key: String,
    pub org_slug: String,
    pub project_slug: String,
}

const TOKEN: &str = "relay-test-token";

/// A relay built from flags, served on a loopback port.
struct Relay {
    addr: SocketAddr,
    registry: Registry,
    _components: Components,
}

impl Relay {
    async fn start(args: &[String], shutdown: &Shutdown) -> Relay {
        let cli = <Cli as clap::Parser>::try_parse_from(args).expect("relay flags parse");
        let mut registry = Registry::default();
        let components =
            silo_relay::app::build(&cli, &mut registry, shutdown).expect("relay components");
        let addr = serve(silo_relay::router(components.state.clone())).await;
        Relay {
            addr,
            registry,
            _components: components,
        }
    }
}

/// Sum of the samples of `metric` whose labels contain every one of `labels` (0 when absent).
pub fn metric_value(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Web over a fresh database plus a relay in front of it.
pub struct Harness {
    pub services: Services,
    db: TestDb,
    web_process: Process,
    pub web: SocketAddr,
    pub relay: SocketAddr,
    relays: Vec<Relay>,
    relay_args: Vec<String>,
    pub topic_prefix: String,
    pub http: reqwest::Client,
    shutdown: Shutdown,
}

impl Harness {
    /// Start with extra relay flags (e.g. `--max-envelope-bytes`).
    pub async fn start(extra_flags: &[&str]) -> Harness {
        let services = Services::get();
        let db = TestDb::create("silo_relay_test").await;

        let web: SocketAddr = silo_testkit::free_addr();
        silo_testkit::ensure_built(&[("silo-web", "web")]);
        let env: BTreeMap<String, String> = [
            ("SENTRY_SILO_MODE", "REGION"),
            ("SENTRY_REGION", "local"),
            (
                "SENTRY_REGION_CONFIG",
                r#"[{"name":"local","snowflake_id":1,"address":"http://127.0.0.1","category":"MULTI_TENANT","visible":true}]"#,
            ),
            ("DATABASE_URL", &db.url),
            ("SILO_WEB_LISTEN", &web.to_string()),
            ("RELAY_SHARED_SECRET", SECRET),
            ("SILO_BOOTSTRAP_TOKEN", TOKEN),
            ("SILO_RELAY_PUBLIC_URL", "http://127.0.0.1:3000"),
            ("RUST_LOG", "error"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let mut web_process = Process::new("web", silo_testkit::binary("silo-web", "web"), web)
            .log_dir("silo-relay-tests")
            .clear_env()
            .envs(&env)
            .started();
        web_process.wait_ready(Duration::from_secs(60)).await;
        let http = reqwest::Client::new();

        let topic_prefix = unique("relaytest.");
        let redis_prefix = format!("{}:", unique("relaytest:"));
        let upstream = format!("http://{web}");
        let mut args = vec![
            "relay",
            "--upstream-url",
            &upstream,
            "--relay-secret",
            SECRET,
            "--kafka-brokers",
            &services.kafka_brokers,
            "--kafka-topic-prefix",
            &topic_prefix,
            "--redis-url",
            &services.redis_url,
            "--redis-prefix",
            &redis_prefix,
            "--outcomes-flush-interval",
            "100ms",
            "--config-negative-ttl",
            "1s",
        ];
        args.extend_from_slice(extra_flags);
        let relay_args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let shutdown = Shutdown::new();
        let first = Relay::start(&relay_args, &shutdown).await;
        let relay = first.addr;
        Harness {
            services,
            db,
            web_process,
            web,
            relay,
            relays: vec![first],
            relay_args,
            topic_prefix,
            http,
            shutdown,
        }
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self
            .http
            .request(method, format!("http://{}{path}", self.web))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("web API request");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).expect("web API JSON")
    }

    /// An org, a project and a key (optionally rate limited: count per window seconds),
    /// created through the web API.
    pub async fn key(&self, limit: Option<(i32, i32)>) -> Key {
        let org_slug = unique("o")[..16].to_owned();
        let org = self
            .api(
                reqwest::Method::POST,
                "/api/0/organizations/",
                json!({"name": org_slug, "slug": org_slug}),
            )
            .await;
        let project = self
            .api(
                reqwest::Method::POST,
                &format!("/api/0/organizations/{org_slug}/projects/"),
                json!({"name": "App", "slug": "app", "platform": "rust"}),
            )
            .await;
        let body = match limit {
            Some((count, window)) => json!({"rateLimit": {"count": count, "window": window}}),
            None => json!({}),
        };
        let key = self
            .api(
                reqwest::Method::POST,
                &format!("/api/0/projects/{org_slug}/app/keys/"),
                body,
            )
            .await;
        let public_key = key["public"].as_str().expect("key public").to_owned();
        let (id,): (i64,) = sqlx::query_as("SELECT id FROM project_keys WHERE public_key = $1")
            .bind(&public_key)
            .fetch_one(&self.db.pool)
            .await
            .expect("key id");
        let num = |v: &Value| -> u64 {
            v.as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| v.as_u64())
                .expect("numeric id")
        };
        Key {
            id: u64::try_from(id).expect("positive id"),
            project_id: num(&project["id"]),
            organization_id: num(&org["id"]),
            public_key,
            org_slug,
            project_slug: "app".into(),
        }
    }

    /// Switch a key off through the web API.
    pub async fn disable(&self, key: &Key) {
        self.api(
            reqwest::Method::PUT,
            &format!(
                "/api/0/projects/{}/{}/keys/{}/",
                key.org_slug, key.project_slug, key.public_key
            ),
            json!({"isActive": false}),
        )
        .await;
    }

    /// Another relay with the same flags (same Redis prefix and topics, empty memory cache).
    pub async fn second_relay(&mut self) -> SocketAddr {
        let relay = Relay::start(&self.relay_args, &self.shutdown).await;
        let addr = relay.addr;
        self.relays.push(relay);
        addr
    }

    /// The Prometheus text of the `index`th relay.
    pub fn relay_metrics(&self, index: usize) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.relays[index].registry)
            .expect("encode metrics");
        text
    }

    /// The Prometheus text web serves.
    pub async fn web_metrics(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.web))
            .send()
            .await
            .expect("web /metrics")
            .text()
            .await
            .expect("web metrics text")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.relay)
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    pub async fn finish(self) {
        self.shutdown.trigger();
        drop(self.web_process);
        self.db.drop_database().await;
    }
}

/// An envelope with one event item; `with_length` decides whether the item header has `length`.
pub fn envelope(event_id: &str, message: &str, with_length: bool, dsn: Option<&str>) -> String {
    let payload = serde_json::json!({
        "event_id": event_id,
        "message": message,
        "level": "error",
        "platform": "rust",
    })
    .to_string();
    let header = match dsn {
        Some(dsn) => serde_json::json!({"event_id": event_id, "dsn": dsn}),
        None => serde_json::json!({"event_id": event_id}),
    };
    let item = if with_length {
        serde_json::json!({"type": "event", "length": payload.len()})
    } else {
        serde_json::json!({"type": "event"})
    };
    format!("{header}\n{item}\n{payload}\n")
}

pub fn auth_header(key: &str) -> String {
    format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=relay-tests/1.0")
}

pub fn event_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Read `topic` from the beginning until a message satisfies `want`, or panic at the deadline.
pub fn consume_until(
    brokers: &str,
    topic: &str,
    deadline: Duration,
    mut want: impl FnMut(&[u8], Option<&[u8]>) -> bool,
) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("relaytest-"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200))
            && let Some(payload) = message.payload()
            && want(payload, message.key())
        {
            return;
        }
    }
    panic!("no matching message on {topic} within {deadline:?}");
}
