//! A whole region on loopback: web, relay, consumers and postprocess over a fresh database and
//! a unique Kafka topic prefix, with a bootstrap API token.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use silo_testkit::{Process, Services, TestDb, free_addr, unique_suffix};

use crate::api::Api;
use crate::binaries::{ensure_built, spawn};
use crate::kafka::Topics;

const READY: Duration = Duration::from_secs(120);

/// The running region.
pub struct Region {
    pub services: Services,
    pub db: TestDb,
    pub topics: Topics,
    pub web: Process,
    pub relay: Process,
    pub consumers: Process,
    pub postprocess: Process,
    pub api: Api,
    /// Base URL SDKs send to (`http://127.0.0.1:<port>`).
    pub relay_url: String,
}

/// A project created through the API, with its DSN.
#[derive(Clone, Debug)]
pub struct TestProject {
    pub org: String,
    pub slug: String,
    pub id: String,
    pub dsn: String,
    pub public_key: String,
}

fn env(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

impl Region {
    /// Build (unless `SILO_SKIP_BUILD=1`) and start the four workloads; panics naming the
    /// one that did not become ready, with its log.
    pub async fn start(tag: &str) -> Self {
        ensure_built(&["web", "relay", "consumers", "postprocess"]);
        let services = Services::get();
        let db = TestDb::migrated(&format!("silo_{tag}"), &silo_store::MIGRATOR).await;
        let topics = Topics::create(&services, tag).await;
        let token = format!("tok{}", unique_suffix()).replace('_', "");
        let secret = format!("relay-secret-{}", unique_suffix());

        let common = |admin: SocketAddr| {
            vec![
                ("DATABASE_URL", db.url.clone()),
                ("KAFKA_BROKERS", services.kafka_brokers.clone()),
                ("REDIS_URL", services.redis_url.clone()),
                ("SILO_KAFKA_TOPIC_PREFIX", topics.prefix.clone()),
                ("SENTRY_SILO_MODE", "MONOLITH".to_owned()),
                ("RELAY_SHARED_SECRET", secret.clone()),
                ("SILO_ADMIN_ADDR", admin.to_string()),
                ("SILO_RETRY_MAX_BACKOFF", "1s".to_owned()),
                ("SILO_KAFKA_SESSION_TIMEOUT", "6s".to_owned()),
            ]
        };

        let web_addr = free_addr();
        let relay_addr = free_addr();
        let relay_url = format!("http://{relay_addr}");
        let web_url = format!("http://{web_addr}");

        let mut web_env = common(web_addr);
        web_env.extend([
            ("SILO_WEB_LISTEN", web_addr.to_string()),
            ("SILO_RELAY_PUBLIC_URL", relay_url.clone()),
            ("SILO_WEB_PUBLIC_URL", web_url.clone()),
            ("SILO_BOOTSTRAP_TOKEN", token.clone()),
        ]);
        let mut web = spawn("web", web_addr, &env(&web_env));
        web.wait_ready(READY).await;

        let relay_admin = free_addr();
        let mut relay_env = common(relay_admin);
        relay_env.extend(relay_settings(relay_addr, relay_admin, &web_url));
        relay_env.push((
            "SILO_RELAY_REDIS_PREFIX",
            format!("{}relay:", topics.prefix),
        ));
        let mut relay = spawn("relay", relay_admin, &env(&relay_env));

        let consumers_admin = free_addr();
        let mut consumers_env = common(consumers_admin);
        consumers_env.push(("SILO_CONSUMER_GROUP", format!("{}consumers", topics.prefix)));
        let mut consumers = spawn("consumers", consumers_admin, &env(&consumers_env));

        let pp_admin = free_addr();
        let mut pp_env = common(pp_admin);
        pp_env.extend([
            (
                "SILO_CONSUMER_GROUP",
                format!("{}postprocess", topics.prefix),
            ),
            ("SILO_PUBLIC_URL", web_url.clone()),
            ("SILO_WEBHOOK_MAX_ATTEMPTS", "3".to_owned()),
        ]);
        let mut postprocess = spawn("postprocess", pp_admin, &env(&pp_env));

        relay.wait_ready(READY).await;
        consumers.wait_ready(READY).await;
        postprocess.wait_ready(READY).await;

        Region {
            services,
            db,
            topics,
            web,
            relay,
            consumers,
            postprocess,
            api: Api::new(web_url, token),
            relay_url,
        }
    }

    /// Create an organization, a project and a key named `slug` through the API.
    pub async fn project(&self, slug: &str) -> TestProject {
        self.api.create_org(slug).await;
        let project = self.api.create_project(slug, slug).await;
        let key = self.api.create_key(slug, slug).await;
        let dsn = key["dsn"]["public"]
            .as_str()
            .unwrap_or_else(|| panic!("key without dsn.public: {key}"))
            .to_owned();
        TestProject {
            org: slug.to_owned(),
            slug: slug.to_owned(),
            id: project["id"].as_str().unwrap_or_default().to_owned(),
            public_key: key["public"].as_str().unwrap_or_default().to_owned(),
            dsn,
        }
    }

    /// Stop every workload and drop the database.
    pub async fn stop(self) {
        let Region {
            db,
            mut web,
            mut relay,
            mut consumers,
            mut postprocess,
            ..
        } = self;
        for b in [&mut relay, &mut consumers, &mut postprocess, &mut web] {
            b.terminate(Duration::from_secs(30)).await;
        }
        db.drop_database().await;
    }
}

/// The relay's own settings: where it listens and where web is.
fn relay_settings(
    listen: SocketAddr,
    admin: SocketAddr,
    web_url: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("SILO_RELAY_LISTEN", listen.to_string()),
        ("SILO_RELAY_ADMIN_LISTEN", admin.to_string()),
        ("SILO_RELAY_UPSTREAM_URL", web_url.to_owned()),
    ]
}
