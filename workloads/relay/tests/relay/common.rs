//! Fixtures: the loopback services (Postgres, Redis, Kafka from `e2e/services/up.sh`), the real
//! `web` binary over a fresh database, and a relay in front of it with per-test topic and Redis
//! prefixes so tests never see each other's data.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use serde_json::{Value, json};
use silo_relay::app::Components;
use silo_relay::cli::Cli;
use silo_runtime::Shutdown;
use sqlx::Connection;

/// Tests that need Kafka hold this shared; the outage test holds it exclusively while it stops
/// the broker.
pub static KAFKA_GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

pub const SECRET: &str = "relay-test-secret";

/// Service URLs from the environment or the env file `e2e/services/up.sh` writes.
pub struct Services {
    pub database_url: String,
    pub redis_url: String,
    pub kafka_brokers: String,
}

fn env_file() -> String {
    let state = std::env::var("SILO_STATE_DIR").unwrap_or_else(|_| {
        let base = std::env::var("XDG_STATE_HOME").unwrap_or_else(|_| {
            format!("{}/.local/state", std::env::var("HOME").unwrap_or_default())
        });
        format!("{base}/silo")
    });
    format!("{state}/services/env")
}

impl Services {
    pub fn get() -> Services {
        let path = env_file();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lookup =
            |name: &str| {
                std::env::var(name).ok().or_else(|| {
                text.lines()
                    .filter_map(|l| l.trim().trim_start_matches("export ").split_once('='))
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| {
                panic!(
                    "relay integration tests need Postgres, Redis and Kafka: {name} is not set \
                     and {path} does not define it; run e2e/services/up.sh first"
                )
            })
            };
        Services {
            database_url: lookup("DATABASE_URL"),
            redis_url: lookup("REDIS_URL"),
            kafka_brokers: lookup("KAFKA_BROKERS"),
        }
    }
}

fn with_database(url: &str, name: &str) -> String {
    let authority = url.find("://").map_or(0, |i| i + 3);
    let root = match url[authority..].find('/') {
        Some(i) => &url[..authority + i],
        None => url,
    };
    format!("{root}/{name}")
}

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

/// Build the `web` binary once per test process (same profile) and return its path.
fn web_binary() -> PathBuf {
    silo_testkit::ensure_built(&[("silo-web", "web")]);
    silo_testkit::binary("silo-web", "web")
}

/// The web process; killed when dropped.
struct WebProcess(Child);

impl Drop for WebProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    db_name: String,
    db_url: String,
    web_process: WebProcess,
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
        let db_name = unique("silo_relay_test_");
        let mut admin = sqlx::PgConnection::connect(&services.database_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to Postgres at {}: {e}; run e2e/services/up.sh",
                    services.database_url
                )
            });
        sqlx::query(&format!("CREATE DATABASE {db_name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.ok();
        let db_url = with_database(&services.database_url, &db_name);

        let web: SocketAddr = silo_testkit::free_addr();
        let binary = web_binary();
        let child = Command::new(&binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SENTRY_SILO_MODE", "REGION")
            .env("SENTRY_REGION", "local")
            .env(
                "SENTRY_REGION_CONFIG",
                r#"[{"name":"local","snowflake_id":1,"address":"http://127.0.0.1","category":"MULTI_TENANT","visible":true}]"#,
            )
            .env("DATABASE_URL", &db_url)
            .env("SILO_WEB_LISTEN", web.to_string())
            .env("RELAY_SHARED_SECRET", SECRET)
            .env("SILO_BOOTSTRAP_TOKEN", TOKEN)
            .env("SILO_RELAY_PUBLIC_URL", "http://127.0.0.1:3000")
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let web_process = WebProcess(child);
        let http = reqwest::Client::new();
        let health = format!("http://{web}/healthz");
        eventually("web answers /healthz", Duration::from_secs(60), || {
            let request = http.get(&health).send();
            async move { request.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;

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
            db_name,
            db_url,
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
        let mut db = sqlx::PgConnection::connect(&self.db_url).await.expect("db");
        let (id,): (i64,) = sqlx::query_as("SELECT id FROM project_keys WHERE public_key = $1")
            .bind(&public_key)
            .fetch_one(&mut db)
            .await
            .expect("key id");
        db.close().await.ok();
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
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.services.database_url).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            ))
            .execute(&mut admin)
            .await;
        }
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

/// Poll `check` until it returns `Some`, or panic at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < end,
            "{what}: not reached within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
