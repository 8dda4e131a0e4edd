//! Test fixtures: the app router over a fresh Postgres database per test
//! ([`silo_testkit::TestDb`] on the loopback services), and request helpers driving it with
//! `oneshot`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use serde_json::Value;
use silo_contract::SiloMode;
use silo_store::{PgPool, PoolSettings};
use silo_testkit::TestDb;
use silo_web::metrics::WebMetrics;
use silo_web::{AppState, Settings};
use tower::ServiceExt;

pub const TOKEN: &str = "test-admin-token";
pub const RELAY_SECRET: &str = "test-relay-secret";
pub const RELAY_URL: &str = "http://relay.test:3000";

/// A fresh migrated database; drop it with [`TestDb::drop_database`] at the end.
pub async fn database() -> TestDb {
    TestDb::migrated("silo_web_test", &silo_store::MIGRATOR).await
}

pub fn state(pool: PgPool, mode: SiloMode) -> AppState {
    let mut registry = Registry::default();
    AppState {
        pool,
        mode,
        settings: Arc::new(Settings {
            relay_public_url: RELAY_URL.to_owned(),
            relay_secret: Some(RELAY_SECRET.to_owned()),
            public_url: Some("http://api.test".to_owned()),
        }),
        metrics: Arc::new(WebMetrics::register(&mut registry)),
        cross: silo_web::control::CrossSilo::standalone(mode),
    }
}

/// A pool that never reaches a database (nothing listens on port 1).
pub fn unreachable_pool() -> PgPool {
    let mut settings = PoolSettings::new("postgres://postgres@127.0.0.1:1/none");
    settings.acquire_timeout = Duration::from_secs(2);
    silo_store::connect_lazy(&settings).expect("pool")
}

/// The app over a fresh database, with [`TOKEN`] holding every scope.
pub struct TestApp {
    pub db: TestDb,
    pub router: Router,
}

impl TestApp {
    pub async fn new(mode: SiloMode) -> TestApp {
        let db = database().await;
        let scopes: Vec<String> = silo_web::auth::ALL_SCOPES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        silo_store::api_tokens::upsert(&db.pool, TOKEN, "test", &scopes)
            .await
            .expect("seed token");
        let router = silo_web::router(state(db.pool.clone(), mode));
        TestApp { db, router }
    }

    pub async fn get(&self, path: &str) -> Reply {
        send(&self.router, Method::GET, path, None, Some(TOKEN)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        send(&self.router, Method::POST, path, Some(body), Some(TOKEN)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        send(&self.router, Method::PUT, path, Some(body), Some(TOKEN)).await
    }

    /// Create an org, a project in it and a key; returns (org slug, project slug, key JSON).
    pub async fn org_project_key(&self, org: &str, project: &str) -> Value {
        let r = self
            .post(
                "/api/0/organizations/",
                serde_json::json!({"name": org, "slug": org}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let r = self
            .post(
                &format!("/api/0/organizations/{org}/projects/"),
                serde_json::json!({"name": project, "slug": project, "platform": "rust"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let r = self
            .post(
                &format!("/api/0/projects/{org}/{project}/keys/"),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }

    pub async fn finish(self) {
        self.db.drop_database().await;
    }
}

/// A response with its body parsed as JSON (`Value::Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn link(&self) -> String {
        self.headers
            .get("link")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// The cursor of the `rel` link and whether it has results.
    pub fn cursor(&self, rel: &str) -> (String, bool) {
        let link = self.link();
        let part = link
            .split(", <")
            .find(|p| p.contains(&format!("rel=\"{rel}\"")))
            .unwrap_or_else(|| panic!("no rel={rel} in Link: {link}"));
        let results = part.contains("results=\"true\"");
        let cursor = part
            .split("cursor=\"")
            .nth(1)
            .and_then(|c| c.split('"').next())
            .unwrap_or_else(|| panic!("no cursor in {part}"))
            .to_owned();
        (cursor, results)
    }
}

pub async fn send(
    router: &Router,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> Reply {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(v) => {
            builder = builder.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    raw(router, builder.body(body).expect("request")).await
}

pub async fn raw(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Reply {
        status,
        headers,
        body,
    }
}
